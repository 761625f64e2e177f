"""Records and envelopes (PROTOCOL §2).

Decoded objects keep their exact canonical bytes next to them: ids, leaf
hashes and signatures are always computed over those bytes, never over a
re-encoding.

This module decodes, verifies and builds envelopes.  The types are
ledger/record_types.py and a record's own decoding ledger/record_decode.py;
both are re-exported here, the import path every caller uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .batch import (
    BATCH_DOMAIN,
    batch_message,
    canonical_batch_parts,
    parse_batch,
)
from .crypto import PUBKEY_LEN, RECORD_DOMAIN, SIG_LEN, SigningKey, verify_many, verify_signature
from .encoding import (
    H,
    canonical,
    decode,
    decode_committed,
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
from .record_decode import (
    _decode_canonical_record as _decode_canonical_record,
    _decode_record_general as _decode_record_general,
    _record_from_map as _record_from_map,
    decode_record as decode_record,
)
from .record_types import (
    ID_LEN as ID_LEN,
    MAX_KIND_CHARS as MAX_KIND_CHARS,
    MAX_ORIGIN_ENTRIES as MAX_ORIGIN_ENTRIES,
    MAX_PARENTS as MAX_PARENTS,
    RECORD_KEYS as RECORD_KEYS,
    RECORD_VERSION as RECORD_VERSION,
    BatchedEnvelope as BatchedEnvelope,
    Envelope as Envelope,
    MultiSignedEnvelope as MultiSignedEnvelope,
    Record as Record,
    new_batched_envelope,
)

MAX_ENVELOPE_BYTES = 8 * 1024
SUBMIT_ROLE = "submit"
ENVELOPE_KEYS = frozenset({"record", "sig"})
MULTI_ENVELOPE_KEYS = frozenset({"cosigs", "record", "sig"})
COSIG_KEYS = frozenset({"key", "sig"})
BATCH_ENVELOPE_KEYS = frozenset({"batch", "record", "sig"})
MAX_COSIGS = 32


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
    return new_batched_envelope(record_of(record_bytes), sig, envelope_bytes, position)


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
