"""Nonces that never repeat for one submitter key, also across restarts.

PROTOCOL §2 makes ``(submitter, nonce)`` unique forever, so a service that
restarts must never reuse a nonce.  The scheme (a hi/lo allocator):

* A nonce file next to the key file (``<key>.nonce``) holds a *reserved
  ceiling*: every nonce below it may already have been used.
* On start, and whenever the current block is exhausted, the allocator takes
  an exclusive ``flock`` on the file, sets ``start = max(ceiling, now_ms << 16)``,
  writes ``start + block`` durably (fsync) and only then hands out nonces from
  ``[start, start + block)``.  A crash wastes at most one block; it never
  reuses a nonce.
* The ``now_ms << 16`` floor keeps nonces unique even if the nonce file is
  lost, as long as the clock does not go back and fewer than 65,536 nonces
  are used per millisecond.  Several processes sharing one key and one nonce
  file coordinate through the lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Callable

NONCE_MAX = 2**64 - 1
_TIME_SHIFT = 16
DEFAULT_BLOCK = 4096


class NonceAllocator:
    def __init__(
        self, path: str | Path, *, block: int = DEFAULT_BLOCK, clock_ms: Callable[[], int] | None = None
    ) -> None:
        self.path = Path(path)
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.block = block
        self._next = 0
        self._limit = 0
        self._lock = threading.Lock()

    def _reserve(self) -> None:
        floor = self._clock_ms() << _TIME_SHIFT
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 64).decode("ascii", "replace").strip()
            ceiling = int(raw) if raw.isdigit() else 0
            start = max(ceiling, floor, self._limit)
            limit = start + self.block
            if limit > NONCE_MAX:
                raise OverflowError("nonce space exhausted for this key")
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{limit}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._next, self._limit = start, limit

    def next(self) -> int:
        """A nonce never handed out before for this key (durably reserved)."""
        with self._lock:
            if self._next >= self._limit:
                self._reserve()
            nonce = self._next
            self._next += 1
            return nonce

    def take(self, count: int) -> list[int]:
        return [self.next() for _ in range(count)]
