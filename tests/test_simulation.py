"""The deterministic simulator: replayability, behaviours, and the CI campaign.

The campaign is a fixed list of seeds across n=4 (f=1) and n=7 (f=2) with
every Byzantine behaviour, Twins, crashes, partitions and lossy links; each
seed must satisfy agreement, validity, integrity, certificate and liveness.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.simulation.byzantine import ByzantineNode
from consensus.simulation.runner import CampaignStats, run_scenario
from consensus.simulation.scenario import make_scenario
from consensus.simulation.world import World

ROOT = Path(__file__).resolve().parent.parent


def _assert_clean(seeds: range | list[int], n: int, byzantine: int, behaviour: str) -> CampaignStats:
    stats = CampaignStats()
    for seed in seeds:
        result = run_scenario(seed, n, byzantine, behaviour)
        stats.add(result)
        if not result.ok:
            trace = "\n".join(result.trace[-60:])
            pytest.fail(f"seed {seed} ({result.summary}):\n" + "\n".join(result.violations) + "\n" + trace)
    return stats


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------


def test_a_seed_replays_identically() -> None:
    a = run_scenario(11, 4, 1, "mixed", keep=100_000)
    b = run_scenario(11, 4, 1, "mixed", keep=100_000)
    assert a.trace == b.trace and a.latencies == b.latencies and a.summary == b.summary
    assert len(a.trace) > 50


def test_replay_does_not_depend_on_the_hash_seed() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, COLUMNS="200")
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "simulate.py"), "--seed", "23", "--validators", "7", "-v"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("COMMIT") > 10


def test_different_seeds_differ() -> None:
    assert run_scenario(1).trace != run_scenario(2).trace


# --------------------------------------------------------------------------
# The faults really happen
# --------------------------------------------------------------------------


def test_scenarios_cover_crashes_partitions_twins_and_every_behaviour() -> None:
    scenarios = [make_scenario(s, 4, 1, "mixed") for s in range(200)]
    assert sum(1 for s in scenarios if any(c.mid_effects for c in s.crashes)) > 20
    assert sum(1 for s in scenarios if s.net.partitions) > 50
    assert sum(1 for s in scenarios if s.twin_of is not None) > 10
    seen = set().union(*(k for s in scenarios for k in s.byzantine.values()))
    assert seen == {"equivocate", "double-vote", "withhold", "invalid", "amnesia", "twins"}


def _world(seed: int, n: int, byzantine: int, behaviour: str) -> World:
    world = World(make_scenario(seed, n, byzantine, behaviour), keep=100_000)
    world.run()
    return world


def test_double_voters_are_caught_as_evidence_by_honest_validators() -> None:
    caught = 0
    for seed in range(6):
        world = _world(seed, 4, 1, "double-vote")
        accused = {ev.validator for node in world.honest_nodes for ev in node.machine.evidence}
        assert accused <= set(world.scenario.byzantine)
        caught += len(accused)
    assert caught


def test_invalid_proposals_are_rejected_and_never_committed() -> None:
    rejected = 0
    for seed in range(8):
        world = _world(seed, 4, 1, "invalid")
        assert not world.checker.violations
        rejected += sum(1 for line in world.trace.lines() if "rejected block" in line)
    assert rejected > 0


def test_twins_split_the_network_and_do_not_break_agreement() -> None:
    world = _world(3, 4, 1, "twins")
    assert world.scenario.twin_of is not None and len(world.nodes) == 5
    assert not world.checker.violations
    assert not any(isinstance(n, ByzantineNode) for n in world.nodes)


def test_restarted_validators_catch_up_and_commit_everything() -> None:
    seeds = [s for s in range(60) if make_scenario(s, 4, 0).crashes][:8]
    assert seeds
    for seed in seeds:
        world = _world(seed, 4, 0, "mixed")
        assert not world.checker.violations, world.checker.violations
        heights = {n.chain.height for n in world.honest_nodes}
        assert len(heights) == 1


# --------------------------------------------------------------------------
# CI campaign: a few hundred fixed seeds
# --------------------------------------------------------------------------

CAMPAIGN = [
    (4, 1, "mixed", range(0, 50)),
    (4, 1, "mixed", range(50, 100)),
    (4, 1, "mixed", range(100, 150)),
    (4, 1, "mixed", range(150, 200)),
    (4, 1, "equivocate", range(1000, 1025)),
    (4, 1, "double-vote", range(1100, 1125)),
    (4, 1, "withhold", range(1200, 1225)),
    (4, 1, "invalid", range(1300, 1325)),
    (4, 1, "amnesia", range(1400, 1425)),
    (4, 1, "twins", range(1500, 1530)),
    (4, 0, "mixed", range(1600, 1625)),
    (7, 2, "mixed", range(2000, 2025)),
    (7, 2, "mixed", range(2025, 2050)),
    (7, 2, "mixed", range(2050, 2075)),
    (7, 2, "mixed", range(2075, 2100)),
    (7, 2, "twins", range(2100, 2125)),
    (7, 2, "invalid", range(2200, 2215)),
    (7, 2, "equivocate", range(2300, 2315)),
]


@pytest.mark.parametrize("n,byzantine,behaviour,seeds", CAMPAIGN,
                         ids=[f"n{n}-f{b}-{beh}-{s.start}" for n, b, beh, s in CAMPAIGN])
def test_campaign(n: int, byzantine: int, behaviour: str, seeds: range) -> None:
    stats = _assert_clean(seeds, n, byzantine, behaviour)
    assert stats.records > 0 and stats.heights > 0


@pytest.mark.slow
@pytest.mark.parametrize("n,byzantine", [(4, 1), (7, 2)])
def test_long_campaign(n: int, byzantine: int) -> None:
    _assert_clean(range(100_000, 102_000), n, byzantine, "mixed")


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------


def _simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "simulate.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, COLUMNS="200"))


def test_campaign_cli_reports_figures_and_json(tmp_path: Path) -> None:
    import json

    out = tmp_path / "c.json"
    done = _simulate("--runs", "6", "--validators", "4", "--byzantine", "1", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "violations=0" in done.stdout and "p50=" in done.stdout and "runs/s" in done.stdout
    summary = json.loads(out.read_text())
    assert summary["runs"] == 6 and summary["violations"] == 0 and summary["latency_p50_delays"] > 0


def test_campaign_cli_stops_at_the_first_violation_with_seed_and_trace() -> None:
    done = _simulate("--runs", "20", "--validators", "4", "--behaviour", "amnesia", "--broken", "small-quorum")
    assert done.returncode == 1
    assert "violation in seed 0" in done.stdout and "VIOLATION certificate" in done.stdout
    assert "last events:" in done.stdout and "COMMIT h1" in done.stdout  # the trace up to the fork
    assert "runs=1 " in done.stdout
