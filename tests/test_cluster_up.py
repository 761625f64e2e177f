"""``ledger-cluster up``: runs every node, prefixes their logs, stops them on
SIGTERM, and leaves no orphan when the runner itself is SIGKILLed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from node.cluster import init_cluster
from harness.localnet import FAST_PARAMS, free_base_port

pytestmark = pytest.mark.cluster


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:\tZ") for line in fh)
    except FileNotFoundError:
        return False


def wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_up(directory: Path, log: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    out = open(log, "wb")
    runner = subprocess.Popen([sys.executable, "-m", "node.cluster", "up", "--dir", str(directory)],
                              stdout=out, stderr=subprocess.STDOUT)
    out.close()
    pids: list[int] = []

    def announced() -> bool:
        m = re.search(r"cluster up: 4 nodes \(pids ([\d, ]+)\)", log.read_text(errors="replace"))
        if m:
            pids[:] = [int(p) for p in m.group(1).split(", ")]
        return bool(m)

    try:
        wait_for(announced, 30, "the runner to start its nodes")
    except AssertionError:
        runner.kill()
        raise
    return runner, pids


def kill_leftovers(runner: subprocess.Popen[bytes], pids: list[int]) -> None:
    """Whatever this test started and is still alive, by PID."""
    for p in pids:
        if alive(p):
            os.kill(p, signal.SIGKILL)
    if runner.poll() is None:
        runner.kill()


def test_up_streams_logs_stops_on_sigterm_and_leaves_no_orphans(tmp_path: Path) -> None:
    base = free_base_port(4)
    d = tmp_path / "c"
    init_cluster(d, 4, base, params=FAST_PARAMS, tls=False, auth=False)
    log = tmp_path / "up.log"
    runner, pids = start_up(d, log)
    try:
        wait_for(lambda: all(healthy(base + i) for i in range(4)), 30, "all nodes to serve")
        wait_for(lambda: "node3 | {" in log.read_text(errors="replace"), 10, "prefixed node logs")
        os.kill(runner.pid, signal.SIGKILL)  # the runner dies without any cleanup of its own
        runner.wait(10)
        wait_for(lambda: not any(alive(p) for p in pids), 20, "orphaned nodes to exit")
    finally:
        kill_leftovers(runner, pids)

    runner, pids = start_up(d, tmp_path / "up2.log")
    try:
        wait_for(lambda: all(healthy(base + i) for i in range(4)), 30, "all nodes to serve again")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(30) == 0
        assert not any(alive(p) for p in pids)
    finally:
        kill_leftovers(runner, pids)


def test_local_clusters_take_ports_below_the_ephemeral_range() -> None:
    """The ports are checked free and bound by the nodes later; an outgoing
    connection given one as its local port in between made a node fail with
    "address already in use", so test clusters stay out of that range."""
    from harness.localnet import ephemeral_port_range

    low = ephemeral_port_range()[0]
    for _ in range(20):
        base = free_base_port(4)
        assert base + 3 < low
