"""Acknowledged means kept: SIGKILL validators the moment they acknowledge.

``scripts/faults acks`` (:func:`ack_kill_loop`): under steady load on every
node, every few seconds one validator - or two at once, a third of the time
- is sent a batch and SIGKILLed as soon as its 202 is read, then restarted.
Nothing is resubmitted: in the end every record any node answered
``accepted`` or ``duplicate`` must be in the chain (``lost`` counts those
that are not), and all nodes must hold the same headers.

Unlike ``killloop`` (harness/faults.py), which resubmits everything at the end
and so checks that nothing *committed* is lost, this counts what was only
*acknowledged*.  Only 127.0.0.1 is targeted; every process by its own pid.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.keys import load_key_file
from ledger.records import Envelope, make_record, sign_record

from .localnet import LocalCluster, until

HELD = ("accepted", "duplicate")


@dataclass
class AckLoopReport:
    duration_s: float = 0.0
    kills: int = 0              # SIGKILLs sent, each within a ms of a 202 from that node
    double_kills: int = 0       # rounds that killed two validators at once
    posts_answered: int = 0     # 202s read
    acked: int = 0              # distinct records some node answered accepted/duplicate
    acked_by_victims: int = 0   # of those, in the 202 read just before a SIGKILL
    committed: int = 0          # records in the chain in the end
    lost: int = 0               # acknowledged, never committed
    height: int = 0
    forks: int = 0
    failures: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not self.failures and self.lost == 0 and self.forks == 0 and self.kills > 0


class _Signer:
    """Signs batches with the cluster's demo key: a payment, then records
    that name it as a parent (restored entries must keep parents first)."""

    def __init__(self, c: LocalCluster, rng: random.Random) -> None:
        self.key = load_key_file(c.dir / "keys" / "demo.json").key
        self.chain = c.genesis.chain
        self.nonce = int(time.time() * 1000) * 1000
        self.rng = rng

    def batch(self, size: int) -> list[Envelope]:
        out: list[Envelope] = []
        for i in range(size):
            self.nonce += 1
            parents = [out[0].id] if i >= size - 5 and out else []
            record = make_record(chain=self.chain, submitter=self.key.public_key,
                                 nonce=self.nonce, ts=int(time.time() * 1000),
                                 kind="refund" if parents else "payment",
                                 origin={"system": "faults-acks"},
                                 body={"amount": self.rng.randrange(10_000)}, parents=parents)
            out.append(sign_record(record, self.key))
        return out


async def ack_kill_loop(directory: Path, *, duration: float, every: tuple[float, float] = (1.0, 3.0),
                        seed: int = 1, n: int = 4, batch: int = 50, workers: int = 2,
                        progress: Any = None, min_rounds: int = 0) -> AckLoopReport:
    """Run the loop for ``duration`` seconds of load, and for at least
    ``min_rounds`` kill rounds however slow the machine is; see the module doc."""
    from .faults import _chain_ids  # late: faults imports this module for its CLI

    rng = random.Random(seed)
    report = AckLoopReport()
    c = LocalCluster(directory, n)
    everyone = list(range(n))
    signer = _Signer(c, rng)
    acked: set[str] = set()
    stop = asyncio.Event()
    say = progress or (lambda msg: None)

    async def post(node: int) -> list[str] | None:
        """Post a fresh batch to ``node``; the ids it acknowledged, or None."""
        envs = signer.batch(batch)
        body = {"envelopes": [base64.b64encode(e.envelope_bytes).decode() for e in envs]}
        try:
            status, doc = await c.post(node, "/v1/records", json=body)
        except Exception:  # noqa: BLE001 - killed, refused, timed out: nothing acknowledged
            return None
        if status != 202:
            return None
        report.posts_answered += 1
        ids = [r["id"] for r in doc["results"] if r.get("status") in HELD]
        acked.update(ids)
        return ids

    async def load(worker: int) -> None:
        wrng = random.Random(seed * 1000 + worker)
        while not stop.is_set():
            if await post(wrng.randrange(n)) is None:
                await asyncio.sleep(0.05)  # a node is down or pushing back

    async def kill_after_ack(victim: int) -> None:
        for _ in range(20):  # a victim that cannot answer now (503, 429) is tried again
            ids = await post(victim)
            if ids is not None:
                c.kill(victim)  # the moment its 202 is read
                report.acked_by_victims += len(ids)
                return
            await asyncio.sleep(0.05)
        c.kill(victim)
        report.failures.append(f"node{victim} acknowledged nothing in 20 tries before its kill")

    started = time.monotonic()
    try:
        await c.start_all(timeout=60)
        loaders = [asyncio.create_task(load(w)) for w in range(workers)]
        rounds = 0
        while rounds < min_rounds or time.monotonic() - started < duration:
            rounds += 1
            await asyncio.sleep(rng.uniform(*every))  # picks the moment; decides nothing
            victims = rng.sample(everyone, 2 if rng.random() < 1 / 3 else 1)
            report.double_kills += len(victims) == 2
            await asyncio.gather(*(kill_after_ack(v) for v in victims))
            report.kills += len(victims)
            say(f"kill round: SIGKILL node{victims} right after their 202s "
                f"({len(acked)} records acknowledged so far)")
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            for v in victims:
                c.start(v)
            await c.wait_connected(everyone, timeout=60)
        stop.set()
        await asyncio.gather(*loaders)
        report.duration_s = round(time.monotonic() - started, 1)
        report.acked = len(acked)
        say(f"{len(acked)} records acknowledged; waiting for every mempool to drain")
        await until(lambda: _drained(c, everyone), 180, "every mempool to drain", interval=0.5)
        heights = [st["height"] for i in everyone if (st := await c.status(i)) is not None]
        report.height = max(heights)
        await c.wait_height(everyone, report.height, timeout=60)
        reference = await c.header_hashes(0, report.height)
        for i in everyone[1:]:
            if await c.header_hashes(i, report.height) != reference:
                report.forks += 1
                report.failures.append(f"node{i} header hashes differ from node0's")
        chain = set(await _chain_ids(c, 0, report.height))
        report.committed = len(chain)
        lost = sorted(acked - chain)
        report.lost = len(lost)
        if lost:
            report.failures.append(f"{len(lost)} acknowledged records never committed, "
                                   f"e.g. {lost[:3]}")
        for i in everyone:
            if "Traceback" in c.log_path(i).read_text(errors="replace"):
                report.failures.append(f"node{i} logged a traceback")
    finally:
        stop.set()
        await c.stop_all()
    return report


async def _drained(c: LocalCluster, nodes: list[int]) -> bool:
    for i in nodes:
        st = await c.status(i)
        if st is None or st.get("mempool") != 0:
            return False
    return True
