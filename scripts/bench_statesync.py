"""Time for a wiped validator to join a chain: replaying blocks vs state sync.

Builds (once, kept in ``--dir``) a certified chain of ``--records`` signed
records in blocks of ``--block`` with the loader of scripts/bench_store.py
(``ChainStore.commit_block``, each block certified by a quorum of the bench
validator keys, proposers as consensus rotates them), copies it into two validators of a 4-validator loopback
cluster whose genesis has those keys, starts them, then starts the fourth
validator with an empty store once per ``sync.mode`` and reports the wall
time from process start to ``"synced": true`` in ``/health`` (and, for
``snapshot``, to the end of back-fill: ``backfilling`` gone from
``/health``).  Two serving peers are enough: they are the f+1 whose height
the joiner trusts, and nothing needs to commit meanwhile.  Each result also
gives the joiner's CPU seconds (user + system of all its threads, read
from ``/proc`` just before it is stopped, so they include its start) and
the 1-minute load average when it started and when it was stopped.

    scripts/bench-statesync --records 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store import LABEL, setup  # noqa: E402

from ledger.keys import write_key_file  # noqa: E402
from harness.bench_chain import build_store  # noqa: E402
from harness.localnet import LocalCluster  # noqa: E402

JOINER = 3
SERVERS = (0, 1)


def bench_cluster(root: Path) -> LocalCluster:
    """A LocalCluster whose genesis and keys are bench_store's."""
    if root.exists():
        shutil.rmtree(root)
    c = LocalCluster(root, 4)
    genesis, validators, submitter = setup()
    doc = json.loads((root / "genesis.json").read_text())
    doc["chain"] = genesis.chain
    # The store's own genesis params (none): the cluster's defaults would cap
    # blocks at 1,000 records, and validators refuse a block above the cap in
    # force (the loader writes blocks of --block records).
    doc["params"] = dict(genesis.params)
    for i, key in enumerate(validators):
        write_key_file(root / "keys" / f"node{i}.json", f"node{i}", key)
        doc["validators"][i]["pubkey"] = key.public_key.hex()
    doc["submitters"] = [{"name": "bench", "pubkey": submitter.public_key.hex(),
                          "roles": ["submit"]}]
    (root / "genesis.json").write_text(json.dumps(doc, indent=2) + "\n")
    from ledger.genesis import load_genesis
    c.genesis = load_genesis(root / "genesis.json")
    return c


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


async def health(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url + "/health", timeout=aiohttp.ClientTimeout(total=2)) as r:
            doc = await r.json()
            return doc if isinstance(doc, dict) else None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


async def join(c: LocalCluster, mode: str, target: int, timeout_s: float) -> dict[str, Any]:
    data = c.dir / f"node{JOINER}" / "data"
    if data.exists():
        shutil.rmtree(data)
    toml = c.config(JOINER)
    text = toml.read_text()
    text = text.replace('mode = "blocks"\n', "").replace('mode = "snapshot"\n', "")
    toml.write_text(text.replace("[sync]\n", f'[sync]\nmode = "{mode}"\n', 1))
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    c.start(JOINER)
    synced_s = None
    out: dict[str, Any] = {"mode": mode, "load_avg_start": load_start}
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < timeout_s:
            doc = await health(session, c.url(JOINER))
            # "synced" alone is also true before any peer reported a height.
            if doc is not None and doc.get("synced") and doc.get("height", 0) >= target:
                if synced_s is None:
                    synced_s = time.monotonic() - started
                    out["synced_s"] = round(synced_s, 2)
                    out["height"] = doc["height"]
                    print(f"  {mode}: synced at height {doc['height']} after {synced_s:.1f} s",
                          file=sys.stderr)
                if "backfilling" not in doc:
                    out["history_complete_s"] = round(time.monotonic() - started, 2)
                    break
            await asyncio.sleep(0.2)
    out["cpu_s"] = process_cpu_s(c.procs[JOINER].pid)
    out["load_avg_end"] = os.getloadavg()[0]
    c.kill(JOINER)
    # The process's own start (imports, store open), as it logged it.
    for line in c.log_path(JOINER).read_text().splitlines()[::-1]:
        if '"start_seconds"' in line:
            out["process_start_s"] = json.loads(line)["start_seconds"]
            break
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--block", type=int, default=4000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/auditledger-bench-statesync"))
    ap.add_argument("--modes", default="snapshot,blocks")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", type=Path, default=Path("bench-statesync.json"))
    args = ap.parse_args()
    store = args.dir / f"chain-{args.records}"
    store.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    build_store(store, args.records, args.block, LABEL)
    print(f"store ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    c = bench_cluster(args.dir / "cluster")
    for i in SERVERS:
        shutil.copytree(store, c.dir / f"node{i}" / "data" / "chain")
    results = []
    try:
        for i in SERVERS:
            c.start(i)
        # The joiner starts once the serving nodes answer: a store without a
        # saved policy state makes their first start replay every block.
        t_serve = time.monotonic()
        async with aiohttp.ClientSession() as session:
            for i in SERVERS:
                while await health(session, c.url(i)) is None:
                    if time.monotonic() - t_serve > args.timeout:
                        raise SystemExit(f"node{i} did not start within {args.timeout:g} s")
                    await asyncio.sleep(0.5)
        print(f"serving nodes up in {time.monotonic() - t_serve:.1f} s", file=sys.stderr)
        for mode in args.modes.split(","):
            results.append(await join(c, mode, args.records // args.block, args.timeout))
    finally:
        await c.stop_all()
    doc = {"records": args.records, "block": args.block, "results": results}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
