"""The detector interface (docs/monitor.md, "Detectors").

A detector sees the stream one event at a time: ``score(event)`` first,
using only what it learned from earlier events, then ``learn(event)``.  The
scorer (:mod:`monitor.score`) never calls them in another order, which is
what makes scoring strictly online: a record's score cannot depend on lines
after it.
"""

from __future__ import annotations

from typing import Any, Protocol

from .events import Event

Reason = dict[str, Any]  # {"feature", "value", "baseline", "points"}
# Built-in scores map integer points p to p / (p + SCORE_HALF): 0 is nothing
# unusual, SCORE_HALF points (score 0.5) is the default flag threshold.
SCORE_HALF = 60


class Detector(Protocol):
    name: str

    def score(self, event: Event) -> tuple[float, list[Reason]]:
        """A score in [0, 1) (higher is more anomalous) and the reasons."""
        ...

    def learn(self, event: Event) -> None:
        """Fold the event into the baselines (after it was scored)."""
        ...


def points_to_score(points: int) -> float:
    return points / (points + SCORE_HALF) if points > 0 else 0.0


def reason(feature: str, points: int, value: Any, baseline: Any = None) -> Reason:
    return {"feature": feature, "value": value, "baseline": baseline, "points": points}
