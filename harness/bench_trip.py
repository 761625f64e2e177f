"""Commit-to-trip latency (docs/performance.md, "Risk monitor"): how long
from the commit of an anomalous record to the commit of the block whose
alert trips its breaker, on a local 4-node cluster.

The genesis sets the breaker params (one alert from one monitor trips an
account's breaker; :data:`RULE`).  A real ``ledger-monitor follow`` process
follows node 1 with the role ``monitor`` and submits its alerts.  With
``--monitors 2`` the rule needs k = 2 alerts from m = 2 distinct monitors,
and a second monitor process with a key of its own (another organisation)
follows node 2: the breaker trips when the later of the two alerts commits.  A steady
trickle of ordinary payments keeps blocks coming; every ``--interval``
seconds one anomaly is injected: a refund naming no payment, for an account
of its own (the built-in detector flags it: ``refund_without_parent``).

Commit times are when node 0's ``GET /v1/stream`` delivers each block to
this process (the monotonic clock), so both ends of a latency are seen the
same way.  For each anomaly: the height of its record (``GET
/v1/records/{id}``) and the height of its account breaker's ``open``
transition (``GET /v1/breakers``); the latency is the difference of the two
blocks' arrival times.

    python -m harness.bench_trip [--trips 10] [--interval 3] [--rate 20] [--monitors 1|2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from client.sdk import LedgerClient
from harness.localnet import LocalCluster
from harness.monitor_procs import start_monitor, stop_processes
from monitor.follow import parse_events

# k=1 alert from m=1 monitor within 10 minutes trips an account's breaker
# (account scope only: breaker_scopes 1); open for an hour.
RULE = {"breaker_alerts": 1, "breaker_monitors": 1, "breaker_window_ms": 600_000,
        "breaker_cooldown_ms": 3_600_000, "breaker_min_score": 500_000, "breaker_scopes": 1}
ROLES = {"shop": ["submit", "read_own"], "mon": ["monitor", "submit", "read_own"],
         "mon-b": ["monitor", "submit", "read_own"]}
MONITORS = (("mon", 1), ("mon-b", 2))  # key name, node followed


@dataclass
class Trip:
    account: str
    record: str
    record_height: int = 0
    trip_height: int = 0
    latency_s: float = -1.0


@dataclass
class Run:
    trips: list[Trip] = field(default_factory=list)
    arrivals: dict[int, float] = field(default_factory=dict)  # height -> monotonic time at node 0
    load: list[tuple[float, float, float]] = field(default_factory=list)
    cpu_monitor_s: float = 0.0
    monitors: int = 1


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


async def _watch(cluster: LocalCluster, run: Run, stop: asyncio.Event) -> None:
    """Record when node 0 streams each block."""
    session = cluster.http()
    async with session.get(f"{cluster.url(0)}/v1/stream?from=1", timeout=None) as resp:
        buffer = bytearray()
        async for chunk in resp.content.iter_any():
            now = time.monotonic()
            buffer += chunk
            for name, event_id, _ in parse_events(buffer):
                if name == "block":
                    run.arrivals.setdefault(int(event_id), now)
            if stop.is_set():
                return


async def _trickle(shop: LedgerClient, rate: float, stop: asyncio.Event) -> None:
    """Ordinary payments, ``rate`` a second, each from an account of its own
    (nothing for the detector to flag: no account has a baseline to leave)."""
    n = max(1, int(rate))
    i = 0
    while not stop.is_set():
        await shop.submit_many([{"kind": "payment",
                                 "origin": {"account": f"acct-bg-{i * n + j}", "country": "DE",
                                            "system": "shop", "channel": "web"},
                                 "body": {"amount": 1_000 + j % 7 * 100, "currency": "EUR",
                                          "counterparty": "m-1"}} for j in range(n)])
        i += 1
        await asyncio.sleep(1.0)


def _monitor_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(directory: Path, trips: int = 10, interval: float = 3.0, rate: float = 20.0,
                timeout: float = 60.0, monitors: int = 1) -> Run:
    if monitors not in (1, 2):
        raise ValueError("monitors must be 1 or 2")
    rule = dict(RULE, breaker_alerts=monitors, breaker_monitors=monitors)
    cluster = LocalCluster(directory, 4, params=rule, submitters=ROLES)
    run = Run(monitors=monitors)
    stop = asyncio.Event()
    procs: list[subprocess.Popen[bytes]] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await cluster.start_all()
        run.load.append(os.getloadavg())
        tasks.append(asyncio.create_task(_watch(cluster, run, stop)))
        for name, node in MONITORS[:monitors]:
            procs.append(start_monitor(directory, name, cluster.url(node)))
        async with LedgerClient([cluster.url(0), cluster.url(2)], key_file=directory / "keys" / "shop.json") as shop:
            tasks.append(asyncio.create_task(_trickle(shop, rate, stop)))
            await asyncio.sleep(2 * interval)  # the monitor is connected and following
            for n in range(trips):
                account = f"acct-trip-{n}"
                rid = await shop.submit(kind="refund",
                                        origin={"account": account, "country": "DE", "system": "shop",
                                                "channel": "web"},
                                        body={"amount": 4_000 + n, "currency": "EUR", "counterparty": "m-1"})
                run.trips.append(Trip(account, rid))
                await asyncio.sleep(interval)
            deadline = time.monotonic() + timeout
            for trip in run.trips:
                doc = await shop.wait_committed(trip.record, timeout=timeout)
                trip.record_height = int(doc["height"])
            while time.monotonic() < deadline:
                _, breakers = await cluster.get(0, "/v1/breakers")
                opened = {t["value"]: t["height"] for t in breakers["transitions"]
                          if t["scope"] == "account" and t["to"] == "open"}
                for trip in run.trips:
                    trip.trip_height = opened.get(trip.account, 0)
                if all(t.trip_height and t.trip_height in run.arrivals for t in run.trips):
                    break
                await asyncio.sleep(0.5)
        run.cpu_monitor_s = sum(_monitor_cpu(p.pid) for p in procs)
        run.load.append(os.getloadavg())
        for trip in run.trips:
            if trip.trip_height and trip.record_height in run.arrivals and trip.trip_height in run.arrivals:
                trip.latency_s = run.arrivals[trip.trip_height] - run.arrivals[trip.record_height]
        return run
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stop_processes(procs)
        await cluster.stop_all()


def report(run: Run) -> dict[str, Any]:
    done = [t.latency_s for t in run.trips if t.latency_s >= 0]
    return {
        "monitors": run.monitors, "rule": f"{run.monitors} alerts from {run.monitors} monitors",
        "trips": len(run.trips), "measured": len(done),
        "p50_s": round(percentile(done, 50), 3), "p99_s": round(percentile(done, 99), 3),
        "max_s": round(max(done), 3) if done else None,
        "blocks_apart": sorted(t.trip_height - t.record_height for t in run.trips if t.trip_height),
        "latencies_s": [round(x, 3) for x in done],
        "loadavg_start": run.load[0] if run.load else None,
        "loadavg_end": run.load[-1] if len(run.load) > 1 else None,
        "monitor_cpu_s": round(run.cpu_monitor_s, 2),  # all monitors together
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trips", type=int, default=10)
    ap.add_argument("--interval", type=float, default=3.0, help="seconds between injected anomalies")
    ap.add_argument("--rate", type=float, default=20.0, help="ordinary payments a second")
    ap.add_argument("--monitors", type=int, choices=(1, 2), default=1,
                    help="2: the rule needs alerts from two distinct monitors, two monitor processes")
    ap.add_argument("--dir", type=Path, default=None, help="cluster directory (default: a temporary one)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-trip-") as tmp:
        directory = args.dir or Path(tmp)
        run = asyncio.run(bench(directory, args.trips, args.interval, args.rate,
                                monitors=args.monitors))
    print(orjson.dumps(report(run), option=orjson.OPT_INDENT_2).decode())
    return 0 if all(t.latency_s >= 0 for t in run.trips) else 1


if __name__ == "__main__":
    sys.exit(main())
