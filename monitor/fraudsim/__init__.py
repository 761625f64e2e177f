"""fraudsim: a seeded generator of micro-transaction streams with labelled
injected typologies (docs/monitor.md, "fraudsim").

:func:`generate` returns the scoring input lines (``{"id", "height",
"time", "record"}``, ``record`` as ``Record.to_json`` writes it, ids the
real record ids) and the labels (id -> typology or ``"normal"``).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from ledger.records import make_record

from .typologies import TYPOLOGIES
from .world import DAY, EPOCH, HOUR, Tx, World

CHAIN = "fraudsim"
BLOCK_MS = 1000  # one block a second: a line's height is its second since day 0, plus one


@dataclass
class Stream:
    lines: list[dict[str, Any]]
    labels: dict[str, str]
    incidents: dict[str, int]  # id -> incident number (0 for normal records)
    txs: list[Tx]  # in stream order, aligned with lines


def submitter_of(system: str) -> bytes:
    """A stable 32-byte submitter per origin system (fraudsim does not sign
    offline streams; the live feed signs with a real key)."""
    return hashlib.sha256(b"fraudsim-submitter:" + system.encode()).digest()


def simulate(seed: int, accounts: int = 1200, days: int = 14, anomaly_rate: float = 0.01,
             warmup_days: int = 3, typologies: tuple[str, ...] = tuple(TYPOLOGIES)) -> list[Tx]:
    """The records of one stream, in stream order (time, then generation)."""
    if not 0 <= anomaly_rate < 0.5:
        raise ValueError("anomaly_rate must be in [0, 0.5)")
    if days <= warmup_days:
        raise ValueError("days must exceed warmup_days")
    rng = random.Random(seed)
    world = World(rng, accounts, days)
    txs = world.normal()
    target = int(anomaly_rate * len(txs) / (1 - anomaly_rate))
    injected = 0
    incident = 0
    order = list(typologies)
    while injected < target and order:
        rng.shuffle(order)
        for name in order:
            if injected >= target:
                break
            incident += 1
            start = rng.randint(warmup_days * DAY, world.end - 12 * HOUR)
            added = [tx for tx in TYPOLOGIES[name](world, start, incident) if tx.t < world.end]
            for tx in added:
                tx.label, tx.incident = name, incident
            txs.extend(added)
            injected += len(added)
    txs.sort(key=lambda x: (x.t, x.seq))
    return txs


def to_lines(txs: list[Tx]) -> Stream:
    lines: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    incidents: dict[str, int] = {}
    ids: dict[int, bytes] = {}
    nonces: dict[str, int] = {}
    for tx in txs:
        parents = [ids[id(p)] if isinstance(p, Tx) else bytes.fromhex(p) for p in tx.parents]
        origin = {k: v for k, v in (("account", tx.account), ("country", tx.country), ("system", tx.system),
                                    ("channel", tx.channel), ("device", tx.device)) if v}
        body: dict[str, Any] = {"amount": tx.amount, "currency": "EUR", "counterparty": tx.counterparty}
        if tx.mcc:
            body["merchant_category"] = tx.mcc
        nonce = nonces.get(tx.system, 0)
        nonces[tx.system] = nonce + 1
        record = make_record(chain=CHAIN, submitter=submitter_of(tx.system), nonce=nonce, ts=EPOCH + tx.t,
                             kind=tx.kind, origin=origin, body=body, parents=parents)
        ids[id(tx)] = record.id
        rid = record.id.hex()
        lines.append({"id": rid, "height": 1 + tx.t // BLOCK_MS, "time": EPOCH + tx.t,
                      "record": record.to_json()})
        labels[rid] = tx.label
        incidents[rid] = tx.incident
    return Stream(lines, labels, incidents, txs)


def generate(seed: int, **options: Any) -> Stream:
    return to_lines(simulate(seed, **options))
