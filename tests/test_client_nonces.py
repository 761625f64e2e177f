"""The nonce scheme never repeats, across allocators, processes and restarts."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from client.nonces import NonceAllocator


def test_nonces_strictly_increase_within_one_allocator(tmp_path: Path) -> None:
    alloc = NonceAllocator(tmp_path / "k.nonce", block=8)
    got = alloc.take(100)
    assert got == sorted(set(got)) and len(got) == 100


def test_restart_never_reuses_a_nonce(tmp_path: Path) -> None:
    path = tmp_path / "k.nonce"
    first = NonceAllocator(path, block=16).take(5)  # "crash": 11 reserved nonces unused
    second = NonceAllocator(path, block=16).take(5)
    assert min(second) >= max(first) + 1
    assert int(path.read_text()) > max(second)


def test_ceiling_beyond_clock_is_respected(tmp_path: Path) -> None:
    path = tmp_path / "k.nonce"
    path.write_text(str(2**62))
    assert NonceAllocator(path).next() >= 2**62


def test_lost_nonce_file_still_gives_fresh_nonces(tmp_path: Path) -> None:
    path = tmp_path / "k.nonce"
    first = NonceAllocator(path, block=4, clock_ms=lambda: 1_000).take(4)
    path.unlink()
    # The clock floor (ms << 16) lies above anything handed out in an earlier millisecond.
    again = NonceAllocator(path, block=4, clock_ms=lambda: 1_001).take(4)
    assert min(again) > max(first)


def _worker(path: str, out: "multiprocessing.Queue[list[int]]") -> None:
    out.put(NonceAllocator(path, block=3).take(200))


def test_processes_sharing_a_nonce_file_never_collide(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue: "multiprocessing.Queue[list[int]]" = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "k.nonce"), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    flat = [n for r in results for n in r]
    assert len(flat) == len(set(flat)) == 600
