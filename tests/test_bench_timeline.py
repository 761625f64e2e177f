"""The benchmark tools' own arithmetic: bench_secure's summary over ABBA
pairs, and harness/timeline.py's steps and block critical path (with the
probe it reads, harness/timeline_probe, wrapping a real method)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bench_secure import summary
from harness.timeline import critical_path, read_timeline, step_table

ROOT = Path(__file__).resolve().parent.parent


def _run(policy: bool, rate: int, cpu: float) -> dict[str, object]:
    return {"policy": policy, "records_per_s": rate, "cpu_us_per_record_per_node": cpu}


def test_the_summary_pools_pairs_and_their_spread() -> None:
    pairs = [[_run(False, 1000, 100.0), _run(True, 900, 110.0)],
             [_run(False, 3000, 90.0), _run(True, 2400, 100.0)]]
    line = summary(pairs, "policy", "none")
    assert line.startswith("2 pairs: throughput policy/none pooled 0.825,")  # 3,300 / 4,000
    assert "mean of pairs 0.850" in line   # (0.9 + 0.8) / 2
    assert "standard error 0.050" in line  # stdev 0.0707 / sqrt(2)
    assert "pairs 0.80-0.90" in line
    assert line.endswith("CPU per record none/policy pooled 0.905")  # 190 / 210


def _write(path: Path, lines: list[tuple[float, str]]) -> None:
    path.write_text("".join(f"{t:.6f} {what}\n" for t, what in lines), encoding="ascii")


def _cluster_logs(tmp_path: Path) -> list[Path]:
    """Four nodes, height 1 committed at t=0 everywhere, then height 2
    proposed by node 0: build 5-10 ms, proposal out at 11, validations done
    at 12 (its own), 20, 25 and 40, commits done at 50, 55, 60 and 70."""
    base = 1_000.0
    ms = 0.001
    logs = []
    validate_end = [12, 20, 25, 40]
    commit_end = [50, 55, 60, 70]
    for k in range(4):
        lines = [(base - 2 * ms, "> execute:Commit 1"), (base + k * 0.0, "< execute:Commit 1")]
        if k == 0:
            lines += [(base + 5 * ms, "> build_block 2"), (base + 10 * ms, "< build_block 2"),
                      (base + 10.5 * ms, "> execute:Broadcast:Proposal 2"),
                      (base + 11 * ms, "< execute:Broadcast:Proposal 2")]
        lines += [(base + (validate_end[k] - 1) * ms, "> validate 2 600"),
                  (base + validate_end[k] * ms, "< validate 2 600"),
                  (base + (commit_end[k] - 4) * ms, "> execute:Commit 2"),
                  (base + commit_end[k] * ms, "< execute:Commit 2")]
        path = tmp_path / f"{100 + k}.log"
        _write(path, lines)
        logs.append(path)
    return logs


def test_the_critical_path_of_a_block(tmp_path: Path) -> None:
    nodes = [read_timeline(p) for p in _cluster_logs(tmp_path)]
    path = critical_path(nodes, min_records=600)
    assert path == pytest.approx({"build start": 5.0, "proposal sent": 11.0,
                                  "2nd follower validated": 25.0, "first commit done": 50.0,
                                  "last commit done": 70.0, "blocks": 1})
    assert nodes[0].records == {2: 600}
    assert critical_path(nodes, min_records=601) == {}  # no block that large


def test_steps_are_timed_per_label(tmp_path: Path) -> None:
    nodes = [read_timeline(p) for p in _cluster_logs(tmp_path)]
    rows = {row[0]: row for row in step_table(nodes)}
    assert rows["validate"][1] == 4 and rows["validate"][2] == pytest.approx(1.0)
    assert rows["execute:Commit"][1] == 8
    assert rows["build_block"][6] == pytest.approx(5.0)  # total ms


def test_the_probe_wraps_a_ledger_node_process_only(tmp_path: Path) -> None:
    """With the probe's directory on PYTHONPATH, a process named ledger-node
    writes its calls; the same interpreter under another name writes nothing."""
    # As Python's site module would import it, under the process's own name
    # (runpy.run_path would name the process after the file it runs).
    code = ("import sys; sys.argv[0] = {name!r}; "
            "exec(compile(open({probe!r}).read(), {probe!r}, 'exec'), {{'__name__': 'sc'}}); "
            "from ledger.approvals import BlockVerdicts, VerdictState; "
            "VerdictState().commit(1, 1000, BlockVerdicts(1, None))")
    probe = str(ROOT / "harness" / "timeline_probe" / "sitecustomize.py")
    env = dict(os.environ, LEDGER_TIMELINE_DIR=str(tmp_path))
    for name in ("ledger-client", "/venv/bin/ledger-node"):
        subprocess.run([sys.executable, "-c", code.format(name=name, probe=probe)], env=env,
                       check=True, cwd=ROOT)
    logs = list(tmp_path.glob("*.log"))
    assert len(logs) == 1
    node = read_timeline(logs[0])
    assert [c[0] for c in node.calls] == ["verdicts_commit"]
    assert node.calls[0][3] >= node.calls[0][2]
