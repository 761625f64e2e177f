"""The stored form of a block's verdict entries by shape (ledger/verdict_pack.py):
it gives back the entries exactly, its leaves are the entries' leaves in C and
in Python, its decoder refuses anything but its own bytes, and a store may
hold either form (blocks written before it keep the plain one)."""

from __future__ import annotations

import pytest
from helpers import as_genesis, block_time, certify, genesis_doc, make_envelope, make_keys
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_fakes import LimitPolicy

from ledger import schema, verdict_pack
from ledger.chain import ChainStore, upgrade_schema
from ledger.encoding import H, packb_plain
from ledger.errors import BadEncoding
from ledger.native import native
from ledger.policy import Outcome
from ledger.storage import MemoryStore, WriteBatch
from ledger.verdict_pack import (
    MAX_SHAPES,
    PACKED_TAG,
    PackedEntries,
    ShapeTable,
    pack,
    split,
    unpack,
)
from ledger.verdicts import (
    _VERDICT_LEAF,
    Verdict,
    decode_verdict,
    encode_entries,
    packed_root,
    verdict_root,
)

_text = st.text(max_size=40)


def _verdicts(draw_ids: list[bytes], rules: list[str]) -> list[Verdict]:
    return [Verdict(rid, Outcome.DENY if i % 3 else Outcome.ALLOW, rules[i % len(rules)],
                    "why", policy=2) for i, rid in enumerate(draw_ids)]


def _packed(verdicts: list[Verdict], rest: list[bytes]) -> PackedEntries:
    table = ShapeTable()
    slots = []
    for v in verdicts:
        shape = split(v.to_bytes(), v.record)
        assert shape is not None
        slots.append(table.slot(*shape))
    return pack(table.shapes, [v.record for v in verdicts], slots, rest)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=40),
       st.lists(_text, min_size=1, max_size=5), st.lists(st.binary(max_size=50), max_size=3))
def test_packed_entries_give_back_the_entries_and_their_root(
        ids: list[bytes], rules: list[str], rest: list[bytes]) -> None:
    verdicts = _verdicts(ids, rules)
    entries = [v.to_bytes() for v in verdicts] + rest
    packed = _packed(verdicts, rest)
    assert packed.entries() == entries
    assert [packed.verdict_entry(i) for i in range(len(ids))] == entries[:len(ids)]
    assert len(packed.shapes) <= len(set(rules)) * 2
    again = unpack(packed.to_bytes())
    assert again == packed and again.entries() == entries
    assert packed_root(packed) == verdict_root(entries, len(ids))
    python = [H(_VERDICT_LEAF + e) for e in entries[:len(ids)]]
    assert packed.verdict_leaves(_VERDICT_LEAF) == python  # in C, where built
    saved = getattr(verdict_pack, "native")
    setattr(verdict_pack, "native", None)  # the pure Python path
    try:
        assert packed.verdict_leaves(_VERDICT_LEAF) == python
    finally:
        setattr(verdict_pack, "native", saved)


@pytest.mark.skipif(native is None, reason="ledger._native is not built")
def test_the_c_leaves_refuse_what_the_packed_form_cannot_hold() -> None:
    assert native is not None
    shapes = [(b"a", b"b")]
    assert native.shaped_leaves(b"p", shapes, b"\x00\x00", bytes(32)) == \
        [H(b"pa" + bytes(32) + b"b")]
    with pytest.raises(ValueError):
        native.shaped_leaves(b"p", shapes, b"\x00\x01", bytes(32))  # no shape 1
    with pytest.raises(ValueError):
        native.shaped_leaves(b"p", shapes, b"\x00\x00", bytes(31))
    with pytest.raises(ValueError):
        native.shaped_leaves(b"p", shapes, b"\x00", b"")
    with pytest.raises(TypeError):
        native.shaped_leaves(b"p", [[b"a", b"b"]], b"\x00\x00", bytes(32))  # type: ignore[list-item]


def test_pack_refuses_ids_that_are_not_32_bytes() -> None:
    with pytest.raises(ValueError):
        pack([(b"a", b"b")], [bytes(31), bytes(33)], [0, 0], [])
    with pytest.raises(ValueError):
        pack([(b"a", b"b")], [bytes(32)], [0, 0], [])


def test_a_split_is_exact_whichever_copy_of_the_id_it_finds() -> None:
    rid = b"\x07" * 32
    entry = b"x" + rid + b"y" + rid + b"z"
    before, after = split(entry, rid)  # type: ignore[misc]
    assert before + rid + after == entry
    assert split(b"no id here", rid) is None


def test_the_shape_table_numbers_at_most_max_shapes() -> None:
    table = ShapeTable()
    assert table.slot(b"a", b"b") == 0 == table.slot(b"a", b"b")
    assert table.slot(b"a", b"c") == 1
    table.shapes.extend((b"", str(i).encode()) for i in range(MAX_SHAPES - 2))
    assert table.slot(b"new", b"") == -1


@pytest.mark.parametrize("value", [
    [], [[], b"", b""], [[], b"", b"", [], 1], [[[b"a"]], b"", b"", []],
    [[[b"a", "b"]], b"", b"", []], [[], bytes(31), b"", []], [[], bytes(32), b"\x00", []],
    [[], bytes(32), b"\x00\x00", []], [[[b"", b""]], bytes(32), b"\x00\x01", []],
    [[], b"", b"", ["text"]], {"shapes": []},
])
def test_the_decoder_refuses_malformed_packed_entries(value: object) -> None:
    with pytest.raises(BadEncoding):
        unpack(PACKED_TAG + packb_plain(value))


def test_the_decoder_refuses_non_canonical_bytes_and_the_plain_form() -> None:
    good = pack([(b"a", b"b")], [bytes(32)], [0], []).to_bytes()
    unpack(good)
    with pytest.raises(BadEncoding):
        unpack(good + b"\x00")
    with pytest.raises(BadEncoding):
        unpack(encode_entries([b"x"]))  # the plain form: no tag
    assert encode_entries([b"x"])[:1] != PACKED_TAG and encode_entries([])[:1] != PACKED_TAG


_VALIDATORS, _SUBS = make_keys(4), make_keys(2, 1_000_000)


def _chain(store: MemoryStore) -> tuple[ChainStore, list, list]:  # type: ignore[type-arg]
    validators, subs = _VALIDATORS, _SUBS
    chain = ChainStore(store, as_genesis(genesis_doc(validators, subs, "test")))
    chain.set_policy_engine(LimitPolicy())
    return chain, validators, subs


def test_a_store_reads_blocks_in_either_form() -> None:
    """A block committed now is stored by shape; one stored in the plain form
    (as before this form existed) reads the same."""
    store = MemoryStore()
    chain, validators, subs = _chain(store)
    envs = [make_envelope(subs[i % 2], "test", i, kind="blocked" if i % 4 == 0 else "payment",
                          body={"amount": 10 * i, "currency": "EUR"}) for i in range(1, 9)]
    header = chain.next_header(envs, block_time(1), 0)
    chain.commit_block(header, envs, certify(header, validators, chain.genesis))
    raw = store.get(schema.verdicts_key(1))
    assert raw is not None and raw[:1] == PACKED_TAG
    entries = chain.verdict_entries(1)
    assert entries is not None and len(entries) == 8
    assert [decode_verdict(e).record for e in entries] == [e.id for e in envs]
    assert verdict_root(entries, 8) == header.verdicts
    assert len(raw) < len(encode_entries(entries)) / 2
    by_shape = [chain.record_verdict(e.id) for e in envs]
    batch = WriteBatch()
    batch.put(schema.verdicts_key(1), encode_entries(entries))
    store.write(batch, sync=False)
    assert chain.verdict_entries(1) == entries
    assert [chain.record_verdict(e.id) for e in envs] == by_shape
    assert {rv.verdict.outcome for rv in by_shape if rv is not None} == \
        {Outcome.ALLOW, Outcome.DENY}


def test_a_store_marked_version_2_keeps_the_plain_form_until_upgraded() -> None:
    """The release before this one reads only the plain form: a chain over a
    store still marked schema version 2 writes nothing else, and
    ``upgrade_schema`` (what a node runs before it opens its store) marks it 3."""
    store = MemoryStore()
    batch = WriteBatch()
    batch.put(schema.META_SCHEMA_VERSION, schema.pack_u64(2))
    store.write(batch, sync=False)
    chain, validators, subs = _chain(store)

    def commit(nonce: int) -> bytes:
        envs = [make_envelope(subs[0], "test", nonce, kind="payment", body={"amount": 5})]
        header = chain.next_header(envs, block_time(chain.height + 1), 0)
        chain.commit_block(header, envs, certify(header, validators, chain.genesis))
        raw = store.get(schema.verdicts_key(header.height))
        assert raw is not None
        return raw

    assert commit(1)[:1] != PACKED_TAG
    assert upgrade_schema(store) == 2
    assert store.get(schema.META_SCHEMA_VERSION) == schema.schema_version_value()
    assert upgrade_schema(store) is None  # already this release's
    chain, _, _ = _chain(store)
    assert commit(2)[:1] == PACKED_TAG
    assert chain.verdict_entries(1) is not None and chain.verdict_entries(2) is not None
