"""``ledger-monitor follow`` processes beside a local cluster, for the risk
harnesses (:mod:`harness.live_run`, :mod:`harness.bench_trip`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def start_monitor(directory: Path, name: str, node_url: str) -> subprocess.Popen[bytes]:
    """A monitor with the key ``keys/<name>.json`` of the cluster in
    ``directory`` following ``node_url``: its log in ``<name>.log``, its
    alerts in ``<name>.alerts.jsonl``."""
    with open(directory / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("ledger-monitor")), "follow", "--node", node_url,
             "--genesis", str(directory / "genesis.json"),
             "--key", str(directory / "keys" / f"{name}.json"),
             "--output", str(directory / f"{name}.alerts.jsonl")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """SIGTERM to all, then SIGKILL to any still running after ``grace_s``."""
    procs = list(procs)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
