"""validate_block: every header field recomputed, every record checked."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from consensus.simulation.app import SimApp, SimChain
from consensus.simulation.mutations import mutate
from consensus.simulation.workload import MAX_CLOCK_SKEW_MS, Client, rogue_record, sim_genesis
from consensus.validation import (
    BlockFromFuture,
    EmptyBlock,
    HeightMismatch,
    TimeNotMonotonic,
    WrongProposer,
    allowed_proposers,
    validate_block,
)
from ledger.blocks import Certificate
from ledger.errors import BadSignature, VerificationError

NOW = 1_000_000


def _ctx() -> tuple[SimApp, Client]:
    genesis = sim_genesis(4)
    app = SimApp(genesis, SimChain(genesis), MAX_CLOCK_SKEW_MS)
    app.now_ms = NOW
    return app, Client(random.Random(3))


def _block(app: SimApp, client: Client, k: int = 3, proposer: int = 1, time: int = NOW):  # type: ignore[no-untyped-def]
    envs = tuple(client.record(ts=time) for _ in range(k))
    return app.chain.build_header(envs, time, proposer), envs


def test_valid_block_passes_and_can_be_committed_on() -> None:
    app, client = _ctx()
    header, envs = _block(app, client)
    validate_block(header, envs, app, round=0)
    app.chain.apply(header, envs, Certificate(1, 0, header.hash, ()))
    header2, envs2 = _block(app, client, proposer=2, time=NOW + 5)
    validate_block(header2, envs2, app, round=0)


def test_signatures_are_verified_unless_the_exact_envelope_was() -> None:
    app, client = _ctx()
    header, envs = _block(app, client)
    header, bad = mutate("bad-signature", header, envs, app.chain, random.Random(0), 4)
    # The record (same id) was verified in the mempool, but not this envelope.
    app.admit(envs[0])
    assert bad[0].id == envs[0].id and bad[0].leaf_hash != envs[0].leaf_hash
    with pytest.raises(BadSignature):
        validate_block(header, bad, app)


def test_cached_signature_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.records as records

    app, client = _ctx()
    header, envs = _block(app, client)
    for env in envs:
        app.admit(env)
    calls: list[bytes] = []
    monkeypatch.setattr(records, "verify_signature", lambda *a: calls.append(a[0]))
    validate_block(header, envs, app)
    assert calls == []


@pytest.mark.parametrize(
    "kind",
    ["bad-tx-root", "bad-log-root", "wrong-prev", "wrong-validators", "wrong-chain", "bad-signature",
     "duplicate-record", "nonce-reuse", "dangling-parent", "parent-after-child", "forbidden-role",
     "unknown-submitter", "record-wrong-chain", "record-ts-future", "empty", "future-time", "wrong-proposer", "tx-count"],
)
def test_every_mutation_is_refused(kind: str) -> None:
    app, client = _ctx()
    header, envs = _block(app, client)
    bad_header, bad_envs = mutate(kind, header, envs, app.chain, random.Random(5), 4)
    with pytest.raises(VerificationError):
        validate_block(bad_header, bad_envs, app, round=0)


def test_replayed_committed_record_is_refused() -> None:
    app, client = _ctx()
    header, envs = _block(app, client)
    app.chain.apply(header, envs, Certificate(1, 0, header.hash, ()))
    h2, e2 = _block(app, client, proposer=2)
    bad_h, bad_e = mutate("replay-committed", h2, e2, app.chain, random.Random(0), 4)
    with pytest.raises(VerificationError, match="already committed|twice"):
        validate_block(bad_h, bad_e, app)


def test_time_rules() -> None:
    app, client = _ctx()
    header, envs = _block(app, client)
    app.chain.apply(header, envs, Certificate(1, 0, header.hash, ()))
    earlier, e2 = _block(app, client, proposer=2, time=NOW - 1)
    with pytest.raises(TimeNotMonotonic):
        validate_block(earlier, e2, app)
    ahead, e3 = _block(app, client, proposer=2, time=NOW + MAX_CLOCK_SKEW_MS + 1)
    with pytest.raises(BlockFromFuture):
        validate_block(ahead, e3, app)
    app.now_ms = NOW + 10  # a clock that caught up accepts it
    validate_block(ahead, e3, app)


def test_height_and_emptiness() -> None:
    app, client = _ctx()
    header, envs = _block(app, client)
    with pytest.raises(HeightMismatch):
        validate_block(replace(header, height=2, header_bytes=b""), envs, app)
    empty = app.chain.build_header((), NOW, 1)
    with pytest.raises(EmptyBlock):
        validate_block(empty, (), app)


def test_proposer_rules_for_fresh_and_reproposed_blocks() -> None:
    assert allowed_proposers(4, 1, 2) == {3}
    assert allowed_proposers(4, 1, 5, pol_round=1) == {1, 2}
    assert allowed_proposers(4, 1, 9, pol_round=7) == {0, 1, 2, 3}
    app, client = _ctx()
    header, envs = _block(app, client, proposer=1)
    validate_block(header, envs, app, round=0)
    with pytest.raises(WrongProposer):
        validate_block(header, envs, app, round=1)
    validate_block(header, envs, app, round=3, pol_round=1)


def test_rogue_submitter_records_are_structurally_fine_but_need_a_known_parent() -> None:
    app, client = _ctx()
    lone = rogue_record(1, NOW)
    header = app.chain.build_header((lone,), NOW, 1)
    validate_block(header, (lone,), app)
