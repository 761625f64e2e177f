"""The 10-rule policy of the policy benchmarks and what a cluster needs for it.

scripts/bench-policy and scripts/bench-verdicts judge records with
:data:`POLICY` in one process; ``python -m harness.bench_secure --policy``
installs it on a cluster by governance (:func:`governance_bodies`: the
policy and its lists, in records co-signed by a quorum of members) and offers
:func:`policy_load`, payments, transfers and refunds from the listed
accounts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import msgpack

from ledger.crypto import RECORD_DOMAIN, SigningKey
from ledger.policy import policy_from_json
from ledger.records import Envelope, cosign, make_record, sign_record

POLICY: dict[str, Any] = {
    "name": "bench", "version": 1, "default": "review",
    "windows": {"acct_1m": {"by": "origin.account", "ms": 60_000, "kinds": ["payment"]},
                "acct_1h": {"by": "origin.account", "ms": 3_600_000},
                "sub_1s": {"by": "submitter", "ms": 1_000}},
    "lookups": {"known": {"list": "known_accounts", "key": ["origin.account"]},
                "sanctioned_account": {"list": "sanctioned_accounts", "key": ["origin.account"]},
                "sanctioned_country": {"list": "sanctioned_countries", "key": ["origin.country"]},
                "corridor": {"list": "licensed_corridors",
                             "key": ["origin.account", "origin.country", "body.to_country"]}},
    "rules": [
        {"name": "sanctioned_country", "when": "listed.sanctioned_country",
         "then": {"outcome": "deny", "reason": "sanctioned_country"}},
        {"name": "sanctioned_account", "when": "listed.sanctioned_account",
         "then": {"outcome": "deny", "reason": "sanctioned_account"}},
        {"name": "small_known", "kinds": ["payment"],
         "when": 'listed.known && record.body.currency == "EUR" && record.body.amount < 5000',
         "then": "allow"},
        {"name": "medium_known", "kinds": ["payment"],
         "when": "listed.known && record.body.amount <= 1000000", "then": "allow"},
        {"name": "large", "kinds": ["payment"], "when": "record.body.amount > 1000000",
         "then": {"outcome": "approve", "approvals": 2, "role": "treasury"}},
        {"name": "too_fast", "kinds": ["payment"], "when": "velocity.acct_1m.count > 20",
         "then": "review"},
        {"name": "hourly_sum", "when": "velocity.acct_1h.sum > 5000000", "then": "review"},
        {"name": "corridor", "kinds": ["transfer"], "when": "!listed.corridor",
         "then": {"outcome": "deny", "reason": "unlicensed_corridor"}},
        {"name": "risky", "when": "risk.tier >= 3 && record.body.amount > 100000",
         "then": "review"},
        {"name": "refund_parent", "kinds": ["refund"], "when": "size(record.parents) == 0",
         "then": {"outcome": "deny", "reason": "refund_without_payment"}},
    ],
}
COUNTRIES = ["DE", "FR", "NL", "IT", "ES", "PL", "SE", "AT", "BE", "IE", "US", "GB", "IR", "KP"]

LIST_CHUNK_BYTES = 5_500  # entries' bytes per gov.list.add: an envelope is at most 8 KiB


def accounts(n: int) -> list[str]:
    return [f"acc-{i:06d}" for i in range(n)]


def governance_bodies(list_size: int, corridors: int, seed: int = 7
                      ) -> list[tuple[str, dict[str, Any]]]:
    """``gov.policy.set`` of :data:`POLICY`, then its lists (``list_size``
    known accounts, 100 sanctioned ones, two countries, ``corridors``
    licensed corridors) in records of at most :data:`LIST_CHUNK_BYTES`."""
    rng = random.Random(seed)
    names = accounts(list_size)
    lists = [("known_accounts", sorted(names)),
             ("sanctioned_accounts", sorted(rng.sample(names, 100))),
             ("sanctioned_countries", ["IR", "KP"]),
             ("licensed_corridors", sorted(f"{a}:DE:FR" for a in names[:corridors]))]
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("gov.policy.set", {"policy": policy_from_json(POLICY).policy_bytes})]
    for name, entries in lists:
        chunk: list[str] = []
        size = 0
        for entry in entries:
            if size + len(entry) + 1 > LIST_CHUNK_BYTES:
                bodies.append(("gov.list.add", {"list": name, "entries": chunk}))
                chunk, size = [], 0
            chunk.append(entry)
            size += len(entry) + 1
        bodies.append(("gov.list.add", {"list": name, "entries": chunk}))
    return bodies


def governance_envelopes(chain: str, quorum: Sequence[SigningKey],
                         bodies: Sequence[tuple[str, dict[str, Any]]], nonce: int
                         ) -> list[Envelope]:
    """``bodies`` as records signed now by ``quorum``, nonces from ``nonce``."""
    now = int(time.time() * 1000)
    out = []
    for n, (kind, body) in enumerate(bodies, start=nonce):
        record = make_record(chain=chain, submitter=quorum[0].public_key, nonce=n, ts=now,
                             kind=kind, origin={"system": "ledger-admin"},
                             body=dict(body, expires_height=2**63))
        out.append(cosign(sign_record(record, quorum[0]), quorum[1:]))
    return out


def policy_load(key: SigningKey, chain: str, n: int, list_size: int, seed: int = 1) -> list[bytes]:
    """``n`` signed envelopes as scripts/bench-policy draws them (90% from
    listed accounts; refunds name no parent, so the policy denies them),
    canonical by construction (keys written in order)."""
    rng = random.Random(seed)
    pk, packb = key.public_key, msgpack.packb
    names = accounts(list_size)
    nonce = time.time_ns() // 1000
    out = []
    for _ in range(n):
        nonce += 1
        kind = rng.choices(["payment", "transfer", "refund"], [85, 10, 5])[0]
        account = rng.choice(names) if rng.random() < 0.9 else f"new-{rng.randrange(10**6)}"
        body: dict[str, Any] = {"amount": int(10 ** rng.uniform(2, 6.5)),
                                "currency": rng.choice(["EUR", "EUR", "EUR", "USD"])}
        if kind == "transfer":
            body["to_country"] = rng.choice(["FR", "US"])
        rec = packb({"body": body, "chain": chain, "kind": kind, "nonce": nonce,
                     "origin": {"account": account, "country": rng.choice(COUNTRIES)},
                     "parents": [], "submitter": pk, "ts": int(time.time() * 1000), "v": 1},
                    use_bin_type=True)
        out.append(packb({"record": rec, "sig": key.sign(RECORD_DOMAIN, rec)},
                         use_bin_type=True))
    return out
