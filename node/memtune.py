"""glibc malloc settings for a node process: how freed memory goes back.

Two glibc defaults keep memory a node has freed:

* **Arenas.**  glibc gives threads their own malloc arenas, up to eight per
  core, and an arena keeps what its threads freed for reuse.  A node has
  several threads that allocate: the event loop, the signature-verify
  executor (each verify allocates its message buffer), block sync's fetch
  thread and LevelDB's background thread, so each ends up holding its own
  high-water mark.  ``limits.malloc_arenas`` (2) caps them.
* **The mmap threshold.**  Blocks above it are mapped on their own and
  unmapped when freed; below it they come from an arena's heap, which only
  shrinks from its top.  glibc raises the threshold to the size of any
  mapped block that is freed (up to 32 MiB), so after the first multi-MiB
  write batch, request body or sync response, the next ones are carved from
  the heap and leave it fragmented.  ``limits.malloc_mmap_threshold_bytes``
  (256 KiB) fixes it, which also stops glibc from moving it.

Together they lowered the nodes' anonymous memory on the benchmark without
a measurable cost in CPU per record; docs/performance.md has the figures,
and docs/operators.md when to set the threshold back to glibc's.

Both must be set before the node's threads start: a thread takes its arena
at its first allocation.  Elsewhere than glibc (musl, macOS) there are no
such knobs and the calls report that they did nothing.

Even so, a heap only shrinks from its top: the free chunks below a block
still in use stay in the process, however many there are.  After a backlog
(a partition, a catch-up, a burst of requests) they are most of what the
node has freed; ``malloc_trim(0)`` hands their
whole pages back.  The node calls it (:func:`trim_every`) every
``limits.malloc_trim_interval_s`` (30 s), on a thread
(docs/performance.md, 2026-12-06/07).
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

# mallopt parameters (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def _mallopt(param: int, value: int) -> bool:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(param, value) == 1)


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (0: leave glibc's default).

    True if the C library took the setting, False if ``arenas`` is 0 or the
    C library has no ``mallopt`` that knows M_ARENA_MAX.
    """
    return arenas > 0 and _mallopt(M_ARENA_MAX, arenas)


def fix_mmap_threshold(threshold: int) -> bool:
    """Map every block of ``threshold`` bytes or more on its own, and keep
    the threshold there (0: leave glibc's moving default).  True if taken."""
    return threshold > 0 and _mallopt(M_MMAP_THRESHOLD, threshold)


def trimmer() -> Callable[[], int] | None:
    """``malloc_trim(0)`` of the C library the process runs on (it returns 1
    if it released memory), or None where there is none (not glibc)."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: int(fn(0))


async def trim_every(interval_s: float, trim: Callable[[], int]) -> None:
    """Call ``trim`` every ``interval_s`` seconds, until cancelled, on a
    thread: ctypes releases the GIL, so the event loop goes on meanwhile
    (the heap walk took up to 0.1 s on a loaded machine)."""
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(trim)
