"""The node's policy engine (node/policy_runtime.py): the CEL evaluator of
ledger/policy behind the verdict machinery, installed by governance, and
rebuilt from the committed blocks when a node starts."""

from __future__ import annotations

from govhelpers import gov_genesis, gov_record
from helpers import block_time, certify, make_envelope
from test_policy_engine import POLICY

import pytest

from ledger import schema
from ledger.chain import ChainStore
from ledger.errors import StorageCorruption
from ledger.policy import policy_from_json
from ledger.records import Envelope
from ledger.storage import MemoryStore, WriteBatch
from ledger.verdicts import Status
from node.policy_runtime import install_policy_engine


def _commit(chain: ChainStore, validators: list, envelopes: list[Envelope]) -> None:  # type: ignore[type-arg]
    height = chain.height + 1
    header = chain.next_header(envelopes, block_time(height), (height - 1) % 4)
    chain.commit_block(header, envelopes, certify(header, validators, chain.genesis))


def test_a_governed_policy_decides_verdicts_and_a_restart_derives_the_same() -> None:
    genesis, validators, members, submitter = gov_genesis()
    store = MemoryStore()
    chain = ChainStore(store, genesis)
    install_policy_engine(chain)
    policy = policy_from_json(POLICY).policy_bytes
    _commit(chain, validators, [gov_record(genesis.chain, members[:2], 1, "gov.policy.set",
                                           {"policy": policy})])
    assert chain.header(1).version == 1  # type: ignore[union-attr]
    big = make_envelope(submitter, genesis.chain, 2, body={"amount": 2_000_000,
                                                           "currency": "EUR"},
                        origin={"account": "acc-1", "country": "DE"})
    other = make_envelope(submitter, genesis.chain, 3, body={"amount": 10, "currency": "EUR"},
                          origin={"account": "acc-2", "country": "DE"})
    _commit(chain, validators, [big, other])
    assert chain.header(2).version == 2  # type: ignore[union-attr]
    held = chain.record_verdict(big.id)
    assert held is not None and held.status == Status.HELD
    assert (held.verdict.rule, held.verdict.approvals, held.verdict.role,
            held.verdict.policy) == ("large", 2, "treasury", 1)
    review = chain.record_verdict(other.id)
    assert review is not None and review.status == Status.REVIEW  # the policy's default
    # A restarted node rebuilds the engine from its blocks and derives the
    # same verdicts for the next block as the node that never stopped.
    reopened = ChainStore(store, genesis)
    install_policy_engine(reopened)
    nxt = [make_envelope(submitter, genesis.chain, 4, body={"amount": 5, "currency": "EUR"},
                         origin={"account": "acc-1", "country": "DE"})]
    a = chain.next_verdicts(3, block_time(3), nxt)
    b = reopened.next_verdicts(3, block_time(3), nxt)
    assert a.version == b.version == 2 and a.root == b.root and a.entries == b.entries
    # Both wait for people: the held payment and the record in review (§10.10).
    assert reopened.verdicts.held.keys() == {big.id, other.id}
    assert reopened.verdicts.held[other.id].review


def test_a_restart_loads_the_persisted_state_and_replays_only_the_blocks_after_it() -> None:
    """The state saved at a clean stop (ChainStore.close) is what a restart
    starts from: the blocks below it are not read again, so neither start
    time nor a damaged old envelope depends on the chain's length."""
    genesis, validators, members, submitter = gov_genesis()
    store = MemoryStore()
    chain = ChainStore(store, genesis)
    install_policy_engine(chain)
    policy = policy_from_json(POLICY).policy_bytes
    _commit(chain, validators, [gov_record(genesis.chain, members[:2], 1, "gov.policy.set",
                                           {"policy": policy})])
    pay = [make_envelope(submitter, genesis.chain, 2 + i, body={"amount": 10 + i,
                                                                "currency": "EUR"},
                         origin={"account": "acc-1", "country": "DE"}) for i in range(3)]
    _commit(chain, validators, pay[:2])
    chain.save_policy_state()
    saved = chain.policy_state_bytes()
    assert saved is not None and saved == chain.verdicts.engine.state_bytes()
    _commit(chain, validators, pay[2:])  # after the save: replayed at the restart
    # Block 2's envelopes gone: a restart that read them would fail.
    gone = WriteBatch()
    for leaf in (1, 2):
        gone.delete(schema.envelope_key(leaf))
    store.write(gone)
    reopened = ChainStore(store, genesis, check=False)
    install_policy_engine(reopened)
    assert reopened.verdicts.engine.state_bytes() == chain.verdicts.engine.state_bytes()
    # A damaged saved state is dropped and the whole chain replayed.
    junk = WriteBatch()
    junk.put(schema.META_POLICY_STATE, b"junk")
    store.write(junk)
    with pytest.raises(StorageCorruption):  # ...which now meets the missing envelopes
        install_policy_engine(ChainStore(store, genesis, check=False))


def test_the_state_is_saved_once_the_records_since_the_last_save_outnumber_its_entries(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A save costs in proportion to the windows' entries, so after
    ``POLICY_STATE_EVERY`` blocks it also waits until the records committed
    since the last save are at least as many (ledger/chain.py)."""
    from ledger import chain as chain_module
    from ledger.policy.state import state_from_bytes

    monkeypatch.setattr(chain_module, "POLICY_STATE_EVERY", 2)
    genesis, validators, members, submitter = gov_genesis()
    chain = ChainStore(MemoryStore(), genesis)
    install_policy_engine(chain)
    nonce = iter(range(2, 1000))

    def records(kind: str, n: int) -> list[Envelope]:
        return [make_envelope(submitter, genesis.chain, next(nonce), kind=kind,
                              body={"amount": 10, "currency": "EUR"},
                              origin={"account": f"acc-{i}", "country": "DE"})
                for i in range(n)]

    def saved_height() -> int | None:
        data = chain.policy_state_bytes()
        return None if data is None else state_from_bytes(data).height

    _commit(chain, validators, [gov_record(genesis.chain, members[:2], 1, "gov.policy.set",
                                           {"policy": policy_from_json(POLICY).policy_bytes})])
    assert saved_height() is None  # one block since the start
    _commit(chain, validators, records("payment", 10))  # 10 window entries, 11 records
    assert saved_height() == 2 and chain.verdicts.engine.state_entries() == 10
    _commit(chain, validators, records("payment", 1))
    _commit(chain, validators, records("payment", 1))  # 2 blocks, 2 records, 12 entries
    assert saved_height() == 2
    _commit(chain, validators, records("transfer", 9))  # 11 records: the window counts
    assert saved_height() == 2                           # payments only
    _commit(chain, validators, records("transfer", 1))  # 12 records, 12 entries
    assert saved_height() == 6 and chain.verdicts.engine.state_entries() == 12
