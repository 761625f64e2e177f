"""Kill loop under SDK load (harness/faults.py): SIGKILL a random validator every
few seconds, restart it; nothing committed is lost, every resubmitted record
is in the chain exactly once, every node proves every record the SDK saw
committed, and all header hashes agree.  ``scripts/faults killloop`` runs
the long version."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.faults import kill_loop

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize(("duration", "secure"), [
    # CI runs the deployment's configuration; the plain one is --runslow
    # (the suite's time: other cluster tests cover the plain links).
    pytest.param(10.0, False, marks=pytest.mark.slow),
    (10.0, True),  # TLS on every link, every request signed (issue 24)
    pytest.param(240.0, False, marks=pytest.mark.slow),
    pytest.param(240.0, True, marks=pytest.mark.slow)])
async def test_kill_loop(tmp_path: Path, duration: float, secure: bool) -> None:
    report = await kill_loop(tmp_path / "cluster", duration=duration, every=(1.5, 4.0), seed=7,
                             progress=print, secure=secure)
    print(report)
    assert report.kills >= 1
    assert report.seen_committed > 0
    assert report.records_lost == 0, report.failures
    assert report.duplicates_in_chain == 0
    assert report.forks == 0, report.failures
    assert report.evidence == 0
    assert report.proofs_verified == 4 * report.seen_committed
    assert report.committed_in_chain == report.submitted
    assert not report.failures, report.failures
