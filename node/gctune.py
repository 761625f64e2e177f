"""Garbage-collector settings and accounting for a node process.

A node allocates a few objects per record (envelope, record, index keys) and
keeps long-lived ones (the mempool, caches, the consensus state); almost none
of them form reference cycles, so reference counting frees them and the
cyclic collector only spends time re-scanning survivors.  With CPython's
default thresholds (700, 10, 10) a node under load runs thousands of
collections a second and, every so often, a full one over everything the
process holds: a pause that lands in some records' commit latency.

So, once the node has started, everything alive is moved out of the
collector's sight (:func:`gc.freeze`), the young generation is much larger
and full collections become rare (one per 200 million net allocations at
the default young threshold, instead of one per 70 thousand): full
collections were long pauses on the throughput benchmark
(docs/performance.md).  The young threshold counts *net* allocations, and
reference counting frees most of what a record allocates soon after, so
the wider it is, the fewer of a record's objects are still alive (and
scanned) when a collection comes; each collection pauses the node longer
(``limits.gc_young_threshold``; what 20,000 saves against 2,000, and its
pauses: docs/performance.md, 2026-12-07).  The time collections still take is counted per generation
in ``ledger_gc_seconds_total`` so that the effect stays visible.

While a node catches up (:func:`catching_up`, around node/driver.py's
catch-up) the young generation is wider still: applying fetched blocks
allocates and frees a few objects per record at a rate the event loop never
sees otherwise.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter

# The young generation's threshold (net allocations) by default; node.toml's
# limits.gc_young_threshold sets a node's (node/settings_chain.py).
GEN0_THRESHOLD = 20_000
GEN1_THRESHOLD = 10
GEN2_THRESHOLD = 1_000
# The young generation while catching up: a fetched block's objects (a few
# per record, freed by reference counting as the block is applied) made a
# collection every 2,000 allocations, about a tenth of a joining node's
# CPU per record (docs/performance.md, 2026-12-07).
CATCH_UP_GEN0_THRESHOLD = 50_000


class GcAccounting:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Counter("ledger_gc_seconds", "Time in the cyclic garbage collector",
                               ["generation"], registry=registry)
        self.collections = Counter("ledger_gc_collections", "Cyclic collections run",
                                   ["generation"], registry=registry)
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            gen = str(info.get("generation", "?"))
            self.seconds.labels(generation=gen).inc(time.perf_counter() - self._started)
            self.collections.labels(generation=gen).inc()

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


def tune_after_start(young: int = GEN0_THRESHOLD) -> None:
    """Freeze what startup built and widen the young generation to ``young``
    net allocations (see module doc)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, GEN1_THRESHOLD, GEN2_THRESHOLD)


@contextmanager
def catching_up() -> Iterator[None]:
    """The young generation at :data:`CATCH_UP_GEN0_THRESHOLD` inside, never
    below what it was; the thresholds as they were after (also on error),
    unless something else set them meanwhile."""
    before = gc.get_threshold()
    widened = (max(before[0], CATCH_UP_GEN0_THRESHOLD), *before[1:])
    gc.set_threshold(*widened)
    try:
        yield
    finally:
        if gc.get_threshold() == widened:
            gc.set_threshold(*before)
