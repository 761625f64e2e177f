"""Small integer statistics for per-entity baselines: medians, MAD and
counts over a sliding window of event time.  Integers throughout, so two
monitors fed the same stream agree to the last digit."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


def median(values: Iterable[int]) -> int:
    """The lower median (an element of ``values``; 0 when empty)."""
    ordered = sorted(values)
    if not ordered:
        return 0
    return ordered[(len(ordered) - 1) // 2]


def median_mad(values: Iterable[int]) -> tuple[int, int]:
    ordered = sorted(values)
    if not ordered:
        return 0, 0
    med = ordered[(len(ordered) - 1) // 2]
    deviations = [v - med if v >= med else med - v for v in ordered]
    deviations.sort()
    return med, deviations[(len(deviations) - 1) // 2]


def robust_z10(value: int, med: int, mad: int) -> int:
    """How far ``value`` is above ``med``, in tenths of a robust standard
    deviation (1.4826 MAD, floored at a tenth of the median plus one minor
    unit so that an account that always pays the same price is not
    infinitely surprised by a cent more)."""
    spread = (14826 * mad) // 10000 + med // 10 + 1
    return (10 * (value - med)) // spread


def count_since(times: deque[int], since: int) -> int:
    """How many of the (ascending) ``times`` are later than ``since``."""
    n = 0
    for t in reversed(times):
        if t <= since:
            break
        n += 1
    return n


def prune(times: deque[int], before: int) -> None:
    while times and times[0] <= before:
        times.popleft()
