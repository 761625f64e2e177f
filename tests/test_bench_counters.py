"""The benchmarks' node counters (harness/bench_measure.py): every sample of
the named families from one /metrics per node, a peer label summed over,
the samples that are 0 everywhere left out."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest

from harness.bench_measure import counters_by_name, gc_seconds, node_counters


def _metrics(rejected: int, dropped: tuple[int, int], gc0: float) -> bytes:
    r = CollectorRegistry()
    Counter("ledger_inputs_rejected", "", ["code"], registry=r).labels(
        code="rate_limited").inc(rejected)
    out = Counter("ledger_peer_outbound_dropped", "", ["peer", "reason"], registry=r)
    out.labels(peer="n1", reason="stale").inc(dropped[0])
    out.labels(peer="n2", reason="stale").inc(dropped[1])
    gc = Counter("ledger_gc_seconds", "", ["generation"], registry=r)
    gc.labels(generation="0").inc(gc0)
    gc.labels(generation="1").inc(0)
    Counter("ledger_not_asked_for", "", registry=r).inc(7)
    return generate_latest(r)


class FakeCluster:
    n = 3

    def __init__(self) -> None:
        self.bodies: dict[int, bytes] = {0: _metrics(5, (1, 2), 0.25),
                                         1: _metrics(0, (0, 4), 0.5)}
        self.asked: list[int] = []

    async def try_get(self, i: int, path: str) -> tuple[int, Any] | None:
        assert path == "/metrics"
        self.asked.append(i)
        return (200, self.bodies[i]) if i in self.bodies else None


async def test_counters_are_read_once_per_node_and_keyed_by_their_labels() -> None:
    c = FakeCluster()
    rows = await node_counters(c)  # type: ignore[arg-type]
    assert c.asked == [0, 1, 2]
    assert rows[2] == {}  # the node that did not answer
    assert rows[0]["ledger_inputs_rejected_total{code=rate_limited}"] == 5
    assert rows[0]["ledger_peer_outbound_dropped_total{reason=stale}"] == 3
    assert rows[1]["ledger_peer_outbound_dropped_total{reason=stale}"] == 4
    assert not any(key.startswith("ledger_not_asked_for") for row in rows for key in row)
    assert gc_seconds(rows) == 0.75
    by_name = counters_by_name(rows)
    assert by_name["ledger_inputs_rejected_total{code=rate_limited}"] == [5, 0, 0]
    assert "ledger_gc_seconds_total{generation=1}" not in by_name  # 0 on every node
