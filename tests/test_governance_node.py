"""Governance on a running chain (issue 23, phase 2a): the chain store keeps
the membership derived from committed governance records (and rebuilds it
from its index on open), block validation and admission judge records by
it, and the API serves it.  In-memory chains, fixed keys and clocks."""

from __future__ import annotations

from typing import Any

import pytest
from govhelpers import gov_genesis, gov_record
from helpers import FIXED_TS, block_time, certify, commit_envelopes, make_envelope, make_keys

from consensus.simulation.app import SimApp, SimChain
from consensus.validation import validate_block
from ledger import schema
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.encoding import canonical
from ledger.errors import VerificationError
from ledger.fsck import fsck
from ledger.fsck_report import MISSING, STRAY
from ledger.genesis import Genesis
from ledger.pending import PendingRecords
from ledger.records import Envelope, decode_envelope
from ledger.storage import MemoryStore, WriteBatch
from node.durable import PendingWriter
from node.mempool import Admission, Mempool
from node.metrics import Metrics

NEW_SEED = 3_100_000


def new_submitter() -> SigningKey:
    return make_keys(1, NEW_SEED)[0]


def add_submitter(genesis: Genesis, members: list[SigningKey], key: SigningKey,
                  nonce: int = 1, signers: int = 2) -> Envelope:
    return gov_record(genesis.chain, members[:signers], nonce, "gov.submitter.add",
                      {"name": "new", "pubkey": key.public_key, "roles": ["submit"]})


def pause(genesis: Genesis, members: list[SigningKey], nonce: int, scope: str, value: str,
          kind: str = "gov.scope.pause") -> Envelope:
    return gov_record(genesis.chain, members[:2], nonce, kind, {"scope": scope, "value": value})


# -- the chain store -----------------------------------------------------------


def test_chain_store_applies_governance_and_rebuilds_it_from_its_index() -> None:
    genesis, validators, members, submitter = gov_genesis()
    store = MemoryStore()
    chain = ChainStore(store, genesis)
    key = new_submitter()
    gov = add_submitter(genesis, members, key)
    commit_envelopes(chain, [make_envelope(submitter, genesis.chain, 1), gov], validators)
    assert key.public_key not in chain.membership.at(1).submitters
    assert key.public_key in chain.membership.at(2).submitters
    assert [k for k, _ in store.iterate(schema.GOVERNANCE)] == [schema.governance_key(1, 1)]
    commit_envelopes(chain, [make_envelope(key, genesis.chain, 1)], validators)

    reopened = ChainStore(store, genesis)
    assert reopened.membership.height == 2
    assert [c.record_id for c in reopened.membership.changes] == [gov.id]
    assert reopened.membership.at(3).to_json() == chain.membership.at(3).to_json()
    assert reopened.next_header([], FIXED_TS, 0).validators == genesis.validators_hash


def test_a_block_whose_governance_record_does_not_apply_is_not_committed() -> None:
    genesis, validators, members, _ = gov_genesis()
    chain = ChainStore(MemoryStore(), genesis)
    weak = add_submitter(genesis, members, new_submitter(), signers=1)  # threshold is 2
    with pytest.raises(VerificationError) as info:
        commit_envelopes(chain, [weak], validators)
    assert info.value.code == "too_few_signatures"
    assert chain.height == 0 and not chain.membership.changes


# -- block validation ----------------------------------------------------------


class Sim:
    """A validation context over an in-memory chain (the simulator's)."""

    def __init__(self) -> None:
        self.genesis, self.validators, self.members, self.submitter = gov_genesis()
        self.chain = SimChain(self.genesis)
        self.app = SimApp(self.genesis, self.chain, 10_000)

    def block(self, envs: list[Envelope]) -> Any:
        height = self.chain.height + 1
        return self.chain.build_header(envs, block_time(height), height % 4)

    def validate(self, envs: list[Envelope]) -> None:
        self.app.now_ms = block_time(self.chain.height + 1)
        validate_block(self.block(envs), envs, self.app, round=0)

    def commit(self, envs: list[Envelope]) -> None:
        self.validate(envs)
        header = self.block(envs)
        self.chain.apply(header, tuple(envs), certify(header, self.validators, self.genesis))


def code_of(sim: Sim, envs: list[Envelope]) -> str:
    with pytest.raises(VerificationError) as info:
        sim.validate(envs)
    return info.value.code


def test_validation_judges_records_by_the_membership_in_force() -> None:
    sim = Sim()
    key = new_submitter()
    late = make_envelope(key, sim.genesis.chain, 1)
    assert code_of(sim, [late]) == "unknown_submitter"
    # Added at height 1, in force from height 2: not in the same block.
    assert code_of(sim, [add_submitter(sim.genesis, sim.members, key), late]) \
        == "unknown_submitter"
    sim.commit([add_submitter(sim.genesis, sim.members, key)])
    sim.commit([late])
    assert sim.chain.height == 2


def test_validation_refuses_paused_scopes_until_resumed() -> None:
    sim = Sim()
    sim.commit([pause(sim.genesis, sim.members, 1, "kind", "payment")])
    assert code_of(sim, [make_envelope(sim.submitter, sim.genesis.chain, 1)]) == "paused"
    sim.commit([make_envelope(sim.submitter, sim.genesis.chain, 2, kind="refund")])
    sim.commit([pause(sim.genesis, sim.members, 2, "kind", "payment", "gov.scope.resume")])
    sim.commit([make_envelope(sim.submitter, sim.genesis.chain, 1)])


def test_validation_refuses_a_rotated_out_key() -> None:
    sim = Sim()
    new = new_submitter()
    rotate = gov_record(sim.genesis.chain, sim.members[:2], 1, "gov.submitter.rotate",
                        {"pubkey": sim.submitter.public_key, "new_pubkey": new.public_key})
    sim.commit([rotate])
    assert code_of(sim, [make_envelope(sim.submitter, sim.genesis.chain, 5)]) == "key_rotated"
    sim.commit([make_envelope(new, sim.genesis.chain, 5)])


def test_validation_refuses_bad_governance_records() -> None:
    sim = Sim()
    key = new_submitter()
    assert code_of(sim, [add_submitter(sim.genesis, sim.members, key, signers=1)]) \
        == "too_few_signatures"
    stranger = make_keys(2, 3_200_000)
    assert code_of(sim, [gov_record(sim.genesis.chain, stranger, 1, "gov.submitter.add",
                                    {"name": "x", "pubkey": key.public_key,
                                     "roles": ["submit"]})]) == "not_a_member"
    expired = gov_record(sim.genesis.chain, sim.members[:2], 1, "gov.submitter.add",
                         {"name": "x", "pubkey": key.public_key, "roles": ["submit"]},
                         expires_height=0)
    assert code_of(sim, [expired]) == "proposal_expired"
    # Two records changing the same submitter at the same height conflict:
    # each alone is fine, the block holding both is not.
    a = add_submitter(sim.genesis, sim.members, key, nonce=1)
    b = gov_record(sim.genesis.chain, sim.members[1:3], 2, "gov.submitter.add",
                   {"name": "other", "pubkey": key.public_key, "roles": ["submit"]})
    sim.validate([a])
    sim.validate([b])
    assert code_of(sim, [a, b]) == "conflicting_proposal"


def test_validation_takes_one_validator_set_change_per_block() -> None:
    """Nodes follow validator-set changes (PROTOCOL §9.9): one is valid in a
    block; a second in the same block would take effect at the same height."""
    sim = Sim()
    extra, other = make_keys(2, 3_300_000)
    add = gov_record(sim.genesis.chain, sim.members[:2], 1, "gov.validator.add",
                     {"name": "v4", "pubkey": extra.public_key, "address": "127.0.0.1:1"})
    sim.validate([add])
    second = gov_record(sim.genesis.chain, sim.members[:2], 2, "gov.validator.add",
                        {"name": "v5", "pubkey": other.public_key, "address": "127.0.0.1:2"})
    assert code_of(sim, [add, second]) == "conflicting_proposal"


def test_validation_checks_every_cosignature() -> None:
    sim = Sim()
    gov = add_submitter(sim.genesis, sim.members, new_submitter())
    assert gov.signatures()[1][0] == sim.members[1].public_key
    forged = decode_envelope(canonical({
        "cosigs": [{"key": sim.members[1].public_key, "sig": bytes(64)}],
        "record": gov.record.record_bytes, "sig": gov.sig}), cosigs=True)
    assert code_of(sim, [forged]) == "bad_signature"


# -- admission -----------------------------------------------------------------


class Node:
    def __init__(self) -> None:
        self.genesis, self.validators, self.members, self.submitter = gov_genesis()
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.mempool = Mempool(self.genesis, self.chain, Metrics(), max_size=1000,
                               clock=lambda: FIXED_TS)

    async def admit(self, *envs: Envelope) -> list[str | None]:
        results: list[Admission] = await self.mempool.admit([e.envelope_bytes for e in envs])
        return [r.error.code if r.error is not None else r.status for r in results]

    def commit_pending(self) -> list[Envelope]:
        envs = self.mempool.select(1000, time_ms=block_time(self.chain.height + 1))
        commit_envelopes(self.chain, envs, self.validators)
        self.mempool.committed(envs)
        return envs


async def test_admission_of_governance_and_of_the_records_it_allows() -> None:
    node = Node()
    key = new_submitter()
    gov = add_submitter(node.genesis, node.members, key)
    assert await node.admit(make_envelope(key, node.genesis.chain, 1)) == ["unknown_submitter"]
    assert await node.admit(add_submitter(node.genesis, node.members, key, signers=1)) \
        == ["too_few_signatures"]
    forged = decode_envelope(canonical({
        "cosigs": [{"key": node.members[1].public_key, "sig": bytes(64)}],
        "record": gov.record.record_bytes, "sig": gov.sig}), cosigs=True)
    assert await node.admit(forged) == ["bad_signature"]
    assert await node.admit(gov) == ["accepted"]
    assert node.commit_pending() == [gov]
    assert await node.admit(make_envelope(key, node.genesis.chain, 1)) == ["accepted"]


async def test_admission_refuses_paused_scopes_and_pending_ones_wait() -> None:
    node = Node()
    chain = node.genesis.chain
    gov = pause(node.genesis, node.members, 1, "kind", "payment")
    waiting = make_envelope(node.submitter, chain, 1)
    assert await node.admit(gov, waiting) == ["accepted", "accepted"]
    # A block holding only the pause (another proposer's): the record
    # admitted before it is left out of later blocks, not dropped.
    commit_envelopes(node.chain, [gov], node.validators)
    node.mempool.committed([gov])
    assert waiting.id in node.mempool
    assert node.mempool.select(1000, time_ms=block_time(2)) == []
    assert await node.admit(make_envelope(node.submitter, chain, 2)) == ["paused"]
    assert await node.admit(make_envelope(node.submitter, chain, 3, kind="refund")) \
        == ["accepted"]
    assert await node.admit(pause(node.genesis, node.members, 2, "kind", "payment",
                                  "gov.scope.resume")) == ["accepted"]
    assert [e.record.kind for e in node.commit_pending()] == ["refund", "gov.scope.resume"]
    assert [e.id for e in node.commit_pending()] == [waiting.id]


async def test_pending_records_of_a_rotated_out_key_are_dropped() -> None:
    node = Node()
    chain = node.genesis.chain
    new = new_submitter()
    old_record = make_envelope(node.submitter, chain, 7)
    rotate = gov_record(chain, node.members[:2], 1, "gov.submitter.rotate",
                        {"pubkey": node.submitter.public_key, "new_pubkey": new.public_key})
    assert await node.admit(rotate) == ["accepted"]
    node.commit_pending()
    assert await node.admit(old_record) == ["key_rotated"]
    assert await node.admit(make_envelope(new, chain, 7)) == ["accepted"]


def test_fsck_checks_the_governance_index_of_a_chain_governance_changed() -> None:
    genesis, validators, members, submitter = gov_genesis()
    store = MemoryStore()
    chain = ChainStore(store, genesis)
    key = new_submitter()
    commit_envelopes(chain, [make_envelope(submitter, genesis.chain, 1),
                             add_submitter(genesis, members, key)], validators)
    commit_envelopes(chain, [make_envelope(key, genesis.chain, 1)], validators)
    for signatures in (False, True):
        assert fsck(store, genesis, verify_signatures=signatures).listed == []
    batch = WriteBatch()
    batch.delete(schema.governance_key(1, 1))
    batch.put(schema.governance_key(2, 2), b"")  # the new submitter's record: not governance
    store.write(batch, sync=True)
    found = {(d.problem, d.key) for d in fsck(store, genesis).listed}
    assert found == {(MISSING, schema.governance_key(1, 1)), (STRAY, schema.governance_key(2, 2))}


async def test_a_restart_keeps_acknowledged_records_of_a_paused_scope_waiting() -> None:
    genesis, validators, members, submitter = gov_genesis()
    store = MemoryStore()

    def start() -> tuple[ChainStore, PendingWriter, Mempool]:
        chain = ChainStore(store, genesis)
        writer = PendingWriter(PendingRecords(store), threaded=False)
        writer.start()
        return chain, writer, Mempool(genesis, chain, Metrics(), max_size=1000,
                                      durable=writer, clock=lambda: FIXED_TS)

    chain, writer, mempool = start()
    gov = pause(genesis, members, 1, "kind", "payment")
    acked = make_envelope(submitter, genesis.chain, 1)
    results = await mempool.admit([acked.envelope_bytes])
    assert [r.status for r in results] == ["accepted"]
    commit_envelopes(chain, [gov], validators)
    mempool.committed([gov])
    await writer.stop()

    chain, writer, mempool = start()  # the node restarts while the scope is paused
    assert await mempool.restore() == (1, 0)
    assert acked.id in mempool
    assert mempool.select(1000, time_ms=block_time(2)) == []
    fresh = await mempool.admit([make_envelope(submitter, genesis.chain, 2).envelope_bytes])
    assert fresh[0].error is not None and fresh[0].error.code == "paused"
    await writer.stop()
