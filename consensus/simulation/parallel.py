"""The Twins enumeration over several processes, with the serial result.

``run_enumeration_parallel`` gives exactly what ``run_enumeration`` gives for
the same arguments (scenario count, counts by cut steps, the first violation
in enumeration order, how many violated): only the wall time differs.

Worker ``w`` of ``W`` runs the scenarios whose chunk (``CHUNK`` consecutive
indices from ``start``) is ``w`` modulo ``W`` - disjoint index ranges,
interleaved so the workers stay level - a chunk at a time with shared
prefixes (``shared.py``), or one by one with ``one_by_one``.  Each walks the (cheap) plan
generator itself, so nothing but results crosses processes.  Unless
``keep_going``, a worker that finds a violation lowers a shared "first
violation" index; every worker stops once its next index is past it, and
having run every index below it first, the merged result is cut at the
smallest violating index: the serial run's first violation.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .enumerator import (
    DEFAULT_BLOCKS,
    DEFAULT_CUTS,
    DEFAULT_STEPS,
    FAULTS,
    EnumerationResult,
    PlanSource,
    default_plans,
)
from .node import MachineFactory
from .shared import run_plans
from .twins import TwinsPlan, run_plan
from .world import RunResult

CHUNK = 1024  # scenarios sharing prefixes run together (shared.py); CHUNK_ONE_BY_ONE otherwise
CHUNK_ONE_BY_ONE = 50
NO_VIOLATION = (1 << 62)


@dataclass
class _WorkerResult:
    cuts: dict[int, int] = field(default_factory=dict)  # index -> number of cut steps
    violations: list[int] = field(default_factory=list)
    first: tuple[int, TwinsPlan, RunResult] | None = None
    runs: int = 0


def _worker(w: int, workers: int, plans: PlanSource, start: int, stop: int | None,
            broken: MachineFactory | None, keep_going: bool, first_bad: Any, halt: Any,
            done: Any, out: Any, one_by_one: bool = False) -> None:
    # The parent decides when to stop (Ctrl-C and `timeout` may signal the
    # whole process group); a worker whose parent is gone stops too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    result = _WorkerResult()
    size = CHUNK_ONE_BY_ONE if one_by_one else CHUNK
    plans_in = itertools.islice(plans(), start, stop)
    for number, chunk in enumerate(iter(lambda: list(itertools.islice(plans_in, size)), [])):
        first = start + number * size
        if halt.value or (not keep_going and first > first_bad.value) or os.getppid() != parent:
            break
        if number % workers != w:
            continue
        outcomes, runs = ([run_plan(p, broken) for p in chunk], len(chunk)) if one_by_one else \
            run_plans(chunk, broken, passing_traces=False)
        result.runs += runs
        for index, plan, outcome in zip(itertools.count(first), chunk, outcomes):
            if not keep_going and index > first_bad.value:
                break
            result.cuts[index] = sum(1 for p in plan.rounds if len(p) > 1)
            if not outcome.ok:
                result.violations.append(index)
                if result.first is None:
                    result.first = (index, plan, outcome)
                if not keep_going:
                    with first_bad.get_lock():
                        first_bad.value = min(first_bad.value, index)
        with done.get_lock():
            done.value += len(chunk)
    out.put((w, result))


def run_enumeration_parallel(
        n: int, bound: int | None, broken: MachineFactory | None = None, workers: int = 2,
        max_steps: int = DEFAULT_STEPS, max_blocks: int = DEFAULT_BLOCKS,
        faults: tuple[str, ...] = FAULTS, max_cuts: int = DEFAULT_CUTS, start: int = 0,
        progress: Callable[[EnumerationResult], None] | None = None, every: int = 1000,
        keep_going: bool = False, plans_from: PlanSource | None = None,
        one_by_one: bool = False) -> EnumerationResult:
    """:func:`~.enumerator.run_enumeration` on ``workers`` processes (fork)."""
    source = plans_from or default_plans(n, max_steps, max_blocks, faults, max_cuts)
    ctx = multiprocessing.get_context("fork")
    first_bad = ctx.Value("q", NO_VIOLATION)
    halt = ctx.Value("b", 0)
    done = ctx.Value("q", 0)
    out = ctx.Queue()
    stop = None if bound is None else start + bound
    began = time.perf_counter()
    procs = [ctx.Process(target=_worker, args=(w, workers, source, start, stop, broken, keep_going,
                                               first_bad, halt, done, out, one_by_one), daemon=True)
             for w in range(workers)]
    for p in procs:
        p.start()
    parts: dict[int, _WorkerResult] = {}
    interrupted = False
    reported = 0
    while len(parts) < workers:
        try:
            w, part = out.get(timeout=0.5)
            parts[w] = part
        except queue.Empty:
            if progress is not None and done.value // every > reported:
                reported = done.value // every
                shown = EnumerationResult(scenarios=done.value, seconds=time.perf_counter() - began)
                progress(shown)
            if all(not p.is_alive() for p in procs) and out.empty():
                break  # a worker died without a result
        except KeyboardInterrupt:
            interrupted = True
            halt.value = 1
    for p in procs:
        while p.is_alive():
            try:
                p.join()
            except KeyboardInterrupt:
                interrupted = True
                halt.value = 1
    result = _merge(parts.values(), start, keep_going)
    result.interrupted = interrupted or len(parts) < workers
    result.seconds = time.perf_counter() - began
    return result


def _merge(parts: Any, start: int, keep_going: bool) -> EnumerationResult:
    cuts: dict[int, int] = {}
    bad: list[int] = []
    firsts = []
    runs = 0
    for part in parts:
        runs += part.runs
        cuts.update(part.cuts)
        bad += part.violations
        if part.first is not None:
            firsts.append(part.first)
    result = EnumerationResult(runs=runs)
    limit = min(bad) if bad and not keep_going else None
    # Only the unbroken run of indices from ``start`` counts (an interrupted
    # run may have holes past it), as in a serial run stopped there.
    index = start
    while index in cuts and (limit is None or index <= limit):
        c = cuts[index]
        result.scenarios += 1
        result.by_cuts[c] = result.by_cuts.get(c, 0) + 1
        index += 1
    result.violating = sum(1 for i in bad if i < index)
    if firsts:
        first = min(firsts, key=lambda f: f[0])
        if first[0] < index:
            result.violation = first
    return result
