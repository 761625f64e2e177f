"""The client's outbox: every signed envelope it has not yet seen committed.

A node's 202 ``accepted`` is not the end of a record's journey: the node
can be killed before the record reaches a block.  So the SDK keeps the exact
signed bytes of each envelope from signing until it sees the record
committed, and resubmits those bytes (never a re-signed copy, which would be
a second record with a new nonce) when a node refuses, fails or forgets it.

Memory is bounded: at most ``max_pending`` envelopes (8 KiB each at most,
PROTOCOL §2) are kept; signing more raises :class:`OutboxFull` until some
are seen committed.

Optionally the outbox is mirrored in a spool file so that a restarted
process can finish what the previous one left: an append-only journal of
MessagePack entries ``[1, id, envelope]`` (kept) and ``[0, id]`` (released).
Kept entries are fsynced before the envelopes are sent; releases are not
(a lost release only costs one idempotent resubmission).  On open, and when
releases outnumber live entries, the journal is compacted by writing a new
file, fsyncing it and renaming it over the old one, so the file on disk is
always either the old or the new journal.  A torn last entry (a crash in the
middle of an append) is dropped.  One process at a time may use a spool
(``flock`` on ``<spool>.lock``).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import msgpack

from .errors import InvalidArgument, OutboxFull, SpoolError

DEFAULT_MAX_PENDING = 100_000
_KEEP, _RELEASE = 1, 0
_COMPACT_MIN = 1024


@dataclass(frozen=True)
class PendingEnvelope:
    """An envelope this client signed or sent and has not seen committed."""

    id: str  # record id, hex
    envelope: bytes  # the exact signed bytes
    accepted: bool  # a node answered accepted/duplicate for it (in this process)


class Outbox:
    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING, spool: str | Path | None = None) -> None:
        if max_pending < 1:
            raise InvalidArgument("max_pending must be at least 1")
        self.max_pending = max_pending
        self._items: dict[str, bytes] = {}  # insertion order = submission order
        self._accepted: set[str] = set()
        self._spool = Path(spool) if spool is not None else None
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._released_since_compaction = 0
        if self._spool is not None:
            self._open_spool(self._spool)

    # -- queries -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._items

    def get(self, record_id: str) -> bytes | None:
        return self._items.get(record_id)

    def is_accepted(self, record_id: str) -> bool:
        return record_id in self._accepted

    def pending(self) -> list[PendingEnvelope]:
        return [PendingEnvelope(i, e, i in self._accepted) for i, e in self._items.items()]

    # -- changes -----------------------------------------------------------

    def room_for(self, count: int) -> None:
        """Raise :class:`OutboxFull` unless ``count`` more envelopes fit."""
        if len(self._items) + count > self.max_pending:
            raise OutboxFull(
                f"{len(self._items)} envelopes not yet seen committed (max_pending={self.max_pending}); "
                "wait for commits (wait_committed, confirm_committed) before submitting more"
            )

    def keep(self, envelopes: Iterable[tuple[str, bytes]]) -> None:
        """Keep envelopes (durably first, if spooled); already kept ones are skipped."""
        new = [(i, e) for i, e in envelopes if i not in self._items]
        if not new:
            return
        self.room_for(len(new))
        if self._fd is not None:
            data = b"".join(msgpack.packb([_KEEP, bytes.fromhex(i), e], use_bin_type=True) for i, e in new)
            _write_all(self._fd, data)
            os.fsync(self._fd)
        self._items.update(new)

    def mark_accepted(self, record_ids: Iterable[str]) -> None:
        self._accepted.update(i for i in record_ids if i in self._items)

    def release(self, record_ids: Iterable[str]) -> None:
        """Forget envelopes (seen committed, or refused for good)."""
        gone = [i for i in record_ids if self._items.pop(i, None) is not None]
        if not gone:
            return
        self._accepted.difference_update(gone)
        if self._fd is not None:
            data = b"".join(msgpack.packb([_RELEASE, bytes.fromhex(i)], use_bin_type=True) for i in gone)
            _write_all(self._fd, data)
            self._released_since_compaction += len(gone)
            if self._released_since_compaction > max(_COMPACT_MIN, len(self._items)):
                self._compact()

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)  # closing the lock file's descriptor drops the flock
        self._fd = self._lock_fd = None

    # -- spool -------------------------------------------------------------

    def _open_spool(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise SpoolError(f"spool {path} is in use by another process") from None
        self._lock_fd = lock_fd
        try:
            if path.exists():
                self._items.update(_read_journal(path.read_bytes()))
            self._compact()
        except BaseException:
            self.close()
            raise

    def _compact(self) -> None:
        """Rewrite the journal with only the live entries, atomically."""
        assert self._spool is not None
        tmp = self._spool.with_name(self._spool.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, b"".join(
                msgpack.packb([_KEEP, bytes.fromhex(i), e], use_bin_type=True) for i, e in self._items.items()))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._spool)
        dir_fd = os.open(self._spool.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self._spool, os.O_WRONLY | os.O_APPEND)
        self._released_since_compaction = 0


def _read_journal(data: bytes) -> dict[str, bytes]:
    items: dict[str, bytes] = {}
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        for entry in unpacker:
            if not isinstance(entry, list) or len(entry) < 2 or not isinstance(entry[1], bytes):
                raise SpoolError("spool entry of an unknown form")
            rid = entry[1].hex()
            if entry[0] == _KEEP and len(entry) == 3 and isinstance(entry[2], bytes):
                items[rid] = entry[2]
            elif entry[0] == _RELEASE:
                items.pop(rid, None)
            else:
                raise SpoolError("spool entry of an unknown form")
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        pass  # a torn or garbled tail: everything before it stands
    return items


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
