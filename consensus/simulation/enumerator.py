"""Systematic Twins enumeration: every schedule up to a bound, smallest first.

A Twins "round" here is one *step* of a Tendermint round of height 1 - its
proposals, its prevotes or its precommits (see ``twins.py``): Tendermint
broadcasts every vote, so honest validators in one block move in lock-step
and a partition per whole round cannot make one of them decide while
another, who voted the same, does not - the pattern behind every lock bug.
Per step it can: the enumerator's first fork of the lock-ignoring replica
is ``n=4;twins=0;rounds=0,1,2,0'|3/0,1,2,3,0'/0,0'|1,2,3`` (validator 3 does
not get round 0's proposal; the twin's halves precommit differently).

What is enumerated, for ``n`` validators of which ``f`` are twinned:

* ``S`` = 0 .. ``max_steps`` partitioned steps (rounds 0, 1, ... of height 1,
  three steps each; after them the network is whole);
* for each step, either the whole network or a *cut*: a set partition of
  the ``n + f`` endpoints into 2 .. ``max_blocks`` blocks (unordered blocks,
  generated once each as restricted-growth strings), and for precommit
  steps also every two-block partition as a one-way cut in both
  directions; the last step is always a cut (else the scenario is a
  shorter one);
* which ``f`` validators are twinned - with the protocol's fixed leader
  rotation this is the leader choice: it decides which rounds a twin leads;
* the fault model: honest-code twins, and (``faults`` containing "forge")
  for scenarios with at most one cut, the same with the first twin's second
  instance forging its proposals, the defect cycling through
  ``mutations.FORGE_KINDS`` (a wrong verdict root among them);
* epoch plans (``faults`` containing "epochs", at most ``EPOCH_CUTS`` cuts):
  a validator-set change committed at height 1 - n = 4: add, rotate;
  n = 7: remove (a twinned validator, whose second instance keeps signing
  as if still in the set), rotate - with the steps of height 3, the first
  of the new set, partitioned (see ``twins.py``); every twin set (no
  relabelling of validators: leaders and the changed one differ per set).

Order: fewer cuts first; within a number of cuts, the plain plans (fewer
steps, then the positions of the cuts, then the cuts themselves - fewest
blocks, smallest split-off part first - then twin placement, then fault
model), then the epoch plans (by change, then the same).  ``bound`` caps
how many scenarios run, so the first violation found is a smallest one, and
its :meth:`TwinsPlan.spec` replays it (``scripts/simulate --scenario SPEC -v``).

Symmetry reduction.  Validators that lead none of the covered rounds (nor
the first healed one) play interchangeable parts, and so do the two
instances of a twin.  Each block gets a key such relabellings cannot change
(its direction, the leaders in it, how many other honest validators and
other twin instances); a scenario runs only if it is the normal form of its
class: twinned non-leaders are the lowest non-leaders, and the per-step
keys of non-leaders and of twin instances ascend.  Any scenario is brought
to normal form by one such relabelling, and a normal form is its own
normal form, so every class keeps a scenario: the enumeration is complete
up to the bound, modulo relabellings that only reorder simultaneous events.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Callable, Iterator

from ledger.genesis import max_faulty

from .mutations import FORGE_KINDS
from .node import MachineFactory
from .shared import run_plans
from .twins import STEPS, Partition, TwinsPlan, run_plan
from .world import RunResult

DEFAULT_STEPS = 6  # rounds 0 and 1
DEFAULT_BLOCKS = 2
DEFAULT_CUTS = 2  # n=4: at most two cut steps in rounds 0-1 (docs/design.md gives the count)
FAULTS = ("twins", "forge", "epochs")
EPOCH_CUTS = 1  # epoch plans: at most this many cut steps (they have one more endpoint to cut)
PRECOMMIT = 2

Shape = tuple[Partition, bool]  # a step's blocks; True: block 0 is heard by block 1, not back


@lru_cache(maxsize=None)
def set_partitions(size: int, max_blocks: int) -> tuple[Partition, ...]:
    """All partitions of ``range(size)`` into at most ``max_blocks`` blocks,
    fewest blocks first, then smallest split-off part first."""
    out: list[tuple[tuple[int, ...], Partition]] = []

    def grow(prefix: list[int], used: int) -> None:
        if len(prefix) == size:
            blocks = tuple(frozenset(e for e in range(size) if prefix[e] == b) for b in range(used))
            sizes = tuple(sorted(len(b) for b in blocks))
            out.append(((used,) + sizes + tuple(prefix), blocks))
            return
        for b in range(min(used + 1, max_blocks)):
            grow(prefix + [b], max(used, b + 1))

    if size:
        grow([0], 1)
    return tuple(p for _, p in sorted(out, key=lambda x: x[0]))


@lru_cache(maxsize=None)
def cuts(size: int, max_blocks: int, step_kind: int) -> tuple[Shape, ...]:
    """The non-whole shapes of one step: symmetric partitions, then (for
    precommits) every two-block partition one-way in both directions."""
    plain = set_partitions(size, max_blocks)[1:]
    shapes: list[Shape] = [(p, False) for p in plain]
    if step_kind == PRECOMMIT:
        for p in plain:
            if len(p) == 2:
                shapes += [((p[0], p[1]), True), ((p[1], p[0]), True)]
    return tuple(shapes)


def leaders(n: int, steps: int) -> frozenset[int]:
    """Validators leading a covered round of height 1, or the first healed one."""
    rounds = -(-steps // STEPS)
    return frozenset((1 + r) % n for r in range(rounds + 1))


def twin_sets(n: int, f: int, lead: frozenset[int]) -> list[tuple[int, ...]]:
    """Twinned sets up to relabelling non-leaders: twinned non-leaders are the
    lowest non-leaders."""
    free = sorted(set(range(n)) - lead)
    out = []
    for k in range(f + 1):
        if k <= len(free):
            for chosen in itertools.combinations(sorted(lead), f - k):
                out.append(tuple(sorted(chosen + tuple(free[:k]))))
    return sorted(set(out))


BlockKey = tuple[int, tuple[int, ...], int, int]


@lru_cache(maxsize=1 << 16)
def _block_key(n: int, twins: tuple[int, ...], lead: frozenset[int], block: frozenset[int],
               role: int) -> BlockKey:
    """What relabelling non-leaders or twin instances cannot change about a block."""
    vals = [e if e < n else twins[e - n] if e < n + len(twins) else n for e in block]  # validator_of
    led = tuple(sorted(v for v in vals if v in lead))
    free_twins = sum(1 for v in vals if v not in lead and v in twins)
    free_honest = sum(1 for v in vals if v not in lead and v not in twins)
    return role, led, free_honest, free_twins


def is_normal(plan: TwinsPlan, lead: frozenset[int]) -> bool:
    """The scenario is the normal form of its symmetry class (see module doc)."""
    n, twins = plan.n, plan.twins
    key = partial(_block_key, n, twins, lead)

    column: dict[int, tuple[BlockKey, ...]] = {e: () for e in range(plan.endpoints)}
    for r, partition in enumerate(plan.rounds):
        for i, block in enumerate(partition):
            k = key(block, i if plan.is_oneway(r) else 2)
            for e in block:
                column[e] = column[e] + (k,)
    for v in twins:
        if column[v] > column[n + twins.index(v)]:
            return False
    free_honest = [v for v in range(n) if v not in lead and v not in twins]
    if any(column[a] > column[b] for a, b in zip(free_honest, free_honest[1:])):
        return False
    free_twins = [v for v in twins if v not in lead]
    pairs = [(column[v], column[n + twins.index(v)]) for v in free_twins]
    return all(a <= b for a, b in zip(pairs, pairs[1:]))


def _schedules(endpoints: int, max_steps: int, max_blocks: int, c: int
               ) -> Iterator[tuple[Shape, ...]]:
    """Step shapes with ``c`` cuts in enumeration order: steps, cut positions, cuts."""
    whole: Shape = ((frozenset(range(endpoints)),), False)
    if c == 0:
        yield ()
        return
    for steps in range(c, max_steps + 1):
        for earlier in itertools.combinations(range(steps - 1), c - 1):
            positions = earlier + (steps - 1,)
            menus = [cuts(endpoints, max_blocks, s % STEPS) for s in positions]
            for chosen in itertools.product(*menus):
                shapes = [whole] * steps
                for s, shape in zip(positions, chosen):
                    shapes[s] = shape
                yield tuple(shapes)


def _split(shapes: tuple[Shape, ...]) -> tuple[tuple[Partition, ...], tuple[bool, ...]]:
    rounds = tuple(p for p, _ in shapes)
    return rounds, tuple(d for _, d in shapes) if any(d for _, d in shapes) else ()


def epoch_changes(n: int) -> tuple[str, ...]:
    """The validator-set changes epoch plans enumerate (a removal needs n > 4)."""
    return ("add", "rotate") if n == 4 else ("remove", "rotate")


def _epoch_plans(n: int, max_steps: int, max_blocks: int, c: int) -> Iterator[TwinsPlan]:
    """Epoch plans with ``c`` cuts at height 3: every twin set (leaders and
    the changed validator differ per set, so only twin instances are
    interchangeable here)."""
    f = max_faulty(n)
    everyone = frozenset(range(n))
    for change in epoch_changes(n):
        sets = [t for t in twin_sets(n, f, everyone) if change != "remove" or t]
        endpoints = TwinsPlan(n, sets[0], change=change).endpoints
        for shapes in _schedules(endpoints, max_steps, max_blocks, c):
            rounds, oneway = _split(shapes)
            for twins in sets:
                plan = TwinsPlan(n, twins, rounds, oneway=oneway, change=change)
                if is_normal(plan, everyone):
                    yield plan


def enumerate_plans(n: int, max_steps: int = DEFAULT_STEPS, max_blocks: int = DEFAULT_BLOCKS,
                    faults: tuple[str, ...] = FAULTS, max_cuts: int = DEFAULT_CUTS) -> Iterator[TwinsPlan]:
    """Every scenario up to the bound, in the order described in the module doc."""
    f = max_faulty(n)
    forged = 0
    for c in range(max_cuts + 1):
        plain = "twins" in faults or "forge" in faults and c <= 1
        for shapes in _schedules(n + f, max_steps, max_blocks, c) if plain else ():
            lead = leaders(n, len(shapes))
            rounds, oneway = _split(shapes)
            for twins in twin_sets(n, f, lead):
                plan = TwinsPlan(n, twins, rounds, oneway=oneway)
                if not is_normal(plan, lead):
                    continue
                if "twins" in faults:
                    yield plan
                if "forge" in faults and c <= 1:
                    yield replace(plan, forge=FORGE_KINDS[forged % len(FORGE_KINDS)])
                    forged += 1
        if "epochs" in faults and c <= EPOCH_CUTS:
            yield from _epoch_plans(n, max_steps, max_blocks, c)


PlanSource = Callable[[], Iterator[TwinsPlan]]  # a fresh iterator of the scenarios, in order


def default_plans(n: int, max_steps: int = DEFAULT_STEPS, max_blocks: int = DEFAULT_BLOCKS,
                  faults: tuple[str, ...] = FAULTS, max_cuts: int = DEFAULT_CUTS) -> PlanSource:
    return partial(enumerate_plans, n, max_steps, max_blocks, faults, max_cuts)


@dataclass
class EnumerationResult:
    scenarios: int = 0
    seconds: float = 0.0
    violation: tuple[int, TwinsPlan, RunResult] | None = None  # the first: (index, plan, result)
    violating: int = 0  # scenarios with a violation (more than one only with keep_going)
    interrupted: bool = False  # stopped by Ctrl-C / SIGINT before the bound
    by_cuts: dict[int, int] = field(default_factory=dict)
    runs: int = 0  # runs simulated for them: scenarios the network never tells apart share one (shared.py)

    @property
    def rate(self) -> float:
        return self.scenarios / self.seconds if self.seconds else 0.0


FIRST_CHUNK = 16  # the shared-prefix run takes scenarios in chunks this size, doubling up to
MAX_CHUNK = 4096  # this: early violations are found early, long runs share the most


def chunks(plans: Iterator[TwinsPlan], first: int = FIRST_CHUNK, largest: int = MAX_CHUNK
           ) -> Iterator[list[TwinsPlan]]:
    size = first
    while True:
        chunk = list(itertools.islice(plans, size))
        if not chunk:
            return
        yield chunk
        size = min(2 * size, largest)


def run_enumeration(n: int, bound: int | None, broken: MachineFactory | None = None,
                    max_steps: int = DEFAULT_STEPS, max_blocks: int = DEFAULT_BLOCKS,
                    faults: tuple[str, ...] = FAULTS, max_cuts: int = DEFAULT_CUTS, start: int = 0,
                    progress: Callable[[EnumerationResult], None] | None = None,
                    every: int = 1000, keep_going: bool = False,
                    plans_from: PlanSource | None = None, one_by_one: bool = False) -> EnumerationResult:
    """Run scenarios ``start .. start + bound - 1`` (all from ``start`` if
    ``bound`` is None); stop at the first violation unless ``keep_going``.
    ``plans_from`` replaces the scenario list (default: :func:`enumerate_plans`).
    Scenarios run in chunks with shared prefixes (``shared.py``: the same
    results, each shared prefix simulated once); ``one_by_one`` runs each
    from scratch with :func:`~.twins.run_plan` instead."""
    result = EnumerationResult()
    began = time.perf_counter()
    stop = None if bound is None else start + bound
    source = plans_from or default_plans(n, max_steps, max_blocks, faults, max_cuts)
    plans = itertools.islice(source(), start, stop)
    batches: Iterator[list[TwinsPlan]] = ([p] for p in plans) if one_by_one else chunks(plans)
    index = start
    try:
        for batch in batches:
            outcomes, runs = ([run_plan(batch[0], broken)], 1) if one_by_one else \
                run_plans(batch, broken, passing_traces=False)
            result.runs += runs
            for plan, outcome in zip(batch, outcomes):
                if _count(result, index, plan, outcome, keep_going):
                    raise _Stop
                index += 1
                if progress is not None and result.scenarios % every == 0:
                    result.seconds = time.perf_counter() - began
                    progress(result)
    except _Stop:
        pass
    except KeyboardInterrupt:  # a long campaign stopped by hand still reports what it ran
        result.interrupted = True
    result.seconds = time.perf_counter() - began
    return result


class _Stop(Exception):
    pass


def _count(result: EnumerationResult, index: int, plan: TwinsPlan, outcome: RunResult,
           keep_going: bool) -> bool:
    """Add one scenario's outcome; True: stop here (its violation ends the run)."""
    result.scenarios += 1
    c = sum(1 for p in plan.rounds if len(p) > 1)
    result.by_cuts[c] = result.by_cuts.get(c, 0) + 1
    if outcome.ok:
        return False
    result.violating += 1
    if result.violation is None:
        result.violation = (index, plan, outcome)
    return not keep_going
