"""Measure commit throughput and catch-up rate on a local 4-node cluster.

``python -m node.bench_catchup --records 20000`` starts four real nodes on
free loopback ports and commits ``--records`` pre-signed records (MessagePack
batches over HTTP, several in flight) with all four up, then as many again
with node 3 killed, then starts node 3 again - from an empty data directory
with ``--new-disk`` - and times how fast it fetches, verifies and applies the
missing blocks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import msgpack

from .feeder import Workload
from .localnet import LocalCluster, until


async def commit_all(c: LocalCluster, bodies: list[bytes], records: int, inflight: int,
                     label: str) -> None:
    """POST every batch (round robin over nodes 0-2, ``inflight`` at a time) and
    wait until node 0 has committed them all; print the rate."""
    base = (await c.status(0))["log_size"]  # type: ignore[index]
    sem = asyncio.Semaphore(inflight)

    async def post(k: int, body: bytes) -> None:
        async with sem:
            while True:
                status, _ = await c.post(k % 3, "/v1/records", data=body,
                                         headers={"Content-Type": "application/msgpack"})
                if status == 202:
                    return
                await asyncio.sleep(0.2)  # 429/503: back off and retry

    t0 = time.perf_counter()
    await asyncio.gather(*(post(k, b) for k, b in enumerate(bodies)))

    async def all_committed() -> bool:
        st = await c.status(0)
        return st is not None and st["log_size"] - base >= records

    await until(all_committed, 600, "every record to commit", 0.2)
    secs = time.perf_counter() - t0
    print(f"commit, {label}: {records} records in {secs:.1f}s = {records / secs:.0f} records/s",
          flush=True)


async def bench(records: int, batch: int, inflight: int, new_disk: bool, keep: Path | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-catchup-")) if keep is None else keep
    c = LocalCluster(root / "cluster", 4, params={"timeout_propose_ms": 3000,
                                                   "timeout_prevote_ms": 1000,
                                                   "timeout_precommit_ms": 1000})
    try:
        for i in range(4):
            c.start(i)
        await c.wait_connected([0, 1, 2, 3])
        work = Workload(c.dir / "keys" / "demo.json", c.genesis.chain, seed=1)
        t = time.perf_counter()
        healthy = [msgpack.packb([e.envelope_bytes for e in work.batch(min(batch, records - n))])
                   for n in range(0, records, batch)]
        degraded = [msgpack.packb([e.envelope_bytes for e in work.batch(min(batch, records - n))])
                    for n in range(0, records, batch)]
        print(f"signed {2 * records} records in {time.perf_counter() - t:.1f}s", flush=True)
        await commit_all(c, healthy, records, inflight, "all 4 validators up")
        c.kill(3)
        await commit_all(c, degraded, records, inflight,
                         "node3 down (every 4th height waits out its propose timeout)")
        target = (await c.status(0))["height"]  # type: ignore[index]
        if new_disk:
            shutil.rmtree(c.dir / "node3" / "data")
        t1 = time.perf_counter()
        c.start(3)
        await c.wait_height([3], target, timeout=600)
        wall = time.perf_counter() - t1
        logged = [json.loads(line) for line in c.log_path(3).read_text().splitlines()
                  if '"msg":"caught up' in line]
        synced = sum(d["sync_records"] for d in logged)
        busy = sum(d["sync_seconds"] for d in logged)
        print(f"catch-up{' (new disk)' if new_disk else ''}: node3 applied {synced} records in "
              f"{busy:.1f}s of fetching/verifying/applying = {synced / max(busy, 1e-9):.0f} "
              f"records/s; {wall:.1f}s from process start to height {target}", flush=True)
        hashes = await c.header_hashes(0, target)
        assert await c.header_hashes(3, target) == hashes, "node3 diverged"
        print("node3 holds the same header hashes as node0", flush=True)
    finally:
        await c.stop_all()
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


@click.command()
@click.option("--records", default=20_000, show_default=True)
@click.option("--batch", default=1000, show_default=True)
@click.option("--inflight", default=3, show_default=True)
@click.option("--new-disk", is_flag=True, help="wipe node3's data before it restarts")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="run in this directory and keep it (logs)")
def main(records: int, batch: int, inflight: int, new_disk: bool, keep: Path | None) -> None:
    """Commit throughput and catch-up rate on a local 4-node cluster."""
    asyncio.run(bench(records, batch, inflight, new_disk, keep))
    sys.exit(0)


if __name__ == "__main__":
    main()
