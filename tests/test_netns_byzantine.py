"""A Byzantine validator (equivocating proposals, double votes) while the
network is partitioned, in namespaces (harness/netns_byzantine.py): with an
honest node isolated the rest commit and it catches up; in a {0,3}|{1,2}
split nobody commits; never a fork; evidence names only the Byzantine node.
Skipped where namespaces cannot be made (not root, no iproute2)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.netns import run_in_lab, unavailable_reason

REASON = unavailable_reason()
pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(REASON is not None, reason=f"netns: {REASON}")]


def test_byzantine_node_with_partitions(tmp_path: Path) -> None:
    started = time.monotonic()
    report = run_in_lab(tmp_path / "cluster", ["isolate", "split"], timeout=240,
                        module="harness.netns_byzantine")
    print(report, f"{time.monotonic() - started:.1f}s")
    assert report["partitions_healed"] == 2
    assert report["forks"] == 0
    s = report["scenarios"]
    assert s["isolate"]["victim_height_during"] == s["isolate"]["victim_height_before"]
    assert s["isolate"]["majority_committed"]
    assert s["split"]["committed_during_split"] is False
    assert s["split"]["resumed_after_heal"]
    assert report["evidence"]["only_node3"], report["evidence"]
    assert report["evidence"]["recorded_by"], "no honest node recorded the double votes"
    assert report["ok"]
