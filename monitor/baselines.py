"""Baselines the built-in detector is compared with (docs/monitor.md,
"Evaluating"): a per-account z-score of the amount, and river's
HalfSpaceTrees (optional: ``pip install auditledger[monitor]``)."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from .detector import Reason, reason
from .events import Event
from .robust import count_since

HOUR = 3_600_000


class ZScoreDetector:
    """Per account, the running mean and standard deviation of amounts
    (Welford); the score grows with |z|.  What a simple rule engine does."""

    name = "zscore"

    def __init__(self, min_count: int = 5) -> None:
        self.min_count = min_count
        self.stats: dict[str, list[float]] = {}  # account -> [n, mean, M2]

    def score(self, ev: Event) -> tuple[float, list[Reason]]:
        s = self.stats.get(ev.account or "")
        if s is None or ev.amount is None or s[0] < self.min_count:
            return 0.0, []
        std = math.sqrt(s[2] / (s[0] - 1)) or 1.0
        z = abs(ev.amount - s[1]) / std
        return z / (z + 3.0), [reason("amount_z", 0, ev.amount, {"mean": s[1], "std": std})]

    def learn(self, ev: Event) -> None:
        if ev.account is None or ev.amount is None:
            return
        s = self.stats.setdefault(ev.account, [0.0, 0.0, 0.0])
        s[0] += 1
        delta = ev.amount - s[1]
        s[1] += delta / s[0]
        s[2] += delta * (ev.amount - s[1])


KIND_CODES = {"payment": 0.1, "refund": 0.3, "settlement": 0.5, "transfer": 0.7, "payout": 0.9}


class HalfSpaceTreesDetector:
    """river's HalfSpaceTrees over a feature vector in [0, 1]: log amount,
    hour of day, kind, the account's count in the last hour, and whether the
    country, device and counterparty are new for the account.  It gets the
    same raw context the built-in detector starts from, not its rules."""

    name = "river-hst"

    def __init__(self, seed: int = 42, n_trees: int = 25, height: int = 12, window_size: int = 1000) -> None:
        try:
            from river.anomaly import HalfSpaceTrees
        except ImportError as exc:  # the optional extra
            raise RuntimeError("river is not installed: pip install 'auditledger[monitor]'") from exc
        self.model: Any = HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed)
        self.seen: dict[str, tuple[set[str], set[str], set[str], deque[int]]] = {}

    def features(self, ev: Event) -> dict[str, float]:
        s = self.seen.get(ev.account or "")
        recent = count_since(s[3], ev.time - HOUR) if s else 0
        return {
            "amount": min(1.0, math.log1p(ev.amount or 0) / 14.0),
            "hour": ((ev.time // HOUR) % 24) / 24.0,
            "kind": KIND_CODES.get(ev.kind, 1.0),
            "recent": min(1.0, recent / 20.0),
            "new_country": float(s is not None and bool(ev.country) and ev.country not in s[0]),
            "new_device": float(s is not None and bool(ev.device) and ev.device not in s[1]),
            "new_counterparty": float(s is not None and bool(ev.counterparty) and ev.counterparty not in s[2]),
        }

    def score(self, ev: Event) -> tuple[float, list[Reason]]:
        return float(self.model.score_one(self.features(ev))), []

    def learn(self, ev: Event) -> None:
        self.model.learn_one(self.features(ev))
        if ev.account:
            s = self.seen.setdefault(ev.account, (set(), set(), set(), deque()))
            if ev.country:
                s[0].add(ev.country)
            if ev.device:
                s[1].add(ev.device)
            if ev.counterparty:
                s[2].add(ev.counterparty)
            s[3].append(ev.time)
            while s[3] and s[3][0] <= ev.time - HOUR:
                s[3].popleft()
