"""harness/live_run.py (scripts/live-run): fraudsim into a cluster, two
monitors, breakers, ledger-review decisions and verified traces.  Slow (a
4-node cluster, two monitor processes, the CLIs): ``pytest --runslow -k live_run``."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.live_run import live

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


async def test_live_run_trips_breakers_and_every_case_traces(tmp_path: Path) -> None:
    out = await live(tmp_path / "cluster", seed=3, accounts=40, rate=300.0, cases=2)
    assert out["records"] > 1000 and out["breakers_tripped"] > 0, out
    assert min(out["alerts_flagged"].values()) > 0  # both monitors alerted
    assert [d["verb"] for d in out["decisions"]] == ["approve", "reject"]
    assert [d["status"] for d in out["decisions"]] == ["approved", "rejected"]
    assert out["traces_valid"] == 2 and all(t["hops"] >= 3 for t in out["traces"]), out["traces"]
    # Each case was sent to review by a breaker: its trace proves the trip.
    assert all(t["breakers"] >= 1 for t in out["traces"]), out["traces"]
