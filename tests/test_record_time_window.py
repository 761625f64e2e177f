"""The record ts window (PROTOCOL §2, issue 21): a client's record is
admitted only within the chain's window around the node's clock, a block is
valid only if each record's ts is within the window around the header's
time, the mempool drops records too old to be proposed, and certified
blocks (catch-up) are not judged by it."""

from __future__ import annotations

import random
from typing import Any

import pytest
from helpers import FIXED_TS, commit_envelopes, make_envelope, make_genesis
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.simulation.app import SimApp, SimChain
from consensus.simulation.workload import MAX_CLOCK_SKEW_MS, Client, rogue_record, sim_genesis
from consensus.validation import RecordTimeOutOfWindow, validate_block
from ledger.chain import ChainStore
from ledger.errors import GenesisError
from ledger.genesis import (
    DEFAULT_RECORD_TS_FUTURE_MS,
    DEFAULT_RECORD_TS_PAST_MS,
    RecordTimeWindow,
    parse_genesis,
    record_time_window,
)
from ledger.records import Envelope
from ledger.storage import MemoryStore
from node.chainapp import NodeApplication
from node.mempool import Admission, Mempool
from node.metrics import Metrics

PAST, FUTURE = DEFAULT_RECORD_TS_PAST_MS, DEFAULT_RECORD_TS_FUTURE_MS
NOW = FIXED_TS
U64_MAX = 2**64 - 1


class Node:
    """A mempool on a chain, with a clock the test sets."""

    def __init__(self, params: dict[str, Any] | None = None, peer_slack_ms: int = 0) -> None:
        doc, self.validator_keys, self.submitter = make_genesis(4, "test")
        if params is not None:
            doc["params"] = params
        self.genesis = parse_genesis(doc)
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.now = NOW
        self.mempool = Mempool(self.genesis, self.chain, Metrics(), max_size=1000,
                               clock=lambda: self.now, peer_clock_slack_ms=peer_slack_ms)
        self.app = NodeApplication(self.genesis, self.chain, self.mempool,
                                   max_block_records=1000, max_clock_skew_ms=10_000)
        self.nonce = 0

    def env(self, ts: int, parents: list[bytes] | None = None) -> Envelope:
        self.nonce += 1
        return make_envelope(self.submitter, "test", self.nonce, parents or [], ts=ts)

    async def admit(self, *envs: Envelope, source: str = "api") -> list[str | None]:
        results: list[Admission] = await self.mempool.admit([e.envelope_bytes for e in envs],
                                                             source)
        return [r.error.code if r.error is not None else r.status for r in results]


# -- admission against the node's clock -------------------------------------------


async def test_admission_edges_are_inclusive_and_one_ms_beyond_is_refused() -> None:
    node = Node()
    results = await node.admit(node.env(NOW - PAST), node.env(NOW + FUTURE),
                               node.env(NOW - PAST - 1), node.env(NOW + FUTURE + 1),
                               node.env(0), node.env(U64_MAX), node.env(NOW))
    assert results == ["accepted", "accepted", "bad_timestamp", "bad_timestamp",
                       "bad_timestamp", "bad_timestamp", "accepted"]


async def test_the_refusal_says_which_bound_and_by_how_much() -> None:
    node = Node()
    results = await node.mempool.admit([node.env(NOW + FUTURE + 1).envelope_bytes,
                                        node.env(0).envelope_bytes])
    assert results[0].error is not None and results[1].error is not None
    assert "300001 ms after" in results[0].error.message
    assert "record_ts_future_ms" in results[0].error.message
    assert "record_ts_past_ms" in results[1].error.message


async def test_genesis_params_set_the_window() -> None:
    node = Node({"record_ts_past_ms": 1000, "record_ts_future_ms": 0})
    assert await node.admit(node.env(NOW - 1000), node.env(NOW), node.env(NOW - 1001),
                            node.env(NOW + 1)) == ["accepted", "accepted", "bad_timestamp",
                                                   "bad_timestamp"]


async def test_peers_records_get_the_validators_clock_skew_on_top() -> None:
    node = Node(peer_slack_ms=10_000)
    edge = node.env(NOW + FUTURE + 10_000)
    beyond = node.env(NOW + FUTURE + 10_001)
    assert await node.admit(edge, source="api") == ["bad_timestamp"]
    assert await node.admit(edge, beyond, source="gossip") == ["accepted", "bad_timestamp"]


async def test_known_records_are_answered_whatever_the_clock_says_now() -> None:
    """A resubmission after the window has moved on is still duplicate or
    committed, not bad_timestamp (the SDK resubmits the same bytes)."""
    node = Node()
    pending, committed = node.env(NOW), node.env(NOW)
    await node.admit(committed)
    commit_envelopes(node.chain, [committed], node.validator_keys, time=NOW)
    node.mempool.committed([committed])
    await node.admit(pending)
    node.now = NOW + PAST + 1
    assert await node.admit(pending, committed) == ["duplicate", "committed"]


# -- proposals: the mempool drops what is too old for the block's time -------------


async def test_select_drops_expired_records_and_their_children_and_keeps_future_ones() -> None:
    node = Node()
    old = node.env(NOW - PAST)
    child = node.env(NOW, parents=[old.id])
    ahead = node.env(NOW + FUTURE)
    fresh = node.env(NOW)
    assert await node.admit(old, child, ahead, fresh) == ["accepted"] * 4
    # At block time NOW the whole window fits.
    assert node.mempool.select(1000, time_ms=NOW) == [old, child, ahead, fresh]
    # One ms later `old` is out for good, and its child can never commit;
    # a block time 1 ms before NOW leaves `ahead` waiting.
    assert node.mempool.select(1000, time_ms=NOW - 1) == [old, child, fresh]
    built = node.app.build_block(1, 0, NOW + 1, 0)
    assert built is not None and built[1] == (ahead, fresh)
    assert old.id not in node.mempool and child.id not in node.mempool
    assert len(node.mempool) == 2
    assert not node.mempool.holds_nonce(old.record.submitter, old.record.nonce)


# -- block validation against the header's time ------------------------------------


def _sim() -> tuple[SimApp, Client]:
    genesis = sim_genesis(4)
    app = SimApp(genesis, SimChain(genesis), MAX_CLOCK_SKEW_MS)
    app.now_ms = NOW
    return app, Client(random.Random(7))


def _block_with(app: SimApp, client: Client, ts: int, time: int = NOW) -> Any:
    envs = (client.record(ts=time), rogue_record(random.Random(ts).randint(1, 10**9), ts))
    return app.chain.build_header(envs, time, 1), envs


@pytest.mark.parametrize("ts,ok", [(NOW - PAST, True), (NOW + FUTURE, True),
                                   (NOW - PAST - 1, False), (NOW + FUTURE + 1, False),
                                   (0, False), (U64_MAX, False)])
def test_block_validation_edges(ts: int, ok: bool) -> None:
    app, client = _sim()
    header, envs = _block_with(app, client, ts)
    if ok:
        validate_block(header, envs, app)
    else:
        with pytest.raises(RecordTimeOutOfWindow, match="record 1") as info:
            validate_block(header, envs, app)
        assert info.value.code == "bad_timestamp"
        # Certified blocks (catch-up) are not judged by the window.
        validate_block(header, envs, app, record_times=False)
        app.validate(header, envs, now_ms=NOW, certified=True)
        with pytest.raises(RecordTimeOutOfWindow):
            app.validate(header, envs, now_ms=NOW, certified=False)


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(-2 * PAST, 2 * PAST), time=st.integers(PAST, 2**62))
def test_block_validation_agrees_with_the_window(offset: int, time: int) -> None:
    app, client = _sim()
    app.now_ms = time
    ts = min(max(time + offset, 0), U64_MAX)
    header, envs = _block_with(app, client, ts, time)
    inside = time - PAST <= ts <= time + FUTURE
    assert RecordTimeWindow().contains(ts, time) == inside
    try:
        validate_block(header, envs, app)
        valid = True
    except RecordTimeOutOfWindow:
        valid = False
    assert valid == inside


def test_the_node_skips_the_window_for_certified_blocks_only() -> None:
    node = Node()
    env = node.env(0)
    header = node.chain.next_header([env], NOW, 0)
    with pytest.raises(RecordTimeOutOfWindow):
        node.app.validate(header, [env], now_ms=NOW, certified=False)
    node.app.validate(header, [env], now_ms=NOW, certified=True)


# -- genesis params ----------------------------------------------------------------


def test_window_params_default_and_are_checked() -> None:
    assert record_time_window({}) == RecordTimeWindow(PAST, FUTURE)
    assert record_time_window({"record_ts_past_ms": 0}) == RecordTimeWindow(0, FUTURE)
    doc, _, _ = make_genesis(4, "test")
    for bad in (-1, "1000", 1.5, True, None):
        doc["params"] = {"record_ts_future_ms": bad}
        with pytest.raises(GenesisError, match="record_ts_future_ms"):
            parse_genesis(doc)
