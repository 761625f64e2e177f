"""The soak runner (harness/soak.py, ``scripts/soak``) in a short version: 30 s
of load at 200 records/s with one SIGKILL and one partition drawn from the
seed (15: the partition heals by 23 s, so the load is not held past its
30 s and runs whole again at the end); every acknowledged record commits,
no fork, and the summary and plot are written.  Skipped where network namespaces cannot be made (not root, no
iproute2); ``scripts/soak`` runs the hour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.netns import unavailable_reason
from harness.soak import SoakReport, _memory_summary, _table_files, _threads, schedule

REASON = unavailable_reason()
ROOT = Path(__file__).resolve().parent.parent


def test_schedule_is_drawn_from_the_seed() -> None:
    a, b = schedule(5, 45, 15), schedule(5, 45, 15)
    assert a == b
    assert [f.kind for f in a][0] == "kill" and len(a) == 2
    assert a[1].kind in ("isolate", "split")
    assert schedule(6, 3600, 120) != schedule(5, 3600, 120)
    assert all(f.at <= 3600 - 60 for f in schedule(5, 3600, 120))


def test_samples_count_threads_and_table_files(tmp_path: Path) -> None:
    chain = tmp_path / "chain"
    chain.mkdir()
    for name in ("000005.ldb", "000007.ldb", "000009.log", "MANIFEST-000002"):
        (chain / name).write_bytes(b"")
    assert _table_files(chain) == 2
    assert _table_files(tmp_path / "missing") is None
    threads = _threads(os.getpid())
    assert threads is not None and threads >= 1
    rep = SoakReport(memory_samples=[
        {"t": 0, "node0": {"anon": 50.0, "file": 20.0, "threads": 8, "tables": 3}},
        {"t": 10, "node0": {"anon": None, "file": None, "threads": None, "tables": 3}},
        {"t": 20, "node0": {"anon": 70.0, "file": 25.0, "threads": 9, "tables": 5}},
    ])
    _memory_summary(rep)
    assert rep.memory["node0_anon_mb"] == {"start": 50.0, "end": 70.0, "max": 70.0, "growth": 20.0}
    assert rep.memory["node0_threads"] == {"start": 8, "end": 9, "max": 9, "growth": 1}
    assert rep.memory["node0_tables"] == {"start": 3, "end": 5, "max": 5, "growth": 2}


@pytest.mark.cluster
@pytest.mark.skipif(REASON is not None, reason=f"netns: {REASON}")
def test_short_soak(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.soak", "--duration", "18", "--rate", "200",
         "--fault-every", "6", "--seed", "15", "--progress-every", "6", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "soak.png").stat().st_size > 0
    assert summary["kills"] == 1 and summary["partitions"] == 1
    assert summary["acked"] > 0 and summary["latency_samples"] > 0
    assert summary["lost"] == 0, summary["failures"]
    assert summary["forks"] == 0, summary["failures"]
    assert summary["committed"] >= summary["acked"]
    assert summary["memory"]["node0_anon_mb"]["max"] > 0
    assert summary["memory"]["node0_threads"]["max"] > 0
    assert summary["memory"]["node0_tables"]["max"] >= 0
    assert not summary["failures"], summary["failures"]
    assert proc.returncode == 0
