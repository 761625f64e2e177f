"""A live node's /metrics follows Prometheus conventions and holds every
metric the dashboard and the alert rules name (docs/operators.md, "Metrics,
dashboard and alerts")."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from harness.localnet import LocalCluster, until
from node.metrics import (
    ADMISSION_SOURCES,
    FRAME_DROP_REASONS,
    HANDSHAKE_FAIL_REASONS,
    REJECTION_CODES,
)
from test_cluster import Submitter, submit
from test_metrics_rules import referenced_metrics

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 4)
    try:
        yield c
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")


async def scrape(c: LocalCluster, i: int) -> tuple[dict[str, str], list[Sample]]:
    """(family name -> type, every sample) of node ``i``'s /metrics."""
    status, body = await c.get(i, "/metrics")
    assert status == 200
    families = list(text_string_to_metric_families(body.decode()))
    return ({f.name: f.type for f in families}, [s for f in families for s in f.samples])


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


async def test_live_node_exposes_what_dashboard_and_rules_name(cluster: LocalCluster) -> None:
    c = cluster
    await c.start_all()
    # Before any input: no _created series, counters end in _total, and the
    # labelled counters already hold every value they can take.
    types, samples = await scrape(c, 0)
    names = {s.name for s in samples}
    assert not [n for n in names if n.endswith("_created")]
    counters = [f for f, t in types.items() if t == "counter"]
    assert "ledger_proposal_assembly" in counters  # was a gauge counting since start
    for s in samples:
        if types.get(s.name.removesuffix("_total")) == "counter":
            assert s.name.endswith("_total"), s.name
    for code in REJECTION_CODES:
        assert value(samples, "ledger_inputs_rejected_total", code=code) == 0, code
    for reason in FRAME_DROP_REASONS:
        assert value(samples, "ledger_peer_frames_dropped_total", reason=reason) == 0, reason
    for reason in HANDSHAKE_FAIL_REASONS:
        assert value(samples, "ledger_peer_handshakes_failed_total", reason=reason) == 0
    for source in ADMISSION_SOURCES:
        assert value(samples, "ledger_records_admitted_total", source=source) == 0
    for peer in ("node1", "node2", "node3"):
        assert value(samples, "ledger_peer_frames_sent_total", peer=peer) is not None
        assert value(samples, "ledger_peer_outbound_dropped_total", peer=peer,
                     reason="stale") == 0
    build = [s for s in samples if s.name == "ledger_build_info"]
    assert len(build) == 1 and build[0].value == 1
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", build[0].labels["version"])
    assert build[0].labels["native"] in ("c", "python") and build[0].labels["python"]
    assert value(samples, "ledger_health", capability="serving") == 1
    assert value(samples, "ledger_mempool_capacity") is not None
    assert value(samples, "ledger_store_table_files") is not None

    # Records from a client commit: one submit-to-commit sample per batch.
    sub = Submitter(c)
    for batch in range(3):
        await submit(c, 0, [sub.envelope() for _ in range(5)])
        await c.wait_height([0], batch + 1)

    async def sampled() -> bool:
        _, s = await scrape(c, 0)
        return (value(s, "ledger_submit_to_commit_seconds_count") or 0) >= 3

    await until(sampled, 30, "three submit-to-commit samples on node0")
    # Peers' heights arrive with their status messages.

    async def lag_known() -> bool:
        _, s = await scrape(c, 0)
        return all(value(s, "ledger_peer_lag_blocks", peer=p) is not None
                   for p in ("node1", "node2", "node3"))

    await until(lag_known, 30, "every peer's lag on node0")
    _, samples = await scrape(c, 0)
    names = {s.name for s in samples}
    missing = sorted(referenced_metrics() - names)
    assert not missing, f"named by the dashboard or the rules but not exposed: {missing}"
    # A node that only relays (node1) measures nothing: the records were not
    # submitted there.
    _, other = await scrape(c, 1)
    assert value(other, "ledger_submit_to_commit_seconds_count") == 0
