"""Admission of records (issue 21): a known record id with a forged
signature is refused, however the node knows the record (pending, held as
an orphan, committed) and whichever signature checker runs (C or Python)."""

from __future__ import annotations

from typing import Any

import pytest
from ed25519_ref import secret_scalar, sign_with
from helpers import FIXED_TS, commit_envelopes, make_envelope, make_genesis

import ledger.crypto
from ledger.chain import ChainStore
from ledger.crypto import RECORD_DOMAIN, SigningKey
from ledger.encoding import canonical
from ledger.genesis import parse_genesis
from ledger.records import Envelope, decode_envelope
from ledger.storage import MemoryStore
from node.mempool import Admission, Mempool
from node.metrics import Metrics


class World:
    def __init__(self) -> None:
        doc, self.validator_keys, self.submitter = make_genesis(4, "test")
        self.genesis = parse_genesis(doc)
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.metrics = Metrics()
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=1000,
                               clock=lambda: FIXED_TS)

    async def admit(self, *envs: Envelope, source: str = "api") -> list[Admission]:
        return await self.mempool.admit([e.envelope_bytes for e in envs], source)

    def commit_pending(self) -> None:
        envs = self.mempool.select(1000)
        commit_envelopes(self.chain, envs, self.validator_keys)
        self.mempool.committed(envs)


def with_sig(env: Envelope, sig: bytes) -> Envelope:
    """The same record (same id) in an envelope with another signature."""
    return decode_envelope(canonical({"record": env.record.record_bytes, "sig": sig}))


def forged(env: Envelope) -> Envelope:
    return with_sig(env, bytes(64))


def resigned(env: Envelope, key: SigningKey) -> Envelope:
    """A second valid signature by the same key (another Ed25519 nonce, as a
    non-deterministic signer would make)."""
    sig = sign_with(secret_scalar(key.seed), key.public_key,
                    RECORD_DOMAIN + env.record.record_bytes, nonce=123_456_789)
    other = with_sig(env, sig)
    assert other.leaf_hash != env.leaf_hash
    return other


@pytest.fixture(params=["native", "python"])
def verifier(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both signature checkers: the C module where it is built, and Python."""
    if request.param == "python":
        monkeypatch.setattr(ledger.crypto, "native", None)
    elif ledger.crypto.native is None:
        pytest.skip("ledger._native is not built")
    return str(request.param)


def outcome(a: Admission) -> str | None:
    return a.error.code if a.error is not None else a.status


async def test_forged_signature_on_a_pending_record_is_bad_signature(verifier: str) -> None:
    w = World()
    env = make_envelope(w.submitter, "test", 1)
    assert outcome((await w.admit(env))[0]) == "accepted"
    results = await w.admit(forged(env), env, resigned(env, w.submitter))
    assert [outcome(r) for r in results] == ["bad_signature", "duplicate", "duplicate"]
    # The pending envelope is still the first one.
    assert w.mempool.get(env.id) is not None
    assert w.mempool.get(env.id).leaf_hash == env.leaf_hash  # type: ignore[union-attr]


async def test_forged_signature_on_a_committed_record_is_bad_signature(verifier: str) -> None:
    w = World()
    env = make_envelope(w.submitter, "test", 1)
    await w.admit(env)
    w.commit_pending()
    results = await w.admit(forged(env), env, resigned(env, w.submitter))
    assert [outcome(r) for r in results] == ["bad_signature", "committed", "committed"]


async def test_forged_signature_on_an_orphan_is_bad_signature(verifier: str) -> None:
    w = World()
    parent = make_envelope(w.submitter, "test", 1)
    child = make_envelope(w.submitter, "test", 2, parents=[parent.id])
    assert outcome((await w.admit(child, source="gossip"))[0]) == "accepted"  # held
    results = await w.admit(forged(child), child, source="gossip")
    assert [outcome(r) for r in results] == ["bad_signature", "duplicate"]


async def test_forged_and_genuine_in_one_batch_with_a_new_record(verifier: str) -> None:
    """A forged copy in the same request as the genuine first submission:
    the genuine one is accepted, the copy refused."""
    w = World()
    env = make_envelope(w.submitter, "test", 1)
    results = await w.admit(env, forged(env))
    assert [outcome(r) for r in results] == ["accepted", "bad_signature"]
    results = await w.admit(forged(env), env)
    assert [outcome(r) for r in results] == ["bad_signature", "duplicate"]


async def test_resubmitting_the_same_bytes_checks_no_signature(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same envelope again is answered from state: no signature check."""
    w = World()
    env = make_envelope(w.submitter, "test", 1)
    await w.admit(env)
    checked: list[int] = []
    real = w.mempool._verify_many

    def counting(envs: list[Envelope]) -> Any:
        checked.append(len(envs))
        return real(envs)

    monkeypatch.setattr(w.mempool, "_verify_many", counting)
    assert outcome((await w.admit(env))[0]) == "duplicate"
    w.commit_pending()
    assert outcome((await w.admit(env))[0]) == "committed"
    assert checked == []
    assert outcome((await w.admit(forged(env)))[0]) == "bad_signature"
    assert checked == [1]


async def test_a_requests_nonces_are_read_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain's nonce index is read once per request
    (``ChainStore.nonce_holders``), not once per record, with the same
    answers: committed, nonce used by another committed record, new."""
    w = World()
    done = [make_envelope(w.submitter, "test", n) for n in range(1, 9)]
    await w.admit(*done)
    w.commit_pending()
    reads: list[int] = []
    asked: list[list[tuple[bytes, int]]] = []
    real_read, real_walk = w.chain.id_for_nonce, w.chain.nonce_holders
    monkeypatch.setattr(w.chain, "id_for_nonce", lambda s, n: reads.append(n) or real_read(s, n))
    monkeypatch.setattr(w.chain, "nonce_holders",
                        lambda keys: asked.append(list(keys)) or real_walk(asked[-1]))
    reused = make_envelope(w.submitter, "test", 3, body={"amount": 99})  # nonce 3 is taken
    assert reused.id != done[2].id
    new = [make_envelope(w.submitter, "test", n) for n in range(20, 30)]
    results = await w.admit(done[1], reused, *new, done[5])
    assert [outcome(r) for r in results] == (
        ["committed", "nonce_reused"] + ["accepted"] * 10 + ["committed"])
    assert len(asked) == 1 and sorted(n for _, n in asked[0]) == [2, 3, 6] + list(range(20, 30))
    assert reads == []  # nonce_holders walked the range: no read per record
    assert [outcome(r) for r in await w.admit(new[0], make_envelope(w.submitter, "test", 40))] == [
        "duplicate", "accepted"]  # a single new record: one read, as before
    assert reads == [40] and len(asked) == 1


async def test_a_commit_releases_the_orphans_waiting_for_its_records() -> None:
    """A parent committed by a block this mempool never admitted still
    releases the gossip child held for it (Mempool.committed)."""
    w = World()
    parent = make_envelope(w.submitter, "test", 1)
    child = make_envelope(w.submitter, "test", 2, parents=[parent.id])
    assert outcome((await w.admit(child, source="gossip"))[0]) == "accepted"  # held
    assert w.mempool.get(child.id) is None
    commit_envelopes(w.chain, [parent], w.validator_keys)
    w.mempool.committed([parent])
    assert w.mempool.get(child.id) is not None


@pytest.mark.parametrize("source, room", [("api", 3), ("gossip", 3 + 5)])
async def test_records_past_the_room_left_are_refused_before_any_signature_check(
        monkeypatch: pytest.MonkeyPatch, source: str, room: int) -> None:
    """A batch larger than the room its source has left (a client's:
    max_size; a peer's: twice that) has only the records that fit checked
    and admitted; the rest are refused as ``rate_limited``, each with its
    id, without a signature check: under overload the resends of refused
    batches would otherwise have every signature checked again and again.
    Records the node knows already take no room."""
    w = World()
    w.mempool.max_size = 5
    known = make_envelope(w.submitter, "test", 1)
    await w.admit(known)
    await w.admit(make_envelope(w.submitter, "test", 2))
    checked: list[int] = []
    real = w.mempool._verify_many

    def counting(envs: list[Envelope], **kw: Any) -> Any:
        checked.append(len(envs))
        return real(envs, **kw)

    monkeypatch.setattr(w.mempool, "_verify_many", counting)
    fresh = [make_envelope(w.submitter, "test", n) for n in range(3, 3 + room + 4)]
    results = await w.admit(known, *fresh, source=source)
    assert [outcome(r) for r in results] == (
        ["duplicate"] + ["accepted"] * room + ["rate_limited"] * 4)
    assert [r.id for r in results[1:]] == [e.id for e in fresh]
    assert checked == [room]
    assert w.mempool.metrics.rejected.labels(code="rate_limited")._value.get() == 4
    # Full now: nothing new is checked at all.
    checked.clear()
    extra = make_envelope(w.submitter, "test", 100)
    assert [outcome(r) for r in await w.admit(extra, source=source)] == ["rate_limited"]
    assert checked == []
