"""Chain params changed by governance reach consensus (issue 23 item 4,
PROTOCOL §9): ``gov.params.set`` committed at height H sets the consensus
timeouts and ``max_block_records`` of every validator from H + 1; a block
over the cap in force is refused.  In-memory chains, fixed keys, virtual time."""

from __future__ import annotations

import pytest
from govhelpers import gov_genesis, gov_record
from helpers import make_envelope
from test_driver import Cluster, FakeClock
from test_governance_node import Sim

from consensus import ConsensusConfig
from consensus.validation import TooManyRecords
from ledger.errors import GovernanceError
from ledger.genesis import Genesis
from ledger.records import Envelope
from node.config import consensus_timeouts

NEW_TIMEOUTS = {"timeout_propose_ms": 1234, "timeout_prevote_ms": 567,
                "timeout_precommit_ms": 678, "timeout_delta_ms": 89}


def params_set(genesis: Genesis, members: list, nonce: int, **params: int) -> Envelope:
    return gov_record(genesis.chain, members[:2], nonce, "gov.params.set", {"params": params})


def test_a_block_over_the_cap_in_force_is_refused_from_the_next_height() -> None:
    sim = Sim()
    chain = sim.genesis.chain
    records = [make_envelope(sim.submitter, chain, n) for n in range(1, 7)]
    # Effective at H + 1: the block carrying the change is judged by the old params.
    sim.commit([params_set(sim.genesis, sim.members, 1, max_block_records=2), *records[:2]])
    assert sim.chain.membership.at(2).params["max_block_records"] == 2
    with pytest.raises(TooManyRecords) as info:
        sim.validate(records[2:5])
    assert "max_block_records in force at height 2 is 2" in str(info.value)
    assert info.value.step == "header"
    sim.commit(records[2:4])
    sim.commit(records[4:6])
    assert sim.chain.height == 3
    # Raised again, a larger block passes.
    sim.commit([params_set(sim.genesis, sim.members, 2, max_block_records=5)])
    more = [make_envelope(sim.submitter, chain, n) for n in range(7, 12)]
    sim.commit(more)
    assert sim.chain.height == 5


def test_the_cap_is_only_checked_when_the_param_is_set() -> None:
    sim = Sim()
    records = [make_envelope(sim.submitter, sim.genesis.chain, n) for n in range(1, 40)]
    sim.commit(records)  # genesis names no max_block_records: no cap in validation


def test_a_zero_block_cap_is_refused() -> None:
    sim = Sim()
    zero = params_set(sim.genesis, sim.members, 1, max_block_records=0)
    with pytest.raises(GovernanceError) as info:
        sim.validate([zero])
    assert info.value.code == "param_out_of_range"
    assert "max_block_records must be an integer in 1..100000" in str(info.value)
    sim.commit([params_set(sim.genesis, sim.members, 2, max_block_records=1)])


def test_timeouts_follow_the_params_in_force_and_node_toml_overrides_them() -> None:
    params = dict(NEW_TIMEOUTS)
    assert consensus_timeouts(params) == ConsensusConfig(**params)
    assert consensus_timeouts({}) == ConsensusConfig(
        timeout_propose_ms=3000, timeout_prevote_ms=1000, timeout_precommit_ms=1000,
        timeout_delta_ms=500)

    class Own:
        timeout_propose_ms = 50
        timeout_prevote_ms = None
        timeout_precommit_ms = None
        timeout_delta_ms = None

    assert consensus_timeouts(params, Own()).timeout_propose_ms == 50
    assert consensus_timeouts(params, Own()).timeout_prevote_ms == 567


async def test_drivers_take_the_new_cap_and_timeouts_after_a_committed_params_set() -> None:
    genesis, vkeys, members, submitter = gov_genesis()
    cluster = Cluster(genesis, vkeys, submitter, FakeClock(), follow_params=True)
    for node in cluster.nodes:
        await node.driver.start()
    try:
        before = [n.driver.machine.config for n in cluster.nodes]
        assert all(c.timeout_propose_ms == 3000 for c in before)  # the defaults
        change = params_set(genesis, members, 1, max_block_records=2, **NEW_TIMEOUTS)
        await cluster.submit([change])
        await cluster.run_until(lambda: all(n.chain.record_location(change.id) is not None
                                            for n in cluster.nodes))
        at = cluster.nodes[0].chain.record_location(change.id)
        assert at is not None
        changed = at[0]
        for node in cluster.nodes:
            machine = node.driver.machine
            assert machine.height == changed + 1
            config = machine.config
            assert (config.timeout_propose_ms, config.timeout_prevote_ms,
                    config.timeout_precommit_ms, config.timeout_delta_ms) == (1234, 567, 678, 89)
            # Node-local knobs are not chain params.
            assert config.resend_ms == ConsensusConfig().resend_ms
        records = [make_envelope(submitter, genesis.chain, n) for n in range(10, 17)]
        await cluster.submit(records)
        await cluster.run_until(lambda: all(
            all(n.chain.record_location(e.id) is not None for e in records)
            for n in cluster.nodes))
        node = cluster.nodes[0]
        sizes = [node.chain.header(h).tx_count  # type: ignore[union-attr]
                 for h in range(changed + 1, node.chain.height + 1)]
        assert sum(sizes) == len(records) and max(sizes) == 2, sizes
        assert len({n.chain.header(node.chain.height).hash  # type: ignore[union-attr]
                    for n in cluster.nodes}) == 1
        # A proposal over the new cap is refused, certified or not.
        over = [make_envelope(submitter, genesis.chain, n) for n in range(20, 23)]
        tip = node.chain.tip()
        assert tip is not None
        header = node.chain.next_header(over, tip.time + 1, 0)
        app = node.driver.machine.app
        for certified in (False, True):
            with pytest.raises(TooManyRecords):
                app.validate(header, over, now_ms=tip.time + 1, certified=certified)
        app.validate(node.chain.next_header(over[:2], tip.time + 1, 0), over[:2],
                     now_ms=tip.time + 1, certified=False)
    finally:
        for n in cluster.nodes:
            await n.driver.stop()
