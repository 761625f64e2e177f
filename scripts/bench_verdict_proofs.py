"""What the verdict proof (PROTOCOL §10.11) adds to building and verifying a
record's bundle, in one process: a chain with a policy in force (every record
allowed by a rule, version 2 headers), one block of N records, the bundle of
one record built with ``build_record_bundle`` (no verdict proof) and with
``build_served_bundle`` (with it), the first bundle of a block (its verdict
tree computed) and the later ones (cached), and ``verify_bundle`` of each.
Best of 5 rounds.  Figures go to docs/performance.md."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence

import ledger.proofs_verdicts as pv
from ledger.blocks import Certificate, Vote, VoteType
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.genesis import parse_genesis
from ledger.policy import Decision, Outcome, PolicyEngine, RecordInput
from ledger.proofs import build_record_bundle
from ledger.records import make_record, sign_record
from ledger.storage import MemoryStore
from ledger.verify import verify_bundle

T0 = 1_700_000_000_000


class AllowByRule(PolicyEngine):
    """Policy version 1: every record allowed by the rule ``small``."""

    @property
    def version(self) -> int:
        return 1

    def evaluate_block(self, height: int, time_ms: int,
                       records: Sequence[RecordInput]) -> list[Decision]:
        return [Decision(Outcome.ALLOW, "small", policy_version=1)] * len(records)


def _chain(n: int, policy: bool) -> tuple[ChainStore, list[bytes]]:
    validators = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
    submitter = SigningKey(b"\x42" * 32)
    genesis = parse_genesis({
        "chain": "bench", "params": {},
        "validators": [{"name": f"v{i}", "pubkey": k.public_key.hex(),
                        "address": f"127.0.0.1:{7700 + i}"} for i, k in enumerate(validators)],
        "submitters": [{"name": "s", "pubkey": submitter.public_key.hex(), "roles": ["submit"]}]})
    chain = ChainStore(MemoryStore(), genesis)
    if policy:
        chain.set_policy_engine(AllowByRule())
    envelopes = [sign_record(make_record(chain="bench", submitter=submitter.public_key,
                                         nonce=i + 1, ts=T0, kind="payment", origin={},
                                         body={"amount": i}), submitter) for i in range(n)]
    header = chain.next_header(envelopes, T0, 0)
    vote = Vote(VoteType.PRECOMMIT, "bench", 1, 0, header.hash)
    chain.commit_block(header, envelopes, Certificate(1, 0, header.hash, tuple(
        (i, vote.sign(validators[i])) for i in range(3))))
    return chain, [e.id for e in envelopes]


def _best(fn: Callable[[], object], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[100, 1000, 4000])
    args = parser.parse_args()
    for n in args.records:
        for policy in (False, True):
            chain, ids = _chain(n, policy)
            rid = ids[n // 2]

            def cold() -> None:
                pv._trees.clear()
                pv._cached[0] = 0
                pv.build_served_bundle(chain, chain.membership, rid)

            first = _best(cold, 3)
            old = _best(lambda: build_record_bundle(chain, chain.membership, rid), 200)
            new = _best(lambda: pv.build_served_bundle(chain, chain.membership, rid), 200)
            b_old = json.loads(json.dumps(build_record_bundle(chain, chain.membership, rid)))
            b_new = json.loads(json.dumps(pv.build_served_bundle(chain, chain.membership, rid)))
            v_old = _best(lambda: verify_bundle(b_old, chain.genesis), 50)
            v_new = _best(lambda: verify_bundle(b_new, chain.genesis), 50)
            print(f"{n} records/block, policy {'on ' if policy else 'off'}: build "
                  f"{old:.0f} -> {new:.0f} us (first of the block {first:.0f} us), verify "
                  f"{v_old:.0f} -> {v_new:.0f} us, {len(json.dumps(b_old))} -> "
                  f"{len(json.dumps(b_new))} bytes of JSON")


if __name__ == "__main__":
    main()
