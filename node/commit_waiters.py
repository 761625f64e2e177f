"""Requests waiting for a pending record's commit
(``GET /v1/records/{id}?wait_ms=N``, PROTOCOL §6).

A client that wants to know when its record commits would otherwise poll,
and learn of the commit up to one polling period late.  Here a request for a
record pending on this node waits for the block that commits it: the
mempool (:meth:`node.mempool.Mempool.committed`) wakes exactly the waiters of
the records a block carries, so a commit costs one dictionary lookup per
record while anyone waits, and nothing otherwise.

At most ``limit`` requests wait at once; past that a request is answered at
once with what the node holds (pending), as without ``wait_ms``.

A stopping node releases its waiters (:meth:`release`): each request is
answered with what the node holds then, before the HTTP server closes.  A
request still waiting when the server closes is first given the server's
shutdown timeout, then cut, so each one would hold the stop up
(docs/performance.md, "A node's stop under client load").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

MAX_WAITERS = 4096
MAX_WAIT_MS = 10_000  # the longest wait_ms a request may ask for


class CommitWaiters:
    def __init__(self, limit: int = MAX_WAITERS) -> None:
        self.limit = limit
        self._waiting: dict[bytes, list[asyncio.Future[None]]] = {}
        self._count = 0
        self._released = False

    def __len__(self) -> int:
        return self._count

    async def wait(self, record_id: bytes, timeout_s: float) -> bool:
        """Wait until ``record_id`` commits (True) or ``timeout_s`` passes,
        or return False at once when ``limit`` requests wait already, or
        the waiters were released (the node is stopping); False also when
        released while waiting."""
        if self._count >= self.limit or timeout_s <= 0 or self._released:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(record_id, []).append(fut)
        self._count += 1
        try:
            await asyncio.wait_for(fut, timeout_s)
            return not self._released
        except asyncio.TimeoutError:
            return False
        finally:
            self._count -= 1
            futs = self._waiting.get(record_id)
            if futs is not None:
                futs.remove(fut)
                if not futs:
                    del self._waiting[record_id]

    def committed(self, record_ids: Iterable[bytes]) -> None:
        """Wake the requests waiting for any of these records."""
        if not self._waiting:
            return
        waiting = self._waiting
        for rid in record_ids:
            for fut in waiting.get(rid, ()):
                if not fut.done():
                    fut.set_result(None)

    def release(self) -> None:
        """End every wait now and answer later ones at once (the node is
        stopping): each request then says what the node holds."""
        self._released = True
        for futs in self._waiting.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)
