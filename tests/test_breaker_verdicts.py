"""Circuit breakers in the verdicts (PROTOCOL §10.5, §10.6, §12.3): the
breakers after block h - 1 turn the ``allow`` (or ``approve``) of a record
of block h in the scope of an open breaker into ``review``, rule
``breaker:<scope>:<value>``; deny stays deny; half-open and closed
breakers let records pass again.  Breakers are consensus state: a block
whose verdicts ignore them is refused, the auditor's replay derives the
same verdicts, and a validator restarted from its persisted state derives
the same verdict roots as one that never stopped."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import as_genesis, block_time, certify, genesis_doc, make_envelope, make_keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_fakes import LimitPolicy

from ledger import schema
from ledger.approvals import VerdictMismatch
from ledger.blocks import HEADER_VERSION, HEADER_VERSION_VERDICTS, Header
from ledger.breakers import REASON_OPEN, Breakers
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.genesis import Genesis
from ledger.policy import Outcome, PolicyEngine
from ledger.policy_replay import PolicyReplay
from ledger.records import Envelope
from ledger.storage import MemoryStore

RULE = {"breaker_alerts": 2, "breaker_monitors": 2, "breaker_window_ms": 60_000,
        "breaker_cooldown_ms": 10_000, "breaker_min_score": 500_000}
ALERT = {"score": 900_000, "reasons": [{"feature": "velocity", "points": 40}],
         "detector": "builtin", "version": "1"}
VALIDATORS = make_keys(4)
# 0: a shop; 1, 2: monitors; 3: a reviewer; 4: a payer (treasury approvals in LimitPolicy)
SUBS = make_keys(5, 5_000_000)
SHOP, MON_A, MON_B, REVIEWER, PAYER = SUBS
ROLES = [["submit"], ["monitor", "submit"], ["monitor", "submit"], ["review", "submit"],
         ["submit", "treasury"]]


def _genesis(params: dict[str, Any] | None = RULE) -> Genesis:
    doc = genesis_doc(VALIDATORS, SUBS, "test", params=params)
    for sub, roles in zip(doc["submitters"], ROLES):
        sub["roles"] = roles
    return as_genesis(doc)


def _chain(store: MemoryStore | None = None, engine: PolicyEngine | None = None,
           params: dict[str, Any] | None = RULE) -> ChainStore:
    chain = ChainStore(store if store is not None else MemoryStore(), _genesis(params))
    if engine is not None:
        chain.set_policy_engine(engine)
    return chain


def _commit(chain: ChainStore, envelopes: list[Envelope], time: int | None = None) -> Header:
    height = chain.height + 1
    header = chain.next_header(envelopes, block_time(height) if time is None else time,
                               (height - 1) % 4)
    chain.commit_block(header, envelopes, certify(header, VALIDATORS, chain.genesis))
    return header


_nonce = [0]


def _env(key: SigningKey, kind: str = "payment", *, account: str | None = None,
         parents: tuple[bytes, ...] = (), body: dict[str, Any] | None = None) -> Envelope:
    _nonce[0] += 1
    return make_envelope(key, "test", _nonce[0], list(parents), kind, body=body,
                         origin={"account": account} if account else {})


def _alert(monitor: SigningKey, flagged: Envelope, score: int = 900_000) -> Envelope:
    return _env(monitor, "risk.alert", parents=(flagged.id,), body=dict(ALERT, score=score))


def _close(scope: str, value: str) -> Envelope:
    return _env(REVIEWER, "risk.breaker.close", body={"scope": scope, "value": value})


def _verdict(chain: ChainStore, env: Envelope) -> tuple[str, str, str]:
    found = chain.record_verdict(env.id)
    assert found is not None
    v = found.verdict
    return v.outcome.value, v.rule, v.reason


def test_an_open_breaker_turns_allow_into_review_until_half_open_or_closed() -> None:
    chain = _chain()
    t0 = block_time(1)
    flagged = _env(SHOP, account="mule")
    _commit(chain, [flagged], t0)
    _commit(chain, [_alert(MON_A, flagged), _alert(MON_B, flagged)], t0 + 1_000)
    assert chain.breakers.is_open("account", "mule")
    # In block 3 (the breakers after block 2): in scope -> review, naming it.
    held = _env(PAYER, "transfer", account="mule")
    other = _env(PAYER, "transfer", account="fine")
    shop = _env(SHOP, "refund", account="fine")  # the shop's submitter breaker is open too
    header = _commit(chain, [held, other, shop], t0 + 2_000)
    assert header.version == HEADER_VERSION_VERDICTS
    assert _verdict(chain, held) == ("review", "breaker:account:mule", REASON_OPEN)
    assert _verdict(chain, other) == ("allow", "", "")
    assert _verdict(chain, shop) == ("review", f"breaker:submitter:{SHOP.public_key.hex()}",
                                     REASON_OPEN)
    assert chain.record_verdict(held.id).status.value == "review"  # type: ignore[union-attr]
    # Half-open after the cooldown (10 s of block time after the trip): allow again.
    later = _env(PAYER, "transfer", account="mule")
    _commit(chain, [later], t0 + 1_000 + 10_000)
    assert _verdict(chain, later) == ("allow", "", "")
    # A further alert re-opens it for the next block; a close record closes it.
    _commit(chain, [_alert(MON_A, flagged)], t0 + 12_000)
    again = _env(PAYER, "transfer", account="mule")
    _commit(chain, [again, _close("account", "mule")], t0 + 13_000)
    assert _verdict(chain, again) == ("review", "breaker:account:mule", REASON_OPEN)
    closed = _env(PAYER, "transfer", account="mule")
    _commit(chain, [closed], t0 + 14_000)
    assert _verdict(chain, closed) == ("allow", "", "")
    assert [t.to for t in chain.breakers.transitions if t.scope == "account"] == \
        ["open", "open", "closed"]


def test_deny_stays_deny_approve_becomes_review_governance_is_not_held() -> None:
    chain = _chain(engine=LimitPolicy(limit=10_000, deny_kind="blocked"))
    flagged = _env(SHOP, account="mule")
    _commit(chain, [flagged])
    _commit(chain, [_alert(MON_A, flagged), _alert(MON_B, flagged)])
    denied = _env(PAYER, "blocked", account="mule")
    large = _env(PAYER, "transfer", account="mule", body={"amount": 50_000})
    tier = _env(MON_A, "risk.tier", account="mule",
                body={"tier": "high", "detector": "builtin", "version": "1"})
    _commit(chain, [denied, large, tier])
    assert _verdict(chain, denied)[0] == "deny"
    assert _verdict(chain, large) == ("review", "breaker:account:mule", REASON_OPEN)
    # Not held for approvals: open for review, decided by reviewers (§10.10).
    assert chain.verdicts.held[large.id].review
    assert _verdict(chain, tier) == ("allow", "default", "")  # risk records pass


def test_header_version_follows_breaker_alerts_or_a_policy() -> None:
    off = _chain(params={})
    assert _commit(off, [_env(SHOP)]).version == HEADER_VERSION
    on = _chain(params={"breaker_alerts": 1})
    header = _commit(on, [_env(SHOP)])
    assert header.version == HEADER_VERSION_VERDICTS and header.verdicts is not None
    assert _verdict(on, _env_committed(on)) == ("allow", "", "")


def _env_committed(chain: ChainStore) -> Envelope:
    from ledger.records import decode_committed_envelope
    return decode_committed_envelope(chain.block_envelopes(chain.height)[0])


def test_a_block_that_ignores_an_open_breaker_is_refused() -> None:
    honest, deviant = _chain(), _chain()
    flagged = _env(SHOP, account="mule")
    alerts = [_alert(MON_A, flagged), _alert(MON_B, flagged)]
    for chain in (honest, deviant):
        _commit(chain, [flagged])
        _commit(chain, alerts)
    deviant.verdicts.breakers = Breakers()  # a validator that lost its breakers...
    deviant.verdicts.breakers.height, deviant.verdicts.breakers.time = 2, block_time(2)
    envs = [_env(PAYER, "transfer", account="mule")]
    header = deviant.next_header(envs, block_time(3), 2)
    with pytest.raises(VerdictMismatch):  # ...proposes allow: the others refuse it
        honest.check_block(header, envs)
    good = honest.next_header(envs, block_time(3), 2)
    with pytest.raises(VerdictMismatch):
        deviant.check_block(good, envs)


def test_the_replay_derives_the_breaker_verdicts() -> None:
    chain = _chain()
    flagged = _env(SHOP, account="mule")
    blocks = [[flagged], [_alert(MON_A, flagged), _alert(MON_B, flagged)],
              [_env(PAYER, "transfer", account="mule")], [_close("account", "mule")],
              [_env(PAYER, "transfer", account="mule")]]
    for envs in blocks:
        _commit(chain, envs)
    replay = PolicyReplay(chain.genesis, PolicyEngine())
    for height, envs in enumerate(blocks, start=1):
        header = chain.header(height)
        assert header is not None
        computed = replay.block(header, envs, chain.verdict_entries(height))
        if height == 3:
            assert computed.verdicts[0].outcome == Outcome.REVIEW
    assert replay.state.breakers.to_bytes() == chain.breakers.to_bytes()
    # Without the flagged record the replay derives no trip: it disagrees at
    # block 2, whose entries commit the trip (PROTOCOL §10.5).
    blind = PolicyReplay(chain.genesis, PolicyEngine(), lookup=lambda _: None)
    blind.block(chain.header(1), blocks[0], chain.verdict_entries(1))  # type: ignore[arg-type]
    with pytest.raises(VerdictMismatch) as caught:
        blind.block(chain.header(2), blocks[1], chain.verdict_entries(2))  # type: ignore[arg-type]
    assert "entry 2" in str(caught.value)  # after the block's two verdicts


def test_breakers_are_persisted_with_the_policy_state() -> None:
    store = MemoryStore()
    chain = _chain(store)
    flagged = _env(SHOP, account="mule")
    _commit(chain, [flagged])
    _commit(chain, [_alert(MON_A, flagged), _alert(MON_B, flagged)])
    assert store.get(schema.META_BREAKERS) is None  # not at a multiple of 256
    chain.save_policy_state()  # what a clean stop does
    saved = store.get(schema.META_BREAKERS)
    assert saved == chain.breakers.to_bytes()
    reopened = _chain(store)
    assert reopened.breakers.to_bytes() == saved


# A block: (gap ms, [step]); a step: ("pay", account, submitter) | ("alert",
# monitor, which earlier payment in ppm) | ("close", account).
_STEP = st.one_of(
    st.tuples(st.just("pay"), st.sampled_from(["a1", "a2", "a3"]), st.integers(0, 1)),
    st.tuples(st.just("alert"), st.integers(0, 1), st.integers(0, 999_999)),
    st.tuples(st.just("close"), st.sampled_from(["a1", "a2", "a3"]), st.just(0)),
)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(st.tuples(st.integers(0, 12_000), st.lists(_STEP, min_size=1,
                                                                 max_size=5)),
                       min_size=2, max_size=14),
       cut=st.integers(1, 13), persisted=st.booleans())
def test_a_restarted_validator_derives_the_same_verdict_roots(
        blocks: list[tuple[int, list[tuple[str, Any, int]]]], cut: int,
        persisted: bool) -> None:
    steady = _chain()
    store = MemoryStore()
    restarted = _chain(store)
    payments: list[Envelope] = []
    now = block_time(1)
    for height, (gap, steps) in enumerate(blocks, start=1):
        now += gap
        envs: list[Envelope] = []
        for what, x, y in steps:
            if what == "pay":
                payments.append(_env([SHOP, PAYER][y], "transfer", account=x))
                envs.append(payments[-1])
            elif what == "alert" and payments:
                envs.append(_alert([MON_A, MON_B][x], payments[y * len(payments) // 1_000_000]))
            elif what == "close":
                envs.append(_close("account", x))
        if not envs:
            continue
        if height == cut + 1:
            # Restart: from the state saved at a clean stop, or (a crash with
            # nothing saved) from block 1.
            if persisted:
                restarted.save_policy_state()
            restarted = _chain(store)
        header = steady.next_header(envs, now, (height - 1) % 4)
        # The restarted validator derives the same verdicts (or it refuses).
        assert restarted.next_header(envs, now, (height - 1) % 4).hash == header.hash
        cert = certify(header, VALIDATORS, steady.genesis)
        steady.commit_block(header, envs, cert)
        restarted.commit_block(header, envs, cert)
    assert restarted.breakers.to_bytes() == steady.breakers.to_bytes()


def test_governance_turning_breakers_on_makes_the_next_blocks_version_2() -> None:
    from govhelpers import MEMBER_SEED_BASE, gov_record

    members = make_keys(2, MEMBER_SEED_BASE)
    doc = genesis_doc(VALIDATORS, SUBS, "test")
    for sub, roles in zip(doc["submitters"], ROLES):
        sub["roles"] = roles
    doc["members"] = [{"name": f"org{i}", "pubkey": k.public_key.hex()}
                      for i, k in enumerate(members)]
    chain = ChainStore(MemoryStore(), as_genesis(doc))
    turn_on = gov_record("test", members, 1, "gov.params.set",
                         {"params": {"breaker_alerts": 2, "breaker_monitors": 2}})
    flagged = _env(SHOP, account="mule")
    assert _commit(chain, [turn_on, flagged]).version == HEADER_VERSION  # in force from 2
    alerts = [_alert(MON_A, flagged), _alert(MON_B, flagged)]
    assert _commit(chain, alerts).version == HEADER_VERSION_VERDICTS
    held = _env(PAYER, "transfer", account="mule")
    assert _commit(chain, [held]).version == HEADER_VERSION_VERDICTS
    assert _verdict(chain, held) == ("review", "breaker:account:mule", REASON_OPEN)
    # The replay derives the same version rule.
    replay = PolicyReplay(chain.genesis, PolicyEngine())
    for height, envs in enumerate([[turn_on, flagged], alerts, [held]], start=1):
        replay.block(chain.header(height), envs, chain.verdict_entries(height))  # type: ignore[arg-type]
