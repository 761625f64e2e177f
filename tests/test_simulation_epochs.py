"""Consensus across validator-set changes (PROTOCOL §9.9): the simulator's
epoch runs (adds, removals, rotations, n from 4 to 7 and back, with Byzantine
behaviours and crashes) under the same invariants, a replica that ignores
the changes is caught, and the machine counts a removed validator's votes
for nothing and never signs outside the set.

The long campaign: ``scripts/simulate --epochs --seeds 10000``.
"""

from __future__ import annotations

import pytest

from consensus import ConsensusMachine, Start, VoteReceived
from consensus.events import Broadcast, Persist, SendTo
from consensus.messages import sign_vote
from consensus.simulation.app import SimApp, SimChain
from consensus.simulation.runner import CampaignStats, epoch_shape, run_scenario
from consensus.simulation.scenario import make_scenario
from consensus.simulation.workload import MAX_CLOCK_SKEW_MS, sim_genesis, validator_keys
from ledger.blocks import Vote, VoteType
from ledger.encoding import H


def test_epoch_campaign_is_clean_and_covers_four_to_seven_validators() -> None:
    stats = CampaignStats()
    for seed in range(60):
        n, byzantine = epoch_shape(seed)
        result = run_scenario(seed, n, byzantine, "mixed", epochs=True)
        stats.add(result)
        assert result.ok, (seed, result.summary, result.violations, result.trace[-40:])
    assert stats.sizes == {4, 5, 6, 7}
    assert stats.epochs >= 60


def test_epoch_plans_hold_adds_removals_rotations_and_refusals() -> None:
    kinds: set[str] = set()
    for seed in range(40):
        n, byzantine = epoch_shape(seed)
        scenario = make_scenario(seed, n, byzantine, "mixed", epochs=True)
        assert scenario.changes is not None
        kinds.update(c.kind for c in scenario.changes)
    assert kinds == {"add", "remove", "rotate", "refused"}


def test_a_replica_that_ignores_validator_changes_is_caught() -> None:
    for seed in range(20):
        n, byzantine = epoch_shape(seed)
        broken = run_scenario(seed, n, byzantine, "mixed", broken="genesis-set", epochs=True)
        if broken.violations:
            assert run_scenario(seed, n, byzantine, "mixed", epochs=True).ok
            return
    pytest.fail("the genesis-set replica was never caught")


def _machine(keys: dict[bytes, object]) -> ConsensusMachine:
    """A machine whose chain started with 5 validators but whose set in
    force is the first 4 (validator 4 removed)."""
    five, four = sim_genesis(5), sim_genesis(4)
    chain = SimChain(five)
    app = SimApp(five, chain, MAX_CLOCK_SKEW_MS)
    return ConsensusMachine(five, None, None, app, tip=None, epochs=lambda _h: four,
                            signers=keys)  # type: ignore[arg-type]


def test_a_removed_validators_votes_count_for_nothing() -> None:
    keys = validator_keys(5)
    machine = _machine({keys[0].public_key: keys[0]})
    assert (machine.n, machine.quorum, machine.me) == (4, 3, 0)
    block = H(b"some block")
    for index in (4, 1):
        vote = sign_vote(Vote(VoteType.PREVOTE, "sim", 1, 0, block), index, keys[index])
        machine.handle(VoteReceived(vote, 1))
    # the removed validator 4 is not counted; validator 1 is
    tally = machine.votes.peek(0, VoteType.PREVOTE)
    assert tally is not None and tally.count(block) == 1 and tally.has(1, block)
    # its key under a current index fails the signature check
    forged = sign_vote(Vote(VoteType.PREVOTE, "sim", 1, 0, block), 2, keys[4])
    machine.handle(VoteReceived(forged, 1))
    assert not tally.has(2, block)


def test_a_validator_outside_the_set_follows_and_never_signs() -> None:
    keys = validator_keys(5)
    machine = _machine({keys[4].public_key: keys[4]})
    assert machine.me is None
    effects = machine.handle(Start(1))
    block = H(b"some block")
    for index in range(3):
        vote = sign_vote(Vote(VoteType.PRECOMMIT, "sim", 1, 0, block), index, keys[index])
        effects += machine.handle(VoteReceived(vote, 1))
    assert not [e for e in effects if isinstance(e, (Broadcast, SendTo, Persist))]


@pytest.mark.parametrize("seed", [333, 688, 1158])
def test_records_held_by_followers_are_committed(seed: int) -> None:
    """Seeds where a record stayed with a follower (or a removed validator)
    after its gossip was lost: the follower forwards its pending records
    again, so liveness holds (the first 10,000-seed campaign found these)."""
    n, byzantine = epoch_shape(seed)
    result = run_scenario(seed, n, byzantine, "mixed", epochs=True)
    assert result.ok, result.violations
