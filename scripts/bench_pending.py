"""The cost of making acknowledged records durable, in one process.

Admits ``--records`` signed envelopes from a client (``Mempool.admit(...,
"api")``) in requests of ``--batch``, and commits each request's records as a
block exactly as a node does (``take_durable``, ``commit_block(...,
pending_done=...)``, ``committed``), on a fresh LevelDB store: once with the
pending keyspace off (the mempool only in memory, as before) and once on (a
synced write per request on the writer's thread, deleted in the commit
batch), alternating ``--rounds`` times.  Prints wall seconds and CPU
microseconds per record (the process's, all threads) for each run, and the
number of synced pending writes.  Nothing here measures consensus or the
network: ``python -m harness.bench`` does, with far more noise.

    scripts/bench-pending                       20,000 records in requests of 2,000, 3 rounds
    scripts/bench-pending --batch 50 --records 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.genesis import Genesis
from ledger.pending import PendingRecords
from ledger.records import Envelope, make_record, sign_record
from ledger.storage import LevelDBStore
from node.durable import PendingWriter
from node.mempool import Mempool
from node.metrics import Metrics

# harness/ is not installed: import it from this source tree.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.bench_chain import bench_genesis, certify  # noqa: E402

LABEL = "bench-pending"


def setup() -> tuple[Genesis, list[SigningKey], SigningKey]:
    return bench_genesis(LABEL)


async def run(directory: Path, durable: bool, envs: list[Envelope], batch: int,
              genesis: Genesis, validators: list[SigningKey]) -> dict[str, Any]:
    store = LevelDBStore(str(directory))
    chain = ChainStore(store, genesis)
    writer = PendingWriter(PendingRecords(store)) if durable else None
    if writer is not None:
        writer.start()
    mempool = Mempool(genesis, chain, Metrics(), max_size=len(envs) + 1, durable=writer)
    raw = [e.envelope_bytes for e in envs]
    wall, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, len(raw), batch):
        results = await mempool.admit(raw[lo:lo + batch], "api")
        assert all(r.status == "accepted" for r in results), results[:2]
        block = mempool.select(batch)
        header = chain.next_header(block, block[0].record.ts + chain.height + 1, 0)
        done = mempool.take_durable(block)
        chain.commit_block(header, block, certify(chain.genesis, validators, header),
                           verify_certificate=False, pending_done=done)
        mempool.committed(block)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    left = len(PendingRecords(store).load())
    if writer is not None:
        await writer.stop()
    chain.close()
    return {"durable": durable, "wall_s": round(wall, 2),
            "cpu_us_per_record": round(cpu / len(envs) * 1e6, 1),
            "synced_pending_writes": writer.writes if writer else 0,
            "entries_left": left}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go (temp)")
    args = parser.parse_args()
    genesis, validators, submitter = setup()
    # Records are stamped now: admission refuses a ts outside the node's
    # window (record_ts_past_ms), so a fixed ts stops working a week later.
    now_ms = int(time.time() * 1000)
    envs = [sign_record(make_record(chain="bench", submitter=submitter.public_key, nonce=n,
                                    ts=now_ms, kind="payment", origin={"system": "bench"},
                                    body={"amount": n, "currency": "EUR"}), submitter)
            for n in range(args.records)]
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-pending-"))
    try:
        for r in range(args.rounds):
            for durable in (False, True):
                directory = base / f"r{r}-{'on' if durable else 'off'}"
                shutil.rmtree(directory, ignore_errors=True)
                out = asyncio.run(run(directory, durable, envs, args.batch, genesis, validators))
                print(json.dumps({"round": r, **out}), flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
