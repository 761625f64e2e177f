"""scripts/bench_store.py and scripts/bench_pending.py end to end on small stores (the 1M run is on demand)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_store_builds_proves_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "store.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_store.py"), "--records", "6000",
           "--block", "2000", "--proofs", "200", "--max-open-files", "1000,74",
           "--dir", str(tmp_path), "--out", str(out), "--digest"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    doc = json.loads(out.read_text())
    assert doc["records"] == 6000
    assert [r["max_open_files"] for r in doc["results"]] == [1000, 74]
    # The same records (fixed seed), so the same bundles whatever the table cache.
    assert len({r["bundles_sha256"] for r in doc["results"]}) == 1
    for r in doc["results"]:
        assert r["proofs"] == 200 and r["proofs_per_s"] > 0 and r["cpu_us_per_proof"] > 0
        assert r["memory_after_mb"]["VmRSS"] > 0 and r["tables"] >= 1
    # A second run reuses the store: nothing to build, same record count.
    run = subprocess.run(cmd, check=True, capture_output=True, timeout=120, text=True)
    assert "built" not in run.stderr
    assert json.loads(out.read_text())["records"] == 6000


def test_bench_pending_admits_and_commits_every_record(tmp_path: Path) -> None:
    """scripts/bench_pending.py on a few records: every record admitted and
    committed, the pending keyspace empty afterwards (it had stopped working
    when its fixed record timestamp fell outside the admission window)."""
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_pending.py"), "--records", "400",
           "--batch", "200", "--rounds", "1", "--dir", str(tmp_path)]
    run = subprocess.run(cmd, check=True, capture_output=True, timeout=120, text=True)
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["durable"] for r in rows] == [False, True]
    assert rows[1]["synced_pending_writes"] == 2
    assert all(r["entries_left"] == 0 for r in rows)
