"""How many records per CPU second ``ledger-monitor follow`` verifies and
scores (docs/performance.md, "Risk monitor"): a fraudsim stream signed and
committed in blocks of ``--block`` records on an in-memory chain, each
block's stream event (``GET /v1/stream``'s bytes) fed to the follower.  The
measured part is :meth:`monitor.follow.Follower.on_block` alone: JSON and
base64 decoding, the auditor's block checks (header chain, tx_root, log
root, a quorum certificate: 3 Ed25519 verifications per block), envelope
decoding and the built-in detector.

    python -m harness.bench_follow [--seed 1] [--block 1000] [--days 14] [--repeat 1]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import time
from pathlib import Path

from harness.bench_chain import bench_genesis, certify
from ledger.chain import ChainStore
from ledger.genesis import Genesis
from ledger.batch_envelopes import sign_batch
from ledger.records import Envelope, make_record, sign_record
from ledger.storage import MemoryStore
from monitor.builtin import BuiltinDetector
from monitor.follow import Follower, parse_events, tune_gc
from monitor.fraudsim import generate
from node.stream import block_event


def block_events(seed: int, block: int, days: int, accounts: int) -> tuple[Genesis, list[bytes]]:
    """The genesis and the ``block`` events' data of a fraudsim stream
    committed in blocks of ``block`` records."""
    genesis, validators, submitter = bench_genesis("follow")
    stream = generate(seed, days=days, accounts=accounts)
    new_id: dict[str, bytes] = {}
    records = []
    for nonce, line in enumerate(stream.lines):
        r = line["record"]
        rec = make_record(chain=genesis.chain, submitter=submitter.public_key, nonce=nonce,
                          ts=line["time"], kind=r["kind"], origin=r["origin"], body=r["body"],
                          parents=[new_id[p] for p in r["parents"] if p in new_id])
        new_id[line["id"]] = rec.id
        records.append(rec)
    chain = ChainStore(MemoryStore(), genesis, check=False)
    events = []
    for start in range(0, len(records), block):
        chunk = records[start:start + block]
        envs: list[Envelope] = list(sign_batch(chunk, submitter)) if len(chunk) > 1 \
            else [sign_record(chunk[0], submitter)]
        header = chain.next_header(envs, records[start].ts, 0)
        chain.commit_block(header, envs, certify(genesis, validators, header))
        (event,) = parse_events(bytearray(block_event(chain, chain.height)))
        events.append(event[2])
    return genesis, events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--block", type=int, default=1000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--accounts", type=int, default=1200)
    ap.add_argument("--profile", type=Path, default=None,
                    help="write a cProfile of the measured part (the first run) to this file")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs over the same blocks, each with a new follower")
    args = ap.parse_args()
    genesis, events = block_events(args.seed, args.block, args.days, args.accounts)
    # The stream, its records and the chain are gone: the heap holds what a
    # follower process holds (the collector would walk them otherwise).
    gc.collect()
    tune_gc()  # as ledger-monitor follow does
    for run in range(args.repeat):
        follower = Follower(genesis, BuiltinDetector(), clock=lambda: 0.0)
        profile = cProfile.Profile() if args.profile is not None and run == 0 else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        flagged = sum(len(follower.on_block(data)) for data in events)
        if profile is not None:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profile is not None and args.profile is not None:
            profile.dump_stats(str(args.profile))
        print(f"{follower.records} records in {len(events)} blocks of {args.block}: "
              f"{cpu:.2f} s CPU, {wall:.2f} s wall; {follower.records / cpu:,.0f} records per CPU "
              f"second; {flagged} flagged")
        del follower
        gc.collect()

if __name__ == "__main__":
    main()
