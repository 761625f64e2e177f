"""Prometheus metrics of one ``ledger-monitor follow`` process (its own
registry, served on ``--metrics-port``; docs/monitor.md lists them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

ALERT_OUTCOMES = ("submitted", "refused", "dropped", "failed")


class FollowMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.height = Gauge("monitor_height", "Last block height the monitor verified and scored",
                            registry=r)
        self.lag_blocks = Gauge("monitor_lag_blocks", "Blocks committed on the node and not yet "
                                "scored by the monitor (the node's tip minus monitor_height)",
                                registry=r)
        self.lag_seconds = Gauge("monitor_lag_seconds", "Age of the last scored block: the "
                                 "monitor's clock minus the block's header time", registry=r)
        self.records = Counter("monitor_records", "Records the monitor walked (verified blocks)",
                               registry=r)
        self.flagged = Counter("monitor_flagged", "Records scored at or above the flag score",
                               registry=r)
        self.alerts = Counter("monitor_alerts", "Alert records by outcome: accepted by the node "
                              "(submitted), refused by it, dropped by the monitor's own rate "
                              "limit or queue, or not delivered (failed)", ["outcome"], registry=r)
        self.reconnects = Counter("monitor_stream_reconnects", "Times the block stream broke "
                                  "and was opened again", registry=r)
        self.verification_failures = Counter(
            "monitor_verification_failures", "Streamed blocks that failed verification (the "
            "monitor stops at the first)", registry=r)
        for outcome in ALERT_OUTCOMES:
            self.alerts.labels(outcome=outcome)

    def render(self) -> bytes:
        return generate_latest(self.registry)
