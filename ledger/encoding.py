"""Canonical MessagePack (PROTOCOL §1).

One value has exactly one encoding: maps with ``str`` keys sorted by their
UTF-8 bytes, shortest integers, ``bin`` for bytes, no floats, no extension
types.  :func:`decode` accepts only bytes that :func:`canonical` would
produce, which is what makes a record id unique.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from typing import Any

import msgpack

from .errors import BadEncoding, DecodeError, NonCanonical
from .native import native

UINT64_MAX = 2**64 - 1
INT64_MIN = -(2**63)

# Guard rails for the unpacker: nothing we decode is larger than a few MiB
# and nesting deeper than this is hostile.
_MAX_DEPTH = 32

_Timestamp = msgpack.Timestamp


def _hashlib_sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# SHA-256, the only hash of the protocol: OpenSSL's, through the C module
# where it is built (no hashlib object per call: ledger/native.py), else hashlib.
H: Callable[[bytes], bytes] = native.sha256 if native is not None else _hashlib_sha256


def _normalize(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise BadEncoding("structure nested too deeply")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if value < INT64_MIN or value > UINT64_MAX:
            raise BadEncoding("integer out of MessagePack range")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise BadEncoding("map keys must be strings")
            items.append((key.encode("utf-8"), key, _normalize(item, depth + 1)))
        items.sort(key=lambda kv: kv[0])
        return {key: item for _, key, item in items}
    if isinstance(value, (list, tuple)):
        return [_normalize(item, depth + 1) for item in value]
    if isinstance(value, float):
        raise BadEncoding("floats are not allowed in canonical encoding")
    raise BadEncoding(f"type {type(value).__name__} cannot be encoded")


def canonical(value: Any) -> bytes:
    """Encode ``value`` as canonical MessagePack."""
    return packb_plain(_normalize(value))


def _reject_ext(code: int, data: bytes) -> Any:
    raise NonCanonical("extension types are not allowed")


def _check_decoded(value: Any, depth: int = 0) -> bool:
    """Raise for what :func:`canonical` can never produce; return True if
    every map's keys are in canonical order.

    Same traversal and errors as before (depth, floats, non-``str`` keys,
    first problem wins).  Key order (and msgpack's built-in timestamp
    extension, which ``ext_hook`` never sees) is only noted, not raised on, so that
    error precedence is unchanged: an unsorted map makes :func:`decode`
    answer ``non_canonical`` after the walk.  Python orders ``str`` by code
    point, which is exactly the order of their UTF-8 bytes.
    """
    if depth > _MAX_DEPTH:
        raise BadEncoding("structure nested too deeply")
    ordered = True
    if isinstance(value, dict):
        prev: str | None = None
        for key, item in value.items():
            if not isinstance(key, str):
                raise NonCanonical("map keys must be strings")
            if prev is not None and key <= prev:
                ordered = False
            prev = key
            if depth >= _MAX_DEPTH:
                raise BadEncoding("structure nested too deeply")
            if isinstance(item, (dict, list)):
                if not _check_decoded(item, depth + 1):
                    ordered = False
            elif isinstance(item, float):
                raise NonCanonical("floats are not allowed")
            elif isinstance(item, _Timestamp):
                ordered = False  # the timestamp extension: canonical() refuses it
    elif isinstance(value, list):
        for item in value:
            if depth >= _MAX_DEPTH:
                raise BadEncoding("structure nested too deeply")
            if isinstance(item, (dict, list)):
                if not _check_decoded(item, depth + 1):
                    ordered = False
            elif isinstance(item, float):
                raise NonCanonical("floats are not allowed")
            elif isinstance(item, _Timestamp):
                ordered = False  # the timestamp extension: canonical() refuses it
    elif isinstance(value, float):
        raise NonCanonical("floats are not allowed")
    elif isinstance(value, _Timestamp):
        ordered = False
    return ordered


def packb_plain(value: Any) -> bytes:
    """MessagePack of an already-normal value (see :func:`decode`): equal to
    :func:`canonical` for what the canonical walk accepted, without it."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    """One MessagePack value (no extension types, nothing after it)."""
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False,
                               ext_hook=_reject_ext)
    except NonCanonical:
        raise
    except msgpack.ExtraData:
        raise NonCanonical("trailing bytes after the value") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise BadEncoding(f"not valid MessagePack: {exc}") from None


def decode(data: bytes, *, max_size: int | None = None) -> Any:
    """Decode canonical MessagePack; reject anything that is not canonical.

    Fast path with the acceptance of ``canonical(value) == data``: after the
    structural walk (no floats, ``str`` keys, keys in ascending order) the
    decoded value is already normal - :func:`_normalize` would return it
    unchanged - so ``canonical(value)`` equals a plain C ``packb`` of it and
    the Python re-normalisation is skipped.  Duplicate keys, long integer or
    string forms, str/bin swaps and float32 all make the re-pack differ.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadEncoding("expected bytes")
    data = bytes(data)
    if max_size is not None and len(data) > max_size:
        from .errors import TooLarge

        raise TooLarge(f"{len(data)} bytes exceeds the limit of {max_size}")
    value = _unpack(data)
    if not _check_decoded(value):
        raise NonCanonical("bytes are not in canonical form")
    if packb_plain(value) != data:
        raise NonCanonical("bytes are not in canonical form")
    return value



def decode_exact_map(data: bytes, keys: frozenset[str], what: str,
                     error: type[Exception]) -> dict[str, Any]:
    """Canonical bytes of a map with exactly ``keys``; ``error`` naming
    ``what`` for anything else (verdict, transition and breaker entries)."""
    try:
        value = decode(data)
    except DecodeError as exc:
        raise error(f"{what}: {exc}") from None
    if not isinstance(value, dict) or set(value) != keys:
        raise error(f"{what} must be a map of exactly {sorted(keys)}")
    return value


def decode_committed(data: bytes) -> Any:
    """Decode MessagePack whose exact bytes a checked commitment already
    names (see :func:`ledger.records.decode_committed_envelope`): the
    canonical-form proof - half the cost of :func:`decode` - is skipped.
    Malformed input still raises :class:`BadEncoding`, never anything else."""
    try:
        return _unpack(bytes(data))
    except NonCanonical as exc:  # extension types, trailing bytes: still malformed here
        raise BadEncoding(f"not valid MessagePack: {exc}") from None


# --------------------------------------------------------------------------
# Text encodings used in JSON (lowercase hex, standard padded base64)
# --------------------------------------------------------------------------


_HEX_DIGITS = frozenset("0123456789abcdef")


def to_hex(data: bytes) -> str:
    return data.hex()


def from_hex(text: Any, *, length: int | None = None, what: str = "value") -> bytes:
    if not isinstance(text, str):
        raise BadEncoding(f"{what} must be a hex string")
    # bytes.fromhex() tolerates whitespace; the protocol's hex is exactly
    # lowercase digits, so one value has one spelling.
    if len(text) % 2 or not _HEX_DIGITS.issuperset(text):
        if text != text.lower():
            raise BadEncoding(f"{what} must be lowercase hex")
        raise BadEncoding(f"{what} is not valid hex")
    data = bytes.fromhex(text)
    if length is not None and len(data) != length:
        raise BadEncoding(f"{what} must be {length} bytes, got {len(data)}")
    return data


def to_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def from_b64(text: Any, *, what: str = "value") -> bytes:
    if not isinstance(text, str):
        raise BadEncoding(f"{what} must be a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadEncoding(f"{what} is not valid base64") from None
    # b64decode ignores non-zero bits in the last character before the
    # padding; insist on the one standard spelling of these bytes.
    if to_b64(data) != text:
        raise BadEncoding(f"{what} is not canonical base64")
    return data
