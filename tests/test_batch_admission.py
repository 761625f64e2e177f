"""Batch envelopes at a node (PROTOCOL §2, issue 28 item 1): admission and
block validation check each distinct batch signature once, recompute every
envelope's path, and refuse a path that does not lead to a signed root."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import pytest
from helpers import FIXED_TS, make_genesis

import ledger.batch_envelopes
import node.mempool
from consensus.simulation.app import SimApp, SimChain
from consensus.simulation.workload import MAX_CLOCK_SKEW_MS, SIM_CHAIN, sim_genesis, submitter_key
from consensus.validation import validate_block
from ledger.batch_envelopes import sign_batch
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.encoding import canonical
from ledger.errors import BadSignature
from ledger.genesis import parse_genesis
from ledger.records import BatchedEnvelope, Envelope, decode_envelope, make_record
from ledger.storage import MemoryStore
from node.mempool import Admission, Mempool
from node.metrics import Metrics

DOC, VKEYS, SKEY = make_genesis(4, "test")
GENESIS = parse_genesis(DOC)


def batch(n: int, first: int = 0, key: SigningKey = SKEY, chain: str = "test",
          ts: int = FIXED_TS) -> list[BatchedEnvelope]:
    return sign_batch([make_record(chain=chain, submitter=key.public_key, nonce=first + i, ts=ts,
                                   kind="payment", body={"amount": first + i})
                       for i in range(n)], key)


def forged_path(env: BatchedEnvelope, entry: int = 0) -> Envelope:
    value = msgpack.unpackb(env.envelope_bytes, raw=False)
    path = list(value["batch"]["path"])
    path[entry] = bytes(32)
    value["batch"]["path"] = path
    return decode_envelope(canonical(value))


class Counted:
    """Counts the signatures checked, batch and per-record."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batch: list[int] = []
        self.single: list[int] = []
        real_batch = ledger.batch_envelopes.verify_many
        real_single = node.mempool.verify_many

        def batch_many(domain: bytes, items: Sequence[Any]) -> list[bool]:
            self.batch.append(len(items))
            return real_batch(domain, items)

        def single_many(domain: bytes, items: Sequence[Any]) -> list[bool]:
            if items:
                self.single.append(len(items))
            return real_single(domain, items)

        monkeypatch.setattr(ledger.batch_envelopes, "verify_many", batch_many)
        monkeypatch.setattr(node.mempool, "verify_many", single_many)


def mempool() -> Mempool:
    return Mempool(GENESIS, ChainStore(MemoryStore(), GENESIS), Metrics(), max_size=10_000,
                   clock=lambda: FIXED_TS)


def codes(results: list[Admission]) -> list[str | None]:
    return [r.error.code if r.error is not None else r.status for r in results]


async def test_a_batch_of_100_is_admitted_with_one_signature_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    counted = Counted(monkeypatch)
    envs = batch(100)
    pool = mempool()
    results = await pool.admit([e.envelope_bytes for e in envs])
    assert codes(results) == ["accepted"] * 100
    assert counted.batch == [1] and counted.single == []
    # a peer gets the batch as gossip, in three messages: still one check
    peer = mempool()
    for lo, hi in ((0, 30), (30, 70), (70, 100)):
        got = await peer.admit([e.envelope_bytes for e in envs[lo:hi]], "gossip")
        assert codes(got) == ["accepted"] * (hi - lo)
    assert counted.batch == [1, 1] and counted.single == []


async def test_a_forged_path_is_bad_signature_even_with_the_signature_cached() -> None:
    envs = batch(10)
    pool = mempool()
    assert codes(await pool.admit([e.envelope_bytes for e in envs[:5]])) == ["accepted"] * 5
    # envs[7]'s record with a forged path: same signature (cached), other root
    results = await pool.admit([forged_path(envs[7]).envelope_bytes,
                                forged_path(envs[2], -1).envelope_bytes,
                                envs[7].envelope_bytes])
    assert codes(results) == ["bad_signature", "bad_signature", "accepted"]


async def test_per_record_and_batch_envelopes_in_one_request() -> None:
    from helpers import make_envelope

    singles = [make_envelope(SKEY, "test", 500 + i) for i in range(3)]
    envs = batch(4, 600)
    other = batch(3, 700)
    pool = mempool()
    items = [singles[0], envs[0], other[0], singles[1], envs[1], envs[2], envs[3], other[1],
             other[2], singles[2]]
    assert codes(await pool.admit([e.envelope_bytes for e in items])) == ["accepted"] * 10


def sim() -> SimApp:
    genesis = sim_genesis(4)
    app = SimApp(genesis, SimChain(genesis), MAX_CLOCK_SKEW_MS)
    app.now_ms = 1_000_000
    return app


def test_block_validation_checks_each_batch_root_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = sim()
    alice, bob = submitter_key("alice"), submitter_key("bob")
    envs = (batch(6, 1, alice, SIM_CHAIN, 1_000_000)
            + batch(4, 1, bob, SIM_CHAIN, 1_000_000))
    header = app.chain.build_header(tuple(envs), 1_000_000, 1)
    counted = Counted(monkeypatch)
    validate_block(header, tuple(envs), app, round=0)
    assert counted.batch == [2]


def test_block_validation_refuses_a_bad_batch_path() -> None:
    app = sim()
    envs = batch(6, 1, submitter_key("alice"), SIM_CHAIN, 1_000_000)
    bad: list[Envelope] = list(envs)
    bad[4] = forged_path(envs[4])
    header = app.chain.build_header(tuple(bad), 1_000_000, 1)
    with pytest.raises(BadSignature, match="record 4"):
        validate_block(header, tuple(bad), app, round=0)
    # verified at admission: the exact envelopes are not checked again,
    # but a forged one never was
    for env in envs:
        assert app.admit(env)
    good_header = app.chain.build_header(tuple(envs), 1_000_000, 1)
    validate_block(good_header, tuple(envs), app, round=0)
    with pytest.raises(BadSignature):
        validate_block(header, tuple(bad), app, round=0)
