"""Verdict proofs in bundles (PROTOCOL §10.11): a served bundle carries the
record's verdict entry and its path to the version 2 header's verdict root,
and the transition that decided a held record with its own certified block;
offline verification proves them and names the step of any tampering; bundles
without them keep verifying."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from govhelpers import MEMBER_SEED_BASE, gov_record
from helpers import as_genesis, block_time, certify, genesis_doc, make_envelope, make_keys
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_fakes import LimitPolicy
from test_fuzz_decoders import _paths, json_values

from ledger.approvals import DEFAULT_APPROVAL_WINDOW_MS
from ledger.blocks import Header
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.encoding import canonical, decode
from ledger.errors import VerificationError
from ledger.genesis import Genesis
from ledger.policy import Outcome
from ledger.proofs import build_bundle
from ledger.proofs_verdicts import build_served_bundle
from ledger.records import Envelope
from ledger.storage import MemoryStore
from ledger.verdicts import Status
from ledger.verify import STEPS, verify_bundle
from ledger.verify_epochs import V2_STEPS
from ledger.verify_verdicts import VERDICT_STEPS

VALIDATORS = make_keys(4)
SUBS = make_keys(5, 1_000_000)  # 0: payer; 1-3: treasury; 4: ordinary
MEMBERS = make_keys(3, MEMBER_SEED_BASE)
NEW_VALIDATOR = make_keys(1, 3_000_000)[0]
KEYS_BY_PUB = {k.public_key: k for k in [*VALIDATORS, NEW_VALIDATOR]}


def _genesis(members: bool = False) -> Genesis:
    doc = genesis_doc(VALIDATORS, SUBS, "test")
    for i, sub in enumerate(doc["submitters"]):
        # 1-3 are also reviewers (PROTOCOL §10.10)
        sub["roles"] = (["submit", "treasury"] if i == 0 else
                        ["submit", "treasury", "review"] if i in (1, 2, 3) else ["submit"])
    if members:
        doc["members"] = [{"name": f"org{i}", "pubkey": k.public_key.hex()}
                          for i, k in enumerate(MEMBERS)]
    return as_genesis(doc)


def _commit(chain: ChainStore, envelopes: list[Envelope], time: int | None = None) -> Header:
    height = chain.height + 1
    epoch = chain.membership.validator_genesis(height)
    header = chain.next_header(envelopes, block_time(height) if time is None else time,
                               (height - 1) % epoch.n)
    keys = [KEYS_BY_PUB[v.pubkey] for v in epoch.validators]
    chain.commit_block(header, envelopes, certify(header, keys, epoch))
    return header


def _pay(key: SigningKey, nonce: int, amount: int, kind: str = "payment") -> Envelope:
    return make_envelope(key, "test", nonce, kind=kind, body={"amount": amount, "currency": "EUR"})


def _approve(key: SigningKey, nonce: int, target: bytes) -> Envelope:
    return make_envelope(key, "test", nonce, parents=[target], kind="approval", body={})


def _chain(policy: bool = True, members: bool = False) -> ChainStore:
    chain = ChainStore(MemoryStore(), _genesis(members))
    if policy:
        chain.set_policy_engine(LimitPolicy())
    return chain


def _served(chain: ChainStore, record: bytes) -> dict[str, Any]:
    """The bundle as the node serves it, through JSON as an auditor reads it."""
    return json.loads(json.dumps(build_served_bundle(chain, chain.membership, record)))


class World:
    """One chain with a policy: allowed, denied, review, held, approved,
    expired records, and one approved in its own block."""

    def __init__(self) -> None:
        self.chain = chain = _chain()
        self.allowed = _pay(SUBS[4], 1, 10)
        self.denied = make_envelope(SUBS[4], "test", 2, kind="blocked", body={})
        self.review = make_envelope(SUBS[4], "test", 3, kind="flagged", body={})
        self.held = _pay(SUBS[0], 1, 50_000)
        self.approved = _pay(SUBS[0], 2, 60_000)
        self.expired = _pay(SUBS[0], 3, 70_000)
        first = _commit(chain, [self.allowed, self.denied, self.review, self.approved,
                                self.expired])                                 # 1
        _commit(chain, [_approve(SUBS[1], 1, self.approved.id),
                        _approve(SUBS[1], 2, self.expired.id)])                # 2
        _commit(chain, [_approve(SUBS[2], 3, self.approved.id)])                # 3: approved
        late = first.time + DEFAULT_APPROVAL_WINDOW_MS + 1
        self.same = _pay(SUBS[0], 4, 80_000)
        _commit(chain, [_approve(SUBS[3], 4, self.approved.id), self.same,
                        _approve(SUBS[1], 5, self.same.id),
                        _approve(SUBS[2], 6, self.same.id), self.held], time=late)  # 4
        self.genesis = chain.genesis

    def bundle(self, env: Envelope) -> dict[str, Any]:
        return _served(self.chain, env.id)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def _fails_at(bundle: Any, genesis: Genesis, step: str) -> VerificationError:
    with pytest.raises(VerificationError) as err:
        verify_bundle(bundle, genesis)
    assert err.value.step == step, (err.value.step, err.value.message)
    return err.value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _entry(doc: dict[str, Any]) -> dict[str, Any]:
    value = decode(base64.b64decode(doc["entry"]))
    assert isinstance(value, dict)
    return value


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("name, outcome, status, rule", [
    ("allowed", Outcome.ALLOW, Status.ALLOWED, "default"),
    ("denied", Outcome.DENY, Status.DENIED, "no_blocked"),
    ("review", Outcome.REVIEW, Status.REVIEW, "flag"),
    ("held", Outcome.APPROVE, Status.HELD, "large"),
])
def test_a_served_bundle_proves_the_records_verdict(world: World, name: str, outcome: Outcome,
                                                     status: Status, rule: str) -> None:
    env: Envelope = getattr(world, name)
    bundle = world.bundle(env)
    assert bundle["format"] == "auditledger-proof/1"
    assert set(bundle["verdict"]) == {"entry", "size", "path"}
    height = world.chain.record_location(env.id)[0]  # type: ignore[index]
    assert bundle["verdict"]["size"] == len(world.chain.verdict_entries(height) or [])
    verified = verify_bundle(bundle, world.genesis)
    found = verified.verdict
    assert found is not None and found.committed and found.transition is None
    assert (found.verdict.outcome, found.status, found.verdict.rule) == (outcome, status, rule)
    assert found.verdict.policy == 1 and found.verdict.record == env.id
    rv = world.chain.record_verdict(env.id)
    assert rv is not None and found.verdict == rv.verdict and found.index == rv.index


@pytest.mark.parametrize("name, status, height, approvals", [
    ("approved", Status.APPROVED, 3, 2), ("expired", Status.EXPIRED, 4, 1),
    ("same", Status.APPROVED, 4, 2),
])
def test_the_transition_that_decided_a_held_record_is_proven(
        world: World, name: str, status: Status, height: int, approvals: int) -> None:
    bundle = world.bundle(getattr(world, name))
    transition = bundle["verdict"]["transition"]
    assert transition["height"] == height
    found = verify_bundle(bundle, world.genesis).verdict
    assert found is not None and found.status == status and found.transition_height == height
    assert found.transition is not None and len(found.transition.approvals) == approvals
    assert found.to_json()["final_height"] == height


def test_bundles_without_a_verdict_proof_keep_verifying(world: World) -> None:
    # the §5 bundle as before (no verdict): valid, and proves no verdict
    plain = json.loads(json.dumps(build_bundle(world.chain, world.allowed.id)))
    assert "verdict" not in plain
    assert verify_bundle(plain, world.genesis).verdict is None
    # against a later block (?height=): no verdict either
    later = json.loads(json.dumps(build_bundle(world.chain, world.allowed.id, 3)))
    assert verify_bundle(later, world.genesis).verdict is None
    later["verdict"] = world.bundle(world.allowed)["verdict"]
    _fails_at(later, world.genesis, "verdict")


def test_a_version_1_block_proves_allow_with_no_policy() -> None:
    chain = _chain(policy=False)
    env = _pay(SUBS[4], 1, 50_000)
    _commit(chain, [env])
    bundle = _served(chain, env.id)
    assert "verdict" not in bundle and bundle["format"] == "auditledger-proof/1"
    found = verify_bundle(bundle, chain.genesis).verdict
    assert found is not None and not found.committed
    assert (found.verdict.outcome, found.verdict.policy, found.status) == (
        Outcome.ALLOW, 0, Status.ALLOWED)
    # a verdict field on a version 1 block's bundle is refused
    with_field = dict(bundle, verdict={"entry": _b64(b"\x80"), "size": 1, "path": []})
    _fails_at(with_field, chain.genesis, "verdict")


# ------------------------------------------------------------------ tampering


def _retarget(doc: dict[str, Any], **change: Any) -> str:
    value = _entry(doc)
    value.update(change)
    return _b64(canonical(value))


def test_a_tampered_verdict_entry_is_refused(world: World) -> None:
    good = world.bundle(world.denied)
    for entry, step in [
        (_retarget(good["verdict"], outcome="allow", rule="default", reason=""),
         "verdict_inclusion"),                                   # a better verdict
        (_retarget(good["verdict"], policy=2), "verdict_inclusion"),
        (_retarget(good["verdict"], record=world.allowed.id), "verdict"),  # another record's
        (_b64(b"\x81\xa1x\x01"), "verdict"),                      # not a verdict
        (world.bundle(world.allowed)["verdict"]["entry"], "verdict"),
    ]:
        bad = copy.deepcopy(good)
        bad["verdict"]["entry"] = entry
        _fails_at(bad, world.genesis, step)


def test_a_tampered_path_size_or_root_is_refused(world: World) -> None:
    good = world.bundle(world.review)
    bad = copy.deepcopy(good)
    bad["verdict"]["path"][0] = "00" * 32
    _fails_at(bad, world.genesis, "verdict_inclusion")
    bad = copy.deepcopy(good)
    bad["verdict"]["path"] = bad["verdict"]["path"][:-1]
    _fails_at(bad, world.genesis, "verdict_inclusion")
    bad = copy.deepcopy(good)
    bad["verdict"]["size"] = 3  # below the block's five records
    _fails_at(bad, world.genesis, "verdict")
    bad = copy.deepcopy(good)
    bad["verdict"]["size"] = 1 << 70
    _fails_at(bad, world.genesis, "verdict_inclusion")
    # the root is in the header, which the certificate covers
    header = decode(base64.b64decode(good["header"]))
    assert isinstance(header, dict)
    header["verdicts"] = bytes(32)
    bad = dict(copy.deepcopy(good), header=_b64(canonical(header)))
    _fails_at(bad, world.genesis, "certificate_block")
    # the shape is step ``bundle``
    for change in ({"path": "x"}, {"size": -1}, {"size": True}, {"entry": "%%"},
                   {"extra": 1}, {"path": ["AB" * 32]}):
        bad = copy.deepcopy(good)
        bad["verdict"].update(change)
        _fails_at(bad, world.genesis, "bundle")
    _fails_at(dict(good, verdict=None), world.genesis, "bundle")


def test_a_tampered_transition_is_refused(world: World) -> None:
    good = world.bundle(world.approved)
    steps = []
    for change, step in [
        ({"entry": _retarget(good["verdict"]["transition"], status="expired")},
         "transition"),                                        # before the deadline
        ({"entry": _retarget(good["verdict"]["transition"], approvals=[bytes(32)] * 2)},
         "transition_inclusion"),                              # other approvers
        ({"entry": _retarget(good["verdict"]["transition"], approvals=[])}, "transition"),
        ({"entry": world.bundle(world.same)["verdict"]["transition"]["entry"]}, "transition"),
        ({"entry": good["verdict"]["entry"]}, "transition"),  # the verdict, not a transition
        ({"index": 0}, "transition"),                          # among the block's verdicts
        ({"path": ["00" * 32]}, "transition_inclusion"),
        ({"height": 1}, "transition_header"),                  # header says 3
        ({"height": 0}, "transition_header"),                  # below the record's block
        ({"header": world.bundle(world.expired)["verdict"]["transition"]["header"],
          "height": 4}, "transition_certificate"),             # another block's header
        ({"certificate": {**good["verdict"]["transition"]["certificate"],
                          "signatures": good["verdict"]["transition"]["certificate"]
                          ["signatures"][:2]}}, "transition_certificate"),
    ]:
        bad = copy.deepcopy(good)
        bad["verdict"]["transition"].update(change)
        _fails_at(bad, world.genesis, step)
        steps.append(step)
    # a transition attached to a verdict that cannot have one
    allowed = world.bundle(world.allowed)
    allowed["verdict"]["transition"] = good["verdict"]["transition"]
    _fails_at(allowed, world.genesis, "transition")
    assert set(steps) | {"verdict", "verdict_inclusion"} == set(VERDICT_STEPS)


def test_verdict_steps_follow_the_bundle_steps() -> None:
    assert not set(VERDICT_STEPS) & (set(STEPS) | set(V2_STEPS))


# ------------------------------------------------------------------ review decisions


def _decide(key: SigningKey, nonce: int, target: bytes, decision: str) -> Envelope:
    return make_envelope(key, "test", nonce, parents=[target], kind="risk.decision",
                         body={"decision": decision, "note": f"{decision} by test"})


def review_bundles() -> tuple[Genesis, dict[str, dict[str, Any]]]:
    """Records decided by reviewers (PROTOCOL §10.10): one in review approved,
    one in review rejected, a held one rejected before its deadline."""
    chain = _chain()
    approved = make_envelope(SUBS[4], "test", 1, kind="flagged", body={})
    rejected = make_envelope(SUBS[4], "test", 2, kind="flagged", body={})
    held = _pay(SUBS[0], 1, 50_000)
    _commit(chain, [approved, rejected, held])
    _commit(chain, [_decide(SUBS[1], 1, approved.id, "approve"),
                    _decide(SUBS[2], 1, rejected.id, "reject")])
    _commit(chain, [_decide(SUBS[3], 1, held.id, "reject")])
    return chain.genesis, {"review_approved": _served(chain, approved.id),
                           "review_rejected": _served(chain, rejected.id),
                           "held_rejected": _served(chain, held.id)}


def test_review_decisions_are_proven_transitions() -> None:
    genesis, bundles = review_bundles()
    got = {}
    for name, bundle in bundles.items():
        found = verify_bundle(bundle, genesis).verdict
        assert found is not None and found.transition is not None
        got[name] = (found.verdict.outcome.value, found.status.value, found.transition_height,
                     len(found.transition.approvals))
    assert got == {"review_approved": ("review", "approved", 2, 1),
                   "review_rejected": ("review", "rejected", 2, 1),
                   "held_rejected": ("approve", "rejected", 3, 1)}
    # a review verdict never expires
    bad = copy.deepcopy(bundles["review_rejected"])
    bad["verdict"]["transition"]["entry"] = _retarget(bad["verdict"]["transition"],
                                                      status="expired")
    _fails_at(bad, genesis, "transition")


# ------------------------------------------------------------------ epochs


def test_a_transition_after_a_validator_change_makes_the_bundle_version_2() -> None:
    chain = _chain(members=True)
    big = _pay(SUBS[0], 1, 50_000)
    _commit(chain, [big])                                                      # 1
    add = gov_record("test", MEMBERS[:2], 1, "gov.validator.add",
                     {"name": "v4", "pubkey": NEW_VALIDATOR.public_key,
                      "address": "10.0.0.4:7700"})
    _commit(chain, [add, _approve(SUBS[1], 1, big.id)])                        # 2
    _commit(chain, [_pay(SUBS[4], 1, 1)])
    _commit(chain, [_pay(SUBS[4], 2, 1)])
    _commit(chain, [_approve(SUBS[2], 2, big.id)])                             # 5: approved
    assert chain.membership.at(5).validators_hash != chain.membership.at(1).validators_hash
    bundle = _served(chain, big.id)
    assert bundle["format"] == "auditledger-proof/2"
    assert [g["record_id"] for g in bundle["governance"]] == [add.id.hex()]
    found = verify_bundle(bundle, chain.genesis).verdict
    assert found is not None and found.status == Status.APPROVED and found.transition_height == 5
    # without the governance record the transition's block is of an unknown set
    plain = dict(bundle, format="auditledger-proof/1")
    del plain["governance"]
    _fails_at(plain, chain.genesis, "transition_header")
    # a record after the change proves its verdict in a version 2 bundle too
    after = _served(chain, _last_record(chain))
    assert verify_bundle(after, chain.genesis).verdict is not None


def _last_record(chain: ChainStore) -> bytes:
    from ledger.records import stored_record_id

    leaf = chain.header(chain.height).log_size - 1  # type: ignore[union-attr]
    return stored_record_id(chain.envelope_at(leaf), leaf)


# ------------------------------------------------------------------ property


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(["ok", "blocked", "flagged", "big"]), min_size=1, max_size=9),
       st.data())
def test_every_record_of_a_block_proves_its_own_verdict_and_no_other(
        kinds: list[str], data: st.DataObject) -> None:
    chain = _chain()
    envs = [make_envelope(SUBS[4], "test", i + 1, kind=k if k != "big" else "payment",
                          body={"amount": 50_000 if k == "big" else 1})
            for i, k in enumerate(kinds)]
    _commit(chain, envs)
    bundles = [_served(chain, e.id) for e in envs]
    for env, bundle in zip(envs, bundles):
        found = verify_bundle(bundle, chain.genesis).verdict
        assert found is not None and found.verdict.record == env.id
    i = data.draw(st.integers(0, len(envs) - 1))
    j = data.draw(st.integers(0, len(envs) - 1))
    if i != j:  # another record's entry and path never prove this one's verdict
        swapped = copy.deepcopy(bundles[i])
        swapped["verdict"] = bundles[j]["verdict"]
        _fails_at(swapped, chain.genesis, "verdict")
        swapped["verdict"] = dict(bundles[i]["verdict"], path=bundles[j]["verdict"]["path"])
        if bundles[i]["verdict"]["path"] != bundles[j]["verdict"]["path"]:
            _fails_at(swapped, chain.genesis, "verdict_inclusion")


def test_the_documented_verdict_steps_are_the_verifiers() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    section = text.split("### 10.11 Verdict proofs in bundles", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\d\. `([a-z_]+)`", section, re.M)
    assert tuple(listed) == VERDICT_STEPS


# ------------------------------------------------------------------ ledger-audit verify


def _cli(world: World, bundle: Any, tmp_path: Any, *extra: str) -> Any:
    from click.testing import CliRunner

    from client.audit.cli import main

    (tmp_path / "b.json").write_text(json.dumps(bundle))
    (tmp_path / "g.json").write_text(json.dumps(world.genesis.raw))
    return CliRunner().invoke(main, ["verify", str(tmp_path / "b.json"), "--genesis",
                                     str(tmp_path / "g.json"), *extra])


def test_ledger_audit_verify_prints_the_verified_verdict(world: World, tmp_path: Any) -> None:
    result = _cli(world, world.bundle(world.denied), tmp_path)
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[1]
    assert line.startswith("  verdict: deny (rule no_blocked, blocked_kind, policy version 1), "
                           "status denied (verified: its entry 1 under the verdict root of "
                           "block 1)"), line
    result = _cli(world, world.bundle(world.approved), tmp_path, "--json")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output)["verdict"]
    assert (verdict["outcome"], verdict["rule"], verdict["policy_version"], verdict["status"],
            verdict["final_height"], verdict["proven_by"]) == (
        "approve", "large", 1, "approved", 3, "verdict_root")
    assert len(verdict["approved_by"]) == 2
    result = _cli(world, world.bundle(world.held), tmp_path)
    assert "status held as of this bundle (a later decision is not excluded)" in result.output
    plain = json.loads(json.dumps(build_bundle(world.chain, world.allowed.id)))
    result = _cli(world, plain, tmp_path)
    assert result.exit_code == 0 and "verdict: not proven by this bundle" in result.output
    assert json.loads(_cli(world, plain, tmp_path, "--json").output)["verdict"] is None


def test_ledger_audit_verify_exits_1_on_a_bad_verdict_proof(world: World, tmp_path: Any) -> None:
    bad = world.bundle(world.denied)
    bad["verdict"]["entry"] = _retarget(bad["verdict"], outcome="allow", rule="", reason="")
    result = _cli(world, bad, tmp_path)
    assert result.exit_code == 1 and "INVALID at step 'verdict_inclusion'" in result.output
    bad = world.bundle(world.expired)
    bad["verdict"]["transition"]["path"] = []
    doc = json.loads(_cli(world, bad, tmp_path, "--json").output)
    assert (doc["valid"], doc["step"]) == (False, "transition_inclusion")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 70), st.integers(0, 70), st.data())
def test_the_served_trees_paths_are_rfc_9162_paths(records: int, transitions: int,
                                                   data: st.DataObject) -> None:
    """The bundle builder's cached tree of perfect nodes gives the same root
    and paths as ledger/verdicts.py's list functions, for every block shape."""
    from ledger.proofs_verdicts import _BlockTree, _pairs
    from ledger.verdicts import entry_leaves, entry_path, verdict_root

    entries = [bytes([i % 256, i // 256]) for i in range(records + transitions)]
    levels = [entry_leaves(entries, records)]
    while len(levels[-1]) > 1:
        levels.append(_pairs(levels[-1]))
    tree = _BlockTree(entries, levels)
    assert tree.root() == verdict_root(entries, records)
    index = data.draw(st.integers(0, len(entries) - 1))
    assert tree.path(index) == entry_path(entries, records, index)


_FUZZ_WORLD: list[World] = []


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.data())
def test_mutated_verdict_proofs_raise_typed_errors_only(data: st.DataObject) -> None:
    """A verdict proof with any field replaced or dropped (a transition's
    too): verification passes or raises a VerificationError, nothing else."""
    if not _FUZZ_WORLD:
        _FUZZ_WORLD.append(World())
    w = _FUZZ_WORLD[0]
    good = w.bundle(w.approved)
    doc = copy.deepcopy(good)
    paths = [p for p in _paths(good) if p and p[0] == "verdict"]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        target: Any = doc
        try:
            for key in path[:-1]:
                target = target[key]
            if data.draw(st.booleans()) and isinstance(target, dict):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue
    try:
        verify_bundle(doc, w.genesis)
    except VerificationError:
        pass
