"""Bounds of the consensus params (ledger/params.py, PROTOCOL §9.3 rule 1):
a ``gov.params.set`` with a timeout or block cap outside them is refused
``param_out_of_range`` at admission, a block carrying one is invalid, a
genesis naming one does not load, ``ledger-admin propose`` refuses it, and
the explorer's verifier (epochs.js) holds the same table.  In-memory
chains, fixed keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from govhelpers import gov_record
from helpers import genesis_doc, make_keys
from test_governance_node import Node, Sim, code_of

from client.admin.proposal import ProposalError, propose
from ledger.errors import GenesisError, ParamOutOfRange
from ledger.genesis import parse_genesis
from ledger.params import PARAM_BOUNDS, check_params
from node.config import consensus_timeouts

EPOCHS_JS = Path(__file__).parent.parent / "node" / "explorer" / "static" / "epochs.js"


def params_set(sim: Sim | Node, nonce: int, **params: int):  # type: ignore[no-untyped-def]
    return gov_record(sim.genesis.chain, sim.members[:2], nonce, "gov.params.set",
                      {"params": params})


@pytest.mark.parametrize("name", sorted(PARAM_BOUNDS))
def test_each_bound_is_inclusive_and_one_past_it_is_refused(name: str) -> None:
    lo, hi = PARAM_BOUNDS[name]
    check_params({name: lo})
    check_params({name: hi})
    for bad in ([lo - 1] if lo > 0 else []) + [hi + 1, 10**12]:
        with pytest.raises(ParamOutOfRange) as info:
            check_params({name: bad})
        assert info.value.code == "param_out_of_range"
        assert f"param {name} must be an integer in {lo}..{hi}, got {bad}" in str(info.value)
    check_params({"some_other_param": 10**12})  # unbounded names pass


@pytest.mark.parametrize("params", [{"timeout_propose_ms": 0},
                                    {"timeout_prevote_ms": 10**12},
                                    {"timeout_delta_ms": 600_001},
                                    {"max_block_records": 0},
                                    {"max_block_records": 2, "timeout_precommit_ms": 9}])
def test_a_block_carrying_an_out_of_range_param_is_invalid(params: dict[str, int]) -> None:
    sim = Sim()
    assert code_of(sim, [params_set(sim, 1, **params)]) == "param_out_of_range"
    assert sim.chain.height == 0
    # The edges themselves are valid and reach the membership from H + 1.
    sim.commit([params_set(sim, 2, timeout_propose_ms=10, timeout_delta_ms=0,
                           max_block_records=100_000)])
    in_force = sim.chain.membership.at(2).params
    assert consensus_timeouts(in_force).timeout_propose_ms == 10
    assert in_force["max_block_records"] == 100_000


async def test_admission_refuses_an_out_of_range_param_with_its_code() -> None:
    node = Node()
    assert await node.admit(params_set(node, 1, timeout_propose_ms=0)) == ["param_out_of_range"]
    assert await node.admit(params_set(node, 2, timeout_propose_ms=10**12)) \
        == ["param_out_of_range"]
    assert await node.admit(params_set(node, 3, timeout_propose_ms=600_000)) == ["accepted"]


@pytest.mark.parametrize("params", [{"timeout_propose_ms": 0}, {"max_block_records": 100_001}])
def test_a_genesis_with_an_out_of_range_param_does_not_load(params: dict[str, int]) -> None:
    doc = genesis_doc(make_keys(4), make_keys(1, 1_000_000), "test")
    doc["params"] = params
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc)
    assert "must be an integer in" in str(info.value)


def test_ledger_admin_propose_refuses_an_out_of_range_param() -> None:
    key = make_keys(1, 2_000_000)[0]
    with pytest.raises(ProposalError) as info:
        propose("gov.params.set", {"params": {"timeout_precommit_ms": 0}}, key, chain="test",
                expires_height=100, nonce=1, ts=1)
    assert "timeout_precommit_ms must be an integer in 10..600000" in str(info.value)


def test_the_explorer_verifier_holds_the_same_bounds() -> None:
    text = EPOCHS_JS.read_text()
    table = text[text.index("const PARAM_BOUNDS = {"):]
    table = table[:table.index("};")]
    js = {m[1]: (int(m[2]), int(m[3]))
          for m in re.finditer(r"(\w+): \[(\d+)n, (\d+)n\]", table)}
    assert js == dict(PARAM_BOUNDS)
