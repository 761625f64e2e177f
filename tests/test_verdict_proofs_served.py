"""The served bundle finds a held record's transition through the ``f``
index and its block's cached verdict tree (ledger/proofs_verdicts.py), not
through ``ChainStore.record_verdict`` (which decodes the whole block's
entries): the same transition, at the same height and index, for every
record of a chain with allowed, denied, in-review, held, approved and
expired records; and a store whose index points at the wrong entry is
reported as corrupt, as record_verdict reports it."""

from __future__ import annotations

import pytest
from test_verdict_proofs import World

from ledger import schema
from ledger.errors import StorageCorruption
from ledger.proofs_verdicts import build_served_bundle
from ledger.records import decode_committed_envelope
from ledger.storage import WriteBatch


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def _ids(world: World) -> list[bytes]:
    """Every committed record's id, in log order."""
    chain = world.chain
    return [decode_committed_envelope(chain.envelope_at(leaf)).id
            for leaf in range(chain.log.size)]


def _point(world: World, record: bytes, height: int, index: int) -> None:
    batch = WriteBatch()
    batch.put(schema.final_key(record), schema.pack_location(height, index))
    world.chain._store.write(batch)


def test_served_transitions_are_the_stores(world: World) -> None:
    chain = world.chain
    seen = 0
    for rid in _ids(world):
        rv = chain.record_verdict(rid)
        assert rv is not None
        doc = build_served_bundle(chain, chain.membership, rid)["verdict"]
        if rv.transition is None:
            assert "transition" not in doc
            continue
        seen += 1
        assert (doc["transition"]["height"], doc["transition"]["index"]) == (
            rv.final_height, rv.final_index)
    assert seen == 3  # approved, expired, approved in its own block


def test_an_index_pointing_at_another_entry_is_corruption() -> None:
    world = World()
    chain, rid = world.chain, world.approved.id
    height, index = chain.final_location(rid)  # type: ignore[misc]
    _point(world, rid, height, 0)  # a verdict entry, not a transition
    with pytest.raises(StorageCorruption):
        build_served_bundle(chain, chain.membership, rid)
    with pytest.raises(StorageCorruption):
        chain.record_verdict(rid)
    _point(world, rid, height, index + 50)  # past the block's entries
    with pytest.raises(StorageCorruption):
        build_served_bundle(chain, chain.membership, rid)
