"""SIGKILL validators the moment they answer 202 under load (harness/faults_acks.py):
every record any node acknowledged commits, and all nodes agree.
``scripts/faults acks`` runs the long version."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.faults_acks import ack_kill_loop

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("duration", [10.0, pytest.param(180.0, marks=pytest.mark.slow)])
async def test_acknowledged_records_survive_kills(tmp_path: Path, duration: float) -> None:
    report = await ack_kill_loop(tmp_path / "cluster", duration=duration, seed=3, progress=print,
                                 min_rounds=2)  # two rounds however loaded the machine
    print(report)
    assert report.kills >= 2
    assert report.acked_by_victims > 0
    assert report.lost == 0, report.failures
    assert report.forks == 0, report.failures
    assert report.committed >= report.acked
    assert not report.failures, report.failures
