"""Decoding a record's bytes (PROTOCOL §2): the general path (decode, then
every field's check) and the fast path for canonical records, which hands
anything else to it.  Envelopes are ledger/records.py."""

from __future__ import annotations

from typing import Any

from .crypto import PUBKEY_LEN
from .encoding import UINT64_MAX, H, _check_decoded, _unpack, decode, packb_plain
from .errors import BadEncoding, DecodeError
from .native import native
from .record_types import (
    ID_LEN,
    MAX_KIND_CHARS,
    MAX_ORIGIN_ENTRIES,
    MAX_PARENTS,
    RECORD_KEYS,
    RECORD_VERSION,
    Record,
    new_record,
)


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
            return new_record(*fields, record_bytes, H(record_bytes))
    try:
        value = _unpack(record_bytes)
        if type(value) is not dict or list(value) != _RECORD_KEY_ORDER:
            return None
        origin, body = value["origin"], value["body"]
        if (type(origin) is not dict or type(body) is not dict
                or not _check_decoded(origin, 1) or not _check_decoded(body, 1)):
            return None
    except DecodeError:  # BadEncoding and NonCanonical: the general path names the fault
        return None
    if packb_plain(value) != record_bytes:
        return None
    try:
        # With every field's exact type checked here, the general path's
        # walk of the other fields could find nothing: the same record.
        return _record_from_map(value, record_bytes)
    except BadEncoding:
        return None  # a float in ``parents`` is non_canonical there, say
