"""Verdicts and consensus (PROTOCOL §10.6): in the deterministic simulator a
validator whose policy decides otherwise never gets a block certified, and
validators that crash and catch up derive the same verdicts as the rest."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from policy_fakes import LimitPolicy

from consensus.simulation.scenario import make_scenario
from consensus.simulation.world import World
from ledger.blocks import Header
from ledger.policy import PolicyEngine
from ledger.policy_replay import PolicyReplay


def _honest() -> LimitPolicy:
    # Stateful (a submitter's 4th payment on is denied) and with held records.
    return LimitPolicy(limit=8_000, burst=3)


def test_a_validator_deciding_other_verdicts_cannot_get_a_block_certified() -> None:
    scenario = make_scenario(5, 4, 0, "mixed")
    deviant = 3

    def policy_for(validator: int) -> PolicyEngine:
        return LimitPolicy(limit=8_000, burst=3, deny_kind="refund" if validator == deviant
                           else "blocked")

    world = World(scenario, policy_for=policy_for)
    node = world.nodes[deviant]
    built: list[Header] = []
    build = node.chain.build_header

    def recording(*args: object, **kwargs: object) -> Header:
        header = build(*args, **kwargs)  # type: ignore[arg-type]
        built.append(header)
        return header

    node.chain.build_header = recording  # type: ignore[method-assign]
    result = world.run()
    honest = [n for n in world.nodes if n.validator != deviant]
    # The deviant proposed, and none of its blocks with its own verdicts was
    # certified: every honest chain is the one the honest policy derives.
    assert built
    committed = {h.hash for n in honest for h in n.chain.headers}
    honest_view = PolicyReplay(world.genesis, _honest())
    chain = honest[0].chain
    for header, envelopes, verdicts in zip(chain.headers, chain.blocks, chain.block_verdicts):
        # the committed entries hash to the certified header's root, and are
        # exactly what a fresh honest engine derives
        honest_view.block(header, envelopes, verdicts.entries)
    refused = [h for h in built if h.hash not in committed]
    assert refused, "the deviant's blocks with refunds are refused"
    assert any(e.record.kind == "refund" for b in chain.blocks for e in b)
    # The honest three keep committing everything; only the deviant stalls.
    assert all(n.chain.headers == chain.headers for n in honest)
    assert result.violations and all(v.startswith("liveness: n3") for v in result.violations)
    assert node.chain.height < chain.height


def _entries(world: World, endpoint: int) -> list[list[bytes]]:
    return [b.entries for b in world.nodes[endpoint].chain.block_verdicts]


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(seed=st.integers(min_value=1, max_value=10_000))
def test_validators_derive_the_same_verdicts_after_crashes_and_catch_up(seed: int) -> None:
    scenario = make_scenario(seed, 4, 1, "mixed")
    assume(scenario.crashes)
    world = World(scenario, policy_for=lambda validator: _honest())
    result = world.run()
    assert result.ok, result.violations
    honest = [n for n in world.nodes if n.honest]
    longest = max(honest, key=lambda n: n.chain.height)
    reference = _entries(world, longest.endpoint)
    assert any(reference), "the policy decided something"
    for n in honest:
        mine = _entries(world, n.endpoint)
        assert mine == reference[:len(mine)]
        if n.chain.height == longest.chain.height:
            assert n.chain.verdicts.held == longest.chain.verdicts.held
            engine, ref = n.chain.verdicts.engine, longest.chain.verdicts.engine
            assert isinstance(engine, LimitPolicy) and isinstance(ref, LimitPolicy)
            assert engine.payments == ref.payments
