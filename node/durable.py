"""Group-committed durable writes of acknowledged envelopes (ledger/pending.py).

Admission hands each envelope it is about to acknowledge to
:meth:`PendingWriter.add`, which numbers it and queues it; the request then
awaits :meth:`PendingWriter.wait` for the highest number it answers for.  One
writer task takes everything queued at that moment and writes it in ONE
synced LevelDB batch on its own thread, so the event loop keeps serving
while the disk syncs, and every request that arrived during a write shares
the next one: under load the number of syncs grows with the write latency,
not with the number of requests or records.

Numbers are handed out and the watermark advanced in order, so "durable
through n" means every entry numbered n or less is on disk - or no longer
needs to be (committed in a block, or dropped by the mempool for good).
Dropping an entry (:meth:`forget`) that is still queued takes it out of the
queue; one being written is deleted after that write lands; one written
is either deleted by the caller's own batch (a block commit) or by the
next write (:meth:`discard`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from ledger.pending import PendingRecords

log = logging.getLogger("node.durable")


class PendingWriter:
    def __init__(self, records: PendingRecords, *, threaded: bool = True) -> None:
        """``threaded``: write on a thread of its own (LevelDB releases the
        GIL while it syncs); False writes on the event loop (a MemoryStore,
        which is not safe to write from another thread, in tests)."""
        self.records = records
        self._next = records.next_seq()
        self._durable_through = self._next - 1
        self._queue: dict[int, bytes] = {}  # numbered, not yet being written
        self._writing: set[int] = set()     # in the write under way
        self._dropped_while_writing: list[int] = []
        self._deletes: list[int] = []       # written, dropped: go with the next write
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, "pending-write") if threaded else None
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[None] | None = None
        self._failed: BaseException | None = None
        self.writes = 0    # synced writes made (a figure for tests and metrics)
        self.written = 0   # envelopes written

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pending-write")

    async def stop(self) -> None:
        """Stop writing; waits for a write under way (the store closes next)."""
        inflight = self._inflight  # taken first: the writer forgets it when cancelled
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if inflight is not None:
            await asyncio.gather(inflight, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for _, fut in self._waiters:
            fut.cancel()
        self._waiters.clear()

    # -- admission -----------------------------------------------------------

    def add(self, envelope: bytes) -> int:
        """Queue ``envelope`` for the next synced write; its number."""
        seq = self._next
        self._next += 1
        self._queue[seq] = envelope
        self._wake.set()
        return seq

    def restored(self, seq: int) -> None:
        """``seq`` was read back from the store (already durable)."""
        self._next = max(self._next, seq + 1)
        self._durable_through = max(self._durable_through, seq)

    def durable(self, seq: int) -> bool:
        return seq <= self._durable_through

    async def wait(self, seq: int) -> None:
        """Return once entry ``seq`` (and every lower one) is durable or dropped."""
        if seq <= self._durable_through:
            return
        if self._failed is not None:
            raise self._failed
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        self._wake.set()
        await fut

    # -- drops -----------------------------------------------------------------

    def forget(self, seqs: Iterable[int]) -> list[int]:
        """Entries no longer pending; returns those already written, for the
        caller to delete in its own batch (a block commit)."""
        written: list[int] = []
        for seq in seqs:
            if self._queue.pop(seq, None) is not None:
                continue
            if seq in self._writing:
                self._dropped_while_writing.append(seq)
            else:
                written.append(seq)
        return written

    def discard(self, seqs: Iterable[int]) -> None:
        """Entries dropped for good: deleted with the next write (not synced
        for their sake: a restart re-checks whatever is still stored)."""
        written = self.forget(seqs)
        if written:
            self._deletes += written
            self._wake.set()

    # -- the writer ------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue or self._deletes or self._waiters:
                await self._write_once()

    async def _write_once(self) -> None:
        through = self._next - 1
        puts = sorted(self._queue.items())
        deletes, self._deletes = self._deletes, []
        self._queue = {}
        if puts or deletes:
            self._writing = {seq for seq, _ in puts}
            try:
                if self._executor is None:
                    self.records.write(puts, deletes, sync=bool(puts))
                else:
                    self._inflight = asyncio.get_running_loop().run_in_executor(
                        self._executor, self._write, puts, deletes)
                    # Shielded: cancelling the writer (stop) must not leave a
                    # write running unobserved while the store closes.
                    await asyncio.shield(self._inflight)
            except BaseException as exc:
                if not isinstance(exc, asyncio.CancelledError):
                    log.critical("writing %d acknowledged envelopes failed: %s", len(puts), exc)
                    self._failed = exc
                    for _, fut in self._waiters:
                        if not fut.done():
                            fut.set_exception(exc)
                    self._waiters.clear()
                raise
            finally:
                self._inflight = None
                self._writing = set()
            if puts:
                self.writes += 1
                self.written += len(puts)
            self._deletes += self._dropped_while_writing
            self._dropped_while_writing = []
        self._durable_through = max(self._durable_through, through)
        waiting, self._waiters = self._waiters, []
        for seq, fut in waiting:
            if seq <= self._durable_through:
                if not fut.done():
                    fut.set_result(None)
            else:
                self._waiters.append((seq, fut))

    def _write(self, puts: list[tuple[int, bytes]], deletes: list[int]) -> None:
        self.records.write(puts, deletes, sync=bool(puts))
