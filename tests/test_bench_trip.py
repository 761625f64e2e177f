"""harness/bench_trip.py: commit-to-trip latency on a local cluster
(docs/performance.md, "Risk monitor").  The smoke run is slow (a 4-node
cluster and a ledger-monitor process): ``pytest --runslow -k bench_trip``."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.bench_trip import bench, percentile, report


def test_percentile_is_nearest_rank() -> None:
    values = [0.5, 0.1, 0.4, 0.2, 0.3]
    assert percentile(values, 50) == 0.3
    assert percentile(values, 99) == 0.5
    assert percentile(values, 1) == 0.1
    assert percentile([2.0], 50) == 2.0


@pytest.mark.slow
@pytest.mark.cluster
async def test_bench_trip_measures_every_trip(tmp_path: Path) -> None:
    run = await bench(tmp_path / "cluster", trips=2, interval=1.0, rate=5.0)
    doc = report(run)
    assert doc["trips"] == doc["measured"] == 2, doc
    for trip in run.trips:
        # the alert is submitted after the record's block streams: a later block trips
        assert trip.trip_height > trip.record_height > 0, trip
        assert trip.latency_s > 0
    alerts = (tmp_path / "cluster" / "mon.alerts.jsonl").read_text().splitlines()
    assert len(alerts) == 2  # the ordinary payments flag nothing


@pytest.mark.slow
@pytest.mark.cluster
async def test_bench_trip_with_two_monitors_trips_on_the_later_alert(tmp_path: Path) -> None:
    run = await bench(tmp_path / "cluster", trips=2, interval=1.0, rate=5.0, monitors=2)
    doc = report(run)
    assert doc["monitors"] == 2 and doc["trips"] == doc["measured"] == 2, doc
    for name in ("mon", "mon-b"):  # each monitor flagged each anomaly
        assert len((tmp_path / "cluster" / f"{name}.alerts.jsonl").read_text().splitlines()) == 2
    for trip in run.trips:
        assert trip.trip_height > trip.record_height > 0 and trip.latency_s > 0, trip
