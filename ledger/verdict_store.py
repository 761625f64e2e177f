"""What the store keeps about verdicts (keys in ledger/schema.py, bytes in
ledger/verdicts.py): staged in a block's commit batch, read back for the
status route and bundles.  ``ChainStore`` owns one :class:`VerdictState`
and calls these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import schema
from .approvals import BlockVerdicts
from .held import Held
from .blocks import HEADER_VERSION_VERDICTS, Header
from .errors import StorageCorruption, VerificationError
from .storage import KeyValueStore, WriteBatch
from .verdict_pack import PACKED_TAG, PackedEntries, unpack
from .verdicts import (
    Status,
    Transition,
    Verdict,
    decode_entries,
    decode_transition,
    decode_verdict,
    encode_entries,
    no_policy_verdict,
)


def load_held(store: KeyValueStore) -> dict[bytes, Held]:
    held = {}
    for key, value in store.iterate(schema.HELD):
        entry = Held.from_bytes(value)
        if key[1:] != entry.record:
            raise StorageCorruption("held record entry is under another record's key")
        held[entry.record] = entry
    return held


def stage(batch: WriteBatch, header: Header, block: BlockVerdicts, *,
          packed_form: bool = True) -> None:
    """Put the block's entries, its transitions' locations and the held
    records it changed (opened, counted for, escalated, ended) in the
    block's commit batch.  The entries by shape (ledger/verdict_pack.py)
    where ``packed_form`` (a store of schema version 3 on) and compute made
    them, else the plain form."""
    if block.version != HEADER_VERSION_VERDICTS:
        return
    packed = block.packed if packed_form else None
    batch.put(schema.verdicts_key(header.height),
              packed.to_bytes() if packed is not None else encode_entries(block.entries))
    first = len(block.verdicts)
    for index, transition in enumerate(block.transitions, start=first):
        batch.put(schema.final_key(transition.record),
                  schema.pack_location(header.height, index))
    for record, held in block.held.items():
        if held is None:
            batch.delete(schema.held_key(record))
        else:
            batch.put(schema.held_key(record), held.to_bytes())


def _stored(store: KeyValueStore, header: Header) -> PackedEntries | list[bytes] | None:
    """A version 2 block's stored entries in either form (None for version 1)."""
    if header.version != HEADER_VERSION_VERDICTS:
        return None
    raw = store.get(schema.verdicts_key(header.height))
    if raw is None:
        raise StorageCorruption(f"verdicts of block {header.height} are missing")
    try:
        return unpack(raw) if raw[:1] == PACKED_TAG else decode_entries(raw)
    except VerificationError as exc:
        raise StorageCorruption(f"verdicts of block {header.height}: {exc}") from None


def entries(store: KeyValueStore, header: Header) -> list[bytes] | None:
    """The entry bytes of a version 2 block (None for version 1)."""
    stored = _stored(store, header)
    return stored.entries() if isinstance(stored, PackedEntries) else stored


@dataclass(frozen=True)
class RecordVerdict:
    """A committed record's verdict, where it stands, and where that is proven."""

    verdict: Verdict
    status: Status
    index: int                     # the verdict's entry index in its block (-1: version 1)
    final_height: int = 0          # the block holding its transition, when final
    final_index: int = -1
    transition: Transition | None = None


def verdict_at(store: KeyValueStore, header: Header, record_id: bytes,
               leaf_index: int) -> tuple[Verdict, int]:
    """The verdict of the record at ``leaf_index`` of block ``header`` and its entry index."""
    block = _stored(store, header)
    if block is None:
        return no_policy_verdict(record_id), -1
    index = leaf_index - (header.log_size - header.tx_count)
    count = block.verdict_count if isinstance(block, PackedEntries) else len(block)
    if not 0 <= index < header.tx_count or count < header.tx_count:
        raise StorageCorruption(f"verdicts of block {header.height} do not cover leaf "
                                f"{leaf_index}")
    try:
        verdict = decode_verdict(block.verdict_entry(index) if isinstance(block, PackedEntries)
                                 else block[index])
    except VerificationError as exc:
        raise StorageCorruption(f"verdict {index} of block {header.height}: {exc}") from None
    if verdict.record != record_id:
        raise StorageCorruption(f"verdict {index} of block {header.height} names another record")
    return verdict, index


def final_location(store: KeyValueStore, record_id: bytes) -> tuple[int, int] | None:
    raw = store.get(schema.final_key(record_id))
    return None if raw is None else schema.unpack_location(raw)


def decided(store: KeyValueStore, limit: int, after: bytes | None = None) -> list[bytes]:
    """Ids of records with a transition (approved, expired, rejected), in id
    order, past ``after``, at most ``limit``: one page of the ``f`` index."""
    out: list[bytes] = []
    start = None if after is None else schema.final_key(after)
    for key, _ in store.iterate(schema.FINAL, start=start):
        record = key[len(schema.FINAL):]
        if record == after:
            continue
        if len(record) != schema.ID_LEN:
            raise StorageCorruption("final index key is not a record id")
        out.append(record)
        if len(out) >= limit:
            break
    return out


def transition_at(store: KeyValueStore, header: Header, index: int,
                  record_id: bytes) -> Transition:
    block = entries(store, header)
    if block is None or not header.tx_count <= index < len(block):
        raise StorageCorruption(f"transition {index} of block {header.height} is missing")
    try:
        transition = decode_transition(block[index])
    except VerificationError as exc:
        raise StorageCorruption(f"transition {index} of block {header.height}: {exc}") from None
    if transition.record != record_id:
        raise StorageCorruption(f"transition {index} of block {header.height} names "
                                "another record")
    return transition


def verdict_doc(rv: RecordVerdict, held: Held | None) -> dict[str, Any]:
    """The ``verdict`` of ``GET /v1/records/{id}`` (PROTOCOL §10.8)."""
    doc = rv.verdict.to_json()
    doc["status"] = rv.status.value
    if rv.final_height:
        doc["final_height"] = rv.final_height
    if held is not None and rv.status in (Status.HELD, Status.REVIEW):
        open_doc = held.to_json()
        doc["approved_by"] = open_doc["approved_by"]
        doc["approvals_needed"] = open_doc["approvals_needed"]
        if held.escalations:
            doc["escalated_by"] = open_doc["escalated_by"]
    return doc
