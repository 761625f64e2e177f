"""Measure a trace of a record with a huge fan-out against a live cluster.

Issue 21 (item 6): anyone may name any committed record as a parent, so
one submitter can attach tens of thousands of children to another party's
record and make its trace answer large and slow to build.  This script
reproduces that on a fresh 4-node loopback cluster:

1. one root record, then ``--children`` records naming it as their parent;
2. the root's default trace answer (``GET /v1/records/{id}/trace``, no
   parameters, exactly what a version 1 client sends) from node 1:
   bytes and time, over ``--samples`` calls;
3. ``/v1/status`` latency on node 1 while idle, then while ``--clients``
   clients loop on that trace for ``--seconds`` seconds (a probe calls
   status every 50 ms).

It only uses the HTTP API, so it measures any version of the node: to
measure another tree's code, put that tree first on PYTHONPATH (the nodes
are started from this interpreter and inherit it).  Figures go to stdout
as JSON.

    scripts/trace-fanout                       40,000 children, 16 clients, 20 s
    scripts/trace-fanout --children 5000 --seconds 5
    scripts/trace-fanout --lineage --children 2000   a deep ancestry instead
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

# harness/ is not installed: import it from this source tree.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client.sdk import LedgerClient  # noqa: E402
from harness.localnet import LocalCluster  # noqa: E402


async def load(cluster: LocalCluster, children: int, lineage: bool, say: Any) -> str:
    """The id to trace, once every record is committed: the root of a fan-out
    of ``children`` records, or the last of an ancestry of as many, each
    naming the 16 records before it as parents (so a walk of the default
    depth reaches about a thousand of them)."""
    urls = [cluster.url(i) for i in range(cluster.n)]
    async with LedgerClient(urls, key_file=cluster.dir / "keys" / "demo.json") as lc:
        root = await lc.submit(kind="invoice", body={"amount": 1})
        await lc.wait_committed(root, timeout=60)
        envelopes: list[bytes] = []
        recent = [root]
        for i in range(children):
            env = lc.sign(kind="spam", body={"i": i}, parents=recent[-16:])
            envelopes.append(env.envelope_bytes)
            if lineage:
                recent.append(env.id.hex())
        last = ""
        for start in range(0, len(envelopes), 1000):
            pending = envelopes[start:start + 1000]
            while pending:  # resubmit the same bytes while the node pushes back
                results = await lc.submit_envelopes(pending)
                again = [e for e, r in zip(pending, results) if r.get("error") == "rate_limited"]
                bad = [r for r in results if "error" in r and r["error"] != "rate_limited"]
                if bad:
                    raise RuntimeError(f"refused: {bad[:3]}")
                last = next((r["id"] for r in results if "id" in r), last)
                pending = again
                if again:
                    await asyncio.sleep(0.5)
            if (start // 1000) % 10 == 9:
                say(f"  {start + 1000} children submitted")
        await lc.wait_committed(last, timeout=300)
        return last if lineage else root


async def _timed_get(session: aiohttp.ClientSession, url: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.read()
    return time.perf_counter() - start, len(body), resp.status


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}
    return {"n": len(values), "median_ms": round(statistics.median(values) * 1000, 2),
            "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 2),
            "max_ms": round(values[-1] * 1000, 2)}


async def probe_status(session: aiohttp.ClientSession, url: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        took, _, _ = await _timed_get(session, url + "/v1/status")
        latencies.append(took)
        await asyncio.sleep(0.05)
    return latencies


async def _loop_on(url: str, clients: int, seconds: float) -> int:
    """``clients`` connections each fetching ``url`` back to back; calls made."""
    calls = 0
    end = time.monotonic() + seconds

    async def looper(session: aiohttp.ClientSession) -> None:
        nonlocal calls
        while time.monotonic() < end:
            await _timed_get(session, url)
            calls += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(looper(session) for _ in range(clients)))
    return calls


def _load_process(url: str, clients: int, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_loop_on(url, clients, seconds)))


async def measure(base: str, root: str, samples: int, clients: int, seconds: float
                  ) -> dict[str, Any]:
    trace_url = f"{base}/v1/records/{root}/trace"
    async with aiohttp.ClientSession() as session:
        times: list[float] = []
        size = status = 0
        for _ in range(samples):
            took, size, status = await _timed_get(session, trace_url)
            times.append(took)
        sample = await (await session.get(trace_url)).json()
        idle = await probe_status(session, base, min(seconds, 5.0))
        # The looping clients run in their own process, so that reading
        # their answers does not delay the probe's own event loop.
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        loader = ctx.Process(target=_load_process, args=(trace_url, clients, seconds + 1.0, out))
        loader.start()
        await asyncio.sleep(1.0)  # the loaders connect and start
        loaded = await probe_status(session, base, seconds)
        calls = await asyncio.to_thread(out.get, True, seconds + 60)
        await asyncio.to_thread(loader.join, 30)
    return {
        "trace": {"status": status, "bytes": size, **_ms(times),
                  "bundles": len(sample.get("bundles", [])),
                  "children_listed": len(sample.get("children", [])),
                  "children_next": "children_next" in sample},
        "status_idle": _ms(idle),
        "status_under_trace_load": _ms(loaded),
        "trace_calls_per_s_under_load": round(calls / (seconds + 1.0), 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    def say(text: str) -> None:
        print(text, flush=True, file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="trace-fanout-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", 4)
        try:
            await cluster.start_all()
            shape = "a lineage of" if args.lineage else "1 root and"
            say(f"cluster up; submitting {shape} {args.children} records")
            t0 = time.monotonic()
            root = await load(cluster, args.children, args.lineage, say)
            say(f"loaded in {time.monotonic() - t0:.0f} s; measuring")
            figures = await measure(cluster.url(1), root, args.samples, args.clients, args.seconds)
        finally:
            await cluster.stop_all()
    return {"shape": "lineage" if args.lineage else "fan-out", "records": args.children,
            "clients": args.clients, "seconds": args.seconds,
            **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=40_000)
    parser.add_argument("--lineage", action="store_true",
                        help="each record names the 16 before it as parents (a wide, deep "
                             "ancestry); trace the last one")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
