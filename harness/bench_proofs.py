"""The proof scenario of the benchmark (:mod:`harness.bench`): inclusion proofs
over HTTP from node 0 of the cluster the throughput run loaded, once it has
gone idle - driven by ``wrk`` when installed (so the load generator does not
compete with the node for the cores), else by an aiohttp client.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from rich.progress import Progress

from .bench_measure import cpu_seconds, loadavg
from .bench_setup import Opts
from .localnet import LocalCluster


async def settle(c: LocalCluster, progress: Progress, max_s: float = 300.0) -> float:
    """Wait until the nodes are idle (after a big load LevelDB compacts for a
    while in background threads): all four together under 10% of a core over
    a second, or ``max_s``.  Returns the seconds waited."""
    task = progress.add_task("settling: waiting for the nodes to go idle", total=None)
    pids = [c.procs[i].pid for i in range(4)]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_s:
        before = sum(cpu_seconds(p) for p in pids)
        await asyncio.sleep(1.0)
        if sum(cpu_seconds(p) for p in pids) - before < 0.1:
            break
    progress.remove_task(task)
    return round(time.perf_counter() - t0, 1)


WRK_SCRIPT = """
local ids = {}
for line in io.lines(os.getenv("PROOF_IDS")) do ids[#ids + 1] = line end
math.randomseed(2)
request = function()
  return wrk.format("GET", "/v1/records/" .. ids[math.random(#ids)] .. "/proof")
end
"""


async def proofs_wrk(c: LocalCluster, o: Opts, ids: list[bytes], wrk: str) -> dict[str, Any]:
    """The proof load from wrk (C, one thread, 32 connections): the node, not
    a Python client sharing its 2 cores, sets the rate."""
    with tempfile.TemporaryDirectory() as tmp:
        script, id_file = Path(tmp) / "proofs.lua", Path(tmp) / "ids.txt"
        script.write_text(WRK_SCRIPT)
        id_file.write_text("\n".join(i.hex() for i in ids) + "\n")
        proc = await asyncio.create_subprocess_exec(
            wrk, "-t1", "-c32", f"-d{int(o.proof_seconds)}s", "--latency", "-s", str(script),
            c.url(0), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PROOF_IDS": str(id_file)})
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    rate = requests = non_2xx = 0.0
    latency: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            rate = float(parts[1])
        elif "requests in" in line:
            requests = float(parts[0])
        elif line.strip().startswith("Non-2xx"):
            non_2xx = float(parts[-1])
        elif len(parts) == 2 and parts[0] in ("50%", "90%", "99%"):
            latency[parts[0]] = parts[1]
    return {"client": "wrk -t1 -c32", "proofs": int(requests - non_2xx),
            "errors": int(non_2xx), "proofs_per_s": round(rate), "latency": latency,
            "seconds": o.proof_seconds, "wrk_output": text[-2000:]}


async def proofs(c: LocalCluster, o: Opts, progress: Progress, ids: list[bytes]
                 ) -> dict[str, Any]:
    la0 = loadavg()
    st = await c.status(0)
    wrk = shutil.which("wrk")
    if wrk is not None:
        task = progress.add_task("proofs from node0 (wrk)", total=None)
        cpu0 = cpu_seconds(c.procs[0].pid)
        res = await proofs_wrk(c, o, ids, wrk)
        node_cpu = cpu_seconds(c.procs[0].pid) - cpu0
        progress.remove_task(task)
        # Node0's CPU per answer: on a shared machine the wall rate is the
        # share of the cores it got (docs/performance.md, 2026-12-07).
        return {"log_size": st["log_size"] if st else None, **res,
                "node_cpu_s": round(node_cpu, 2),
                "proofs_per_node_cpu_s": round(res["proofs"] / node_cpu) if node_cpu else None,
                "load_start": la0, "load_end": loadavg()}
    rng = random.Random(2)
    conn = aiohttp.TCPConnector(limit=32)
    per_sec: Counter[int] = Counter()
    ok = errors = 0
    task = progress.add_task("proofs from node0", total=o.proof_seconds)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()

        async def worker() -> None:
            nonlocal ok, errors
            while (el := time.perf_counter() - t0) < o.proof_seconds:
                rid = rng.choice(ids).hex()
                async with session.get(f"{c.url(0)}/v1/records/{rid}/proof") as r:
                    await r.read()
                    if r.status == 200:
                        ok += 1
                        per_sec[int(el)] += 1
                    else:
                        errors += 1
                progress.update(task, completed=min(el, o.proof_seconds))

        await asyncio.gather(*(worker() for _ in range(32)))
        secs = time.perf_counter() - t0
    progress.remove_task(task)
    return {"log_size": st["log_size"] if st else None,
            "seconds": round(secs, 1), "proofs": ok, "errors": errors,
            "proofs_per_s": round(ok / secs), "concurrency": 32,
            "per_second": [per_sec[k] for k in range(int(o.proof_seconds))],
            "load_start": la0, "load_end": loadavg()}
