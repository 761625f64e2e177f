"""Key-value storage: a narrow bytes-in / bytes-out interface (py-evm style).

Everything above this module (the Merkle log, the chain store) speaks only
``get``, atomic ``write`` of a :class:`WriteBatch`, ordered prefix
``iterate`` and ``close``.  Keeping the surface this small is what lets one
contract test suite cover both implementations and lets a crash test wrap a
store to fail at the one place that matters: the batch write.

* :class:`MemoryStore` - a dict plus a sorted key list; for tests and tools.
* :class:`LevelDBStore` - plyvel; batches are LevelDB write batches, which
  LevelDB applies atomically (all or nothing, also across a crash).
"""

from __future__ import annotations

import bisect
import functools
import os
import sys
import threading
from collections import deque
from itertools import groupby, starmap
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

from .errors import LedgerError, StorageWriteFailed

# LevelDB tuning.  The block cache bounds read memory (so RSS stays flat as
# the log grows).  16 MiB: LevelDB maps its table files, so the kernel's page
# cache answers the cache's misses, and a larger cache bought no measurable
# proof rate (docs/performance.md).  A larger write buffer means fewer, larger level-0
# files when appending many small tree nodes.
DEFAULT_LRU_CACHE_BYTES = 16 * 1024 * 1024
DEFAULT_WRITE_BUFFER_BYTES = 16 * 1024 * 1024
DEFAULT_BLOOM_BITS = 10
# Bytes of keys and values per table block: the unit LevelDB reads, checks,
# decompresses (snappy) and caches on a block-cache miss.  A node's reads
# are random point lookups (a proof reads a record's location, its envelope
# and a tile, each in a different place), so LevelDB's default of 4 KiB
# decompresses ~4 KiB to use ~300 bytes.  1 KiB blocks cost less CPU per
# proof for a somewhat larger store (more index entries, less for snappy to
# share) and more index in memory; docs/performance.md has the figures.
# Applies to tables written from then on; older ones keep theirs.
DEFAULT_BLOCK_BYTES = 1024
# Table files kept open.  A table past the cache is reopened on a read (its
# index and filter read and parsed again): at 10M records 1000 made that most
# of a proof's CPU (docs/performance.md has the figures, and the memory the
# open tables cost).  4096 keeps about 24M records' tables of ~2 MiB open;
# the node raises its open-files limit to fit (node/fdlimit.py).
DEFAULT_MAX_OPEN_FILES = 4096
LEVELDB_LEVELS = 7  # LevelDB's config::kNumLevels
# Nice value for LevelDB's flush-and-compaction thread once a node has caught
# up (see set_background_nice).  19, the lowest priority, as RocksDB's
# LowerThreadPoolCPUPriority: a flush is never urgent, the node's own work is.
DEFAULT_COMPACTION_NICE = 19
MAX_COMPACTION_NICE = 19


class StoreError(LedgerError):
    """The key-value store cannot be used."""

    code = "unavailable"
    step = "storage"


class StoreLocked(StoreError):
    """The database directory is locked by another process (or handle)."""


class StoreClosed(StoreError):
    """The store was used after close()."""


class WriteBatch:
    """An ordered list of puts and deletes applied atomically by ``write``.

    Later operations on the same key win, exactly as in LevelDB.
    """

    __slots__ = ("_ops", "_deletes")

    def __init__(self) -> None:
        # (key, value) for a put, (key, None) for a delete.
        self._ops: list[tuple[bytes, bytes | None]] = []
        self._deletes = False  # any delete among the ops (else: puts only)

    def put(self, key: bytes, value: bytes) -> None:
        self._ops.append((bytes(key), bytes(value)))

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Bulk put; the hot path of appending tree nodes (no per-item call)."""
        self._ops.extend(items)

    def delete(self, key: bytes) -> None:
        self._ops.append((bytes(key), None))
        self._deletes = True

    @property
    def ops(self) -> list[tuple[bytes, bytes | None]]:
        return self._ops

    @property
    def puts_only(self) -> bool:
        """No delete among the operations (a block's commit, nearly always)."""
        return not self._deletes

    def __len__(self) -> int:
        return len(self._ops)

    def __bool__(self) -> bool:
        return bool(self._ops)


def _is_delete(op: tuple[bytes, bytes | None]) -> bool:
    return op[1] is None


@runtime_checkable
class KeyValueStore(Protocol):
    """The whole storage interface: bytes in, bytes out."""

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""
        ...

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        """Apply every operation of ``batch`` atomically; ``sync`` makes it
        durable (fsync) before returning."""
        ...

    def iterate(
        self, prefix: bytes, reverse: bool = False, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` for keys starting with ``prefix`` in byte order
        (descending if ``reverse``).  ``start`` (optional, inclusive) is where
        the walk begins: the smallest key yielded going forward, the largest
        going in reverse - it lets callers paginate without a scan."""
        ...

    def close(self) -> None:
        ...


def prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``
    (None when there is none: empty prefix or all 0xff bytes)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class MemoryStore:
    """An in-memory store with LevelDB's semantics (ordered keys, atomic batches)."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []  # sorted; kept in step with _data
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("memory store is closed")

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        return self._data.get(key)

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        self._check_open()
        # Validate every operation before applying any, so a bad batch
        # leaves the store untouched (the atomicity LevelDB gives us).
        for key, value in batch.ops:
            if not isinstance(key, bytes) or not (value is None or isinstance(value, bytes)):
                raise TypeError("keys and values must be bytes")
        final: dict[bytes, bytes | None] = {}
        for key, value in batch.ops:
            final[key] = value
        self._apply(final)

    def _apply(self, final: dict[bytes, bytes | None]) -> None:
        new_keys = [k for k, v in final.items() if v is not None and k not in self._data]
        for key, value in final.items():
            if value is None:
                self._remove(key)
            else:
                self._data[key] = value
        self._insert_keys(new_keys)

    def _remove(self, key: bytes) -> None:
        if self._data.pop(key, None) is None:
            return
        i = bisect.bisect_left(self._keys, key)
        del self._keys[i]

    def _insert_keys(self, new_keys: list[bytes]) -> None:
        # Many new keys: one append + sort (timsort merges the two sorted
        # runs in linear time) beats one O(n) insort per key.
        if len(new_keys) > 16:
            new_keys.sort()
            self._keys.extend(new_keys)
            self._keys.sort()
        else:
            for key in new_keys:
                bisect.insort(self._keys, key)

    def iterate(
        self, prefix: bytes, reverse: bool = False, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        lo, hi = self._range(prefix, reverse, start)
        # Snapshot the range now, as a LevelDB iterator would: writes made
        # while the caller iterates are not seen.
        keys = self._keys[lo:hi]
        items = [(k, self._data[k]) for k in (reversed(keys) if reverse else keys)]
        return iter(items)

    def _range(self, prefix: bytes, reverse: bool, start: bytes | None) -> tuple[int, int]:
        lo = bisect.bisect_left(self._keys, prefix)
        end = prefix_successor(prefix)
        hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end)
        if start is not None:
            if reverse:
                hi = min(hi, bisect.bisect_right(self._keys, start))
            else:
                lo = max(lo, bisect.bisect_left(self._keys, start))
        return lo, max(lo, hi)

    def close(self) -> None:
        self._closed = True

    def __len__(self) -> int:
        return len(self._data)


def _bounds(prefix: bytes, reverse: bool, start: bytes) -> tuple[bytes, bytes | None, bool]:
    """``(lo, hi, hi_inclusive)`` of a prefix walk that begins at ``start``."""
    end = prefix_successor(prefix)
    if not reverse:
        return max(prefix, start), end, False
    if end is not None and start >= end:
        return prefix, end, False
    return prefix, start, True


def _exc_text(exc: Exception) -> str:
    # plyvel carries LevelDB's status message as bytes.
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _is_lock_error(text: str) -> bool:
    # LevelDB reports "lock <dir>/LOCK: already held by process" for a second
    # handle in this process and the flock(2) errno text for another process.
    low = text.lower()
    return "lock" in low and ("already held" in low or "temporarily unavailable" in low)


# LevelDB runs every memtable flush and compaction of a process on one
# background thread, started at the first flush or compaction it schedules.
# A flush takes CPU in one burst; on a busy host (four validators holding
# identical data on shared cores, as in the benchmark) it lands on every node
# at once and shows as a stall in submit-to-commit latency.  At nice 19 a
# flush runs on CPU the node leaves idle - but a node catching up writes much
# faster than one in consensus, and a starved flush then holds its writes up
# (docs/performance.md has both effects measured).  So the thread is
# found when the store opens and reniced by the node once it has caught up
# (``set_background_nice``): raising a nice value needs no privilege,
# lowering it again does, so this is done once, not toggled.
_background_lock = threading.Lock()
_background_found = False   # the first LevelDB store in a process looks for it
_background_tid: int | None = None
_EMPTY_RANGE = b"\x00"  # below every schema prefix: compacting it moves nothing


def _native_thread_ids() -> set[int]:
    """Threads of this process that Python did not start (Linux /proc)."""
    try:
        tids = {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()
    return tids - {t.native_id for t in threading.enumerate() if t.native_id is not None}


def _open_and_find_background_thread(open_db: Callable[[], Any]) -> Any:
    """Open the database and make LevelDB start its background thread now (a
    compaction of an empty key range flushes the memtable, empty or not, and
    returns in milliseconds), noting the one thread that appeared."""
    global _background_found, _background_tid
    with _background_lock:
        if _background_found or sys.platform != "linux":
            return open_db()
        before = _native_thread_ids()
        db = open_db()
        new = _native_thread_ids() - before
        if not new:
            # Opening scheduled nothing.  (Had it scheduled a compaction, the
            # thread would exist, and compact_range would wait for that whole
            # compaction: seconds on a large store after a crash.)
            try:
                db.compact_range(start=_EMPTY_RANGE, stop=_EMPTY_RANGE)
            except Exception:  # plyvel.Error: then the thread is not found, nothing worse
                pass
            new = _native_thread_ids() - before
        _background_found = True
        _background_tid = new.pop() if len(new) == 1 else None  # ambiguous: leave it alone
        return db


def set_background_nice(nice: int) -> bool:
    """Renice this process's LevelDB background thread to ``nice`` (Linux,
    upward only without privilege).  False if the thread is unknown (not
    found when the first store opened, or not Linux) or the kernel refused."""
    with _background_lock:
        tid = _background_tid
    if tid is None or not 0 <= nice <= MAX_COMPACTION_NICE:
        return False
    try:
        # PRIO_PROCESS with a thread id renices that one thread on Linux.
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return False  # gone, or lowering the value without privilege
    return True


class LevelDBStore:
    """A LevelDB database (plyvel) at ``path``."""

    def __init__(
        self,
        path: str,
        create: bool = True,
        *,
        lru_cache_size: int = DEFAULT_LRU_CACHE_BYTES,
        write_buffer_size: int = DEFAULT_WRITE_BUFFER_BYTES,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
        block_size: int = DEFAULT_BLOCK_BYTES,
        verify_checksums: bool = True,
    ) -> None:
        import plyvel  # imported here: MemoryStore users need not have it

        self.path = str(path)

        def open_db() -> Any:
            return plyvel.DB(
                self.path,
                create_if_missing=create,
                lru_cache_size=lru_cache_size,
                write_buffer_size=write_buffer_size,
                bloom_filter_bits=DEFAULT_BLOOM_BITS,
                max_open_files=max_open_files,
                block_size=block_size,
            )

        try:
            self._db = _open_and_find_background_thread(open_db)
        except plyvel.Error as exc:  # plyvel.IOError is a subclass
            text = _exc_text(exc)
            if _is_lock_error(text):
                raise StoreLocked(
                    f"LevelDB at {self.path} is in use by another process or handle: {text}"
                ) from None
            raise StoreError(f"cannot open LevelDB at {self.path}: {text}") from None
        self._closed = False
        self._plyvel_error: tuple[type[Exception], ...] = (plyvel.Error, OSError)
        # verify_checksums: LevelDB's default read trusts the table file, and a
        # flipped byte inside an incompressible value (a signature, a hash)
        # comes back as a wrong value with no error; checked reads turn it
        # into plyvel.CorruptionError (a 503 at the API, fail-stop in sync).
        # ``verify_checksums=False`` exists to measure what the check costs
        # (scripts/bench-store --verify-checksums off); nodes never pass it.
        self._verify_checksums = verify_checksums
        self.get = functools.partial(self._db.get, verify_checksums=verify_checksums)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"LevelDB at {self.path} is closed")

    # ``get`` is a partial of plyvel's own bound method while open (no Python
    # frame): proofs make ~20 reads each, and a wrapper frame per read would
    # cost more than LevelDB.
    get: Callable[[bytes], bytes | None]

    def _get_closed(self, key: bytes) -> bytes | None:
        raise StoreClosed(f"LevelDB at {self.path} is closed")

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        self._check_open()
        wb = self._db.write_batch(sync=sync)
        put, delete = wb.put, wb.delete
        if batch.puts_only:
            # A block's batch (several puts per record): plyvel's put called
            # from C, without a Python loop iteration per operation.
            deque(starmap(put, batch.ops), 0)
        else:
            # Runs of puts and of deletes, in order (a block's batch deletes
            # the pending entries it commits in one run).
            for deleting, run in groupby(batch.ops, _is_delete):
                if deleting:
                    deque(map(delete, map(itemgetter(0), run)), 0)
                else:
                    deque(starmap(put, run), 0)
        # One LevelDB write: applied atomically, and with sync=True durable
        # before we return (the log record is fsynced).  A failed write
        # (ENOSPC, EIO, or an earlier background error LevelDB keeps until
        # the database is reopened) is one typed error naming LevelDB's cause.
        try:
            wb.write()
        except self._plyvel_error as exc:
            raise StorageWriteFailed(
                f"LevelDB write at {self.path} failed: {_exc_text(exc)}") from exc

    def iterate(
        self, prefix: bytes, reverse: bool = False, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        if start is None:
            it = self._db.iterator(prefix=prefix, reverse=reverse,
                                   verify_checksums=self._verify_checksums)
        else:
            lo, hi, include_hi = _bounds(prefix, reverse, start)
            if hi is not None and (hi < lo or (hi == lo and not include_hi)):
                return iter(())
            it = self._db.iterator(start=lo, stop=hi, include_stop=include_hi, reverse=reverse,
                                   verify_checksums=self._verify_checksums)
        result: Iterator[tuple[bytes, bytes]] = it
        return result

    def copy_snapshot(self, dest: str, *, batch_bytes: int = 4 * 1024 * 1024,
                      progress: Callable[[int, int], None] | None = None
                      ) -> tuple[Callable[[bytes], bytes | None], int, int]:
        """Copy a consistent view of this store into a new LevelDB at ``dest``
        while writers go on: every key of one LevelDB snapshot (a write batch
        is in it whole or not at all), written in batches of about
        ``batch_bytes``.  ``dest`` must not hold a database.  Returns a
        reader of the snapshot's values (for its meta keys; released after
        the copy), the keys copied and their bytes; ``progress(keys, bytes)``
        is called after each batch."""
        import plyvel

        self._check_open()
        snapshot = self._db.snapshot()
        keys = size = 0
        try:
            out = plyvel.DB(dest, create_if_missing=True, error_if_exists=True,
                            write_buffer_size=DEFAULT_WRITE_BUFFER_BYTES,
                            block_size=DEFAULT_BLOCK_BYTES)
            try:
                batch, pending = out.write_batch(), 0
                for key, value in snapshot.iterator(verify_checksums=True):
                    batch.put(key, value)
                    keys += 1
                    pending += len(key) + len(value)
                    if pending >= batch_bytes:
                        batch.write()
                        size += pending
                        batch, pending = out.write_batch(), 0
                        if progress is not None:
                            progress(keys, size)
                batch.write()
                size += pending
                # The copy is only a backup once it is on disk: one synced
                # write flushes LevelDB's log.
                out.put(b"\x00backup-sync", b"", sync=True)
                out.delete(b"\x00backup-sync", sync=True)
            finally:
                out.close()
            meta = {k: v for k, v in snapshot.iterator(prefix=b"m", verify_checksums=True)}
        finally:
            snapshot.close()
        return meta.get, keys, size

    def table_files(self) -> int | None:
        """Table files in the store, over LevelDB's levels (None once closed).
        Each open one holds its index in memory (docs/operators.md)."""
        if self._closed:
            return None
        return sum(int(self._db.get_property(b"leveldb.num-files-at-level%d" % level) or 0)
                   for level in range(LEVELDB_LEVELS))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.get = self._get_closed
            self._db.close()
