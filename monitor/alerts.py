"""Alerts as records (PROTOCOL §12.2): what ``ledger-monitor follow --key``
submits for each flagged record, and the sink that submits them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ledger import risk

from .follow import Alert
from .metrics import FollowMetrics

log = logging.getLogger("monitor.alerts")

VERSION = "1"


def alert_spec(alert: Alert, detector: str, version: str = VERSION) -> dict[str, Any]:
    """The ``risk.alert`` record of one flagged record: the score in parts per
    million, the reasons with the most points first (at most 16)."""
    reasons = sorted(alert.reasons, key=lambda r: (-int(r["points"]), str(r["feature"])))
    return {
        "kind": risk.ALERT,
        "origin": {"system": "ledger-monitor"},
        "body": {
            "score": max(0, min(risk.SCORE_MAX, round(alert.score * risk.SCORE_MAX))),
            "reasons": [{"feature": str(r["feature"])[:64], "points": int(r["points"])}
                        for r in reasons[:risk.MAX_REASONS]] or
                       [{"feature": "score", "points": 0}],
            "detector": detector,
            "version": version,
        },
        "parents": [alert.record_id],
    }


class AlertSubmitter:
    """Submits alert records through an SDK client (``client.sdk.LedgerClient``)."""

    def __init__(self, client: Any, detector: str, metrics: FollowMetrics) -> None:
        self.client = client
        self.detector = detector
        self.metrics = metrics

    async def __call__(self, alerts: Sequence[Alert]) -> None:
        from client.errors import LedgerClientError

        specs = [alert_spec(a, self.detector) for a in alerts]
        for start in range(0, len(specs), 1000):
            chunk = specs[start:start + 1000]
            try:
                ids = await self.client.submit_many(chunk)
            except LedgerClientError as exc:
                # The client keeps what it could not deliver; an alert is
                # worth nothing late, so it keeps nothing.
                self.client.forget(getattr(exc, "ids", []))
                code = getattr(exc, "code", "")
                outcome = "refused" if code else "failed"
                self.metrics.alerts.labels(outcome=outcome).inc(len(chunk))
                log.warning("%d alert records not submitted: %s", len(chunk), exc)
                continue
            self.client.forget(ids)
            self.metrics.alerts.labels(outcome="submitted").inc(len(chunk))
