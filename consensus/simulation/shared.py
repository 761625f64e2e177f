"""Many Twins plans in one run: a run serves every plan that cannot tell it apart.

Plans that differ only in their partitions (same ``n``, twins, forger,
epoch change and ``gst``: a *group*) run identically until the first
delivery that one plan's partition lets through and another's drops: the
simulated world depends on the partitions only through those yes/no
answers (see ``RoundPartitionNetwork._deliver``).  :func:`run_group` runs a
world for a set of plans of a group and carries the set still consistent
with every answer so far (a bitset over the group).  At a delivery they
disagree on, the run goes on with the plans that deliver the frame; the
others part:

* by default they are run again from scratch, as a set of their own (every
  answer before the parting point is the same for them, so their run
  repeats this one up to there and then drops the frame);
* with ``fork_after`` = K, past K deliveries into the run, the process
  forks instead (``os.fork``: a copy-on-write snapshot of the whole
  simulated world, depth first, one process running at a time) and the
  child goes on with the parting plans, so the shared prefix runs once.
  Children report through an inherited temporary file (length-prefixed
  pickles, written while their parent waits) and leave with ``os._exit``.
  On this machine a fork cost about what it saved (docs/performance.md),
  hence the default.

Every run ends with a non-empty set of plans that all give exactly that
run, so its :class:`RunResult` is each of theirs (``summary`` names the
plan): what :func:`~.twins.run_plan` gives each plan alone
(``test_shared_prefixes_give_every_scenario_its_own_result``).  Plans whose
partitions differ only where no frame is judged (a step after height 1 was
decided, an endpoint that hears nothing in that step) share one run.
"""

from __future__ import annotations

import gc
import os
import pickle
import struct
import tempfile
import traceback
from dataclasses import replace
from typing import Any, Sequence

from .clock import Scheduler
from .network import NetConfig, Network
from .node import MachineFactory
from .scenario import Scenario
from .twins import TwinsPlan, TwinsWorld, RoundPartitionNetwork
from .trace import Trace
from .world import RunResult

GroupKey = tuple[int, tuple[int, ...], str | None, str | None, int]
_LEN = struct.Struct("<Q")
# Fork only past this many deliveries into a run; None: never, every set of
# plans that parts runs again from scratch.  Off by default: on this machine
# a fork cost about what it saved (docs/performance.md has the figures).
FORK_AFTER: int | None = None


def group_key(plan: TwinsPlan) -> GroupKey:
    """What a run depends on besides the partitions' answers."""
    return plan.n, plan.twins, plan.forge, plan.change, plan.gst


class DeliveryTable:
    """For a group of plans: which of them deliver a frame from ``src`` to
    ``dst`` judged by step ``k``, as a bitset over the group (bit ``i``: plan ``i``)."""

    def __init__(self, plans: Sequence[TwinsPlan]) -> None:
        self.steps = max(len(p.rounds) for p in plans)
        size = (len(plans) + 7) // 8
        rows: list[dict[tuple[Any, bool], bytearray]] = [{} for _ in range(self.steps)]
        absent = [bytearray(size) for _ in range(self.steps)]  # no partition at that step: everything passes
        for i, plan in enumerate(plans):
            byte, bit = i >> 3, 1 << (i & 7)
            for k in range(self.steps):
                if k < len(plan.rounds):
                    row = rows[k].setdefault((plan.rounds[k], plan.is_oneway(k)), bytearray(size))
                    row[byte] |= bit
                else:
                    absent[k][byte] |= bit
        self.everyone = (1 << len(plans)) - 1
        self._absent = [int.from_bytes(a, "little") for a in absent]
        self._shapes = [[({e: b for b, block in enumerate(p) for e in block}, oneway,
                          int.from_bytes(bits, "little")) for (p, oneway), bits in row.items()]
                        for row in rows]
        self._memo: dict[tuple[int, int, int], int] = {}

    def delivering(self, k: int, src: int, dst: int) -> int:
        key = (k, src, dst)
        bits = self._memo.get(key)
        if bits is None:
            bits = self._absent[k]
            for block, oneway, members in self._shapes[k]:
                if block[src] == block[dst] or oneway and block[src] == 0:
                    bits |= members
            self._memo[key] = bits
        return bits


def _write(fd: int, item: object) -> None:
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int) -> list[Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    out, at = [], 0
    while at < len(data):
        (length,) = _LEN.unpack_from(data, at)
        at += _LEN.size
        out.append(pickle.loads(data[at:at + length]))
        at += length
    return out


class ForkingNetwork(RoundPartitionNetwork):
    """The partition network of a whole group: a delivery the remaining plans
    disagree on forks the process (see the module docstring)."""

    def __init__(self, sched: Scheduler, config: NetConfig, plan: TwinsPlan, table: DeliveryTable,
                 plans: int, fork_after: int | None) -> None:
        super().__init__(sched, config, plan)
        self.table = table
        self.block_of = [{} for _ in range(table.steps)]  # only its length is read (``_slot``)
        self.plans = plans  # the plans consistent with this run so far
        self.fork_after = fork_after
        self.deliveries = 0
        self.deferred: list[int] = []  # plans that parted too early to fork for: they run from scratch
        self.child = False  # a forked process: reports and exits

    def _deliver(self, src: int, dst: int, data: bytes) -> None:
        node = self.nodes[dst]
        if not node.up:
            return
        self.deliveries += 1
        if self.sched.now < self.config.gst:
            r = self._slot(node, data)
            if r < self.table.steps:
                plans = self.plans
                yes = plans & self.table.delivering(r, src, dst)
                if yes != plans:
                    if not yes:
                        return
                    if self.fork_after is None or self.deliveries < self.fork_after:
                        self.deferred.append(plans ^ yes)
                    elif not self._fork(plans ^ yes):
                        return
                    self.plans = yes
        node.deliver(src, data)

    def _fork(self, dropping: int) -> bool:
        """Fork: the child goes on with ``dropping`` (returns False there),
        the parent waits for it and returns True."""
        pid = os.fork()
        if pid == 0:
            self.child = True
            self.plans = dropping
            self.deferred = []  # the parent's, which it runs
            return False
        try:
            _, status = os.waitpid(pid, 0)
        except KeyboardInterrupt:
            os.waitpid(pid, 0)
            raise
        if status != 0:
            raise RuntimeError(f"forked scenario run {pid} failed (status {status})")
        return True


class GroupWorld(TwinsWorld):
    def __init__(self, plan: TwinsPlan, table: DeliveryTable, plans: int, fork_after: int | None,
                 honest_factory: MachineFactory | None = None, passing_traces: bool = True) -> None:
        self.table = table
        self.start_plans = plans
        self.fork_after = fork_after
        self.passing_traces = passing_traces
        super().__init__(plan, honest_factory)

    def _make_network(self, scenario: Scenario) -> Network:
        return ForkingNetwork(self.sched, scenario.net, self.plan, self.table, self.start_plans,
                              self.fork_after)

    def _result(self) -> RunResult:
        if not (self.checker.violations or self.passing_traces):
            self.trace = Trace(0)  # nobody reads a passing run's trace here: skip formatting it
        return super()._result()


def run_plans(plans: Sequence[TwinsPlan], broken: MachineFactory | None = None,
              passing_traces: bool = True, fork_after: int | None = FORK_AFTER
              ) -> tuple[list[RunResult], int]:
    """:func:`~.twins.run_plan` of each plan, in order, and how many runs
    were simulated for them (plans of one group share runs).
    ``passing_traces=False``: a result without a violation has an empty ``trace``."""
    groups: dict[GroupKey, list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault(group_key(plan), []).append(i)
    results: list[RunResult | None] = [None] * len(plans)
    simulated = 0
    for members in groups.values():
        outcomes, runs = run_group([plans[i] for i in members], broken, passing_traces, fork_after)
        simulated += runs
        for i, outcome in zip(members, outcomes):
            results[i] = outcome
    return [r for r in results if r is not None], simulated


def run_group(plans: Sequence[TwinsPlan], broken: MachineFactory | None = None,
              passing_traces: bool = True, fork_after: int | None = FORK_AFTER
              ) -> tuple[list[RunResult], int]:
    """The result of each plan (one group: equal :func:`group_key`), as
    :func:`~.twins.run_plan` gives it, and the number of runs simulated
    (see :func:`run_plans`)."""
    assert plans and len({group_key(p) for p in plans}) == 1
    table = DeliveryTable(plans)
    collecting = gc.isenabled()
    gc.disable()  # a collection writes to every tracked object: pages each fork would then copy
    try:
        leaves: list[tuple[int, RunResult]] = []
        pending = [table.everyone]
        with tempfile.TemporaryFile() as out:
            while pending:
                runs = _run_forking(plans[0], table, pending.pop(), out.fileno(), broken,
                                    passing_traces, fork_after)
                for members, outcome in runs:
                    if outcome is None:
                        pending.append(members)
                    else:
                        leaves.append((members, outcome))
    finally:
        if collecting:
            gc.enable()
    results: list[RunResult | None] = [None] * len(plans)
    for members, outcome in leaves:
        for i, bit in enumerate(reversed(f"{members:b}")):
            if bit == "1":
                results[i] = replace(outcome, summary=f"twins scenario {plans[i].spec()}")
    missing = [plans[i].spec() for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"no run for {len(missing)} plans, e.g. {missing[0]}")
    return [r for r in results if r is not None], len(leaves)


def _run_forking(plan: TwinsPlan, table: DeliveryTable, plans: int, fd: int,
                 broken: MachineFactory | None, passing_traces: bool, fork_after: int | None
                 ) -> list[tuple[int, RunResult | None]]:
    """One world from scratch for ``plans`` (a bitset of the group), forked
    where they part: (plans, their result) per run, (plans, None) for plans
    that parted before ``fork_after`` deliveries (to run from scratch)."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    world = GroupWorld(plan, table, plans, fork_after, broken, passing_traces)
    net = world.net
    assert isinstance(net, ForkingNetwork)
    try:
        result = world.run()
        if net.child:
            _write(fd, [(net.plans, result)] + [(d, None) for d in net.deferred])
    except BaseException as exc:
        if net.child:
            try:
                _write(fd, ("error", traceback.format_exc()))
            finally:
                os._exit(1)
        errors = [r[1] for r in _read_all(fd) if r[0] == "error"]
        if errors and not isinstance(exc, KeyboardInterrupt):
            raise RuntimeError("a forked scenario run failed:\n" + errors[0]) from exc
        raise
    if net.child:
        os._exit(0)
    runs: list[tuple[int, RunResult | None]] = [(net.plans, result)] + [(d, None) for d in net.deferred]
    for record in _read_all(fd):
        runs += record
    return runs
