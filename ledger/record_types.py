"""The record and envelope types (PROTOCOL §2) and the record's field limits.

Decoded objects keep their exact canonical bytes next to them: ids, leaf
hashes and signatures are always computed over those bytes, never over a
re-encoding.  Decoding and signing are ledger/records.py (records' own
field checks: ledger/record_decode.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .batch import BatchPosition, batch_root
from .encoding import H, to_hex
from .native import native

RECORD_VERSION = 1
MAX_KIND_CHARS = 64
MAX_ORIGIN_ENTRIES = 16
MAX_PARENTS = 16
ID_LEN = 32

RECORD_KEYS = frozenset(
    {"v", "chain", "submitter", "nonce", "ts", "kind", "origin", "body", "parents"}
)


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded record together with its canonical bytes.

    Slotted, as :class:`Envelope`: a node holds tens of thousands of them
    (mempool, proposals, sync), and an instance dict per object was a large
    share of a decoded envelope's memory."""

    chain: str
    submitter: bytes
    nonce: int
    ts: int
    kind: str
    origin: Mapping[str, str]
    body: Mapping[str, Any]
    parents: tuple[bytes, ...]
    record_bytes: bytes = field(repr=False)
    id: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON, bytes as lowercase hex (API ``record`` field)."""
        return {
            "v": RECORD_VERSION,
            "chain": self.chain,
            "submitter": to_hex(self.submitter),
            "nonce": self.nonce,
            "ts": self.ts,
            "kind": self.kind,
            "origin": dict(self.origin),
            "body": _bytes_to_hex(self.body),
            "parents": [to_hex(p) for p in self.parents],
        }


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed record: the Merkle leaf of the log."""

    record: Record
    sig: bytes
    envelope_bytes: bytes = field(repr=False)
    # Asked for many times per record on a node (mempool, block roots,
    # validation, commit), so computed once, with the object: a plain
    # attribute, not a property.
    leaf_hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "leaf_hash", H(b"\x00" + self.envelope_bytes))

    @property
    def id(self) -> bytes:
        return self.record.id

    def signatures(self) -> tuple[tuple[bytes, bytes], ...]:
        """Every ``(key, sig)`` of the envelope, the submitter's first."""
        return ((self.record.submitter, self.sig),)


@dataclass(frozen=True, slots=True)
class MultiSignedEnvelope(Envelope):
    """An envelope with co-signatures over the same record bytes (PROTOCOL §9.2).

    A subclass, not a field of :class:`Envelope`: the C decoder builds
    one-signature envelopes without running ``__init__``, and never builds
    these (it answers None for them and the Python decoder decides)."""

    cosigs: tuple[tuple[bytes, bytes], ...] = ()

    def signatures(self) -> tuple[tuple[bytes, bytes], ...]:
        return ((self.record.submitter, self.sig),) + self.cosigs


@dataclass(frozen=True, slots=True)
class BatchedEnvelope(Envelope):
    """A record of a signed batch (PROTOCOL §2, "Batch envelopes"): ``sig``
    is the submitter's signature over the batch root, and ``batch`` the
    record's inclusion path to it.  Built by the C decoder for canonical
    batch envelopes (ledger/_native_batch.c) and by the Python one."""

    batch: BatchPosition

    def signatures(self) -> tuple[tuple[bytes, bytes], ...]:
        """The submitter's batch signature (over the batch, not the record bytes)."""
        return ((self.record.submitter, self.sig),)

    def batch_root(self) -> bytes:
        """The root this envelope's path leads to (recomputed on each call);
        :class:`InclusionError` if the path does not fit index and size."""
        return batch_root(self.record.id, self.batch)


if native is not None:
    native.set_classes(Record, Envelope)
    # A build from before ledger/_native_batch.c lacks it and answers None
    # for batch envelopes (the Python reader decides) until rebuilt.
    if hasattr(native, "set_batch_classes"):
        native.set_batch_classes(BatchedEnvelope, BatchPosition)


# Building the objects of a decoded record and batch envelope without the
# dataclasses' ``__init__``: a frozen class's generated one sets each field
# through ``object.__setattr__``, looked up again for every field, which was
# a fifth of decoding a batch envelope (every validator decodes every record
# it admits: docs/performance.md).  The slots' own descriptors set the same
# fields in the same order, as the C decoder does (ledger/_native_decode.c,
# ledger/_native_batch.c); the objects are equal, field for
# field, to those ``__init__`` builds (tests/test_batches.py).
_new = object.__new__
(_r_chain, _r_submitter, _r_nonce, _r_ts, _r_kind, _r_origin, _r_body, _r_parents,
 _r_bytes, _r_id) = (getattr(Record, name).__set__ for name in (
    "chain", "submitter", "nonce", "ts", "kind", "origin", "body", "parents",
    "record_bytes", "id"))
_e_record, _e_sig, _e_bytes, _e_leaf, _e_batch = (
    getattr(BatchedEnvelope, name).__set__
    for name in ("record", "sig", "envelope_bytes", "leaf_hash", "batch"))


def new_record(chain: str, submitter: bytes, nonce: int, ts: int, kind: str,
               origin: Mapping[str, str], body: Mapping[str, Any], parents: tuple[bytes, ...],
               record_bytes: bytes, record_id: bytes) -> Record:
    """``Record(...)`` for fields a decoder has checked."""
    record: Record = _new(Record)
    _r_chain(record, chain)
    _r_submitter(record, submitter)
    _r_nonce(record, nonce)
    _r_ts(record, ts)
    _r_kind(record, kind)
    _r_origin(record, origin)
    _r_body(record, body)
    _r_parents(record, parents)
    _r_bytes(record, record_bytes)
    _r_id(record, record_id)
    return record


def new_batched_envelope(record: Record, sig: bytes, envelope_bytes: bytes,
                         batch: BatchPosition) -> BatchedEnvelope:
    """``BatchedEnvelope(...)`` (its leaf hash computed as ``__post_init__`` does)."""
    envelope: BatchedEnvelope = _new(BatchedEnvelope)
    _e_record(envelope, record)
    _e_sig(envelope, sig)
    _e_bytes(envelope, envelope_bytes)
    _e_leaf(envelope, H(b"\x00" + envelope_bytes))
    _e_batch(envelope, batch)
    return envelope


def _bytes_to_hex(value: Any) -> Any:
    if isinstance(value, bytes):
        return to_hex(value)
    if isinstance(value, dict):
        return {k: _bytes_to_hex(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bytes_to_hex(v) for v in value]
    return value
