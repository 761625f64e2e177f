"""The Twins enumerator (consensus/simulation/enumerator.py, twins.py).

Every deliberately broken replica must be caught by a short enumeration
(the first violation in enumeration order is fixed, so each case is
deterministic), the correct replica must pass the first few hundred
scenarios, and the symmetry reduction must keep a scenario of every class.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.simulation.broken import BROKEN, EPOCH_BROKEN
from consensus.simulation.enumerator import (
    STEPS,
    cuts,
    enumerate_plans,
    is_normal,
    leaders,
    run_enumeration,
    set_partitions,
)
from consensus.simulation.twins import TwinsPlan, run_plan

ROOT = Path(__file__).resolve().parent.parent

# broken replica -> (violation kinds, fault models enumerated, bound)
CAUGHT = {
    "ignore-lock": (("agreement",), ("twins",), 1000),
    "double-count": (("certificate", "agreement"), ("twins",), 100),
    "small-quorum": (("certificate", "agreement"), ("twins",), 10),
    "no-validation": (("validity", "integrity"), ("twins", "forge"), 100),
    "no-timeout": (("liveness",), ("twins",), 100),
    "send-before-persist": (("persist-before-send",), ("twins",), 10),
    "forgetful": (("persist-before-send",), ("twins",), 10),
    # a forger's block with a verdict root no honest engine derives, certified
    "verdict-blind": (("verdicts",), ("twins", "forge"), 400),
    # verdicts from local state: no two validators derive the same root, nothing commits
    "verdict-drift": (("liveness",), ("twins",), 10),
    # validator-set changes at height 1, in force (and partitioned) at height 3
    "genesis-set": (("certificate",), ("epochs",), 10),
    "stale-set": (("certificate",), ("epochs",), 10),
}
ALL_BROKEN = {**BROKEN, **EPOCH_BROKEN}


def test_every_broken_replica_has_a_case() -> None:
    assert set(CAUGHT) == set(ALL_BROKEN)


@pytest.mark.parametrize("broken", sorted(CAUGHT))
def test_enumerator_catches_broken_replica(broken: str) -> None:
    kinds, faults, bound = CAUGHT[broken]
    result = run_enumeration(4, bound, ALL_BROKEN[broken], faults=faults)
    assert result.violation is not None, f"{broken} survived {result.scenarios} scenarios"
    index, plan, outcome = result.violation
    assert outcome.violations[0].split(":")[0] in kinds, outcome.violations
    # the replay identifier reproduces it, and the correct replica passes that scenario
    replayed = run_plan(TwinsPlan.parse(plan.spec()), ALL_BROKEN[broken])
    assert replayed.violations == outcome.violations
    assert run_plan(plan).ok


def test_correct_replica_passes_the_first_scenarios() -> None:
    result = run_enumeration(4, 300)
    assert result.violation is None and result.scenarios == 300
    assert set(result.by_cuts) == {0, 1}


def test_correct_replica_passes_epoch_plans() -> None:
    """The first epoch plans of each change (n = 4: add, rotate; n = 7:
    remove, rotate), whole and with one cut step at height 3."""
    for n, stride in ((4, 97), (7, 4001)):
        plans = list(itertools.islice(enumerate_plans(n, faults=("epochs",)), 0, None, stride))
        assert {p.change for p in plans} == ({"add", "rotate"} if n == 4 else {"remove", "rotate"})
        assert {sum(1 for r in p.rounds if len(r) > 1) for p in plans} == {0, 1}
        for plan in plans:
            assert TwinsPlan.parse(plan.spec()) == plan
            result = run_plan(plan)
            assert result.ok and result.set_sizes[-1] == n + (plan.change == "add") - (plan.change == "remove"), \
                (plan.spec(), result.violations)


def test_epoch_plans_partition_the_first_height_of_the_new_set() -> None:
    plan = TwinsPlan.parse("n=4;twins=3;rounds=0,1,2,3'|3,4;change=add")
    assert plan.endpoints == 6 and plan.height == 3 and plan.label(5) == "4"
    good = run_plan(plan)
    assert good.ok and good.set_sizes == [4, 5] and good.heights >= 4
    bad = run_plan(plan, EPOCH_BROKEN["stale-set"])
    assert bad.violations[0].startswith("certificate: ")
    with pytest.raises(ValueError):
        TwinsPlan.parse("n=4;twins=0;rounds=;change=remove")


def test_correct_replica_passes_the_first_n7_scenarios() -> None:
    result = run_enumeration(7, 40)
    assert result.violation is None and result.scenarios == 40


def test_lock_counterexample_needs_per_step_partitions() -> None:
    """The enumerator's first fork of the lock-ignoring replica: validator 3
    misses round 0's proposal, the twin's halves precommit differently."""
    plan = TwinsPlan.parse("n=4;twins=0;rounds=0,1,2,0'|3/0,1,2,3,0'/0,0'|1,2,3")
    bad = run_plan(plan, BROKEN["ignore-lock"])
    assert [v.split(":")[0] for v in bad.violations] == ["agreement"]
    good = run_plan(plan)
    assert good.ok and good.heights >= 1


def test_spec_round_trips_and_rejects_garbage() -> None:
    for plan in itertools.islice(enumerate_plans(7), 0, 3000, 97):
        assert TwinsPlan.parse(plan.spec()) == plan
    plan = TwinsPlan.parse("n=4;twins=3;rounds=0,1,3>2,3'")
    assert plan.is_oneway(0) and TwinsPlan.parse(plan.spec()) == plan
    for bad in ("n=4;twins=3;rounds=0,1|2", "n=4;twins=3;rounds=0,1|2,3,3'|0", "n=4;twins=9;rounds=",
                "n=4;twins=1,2;rounds=", "n=4;twins=3;rounds=;forge=nonsense", "n=4;twins=3;rounds=0>1>2,3,3'"):
        with pytest.raises((ValueError, KeyError)):
            TwinsPlan.parse(bad)


def test_enumeration_order_and_counts() -> None:
    plans = list(itertools.islice(enumerate_plans(4), 2000))
    assert plans == list(itertools.islice(enumerate_plans(4), 2000))  # deterministic
    assert len(set(plans)) == len(plans)
    cut_counts = [sum(1 for p in plan.rounds if len(p) > 1) for plan in plans]
    assert cut_counts == sorted(cut_counts)  # fewer cuts first
    assert len(set_partitions(5, 2)) == 16 and len(set_partitions(9, 2)) == 256
    assert len(cuts(5, 2, 2)) == 15 * 3 and len(cuts(5, 2, 1)) == 15


def _relabel(plan: TwinsPlan, perm: dict[int, int], swap: frozenset[int]) -> TwinsPlan:
    """Apply a validator permutation (and twin-instance swaps) to a plan."""
    twins = tuple(sorted(perm[v] for v in plan.twins))
    target = TwinsPlan(plan.n, twins)

    def endpoint(e: int) -> int:
        v = plan.validator_of(e)
        second = (e >= plan.n) != (v in swap)
        w = perm[v]
        return target.n + twins.index(w) if second else w

    rounds = tuple(tuple(frozenset(endpoint(e) for e in b) for b in p) for p in plan.rounds)
    return TwinsPlan(plan.n, twins, rounds, plan.forge, plan.oneway)


def _canonical_rounds(plan: TwinsPlan) -> tuple[object, ...]:
    out = []
    for r, p in enumerate(plan.rounds):
        blocks = tuple(sorted(tuple(sorted(b)) for b in p)) if not plan.is_oneway(r) else \
            tuple(tuple(sorted(b)) for b in p)
        out.append((plan.is_oneway(r), blocks))
    return (plan.twins, tuple(out))


def test_symmetry_reduction_keeps_a_scenario_of_every_class() -> None:
    """Brute force over every scenario of n=4 with up to 3 steps and one cut:
    each relabelling class has a member in the enumeration, and the
    reduction does drop some scenarios."""
    n, steps = 4, 3
    kept = {_canonical_rounds(p) for p in enumerate_plans(n, steps, 2, ("twins",), 1)}
    endpoints = n + 1
    whole = (frozenset(range(endpoints)),)
    raw = 0
    for length in range(1, steps + 1):
        lead = leaders(n, length)
        free = sorted(set(range(n)) - lead)
        for shape in cuts(endpoints, 2, (length - 1) % STEPS):
            rounds = (whole,) * (length - 1) + (shape[0],)
            oneway = (False,) * (length - 1) + (True,) if shape[1] else ()
            for twin in range(n):
                raw += 1
                plan = TwinsPlan(n, (twin,), rounds, oneway=oneway)
                images = set()
                for order in itertools.permutations(free):
                    perm = {v: v for v in range(n)} | dict(zip(free, order))
                    for swap in (frozenset(), frozenset({twin})):
                        images.add(_canonical_rounds(_relabel(plan, perm, swap)))
                assert images & kept, f"class of {plan.spec()} has no enumerated member"
    assert len(kept) < raw


def test_normal_form_of_an_enumerated_plan_is_itself() -> None:
    for plan in itertools.islice(enumerate_plans(4), 0, 5000, 37):
        lead = frozenset(range(plan.n)) if plan.change else leaders(plan.n, len(plan.rounds))
        assert is_normal(plan, lead)


def _simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "simulate.py"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_enumerates_and_replays() -> None:
    done = _simulate("--enumerate", "--bound", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "30 scenarios in" in done.stdout and "no violation" in done.stdout

    done = _simulate("--enumerate", "--faults", "twins", "--broken", "small-quorum")
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if x.startswith("replay: "))
    assert "--scenario" in line and "--broken small-quorum" in line

    spec = "n=4;twins=0;rounds=0,1,2,0'|3/0,1,2,3,0'/0,0'|1,2,3"
    done = _simulate("--scenario", spec, "--broken", "ignore-lock", "-v")
    assert done.returncode == 1 and "VIOLATION agreement" in done.stdout and "PROPOSAL h1 r0" in done.stdout
    done = _simulate("--scenario", spec)
    assert done.returncode == 0, done.stdout


def test_workers_give_the_serial_result() -> None:
    """--workers splits the index range; the summary is the serial one, the
    first violation included (the worker that overshoots it is cut back)."""
    from consensus.simulation.parallel import run_enumeration_parallel

    serial = run_enumeration(4, 120, start=3)
    split = run_enumeration_parallel(4, 120, workers=2, start=3)
    assert (split.scenarios, split.by_cuts, split.violating) == (serial.scenarios, serial.by_cuts, 0)
    bad = run_enumeration(4, 200, BROKEN["double-count"], faults=("twins",))
    bad_split = run_enumeration_parallel(4, 200, BROKEN["double-count"], workers=3, faults=("twins",))
    assert bad.violation is not None and bad_split.violation is not None
    assert bad_split.violation[0] == bad.violation[0] and bad_split.scenarios == bad.scenarios
    assert bad_split.violation[2].violations == bad.violation[2].violations
    assert bad_split.by_cuts == bad.by_cuts and bad_split.violating == 1


def test_shared_prefixes_give_every_scenario_its_own_result() -> None:
    """Differential: the shared-prefix run (shared.py: each common prefix
    simulated once, a fork where plans part) gives every plan exactly the
    result it gets alone - violations, trace and all - across plain, forged
    and epoch plans, one and two twins, the correct and a broken replica."""
    from consensus.simulation.shared import run_plans

    sources = [
        (enumerate_plans(4), 1950, 120, None),  # one and two cut steps, forgers
        (enumerate_plans(4, faults=("epochs",)), 0, 40, None),
        (enumerate_plans(7, max_steps=3, max_cuts=1), 0, 30, None),
        (enumerate_plans(4, faults=("twins",)), 0, 80, BROKEN["double-count"]),
        (enumerate_plans(4, faults=("twins",)), 2400, 60, BROKEN["ignore-lock"]),
    ]
    violating = 0
    for (plans_in, start, count, broken), fork_after in zip(sources, (None, 0, 40, None, 150)):
        plans = list(itertools.islice(plans_in, start, start + count))
        shared, runs = run_plans(plans, broken, fork_after=fork_after)
        alone = [run_plan(p, broken) for p in plans]
        for plan, a, b in zip(plans, alone, shared):
            assert a == b, plan.spec()
        assert 0 < runs <= len(plans)
        violating += sum(1 for r in alone if not r.ok)
    assert violating > 0  # the comparison covered violations too


def test_scenarios_the_network_never_tells_apart_share_a_run() -> None:
    """One cut step after a whole round 0: height 1 is decided in round 0,
    no frame is judged by a later step's partition, and one run serves
    every such plan (each still gets its own result, naming it)."""
    from consensus.simulation.shared import run_group

    plans = [p for p in itertools.islice(enumerate_plans(4, faults=("twins",)), 137, 300)
             if p.twins == (2,)][:12]
    cut_steps = [[k for k, part in enumerate(p.rounds) if len(part) > 1] for p in plans]
    assert len(plans) == 12 and all(len(c) == 1 and c[0] >= 3 for c in cut_steps)
    results, runs = run_group(plans)
    assert runs == 1
    assert [r.summary for r in results] == [f"twins scenario {p.spec()}" for p in plans]
    assert all(r == run_plan(p) for p, r in zip(plans, results))


def test_shared_enumeration_gives_the_one_by_one_summary() -> None:
    for broken, bound in ((None, 150), (BROKEN["double-count"], 200)):
        shared = run_enumeration(4, bound, broken, faults=("twins",), keep_going=True, start=20)
        alone = run_enumeration(4, bound, broken, faults=("twins",), keep_going=True, start=20,
                                one_by_one=True)
        assert (shared.scenarios, shared.by_cuts, shared.violating) == \
            (alone.scenarios, alone.by_cuts, alone.violating)
        assert shared.runs < alone.runs == alone.scenarios
        if broken is None:
            assert shared.violation is None and alone.violation is None
        else:
            assert shared.violation is not None and alone.violation is not None
            assert shared.violation[:2] == alone.violation[:2]
            assert shared.violation[2] == alone.violation[2]  # trace included
