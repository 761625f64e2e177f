"""Virtual time: an event queue ordered by (time, sequence number).

The sequence number makes simultaneous events run in scheduling order, so a
run is a pure function of its seed.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable


class Scheduler:
    def __init__(self) -> None:
        self.now = 0
        self._seq = 0
        self._queue: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []

    def at(self, time: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(time, self.now), self._seq, fn, args))

    def after(self, delay: int, fn: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def run(self, until: int, stop: Callable[[], bool]) -> None:
        """Run events up to virtual time ``until`` or until ``stop()`` is true."""
        queue = self._queue
        while queue and queue[0][0] <= until:
            time, _, fn, args = heapq.heappop(queue)
            self.now = time
            fn(*args)
            if stop():
                return
        self.now = max(self.now, until)

    def __len__(self) -> int:
        return len(self._queue)
