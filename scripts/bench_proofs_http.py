"""Proofs over HTTP from one node on a stored chain (issue 28's proof figures).

Starts one ``ledger-node`` (``python -m node.main``) on a node directory
that holds ``node.toml`` and a committed store (a copy: the node writes to
it), with the per-client rate limits off (one wrk address makes all the
load), waits for ``/health``, then runs ``wrk -t1 -c32`` with the proof
script of :mod:`harness.bench_proofs` (a random id of ``--ids`` per request,
keep-alive) ``--runs`` times, and stops the node.  Each run prints one JSON
line: answers, wall rate, non-2xx answers, the node's CPU (user and system,
from /proc) and answers per node-CPU-second, which on a shared machine is
the figure that does not depend on the share of the cores the node got.

    scripts/bench-proofs-http --node-dir DIR --ids ids.txt --runs 3 --seconds 15
    scripts/bench-proofs-http --node-dir DIR --path /health   # the HTTP floor
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# harness/ is not installed: import it from this source tree.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.bench_measure import loadavg  # noqa: E402
from harness.bench_proofs import WRK_SCRIPT  # noqa: E402

NO_LIMITS = {"LEDGER__HTTP__CLIENT_RATE_PER_S": "0", "LEDGER__HTTP__IDENTITY_RATE_PER_S": "0"}


def cpu(pid: int) -> tuple[float, float]:
    """(user, system) seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def port_of(toml: str) -> int:
    http = toml.split("[http]", 1)[1]
    found = re.search(r"^port\s*=\s*(\d+)", http, re.M)
    if found is None:
        raise SystemExit("node.toml has no [http] port")
    return int(found.group(1))


def wait_healthy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the node did not answer /health within {timeout_s:g} s")


def wrk_run(wrk: str, url: str, seconds: int, ids: Path | None, path: str | None,
            script: Path, pid: int) -> dict[str, Any]:
    cmd = [wrk, "-t1", "-c32", f"-d{seconds}s", "--latency"]
    cmd += [url + path] if path else ["-s", str(script), url]
    env = {**os.environ, "PROOF_IDS": str(ids or "")}
    la0, (u0, s0) = loadavg(), cpu(pid)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    (u1, s1), la1 = cpu(pid), loadavg()
    answers = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = dict(re.findall(r"^\s+(50%|99%)\s+(\S+)", out, re.M))
    node_cpu = (u1 - u0) + (s1 - s0)
    return {"utc": time.strftime("%H:%M:%S", time.gmtime()), "path": path or "proof",
            "answers": answers, "per_s": round(rate), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "node_cpu_s": round(node_cpu, 2), "node_sys_s": round(s1 - s0, 2),
            "per_node_cpu_s": round(answers / node_cpu) if node_cpu else None,
            "p50": latency.get("50%"), "p99": latency.get("99%"),
            "load_start": la0, "load_end": la1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--node-dir", type=Path, required=True,
                    help="directory with node.toml and its store (a copy: the node writes to it)")
    ap.add_argument("--ids", type=Path, help="committed record ids, hex, one a line")
    ap.add_argument("--path", help="a fixed path instead of proofs (e.g. /health)")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5, help="seconds of load before the runs")
    ap.add_argument("--start-timeout", type=float, default=900.0)
    args = ap.parse_args()
    if args.ids is None and args.path is None:
        ap.error("give --ids (proofs) or --path")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    url = f"http://127.0.0.1:{port_of((args.node_dir / 'node.toml').read_text())}"
    env = {**os.environ, **NO_LIMITS, "PYTHONPATH": str(ROOT)}
    log = open(args.node_dir / "bench-proofs-http.log", "ab")
    node = subprocess.Popen([sys.executable, "-m", "node.main", "--config", "node.toml"],
                            cwd=args.node_dir, env=env, stdout=log, stderr=log)
    try:
        wait_healthy(url, args.start_timeout)
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "proofs.lua"
            script.write_text(WRK_SCRIPT)
            if args.warmup:
                wrk_run(wrk, url, args.warmup, args.ids, args.path, script, node.pid)
            for _ in range(args.runs):
                print(json.dumps(wrk_run(wrk, url, args.seconds, args.ids, args.path, script,
                                         node.pid)), flush=True)
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
        log.close()


if __name__ == "__main__":
    main()
