"""Records and envelopes (PROTOCOL §2).

Decoded objects keep their exact canonical bytes next to them: ids, leaf
hashes and signatures are always computed over those bytes, never over a
re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .batch import (
    BATCH_DOMAIN,
    BatchPosition,
    batch_message,
    batch_root,
    canonical_batch_parts,
    parse_batch,
)
from .crypto import PUBKEY_LEN, RECORD_DOMAIN, SIG_LEN, SigningKey, verify_many, verify_signature
from .encoding import (
    UINT64_MAX,
    H,
    _check_decoded,
    _unpack,
    canonical,
    decode,
    decode_committed,
    packb_plain,
    to_hex,
)
from .errors import (
    BadEncoding,
    BadSignature,
    DuplicateSignature,
    ForbiddenRole,
    InclusionError,
    NonCanonical,
    StorageCorruption,
    UnknownSubmitter,
    WrongChain,
)
from .genesis import Genesis
from .native import native

RECORD_VERSION = 1
MAX_ENVELOPE_BYTES = 8 * 1024
MAX_KIND_CHARS = 64
MAX_ORIGIN_ENTRIES = 16
MAX_PARENTS = 16
ID_LEN = 32
SUBMIT_ROLE = "submit"

RECORD_KEYS = frozenset(
    {"v", "chain", "submitter", "nonce", "ts", "kind", "origin", "body", "parents"}
)
ENVELOPE_KEYS = frozenset({"record", "sig"})
MULTI_ENVELOPE_KEYS = frozenset({"cosigs", "record", "sig"})
COSIG_KEYS = frozenset({"key", "sig"})
BATCH_ENVELOPE_KEYS = frozenset({"batch", "record", "sig"})
MAX_COSIGS = 32


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
    record's inclusion path to it.  Built by the Python decoder only (the C
    decoder answers None for these)."""

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


def _bytes_to_hex(value: Any) -> Any:
    if isinstance(value, bytes):
        return to_hex(value)
    if isinstance(value, dict):
        return {k: _bytes_to_hex(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bytes_to_hex(v) for v in value]
    return value


def _record_from_map(value: Any, record_bytes: bytes) -> Record:
    # Hot: every record a node admits or syncs comes through here, so the
    # checks test exact types inline (``type(x) is int`` also refuses bool).
    if not isinstance(value, dict):
        raise BadEncoding("record must be a map")
    if value.keys() != RECORD_KEYS:
        keys = set(value)
        missing = sorted(RECORD_KEYS - keys)
        extra = sorted(keys - RECORD_KEYS)
        raise BadEncoding(f"record keys wrong: missing {missing}, extra {extra}")
    if type(value["v"]) is not int or value["v"] != RECORD_VERSION:
        raise BadEncoding(f"unsupported record version {value['v']!r}")
    chain = value["chain"]
    if type(chain) is not str or not 1 <= len(chain) <= 64:
        raise BadEncoding("chain must be a string of 1..64 characters")
    submitter = value["submitter"]
    if type(submitter) is not bytes or len(submitter) != PUBKEY_LEN:
        raise BadEncoding("submitter must be 32 bytes")
    nonce = value["nonce"]
    if type(nonce) is not int or not 0 <= nonce <= UINT64_MAX:
        raise BadEncoding("nonce must be an integer in 0..2^64-1")
    ts = value["ts"]
    if type(ts) is not int or ts < 0:
        raise BadEncoding("ts must be a non-negative integer (ms since epoch)")
    kind = value["kind"]
    if type(kind) is not str or not 1 <= len(kind) <= MAX_KIND_CHARS:
        raise BadEncoding(f"kind must be a string of 1..{MAX_KIND_CHARS} characters")
    origin = value["origin"]
    if type(origin) is not dict or len(origin) > MAX_ORIGIN_ENTRIES:
        raise BadEncoding(f"origin must be a map of at most {MAX_ORIGIN_ENTRIES} entries")
    for text in origin.values():
        if type(text) is not str:
            raise BadEncoding("origin values must be strings")
    body = value["body"]
    if type(body) is not dict:
        raise BadEncoding("body must be a map")
    parents = value["parents"]
    if type(parents) is not list or len(parents) > MAX_PARENTS:
        raise BadEncoding(f"parents must be a list of at most {MAX_PARENTS} ids")
    if parents:
        for parent in parents:
            if type(parent) is not bytes or len(parent) != ID_LEN:
                raise BadEncoding("each parent must be a 32-byte record id")
        if len(set(parents)) != len(parents):
            raise BadEncoding("parents must be distinct")
    return Record(chain, submitter, nonce, ts, kind, origin, body, tuple(parents),
                  record_bytes, H(record_bytes))


def decode_record(record_bytes: bytes) -> Record:
    """Decode and structurally validate canonical record bytes."""
    record = _decode_canonical_record(record_bytes)
    if record is None:  # not a well-formed record: the general path names the fault
        record = _decode_record_general(record_bytes)
    return record


def _decode_record_general(record_bytes: bytes) -> Record:
    """:func:`decode_record` without the fast path (errors come from here)."""
    return _record_from_map(decode(record_bytes), record_bytes)


# The fast paths below accept exactly what the general path (decode, then
# the field checks) accepts, and hand everything else to it, so errors are
# the general path's own.  Every validator decodes every record it admits:
# this was a third of a node's event-loop time at full load.

_RECORD_KEY_ORDER = sorted(RECORD_KEYS)  # canonical map order: code-point order of str


def _decode_canonical_record(record_bytes: bytes) -> Record | None:
    """The record, if ``record_bytes`` is a canonical, well-formed record
    (None for anything else: the general path names the fault).

    The general path walks every value for what canonical MessagePack never
    holds (floats, non-string keys, unsorted keys, the timestamp extension).
    Here the top-level keys are compared with their canonical order in one
    step, and only ``origin`` and ``body`` are walked: every other field's
    exact type is checked by :func:`_record_from_map`.  The re-pack
    comparison is the same as :func:`ledger.encoding.decode`'s.
    """
    if type(record_bytes) is not bytes:
        return None
    if native is not None:
        # The same acceptance in C (ledger/_native.c): fields, or None for
        # anything it does not handle, which the Python path then decides.
        fields = native.decode_record(record_bytes)
        if fields is not None:
            return Record(*fields, record_bytes, H(record_bytes))
    try:
        value = _unpack(record_bytes)
        if type(value) is not dict or list(value) != _RECORD_KEY_ORDER:
            return None
        origin, body = value["origin"], value["body"]
        if (type(origin) is not dict or type(body) is not dict
                or not _check_decoded(origin, 1) or not _check_decoded(body, 1)):
            return None
    except BadEncoding:  # NonCanonical included
        return None
    if packb_plain(value) != record_bytes:
        return None
    try:
        # With every field's exact type checked here, the general path's
        # walk of the other fields could find nothing: the same record.
        return _record_from_map(value, record_bytes)
    except BadEncoding:
        return None  # a float in ``parents`` is non_canonical there, say


# canonical({"record": r, "sig": s}) for a 64-byte s: the map header and the
# key "record", r as MessagePack bin (shortest header for its length), then
# the key "sig" and a bin 8 header of length 64, and s.
_ENVELOPE_HEAD = b"\x82\xa6record"
_ENVELOPE_SIG = b"\xa3sig\xc4" + bytes([SIG_LEN])
_ENVELOPE_TAIL = len(_ENVELOPE_SIG) + SIG_LEN


def _canonical_envelope_parts(data: bytes) -> tuple[bytes, bytes] | None:
    """``(record_bytes, sig)`` if ``data`` is byte for byte the canonical
    envelope of some record bytes and a 64-byte signature, else None."""
    if len(data) < 10 or len(data) > MAX_ENVELOPE_BYTES or data[:8] != _ENVELOPE_HEAD:
        return None
    tag = data[8]
    if tag == 0xC4:
        n, start = data[9], 10
    elif tag == 0xC5 and len(data) >= 11:
        n, start = int.from_bytes(data[9:11], "big"), 11
        if n < 0x100:
            return None  # bin 16 for what fits bin 8: not canonical
    else:  # bin 32 cannot occur below MAX_ENVELOPE_BYTES
        return None
    end = start + n
    if len(data) != end + _ENVELOPE_TAIL or data[end:end + len(_ENVELOPE_SIG)] != _ENVELOPE_SIG:
        return None
    return data[start:end], data[end + len(_ENVELOPE_SIG):]


def _envelope_parts(value: Any) -> tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...]]:
    """``(record_bytes, sig, cosigs)`` of a decoded envelope map, its form checked."""
    if not isinstance(value, dict) or set(value) not in (ENVELOPE_KEYS, MULTI_ENVELOPE_KEYS):
        raise BadEncoding("envelope must be a map of 'record' and 'sig' (and 'cosigs')")
    record_bytes, sig = value["record"], value["sig"]
    if not isinstance(record_bytes, bytes):
        raise BadEncoding("envelope 'record' must be bytes")
    if not isinstance(sig, bytes) or len(sig) != SIG_LEN:
        raise BadEncoding("envelope 'sig' must be 64 bytes")
    cosigs = _cosigs(value["cosigs"]) if "cosigs" in value else ()
    return record_bytes, sig, cosigs


def _cosigs(value: Any) -> tuple[tuple[bytes, bytes], ...]:
    """The ``cosigs`` array of PROTOCOL §9.2: 1..32 ``{key, sig}`` maps in
    ascending key order, no key twice (the submitter's key is checked by
    :func:`_build_envelope`, which knows the record)."""
    if not isinstance(value, list):
        raise BadEncoding("envelope 'cosigs' must be an array")
    if not value:
        raise NonCanonical("envelope 'cosigs' is empty: a one-signature envelope has none")
    if len(value) > MAX_COSIGS:
        raise BadEncoding(f"envelope has {len(value)} co-signatures, at most {MAX_COSIGS}")
    out = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != COSIG_KEYS:
            raise BadEncoding("each co-signature must be a map of exactly 'key' and 'sig'")
        key, sig = entry["key"], entry["sig"]
        if type(key) is not bytes or len(key) != PUBKEY_LEN:
            raise BadEncoding("co-signature 'key' must be 32 bytes")
        if type(sig) is not bytes or len(sig) != SIG_LEN:
            raise BadEncoding("co-signature 'sig' must be 64 bytes")
        out.append((key, sig))
    keys = [k for k, _ in out]
    if len(set(keys)) != len(keys):
        raise DuplicateSignature("a key signs the envelope twice")
    if keys != sorted(keys):
        raise NonCanonical("co-signatures must be in ascending order of key")
    return tuple(out)


def _envelope_from_map(value: Any, record_of: Callable[[bytes], Record],
                       envelope_bytes: bytes) -> Envelope:
    """The envelope of a decoded map (§2, §9.2, or a batch envelope), its
    record decoded by ``record_of``."""
    if isinstance(value, dict) and "batch" in value:
        if set(value) != BATCH_ENVELOPE_KEYS:
            # Batches and co-signatures do not combine: a batch signature is
            # over the batch root, co-signatures over the record bytes.
            raise BadEncoding("a batch envelope is a map of exactly 'batch', 'record' and 'sig'")
        record_bytes, sig = value["record"], value["sig"]
        if type(record_bytes) is not bytes:
            raise BadEncoding("envelope 'record' must be bytes")
        if type(sig) is not bytes or len(sig) != SIG_LEN:
            raise BadEncoding("envelope 'sig' must be 64 bytes")
        position = parse_batch(value["batch"])
        return BatchedEnvelope(record=record_of(record_bytes), sig=sig,
                               envelope_bytes=envelope_bytes, batch=position)
    record_bytes, sig, cosigs = _envelope_parts(value)
    return _build_envelope(record_of(record_bytes), sig, cosigs, envelope_bytes)


def _committed_record(record_bytes: bytes) -> Record:
    return _record_from_map(decode_committed(record_bytes), record_bytes)


def _build_envelope(record: Record, sig: bytes, cosigs: tuple[tuple[bytes, bytes], ...],
                    envelope_bytes: bytes) -> Envelope:
    if not cosigs:
        return Envelope(record=record, sig=sig, envelope_bytes=envelope_bytes)
    if any(key == record.submitter for key, _ in cosigs):
        raise DuplicateSignature("the submitter's key is also among the co-signatures")
    return MultiSignedEnvelope(record=record, sig=sig, envelope_bytes=envelope_bytes,
                               cosigs=cosigs)


def decode_envelope(envelope_bytes: bytes, *, cosigs: bool = False) -> Envelope:
    """Decode an envelope; checks form and size, not the signature.

    A multi-signed envelope (PROTOCOL §9.2) is decoded only with ``cosigs``:
    verifiers pass it.  Without it, such an envelope is refused
    (``bad_encoding``), which is what node admission and block validation
    get until they check every co-signature and apply governance (their
    batch signature check covers the submitter's signature only)."""
    if native is not None:
        # ledger/_native.c: the same Envelope, or None and the paths below decide.
        envelope: Envelope | None = native.decode_envelope(envelope_bytes)
        if envelope is not None:
            return envelope
    parts = _canonical_envelope_parts(envelope_bytes) if type(envelope_bytes) is bytes else None
    if parts is None:
        batched = _canonical_batch_envelope(envelope_bytes, decode_record)
        if batched is not None:
            return batched
        decoded = _decode_envelope_general(envelope_bytes)
        if not cosigs and isinstance(decoded, MultiSignedEnvelope):
            raise BadEncoding("multi-signed envelopes are not admitted by this node version")
        return decoded
    return Envelope(decode_record(parts[0]), parts[1], envelope_bytes)


def _canonical_batch_envelope(envelope_bytes: bytes, record_of: Callable[[bytes], Record]
                              ) -> BatchedEnvelope | None:
    """The batch envelope, if ``envelope_bytes`` is a canonical one (None for
    anything else, which the general path decides)."""
    if type(envelope_bytes) is not bytes:
        return None
    parts = canonical_batch_parts(envelope_bytes, MAX_ENVELOPE_BYTES)
    if parts is None:
        return None
    position, record_bytes, sig = parts
    return BatchedEnvelope(record=record_of(record_bytes), sig=sig,
                           envelope_bytes=envelope_bytes, batch=position)


def _decode_envelope_general(envelope_bytes: bytes) -> Envelope:
    """:func:`decode_envelope` without the fast paths (errors come from here)."""
    value = decode(envelope_bytes, max_size=MAX_ENVELOPE_BYTES)
    return _envelope_from_map(value, _decode_record_general, bytes(envelope_bytes))


def decode_committed_envelope(envelope_bytes: bytes) -> Envelope:
    """Decode an envelope of a block that a quorum certificate commits to.

    Every field is checked as in :func:`decode_envelope`; where the C
    decoder does not answer, the proof of canonical form is skipped (half
    the cost of decoding in Python).  That is
    sound because the certificate's ``tx_root`` names these exact bytes and
    the honest validators in its quorum decoded them canonically before
    voting - the same trust that lets catch-up skip record signatures.  So
    the caller must check the block's ``tx_root`` over these bytes (block
    validation does, before any record rule) before relying on the result.
    """
    if native is not None:
        # The C decoder checks canonical form too and is still several times
        # faster than this path in Python: it answers for the canonical
        # envelopes it is sure of; anything else comes below.
        envelope: Envelope | None = native.decode_envelope(envelope_bytes)
        if envelope is not None:
            return envelope
    batched = _canonical_batch_envelope(envelope_bytes, _committed_record)
    if batched is not None:
        return batched
    return _envelope_from_map(decode_committed(envelope_bytes), _committed_record,
                              bytes(envelope_bytes))


def stored_record_id(envelope_bytes: bytes, leaf_index: int) -> bytes:
    """The record id of an envelope read back from the log.

    Callers pass bytes already matched to the log's leaf hash (as
    ``ChainStore.envelope_at`` does), so they are exactly what was committed
    - decoded canonically then - and only the record bytes need finding,
    a fraction of a full decode.  Anything malformed still
    raises :class:`StorageCorruption` naming the leaf.
    """
    try:
        value = decode_committed(envelope_bytes)
        record_bytes = value["record"] if isinstance(value, dict) else None
    except BadEncoding as exc:
        raise StorageCorruption(f"envelope at leaf {leaf_index} is damaged: {exc}") from None
    if not isinstance(record_bytes, bytes):
        raise StorageCorruption(f"envelope at leaf {leaf_index} is damaged: no record bytes")
    return H(record_bytes)


def verify_envelope(envelope: Envelope, genesis: Genesis, *, signature: bool = True) -> None:
    """The pure admission checks of PROTOCOL §2: chain, submitter, role, signature.

    ``signature=False`` skips only the Ed25519 check, for a caller that has
    already verified this exact envelope (a node verifies each record's
    signature once, at admission).  State checks (nonce unused, parents
    known) belong to the caller.
    """
    record = envelope.record
    if record.chain != genesis.chain:
        raise WrongChain(f"record is for chain {record.chain!r}, not {genesis.chain!r}")
    submitter = genesis.submitters.get(record.submitter)
    if submitter is None:
        raise UnknownSubmitter(f"submitter {to_hex(record.submitter)} is not in genesis")
    if SUBMIT_ROLE not in submitter.roles:
        raise ForbiddenRole(f"submitter {submitter.name!r} lacks the {SUBMIT_ROLE!r} role")
    if signature:
        verify_signatures(envelope)


def verify_signatures(envelope: Envelope) -> None:
    """Every signature of the envelope (the submitter's and each co-signer's)
    over the record bytes, through libsodium's batch path; raises
    :class:`BadSignature` naming the first that fails."""
    record = envelope.record
    if type(envelope) is Envelope:  # the common case: one signature, as in version 1
        verify_signature(record.submitter, RECORD_DOMAIN, record.record_bytes, envelope.sig)
        return
    if isinstance(envelope, BatchedEnvelope):
        try:
            root = envelope.batch_root()
        except InclusionError:
            raise BadSignature("the batch path does not fit its index and size") from None
        verify_signature(record.submitter, BATCH_DOMAIN,
                         batch_message(envelope.batch.size, root), envelope.sig)
        return
    items = [(key, record.record_bytes, sig) for key, sig in envelope.signatures()]
    for ok, (key, _, _) in zip(verify_many(RECORD_DOMAIN, items), items):
        if not ok:
            raise BadSignature(f"signature by {to_hex(key)} does not verify")


def make_record(
    *,
    chain: str,
    submitter: bytes,
    nonce: int,
    ts: int,
    kind: str,
    origin: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    parents: Sequence[bytes] = (),
) -> Record:
    """Build a record; validates it exactly as the decoder would."""
    value = {
        "v": RECORD_VERSION,
        "chain": chain,
        "submitter": bytes(submitter),
        "nonce": nonce,
        "ts": ts,
        "kind": kind,
        "origin": dict(origin or {}),
        "body": dict(body or {}),
        "parents": [bytes(p) for p in parents],
    }
    record_bytes = canonical(value)
    return decode_record(record_bytes)


def sign_record(record: Record, key: SigningKey) -> Envelope:
    """Sign ``record`` with ``key`` (whose public key must be the submitter)."""
    if key.public_key != record.submitter:
        raise ValueError("signing key does not match the record's submitter")
    sig = key.sign(RECORD_DOMAIN, record.record_bytes)
    envelope_bytes = canonical({"record": record.record_bytes, "sig": sig})
    if len(envelope_bytes) > MAX_ENVELOPE_BYTES:
        from .errors import TooLarge

        raise TooLarge(f"envelope is {len(envelope_bytes)} bytes, limit {MAX_ENVELOPE_BYTES}")
    return Envelope(record=record, sig=sig, envelope_bytes=envelope_bytes)


def cosign(envelope: Envelope, keys: Sequence[SigningKey]) -> Envelope:
    """``envelope`` with co-signatures by ``keys`` added (PROTOCOL §9.2):
    same record, same id; a key that already signed is skipped."""
    record = envelope.record
    have = dict(envelope.signatures())
    for key in keys:
        if key.public_key not in have:
            have[key.public_key] = key.sign(RECORD_DOMAIN, record.record_bytes)
    cosigs = tuple(sorted((k, s) for k, s in have.items() if k != record.submitter))
    if not cosigs:
        return envelope
    envelope_bytes = canonical({
        "cosigs": [{"key": k, "sig": s} for k, s in cosigs],
        "record": record.record_bytes,
        "sig": envelope.sig,
    })
    if len(envelope_bytes) > MAX_ENVELOPE_BYTES:
        from .errors import TooLarge

        raise TooLarge(f"envelope is {len(envelope_bytes)} bytes, limit {MAX_ENVELOPE_BYTES}")
    return MultiSignedEnvelope(record=record, sig=envelope.sig, envelope_bytes=envelope_bytes,
                               cosigs=cosigs)
