"""A scripted live run of the risk pipeline (docs/performance.md, "Risk
monitor"; ``scripts/live-run``): fraudsim feeds a local 4-node cluster with
request authentication through the SDK; two ``ledger-monitor follow``
processes with different keys (two organisations, role ``monitor``) follow
different nodes and submit alerts; the genesis breaker rule needs alerts
from both monitors (``breaker_alerts`` 2, ``breaker_monitors`` 2) to trip
an account's breaker; records of tripped accounts go to review; two
reviewers decide cases through ``ledger-review`` (approve, reject,
alternately); each decision's case is traced with ``ledger-audit trace``
and must verify, the breaker's trip included (its committed entry and the
alerts that tripped it).  Prints a JSON summary.

    python -m harness.live_run [--seed 7] [--accounts 100] [--rate 200] [--cases 6] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.localnet import LocalCluster
from harness.monitor_procs import start_monitor, stop_processes
from monitor.fraudsim import simulate
from monitor.fraudsim.feed import feed

RULE = {"breaker_alerts": 2, "breaker_monitors": 2, "breaker_window_ms": 3_600_000,
        "breaker_cooldown_ms": 3_600_000, "breaker_min_score": 500_000, "breaker_scopes": 1}
ROLES = {"shop": ["submit", "read_own"], "mon-a": ["monitor", "submit", "read_own"],
         "mon-b": ["monitor", "submit", "read_own"], "ra": ["review", "submit"], "rb": ["review", "submit"]}


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


async def _run(argv: list[str]) -> tuple[int, str]:
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


async def live(directory: Path, *, seed: int = 7, accounts: int = 100, rate: float = 200.0,
               cases: int = 6, batch: int = 100, stream_time: bool = True,
               inflight: int = 4) -> dict[str, Any]:
    # With stream_time the records carry fraudsim's own times (14 days back
    # from now), so the chain takes records up to 15 days old.
    params = dict(RULE, record_ts_past_ms=15 * 86_400_000) if stream_time else RULE
    cluster = LocalCluster(directory, 4, auth=True, params=params, submitters=ROLES)
    keys = {name: directory / "keys" / f"{name}.json" for name in ROLES}
    genesis = str(directory / "genesis.json")
    monitors: list[subprocess.Popen[bytes]] = []
    out: dict[str, Any] = {"seed": seed, "accounts": accounts, "target_rate": rate,
                           "batch": batch, "inflight": inflight, "stream_time": stream_time}
    try:
        await cluster.start_all()
        out["loadavg_start"] = os.getloadavg()
        for name, node in (("mon-a", 1), ("mon-b", 2)):
            monitors.append(start_monitor(directory, name, cluster.url(node)))
        txs = simulate(seed, accounts=accounts, anomaly_rate=0.02)
        pids = {f"node{i}": p.pid for i, p in cluster.procs.items()}
        pids.update({"mon-a": monitors[0].pid, "mon-b": monitors[1].pid})
        cpu0 = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        cpu0["feeder"] = time.process_time()
        start = time.monotonic()
        ids = await feed(txs, [cluster.url(0), cluster.url(3)], keys["shop"], rate=rate, batch=batch,
                         stream_time=stream_time, inflight=inflight)
        fed = time.monotonic() - start
        await cluster.wait_committed([0], ids[-1], timeout=120)
        elapsed = time.monotonic() - start
        out.update(records=len(ids), anomalous=sum(tx.label != "normal" for tx in txs),
                   submit_seconds=round(fed, 1), feed_seconds=round(elapsed, 1),
                   committed_rate=round(len(ids) / elapsed, 1))
        # The monitors are done when their alert files stop growing.
        alerts = [directory / f"{n}.alerts.jsonl" for n in ("mon-a", "mon-b")]
        last, still = [-1, -1], 0
        for _ in range(240):
            now = [_lines(p) for p in alerts]
            still = still + 1 if now == last else 0
            last = now
            if still >= 10:
                break
            await asyncio.sleep(0.5)
        out["alerts_flagged"] = dict(zip(("mon-a", "mon-b"), last))
        # Where the CPU went, from the feed's start until the monitors were
        # done: per process, in microseconds per fed record (the feeder is
        # this process: fraudsim records, SDK signing and submission).
        cpu = {name: _cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        cpu["feeder"] = time.process_time() - cpu0["feeder"]
        out["cpu_us_per_record"] = {k: round(v * 1e6 / max(len(ids), 1)) for k, v in cpu.items()}
        _, breakers = await cluster.get(0, "/v1/breakers")
        out["breakers_tripped"] = sum(t["to"] == "open" for t in breakers["transitions"])

        decided: list[dict[str, Any]] = []
        traces: list[dict[str, Any]] = []
        try:  # a failing review stage still reports the feed's figures
            def at(i: int) -> list[str]:
                return ["--node", cluster.url(i)]

            code, text = await _run([_tool("ledger-review"), "list", "--key", str(keys["ra"]), *at(1),
                                     "--json", "--limit", "200"])
            if code != 0:
                raise RuntimeError(f"ledger-review list: {text}")
            queue = json.loads(text)
            out["review_open"] = len(queue["reviews"])
            for n, case in enumerate(queue["reviews"][:cases]):
                verb, who = ("approve", "ra") if n % 2 == 0 else ("reject", "rb")
                # The deciding node may lag the one that listed the case.
                await cluster.wait_committed([1 + n % 3], case["record"], timeout=120)
                code, text = await _run([_tool("ledger-review"), verb, case["record"], "--key", str(keys[who]),
                                         *at(1 + n % 3), "--json", "--note", "live run",
                                         # the alerts still flowing may queue the decision
                                         "--timeout", "120"])
                if code != 0:
                    raise RuntimeError(f"ledger-review {verb}: {text}")
                doc = json.loads(text)
                decided.append({"record": case["record"], "verb": verb, "decision": doc["decision"],
                                "status": doc.get("status"), "alerts": len(case.get("alerts", []))})
            for case in decided:
                await cluster.wait_committed([0], case["decision"], timeout=60)
                code, text = await _run([_tool("ledger-audit"), "trace", case["decision"], "--genesis", genesis,
                                         "--node", cluster.url(0), "--key", str(cluster.harness_key), "--json"])
                doc = json.loads(text) if code == 0 else {"valid": False}
                # "breakers": the trips the trace proves (the breaker that sent the case to review)
                traces.append({"decision": case["decision"], "valid": bool(doc.get("valid")),
                               "hops": len(doc.get("hops", [])),
                               "breakers": len(doc.get("breakers", []))})
        except (RuntimeError, TimeoutError) as exc:
            out["error"] = str(exc)[:1000]
        out["decisions"] = decided
        out["traces"] = traces
        out["traces_valid"] = sum(t["valid"] for t in traces)
        out["loadavg_end"] = os.getloadavg()
        return out
    finally:
        stop_processes(monitors)
        await cluster.stop_all()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--accounts", type=int, default=100, help="fraudsim accounts (14 days of their records)")
    ap.add_argument("--rate", type=float, default=200.0, help="records a second fed")
    ap.add_argument("--cases", type=int, default=6, help="review cases decided (approve, reject, ...)")
    ap.add_argument("--batch", type=int, default=100, help="records per signed batch the feeder submits")
    ap.add_argument("--inflight", type=int, default=4, help="signed batches submitted at once")
    ap.add_argument("--signing-time", action="store_true",
                    help="records carry the signing time (days of traffic within seconds), not fraudsim's times")
    ap.add_argument("--dir", type=Path, default=None, help="cluster directory (default: a temporary one)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="live-run-") as tmp:
        out = asyncio.run(live(args.dir or Path(tmp), seed=args.seed, accounts=args.accounts,
                               rate=args.rate, cases=args.cases, batch=args.batch,
                               stream_time=not args.signing_time, inflight=args.inflight))
    print(json.dumps(out, indent=2))
    ok = "error" not in out and out["breakers_tripped"] > 0 and out["decisions"] \
        and out["traces_valid"] == len(out["traces"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
