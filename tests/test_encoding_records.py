"""Canonical MessagePack (PROTOCOL §1), records and envelopes (§2), and the
small typed checks of genesis and headers they rely on.

Every rejection is a typed error with the protocol's code: ``non_canonical``
for valid MessagePack in a non-canonical form, ``bad_encoding`` for bytes or
structures that are simply wrong, ``too_large`` for size limits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers import FIXED_TS, make_envelope, make_genesis, make_keys
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.blocks import ZERO_HASH, Header, decode_header
from ledger.crypto import RECORD_DOMAIN, VOTE_DOMAIN, SigningKey
from ledger.encoding import (
    INT64_MIN,
    UINT64_MAX,
    H,
    canonical,
    decode,
    from_b64,
    from_hex,
    to_b64,
    to_hex,
)
from ledger.errors import (
    BadEncoding,
    BadSignature,
    DecodeError,
    ForbiddenRole,
    GenesisError,
    HeaderError,
    NonCanonical,
    StorageCorruption,
    TooLarge,
    UnknownSubmitter,
    WrongChain,
)
from ledger.genesis import load_genesis, parse_genesis, quorum, validators_hash
from ledger.records import (
    MAX_ENVELOPE_BYTES,
    decode_committed_envelope,
    decode_envelope,
    decode_record,
    make_record,
    sign_record,
    stored_record_id,
    verify_envelope,
)

PROPS = settings(derandomize=True, deadline=None, database=None, max_examples=200)

DOC, VALIDATOR_KEYS, SUBMITTER = make_genesis(4, "test")
GENESIS = parse_genesis(DOC)
PK = SUBMITTER.public_key


def non_canonical(data: bytes) -> None:
    with pytest.raises(NonCanonical) as err:
        decode(data)
    assert err.value.code == "non_canonical"


def bad_encoding(data: bytes) -> None:
    with pytest.raises(BadEncoding) as err:
        decode(data)
    assert err.value.code == "bad_encoding"


# --------------------------------------------------------------------------
# canonical()
# --------------------------------------------------------------------------


def test_canonical_sorts_keys_by_utf8_bytes() -> None:
    value = {"z": 1, "é": 2, "a": 3, "B": 4, "aa": 5, "": 6}
    data = canonical(value)
    assert data == canonical(dict(reversed(list(value.items()))))
    keys = list(msgpack.unpackb(data, raw=False))
    assert keys == sorted(value, key=lambda k: k.encode("utf-8"))
    assert keys == ["", "B", "a", "aa", "z", "é"]


def test_canonical_uses_shortest_ints_and_bin_for_bytes() -> None:
    assert canonical(0) == b"\x00"
    assert canonical(127) == b"\x7f"
    assert canonical(128) == b"\xcc\x80"
    assert canonical(-1) == b"\xff"
    assert canonical(-33) == b"\xd0\xdf"
    assert canonical(UINT64_MAX) == b"\xcf" + b"\xff" * 8
    assert canonical(b"ab") == b"\xc4\x02ab"
    assert canonical("ab") == b"\xa2ab"
    assert canonical((1, 2)) == canonical([1, 2])


@pytest.mark.parametrize(
    "value",
    [1.5, {"a": 0.0}, [float("nan")], {1: "x"}, {b"k": 1}, {None: 1}, {(1,): 2}, {1, 2},
     object(), UINT64_MAX + 1, INT64_MIN - 1],
)
def test_canonical_rejects_what_has_no_canonical_form(value: Any) -> None:
    with pytest.raises(BadEncoding) as err:
        canonical(value)
    assert err.value.code == "bad_encoding"


def test_canonical_rejects_deep_nesting() -> None:
    value: Any = 1
    for _ in range(40):
        value = [value]
    with pytest.raises(BadEncoding):
        canonical(value)


# --------------------------------------------------------------------------
# decode(): only canonical bytes
# --------------------------------------------------------------------------


def test_decode_roundtrips_canonical_bytes() -> None:
    value = {"a": [1, -1, b"\x00", "x", None, True, False], "b": {"c": UINT64_MAX, "d": INT64_MIN}}
    assert decode(canonical(value)) == value


@pytest.mark.parametrize(
    "data",
    [
        b"\x82\xa1b\x01\xa1a\x02",            # keys out of order
        b"\x82\xa1a\x01\xa1a\x02",            # duplicate keys
        b"\xcc\x05",                          # uint8 for a fixint
        b"\xcd\x00\x05",                      # uint16 for a fixint
        b"\xce\x00\x00\x00\x05",              # uint32
        b"\xcf\x00\x00\x00\x00\x00\x00\x00\x05",  # uint64
        b"\xd0\xff",                          # int8 for -1
        b"\xd1\xff\xff",                      # int16 for -1
        b"\xcd\x00\xff",                      # uint16 for a uint8 value
        b"\xd9\x01a",                         # str8 for a fixstr
        b"\xda\x00\x01a",                     # str16
        b"\xc5\x00\x01a",                     # bin16 for a short bin
        b"\xdc\x00\x01\x01",                  # array16 for a fixarray
        b"\xde\x00\x01\xa1a\x01",             # map16 for a fixmap
        b"\xca\x00\x00\x00\x00",              # float32
        b"\xcb" + b"\x00" * 8,                # float64
        b"\x81\xa1a\xcb" + b"\x00" * 8,       # float in a map
        b"\xd4\x05\x00",                      # fixext1
        b"\xc7\x02\x05ab",                    # ext8
        b"\xd6\xff\x00\x00\x00\x01",          # timestamp extension
        b"\x81\x01\x02",                      # int key
        b"\x81\xc4\x01k\x01",                 # bin key
        b"\x81\xc0\x01",                      # nil key
        b"\x01\x02",                          # trailing bytes
        b"\x81\xa1a\x01\x00",                 # trailing after a map
    ],
)
def test_decode_rejects_non_canonical(data: bytes) -> None:
    non_canonical(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",                    # nothing
        b"\x92\x01",            # truncated array
        b"\xa3ab",              # truncated string
        b"\xc1",                # reserved byte
        b"\xa2\xff\xfe",        # invalid UTF-8
        b"\xa1\x80",            # lone continuation byte
        b"\xa3\xed\xa0\x80",    # UTF-8 encoded surrogate
        b"\x81\x91\x01\x02",    # array as a map key
        b"\x91" * 100_000 + b"\x01",  # absurd nesting
    ],
)
def test_decode_rejects_malformed(data: bytes) -> None:
    bad_encoding(data)


def test_decode_rejects_nesting_beyond_the_limit() -> None:
    data = b"\x91" * 40 + b"\x01"
    with pytest.raises(DecodeError):
        decode(data)


def test_decode_rejects_non_bytes_and_oversize() -> None:
    with pytest.raises(BadEncoding):
        decode("abc")  # type: ignore[arg-type]
    with pytest.raises(TooLarge) as err:
        decode(canonical(b"x" * 100), max_size=50)
    assert err.value.code == "too_large"
    assert decode(bytearray(canonical([1])), max_size=2) == [1]


# Any JSON-like value with bytes, over the whole MessagePack integer range.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, UINT64_MAX)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


def typed(value: Any) -> Any:
    """``value`` with every scalar tagged by its type (so True != 1)."""
    if isinstance(value, dict):
        return ("map", sorted((k, typed(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, value)


@PROPS
@given(values)
def test_prop_canonical_then_decode_roundtrips(value: Any) -> None:
    data = canonical(value)
    back = decode(data)
    assert typed(back) == typed(value)
    assert canonical(back) == data


@PROPS
@given(st.dictionaries(st.text(max_size=8), scalars, min_size=2, max_size=8), st.randoms())
def test_prop_canonical_ignores_insertion_order(value: dict[str, Any], rnd: Any) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    assert canonical(dict(items)) == canonical(value)


@PROPS
@given(values, st.data())
def test_prop_decode_accepts_only_canonical_bytes(value: Any, data: st.DataObject) -> None:
    """Mutate one byte anywhere: decode either refuses with a DecodeError or
    returns a value whose canonical form is exactly the mutated bytes."""
    raw = bytearray(canonical(value))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    mutated = bytes(raw)
    try:
        back = decode(mutated)
    except DecodeError:
        return
    assert canonical(back) == mutated


# --------------------------------------------------------------------------
# Hex and base64 in JSON
# --------------------------------------------------------------------------


def test_hex_is_lowercase_and_exact() -> None:
    assert to_hex(b"\xab\x01") == "ab01"
    assert from_hex("ab01") == b"\xab\x01"
    assert from_hex("00" * 32, length=32) == b"\x00" * 32
    for bad in ["AB01", "ab0", "xy", "ab 01", " ab01", "ab01\n", "0x01", "ab\u00e901"]:
        with pytest.raises(BadEncoding):
            from_hex(bad)
    with pytest.raises(BadEncoding):
        from_hex("00" * 31, length=32)
    with pytest.raises(BadEncoding):
        from_hex(b"ab")


def test_base64_is_standard_padded_and_canonical() -> None:
    assert to_b64(b"\x00") == "AA=="
    assert from_b64("AA==") == b"\x00"
    assert from_b64("") == b""
    # "AB==" decodes to the same byte with non-zero padding bits; only one
    # spelling of a byte string is accepted.
    for bad in ["AB==", "AA", "AA=", "A A=", "AA==\n", "AA-_", "€€==", "AAA=A"]:
        with pytest.raises(BadEncoding):
            from_b64(bad)
    with pytest.raises(BadEncoding):
        from_b64(None)


@PROPS
@given(st.binary(max_size=64))
def test_prop_text_encodings_roundtrip(data: bytes) -> None:
    assert from_hex(to_hex(data)) == data
    assert from_b64(to_b64(data)) == data


# --------------------------------------------------------------------------
# Records and envelopes
# --------------------------------------------------------------------------


def record_map(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "v": 1, "chain": "test", "submitter": PK, "nonce": 7, "ts": FIXED_TS,
        "kind": "payment", "origin": {"system": "pos"}, "body": {"amount": 100},
        "parents": [],
    }
    for key, item in changes.items():
        if item is DROP:
            del value[key]
        else:
            value[key] = item
    return value


DROP = object()


def envelope_of(record_bytes: bytes, key: SigningKey = SUBMITTER) -> bytes:
    """A correctly signed envelope around arbitrary record bytes."""
    return canonical({"record": record_bytes, "sig": key.sign(RECORD_DOMAIN, record_bytes)})


def test_envelope_roundtrip_and_ids() -> None:
    env = make_envelope(SUBMITTER, "test", 3, parents=[b"\x11" * 32])
    back = decode_envelope(env.envelope_bytes)
    assert back == env
    assert back.id == H(back.record.record_bytes) == hashlib.sha256(env.record.record_bytes).digest()
    assert back.leaf_hash == H(b"\x00" + env.envelope_bytes)
    assert back.record.parents == (b"\x11" * 32,)
    assert decode_record(env.record.record_bytes) == env.record
    verify_envelope(back, GENESIS)
    doc = back.record.to_json()
    assert doc["submitter"] == PK.hex() and doc["parents"] == ["11" * 32]
    json.dumps(doc)


def test_valid_limits_are_accepted() -> None:
    decode_envelope(envelope_of(canonical(record_map(
        kind="k" * 64,
        origin={f"o{i}": "x" for i in range(16)},
        parents=[bytes([i]) * 32 for i in range(16)],
        nonce=UINT64_MAX,
    ))))
    decode_envelope(envelope_of(canonical(record_map(kind="é" * 64, nonce=0))))


@pytest.mark.parametrize(
    "changes",
    [
        {"v": DROP}, {"chain": DROP}, {"submitter": DROP}, {"nonce": DROP}, {"ts": DROP},
        {"kind": DROP}, {"origin": DROP}, {"body": DROP}, {"parents": DROP},
        {"extra": 1}, {"sig": b"x"},
        {"v": 2}, {"v": 0}, {"v": True}, {"v": "1"},
        {"chain": ""}, {"chain": "c" * 65}, {"chain": 1}, {"chain": b"test"},
        {"submitter": PK[:31]}, {"submitter": PK + b"\x00"}, {"submitter": PK.hex()},
        {"nonce": -1}, {"nonce": True}, {"nonce": "7"}, {"nonce": None},
        {"ts": -1}, {"ts": False}, {"ts": "now"},
        {"kind": ""}, {"kind": "k" * 65}, {"kind": 5}, {"kind": b"payment"},
        {"origin": {f"o{i}": "x" for i in range(17)}}, {"origin": {"a": 1}},
        {"origin": {"a": b"x"}}, {"origin": ["a"]}, {"origin": None},
        {"body": []}, {"body": "x"}, {"body": None},
        {"parents": [bytes([i]) * 32 for i in range(17)]},
        {"parents": [b"\x01" * 31]}, {"parents": [b"\x01" * 33]},
        {"parents": [b"\x01" * 32, b"\x01" * 32]}, {"parents": ["01" * 32]},
        {"parents": b"\x01" * 32}, {"parents": None},
    ],
)
def test_bad_records_rejected(changes: dict[str, Any]) -> None:
    record_bytes = canonical(record_map(**changes))
    with pytest.raises(BadEncoding) as err:
        decode_envelope(envelope_of(record_bytes))
    assert err.value.code == "bad_encoding"
    with pytest.raises(BadEncoding):
        decode_record(record_bytes)
    with pytest.raises(BadEncoding):  # the committed-block decoder checks fields too
        decode_committed_envelope(envelope_of(record_bytes))


def test_committed_envelope_decoder_skips_only_the_canonical_proof() -> None:
    """A certified block's envelopes are decoded without re-proving canonical
    form (its tx_root names the bytes); the result is the same envelope, and
    non-canonical bytes decode but keep their own leaf hash, so tx_root
    checking catches them."""
    env = make_envelope(SUBMITTER, "test", 1)
    assert decode_committed_envelope(env.envelope_bytes) == decode_envelope(env.envelope_bytes)
    reordered = msgpack.packb({"sig": env.sig, "record": env.record.record_bytes},
                              use_bin_type=True)
    loose = decode_committed_envelope(reordered)
    assert loose.id == env.id and loose.leaf_hash != env.leaf_hash
    for junk in (b"", b"\xc1", b"\x91\x01", env.envelope_bytes[:-3], b"\xd4\x01\x00"):
        with pytest.raises(BadEncoding):
            decode_committed_envelope(junk)


def test_stored_record_id_reads_only_the_record_bytes() -> None:
    env = make_envelope(SUBMITTER, "test", 1)
    assert stored_record_id(env.envelope_bytes, 7) == env.id
    for damaged in (b"", b"\xc1", canonical([1]), canonical({"record": "x", "sig": b"s"})):
        with pytest.raises(StorageCorruption, match="leaf 7"):
            stored_record_id(damaged, 7)


def test_make_record_validates_like_the_decoder() -> None:
    with pytest.raises(BadEncoding):
        make_record(chain="test", submitter=PK, nonce=2**64, ts=0, kind="x")
    with pytest.raises(BadEncoding):
        make_record(chain="test", submitter=PK, nonce=1, ts=0, kind="")
    with pytest.raises(BadEncoding):
        make_record(chain="test", submitter=PK, nonce=1, ts=0, kind="x", body={"f": 1.5})


def test_non_canonical_record_inside_a_signed_envelope() -> None:
    good = canonical(record_map())
    # Same map, keys in insertion (not sorted) order: valid msgpack, signed,
    # but not canonical, so it would give the same record a second id.
    unsorted = msgpack.packb(
        {k: record_map()[k] for k in ["v", "chain", "submitter", "nonce", "ts", "kind",
                                      "origin", "body", "parents"]},
        use_bin_type=True,
    )
    assert unsorted != good and msgpack.unpackb(unsorted) == msgpack.unpackb(good)
    with pytest.raises(NonCanonical):
        decode_envelope(envelope_of(unsorted))
    # A non-shortest integer inside the record.
    wide_nonce = good.replace(b"\xa5nonce\x07", b"\xa5nonce\xcc\x07")
    assert wide_nonce != good
    with pytest.raises(NonCanonical):
        decode_envelope(envelope_of(wide_nonce))


@pytest.mark.parametrize(
    "envelope",
    [
        {"record": canonical(record_map())},                              # no sig
        {"sig": b"\x00" * 64},                                            # no record
        {"record": canonical(record_map()), "sig": b"\x00" * 64, "x": 1},  # extra key
        {"record": "text", "sig": b"\x00" * 64},                          # record not bytes
        {"record": canonical(record_map()), "sig": b"\x00" * 63},         # short sig
        {"record": canonical(record_map()), "sig": "00" * 64},            # sig not bytes
        [canonical(record_map()), b"\x00" * 64],                          # not a map
    ],
)
def test_bad_envelopes_rejected(envelope: Any) -> None:
    with pytest.raises(BadEncoding):
        decode_envelope(canonical(envelope))


def test_non_canonical_envelope_rejected() -> None:
    env = make_envelope(SUBMITTER, "test", 1)
    reordered = msgpack.packb({"sig": env.sig, "record": env.record.record_bytes}, use_bin_type=True)
    with pytest.raises(NonCanonical):
        decode_envelope(reordered)
    with pytest.raises(NonCanonical):
        decode_envelope(env.envelope_bytes + b"\x00")


def _envelope_with_padding(pad: int) -> bytes:
    return envelope_of(canonical(record_map(body={"pad": b"p" * pad})))


def test_envelope_size_limit_is_8_kib() -> None:
    base = len(_envelope_with_padding(1000)) - 1000
    pad = MAX_ENVELOPE_BYTES - base
    exact = _envelope_with_padding(pad)
    assert len(exact) == MAX_ENVELOPE_BYTES == 8192
    decode_envelope(exact)
    over = _envelope_with_padding(pad + 1)
    assert len(over) == MAX_ENVELOPE_BYTES + 1
    with pytest.raises(TooLarge) as err:
        decode_envelope(over)
    assert err.value.code == "too_large"
    record = make_record(chain="test", submitter=PK, nonce=1, ts=0, kind="x",
                         body={"pad": b"p" * 9000})
    with pytest.raises(TooLarge):
        sign_record(record, SUBMITTER)


# --------------------------------------------------------------------------
# verify_envelope: chain, submitter, role, signature
# --------------------------------------------------------------------------


def test_verify_envelope_wrong_chain() -> None:
    env = make_envelope(SUBMITTER, "other", 1)
    with pytest.raises(WrongChain) as err:
        verify_envelope(env, GENESIS)
    assert err.value.code == "wrong_chain"


def test_verify_envelope_unknown_submitter() -> None:
    stranger = make_keys(1, 5_000)[0]
    with pytest.raises(UnknownSubmitter) as err:
        verify_envelope(make_envelope(stranger, "test", 1), GENESIS)
    assert err.value.code == "unknown_submitter"


def test_verify_envelope_forbidden_role() -> None:
    doc = json.loads(json.dumps(DOC))
    doc["submitters"][0]["roles"] = ["read", "audit"]
    with pytest.raises(ForbiddenRole) as err:
        verify_envelope(make_envelope(SUBMITTER, "test", 1), parse_genesis(doc))
    assert err.value.code == "forbidden_role"


def test_verify_envelope_bad_signatures() -> None:
    env = make_envelope(SUBMITTER, "test", 1)
    record_bytes = env.record.record_bytes
    forged = [
        bytes([env.sig[0] ^ 1]) + env.sig[1:],                       # flipped bit
        env.sig[:63] + bytes([env.sig[63] ^ 0x80]),                  # flipped last bit
        make_keys(1, 5_000)[0].sign(RECORD_DOMAIN, record_bytes),    # another key
        SUBMITTER.sign(VOTE_DOMAIN, record_bytes),                   # another domain
        SUBMITTER.sign(b"", record_bytes),                           # no domain
        b"\x00" * 64,
    ]
    for sig in forged:
        bad = decode_envelope(canonical({"record": record_bytes, "sig": sig}))
        with pytest.raises(BadSignature) as err:
            verify_envelope(bad, GENESIS)
        assert err.value.code == "bad_signature"


def test_sign_record_needs_the_submitters_key() -> None:
    record = make_envelope(SUBMITTER, "test", 1).record
    with pytest.raises(ValueError):
        sign_record(record, VALIDATOR_KEYS[0])


# --------------------------------------------------------------------------
# Genesis and header checks the records rely on
# --------------------------------------------------------------------------


def test_quorum_threshold() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5, 6, 7, 10)] == [1, 2, 3, 3, 4, 5, 5, 7]
    assert GENESIS.quorum == 3 and GENESIS.n == 4
    assert GENESIS.validators_hash == validators_hash(GENESIS.validator_keys)
    assert GENESIS.validators_hash == H(canonical([k.public_key for k in VALIDATOR_KEYS]))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("chain"),
        lambda d: d.update(chain=""),
        lambda d: d.update(validators=[]),
        lambda d: d.update(validators="x"),
        lambda d: d["validators"].append(dict(d["validators"][0])),   # duplicate pubkey
        lambda d: d["validators"][0].update(pubkey="AB" * 32),
        lambda d: d["validators"][0].update(name=1),
        lambda d: d["validators"][0].update(address=None),
        lambda d: d.update(submitters=None),
        lambda d: d.update(submitters={"name": "x"}),
        lambda d: d["submitters"][0].update(roles="submit"),
        lambda d: d["submitters"][0].update(roles=[1]),
        lambda d: d["submitters"].append(dict(d["submitters"][0])),
        lambda d: d.update(params=[]),
    ],
)
def test_bad_genesis_rejected(mutate: Any) -> None:
    doc = json.loads(json.dumps(DOC))
    mutate(doc)
    with pytest.raises(GenesisError):
        parse_genesis(doc)


def test_load_genesis_errors_are_typed(tmp_path: Path) -> None:
    good = tmp_path / "g.json"
    good.write_text(json.dumps(DOC))
    assert load_genesis(good).chain == "test"
    for name, content in [("a.json", b"{not json"), ("b.json", b"\xff\xfe{}"), ("c.json", b"[]")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(GenesisError):
            load_genesis(tmp_path / name)
    with pytest.raises(OSError):
        load_genesis(tmp_path / "missing.json")


def _header(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = dict(
        v=1, chain="test", height=1, prev=ZERO_HASH, time=FIXED_TS, proposer=0, tx_count=0,
        tx_root=H(b""), log_size=0, log_root=H(b""), validators=GENESIS.validators_hash,
    )
    value.update(changes)
    return value


def test_header_roundtrip() -> None:
    header = Header(**{k: v for k, v in _header().items() if k != "v"})
    assert decode_header(header.header_bytes) == header
    assert header.header_bytes == canonical(_header())
    assert header.hash == H(header.header_bytes)


@pytest.mark.parametrize(
    "changes",
    [{"v": True}, {"v": 2}, {"height": 0}, {"height": -1}, {"time": True}, {"chain": 1},
     {"prev": b"\x00" * 31}, {"log_root": None}, {"extra": 1}],
)
def test_bad_headers_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(HeaderError):
        decode_header(canonical(_header(**changes)))


def test_non_canonical_header_rejected() -> None:
    data = msgpack.packb(_header(), use_bin_type=True)  # insertion order, not sorted
    assert data != canonical(_header())
    with pytest.raises(NonCanonical):
        decode_header(data)
