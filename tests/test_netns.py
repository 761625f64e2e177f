"""Partitions between nodes in separate network namespaces (harness/netns.py):
one validator isolated, a 2|2 split (no commits during it, resumes after the
heal) and the proposer isolated mid-round; never a fork.  Skipped where
namespaces cannot be made (not root, no iproute2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.netns import run_in_lab, unavailable_reason

REASON = unavailable_reason()
pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(REASON is not None, reason=f"netns: {REASON}")]


# CI runs the secure lab; the plain one is --runslow (the suite's time;
# tests/test_netns_byzantine.py partitions plain links).
@pytest.mark.parametrize("secure", [pytest.param(False, marks=pytest.mark.slow), True])
def test_partitions(tmp_path: Path, secure: bool) -> None:
    """``secure``: TLS on every link and every request signed (issue 24)."""
    report = run_in_lab(tmp_path / "cluster", ["isolate", "split", "proposer"], timeout=240,
                        secure=secure)
    print(report)
    assert report["partitions_healed"] == 3
    assert report["forks"] == 0
    s = report["scenarios"]
    assert s["isolate"]["victim_height_during"] == s["isolate"]["victim_height_before"]
    assert s["split"]["committed_during_split"] is False
    assert s["split"]["resumed_after_heal"] and s["proposer"]["majority_committed"]
    assert not report.get("failures"), report["failures"]
    assert report["ok"]
