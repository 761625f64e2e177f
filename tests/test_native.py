"""ledger._native (ledger/_native.c) against the Python code it speeds up.

The contract is one-sided: ``decode_record`` answers None for whatever it
does not handle and the Python path decides, so whenever it returns fields
they must be the Python decoder's, and every input it accepts the Python
decoder must accept.  ``verify_ed25519`` must give exactly
``verify_signature``'s verdict (PyNaCl: libsodium's rules) for every (key,
message, signature): good, damaged, small-order and non-canonical ones.  The
C loop only hands each signature to libsodium's
``crypto_sign_verify_detached``; these tests check that it hands over the
right bytes and reads the answer right.

The suite also runs ledger/records.py's fast path against the general path
(tests/test_fuzz_decoders.py) with the C module in place, and the fallback
is exercised with ``AUDITLEDGER_PURE_PYTHON=1`` in a fresh interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import native as native_mod
from ledger.crypto import RECORD_DOMAIN, SigningKey, verify_many, verify_signature
from ledger.encoding import decode
from ledger.errors import BadSignature, LedgerError
from ledger.records import _record_from_map

import ed25519_ref as ref  # tests/ is on sys.path (conftest)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_RANDOM" not in os.environ,
                suppress_health_check=list(HealthCheck))

native = native_mod.native


def test_the_c_module_is_built() -> None:
    """CI builds it (setup.py); a silent fallback would hide a broken build."""
    if os.environ.get(native_mod.PURE_PYTHON_ENV):
        pytest.skip("pure Python requested")
    assert native is not None, native_mod.description


needs_native = pytest.mark.skipif(native is None, reason="ledger._native is not built")

KEY = SigningKey(b"\x11" * 32)
PARENT_A = b"\xaa" * 32
PARENT_B = b"\xbb" * 32


def python_fields(blob: bytes) -> tuple[Any, ...] | None:
    """The reference: the general decoder's record as the C tuple, or None."""
    try:
        record = _record_from_map(decode(blob), blob)
    except LedgerError:
        return None
    return (record.chain, record.submitter, record.nonce, record.ts, record.kind,
            record.origin, record.body, record.parents)


def check_against_python(blob: bytes) -> Any:
    fields = native.decode_record(blob)
    reference = python_fields(blob)
    if fields is not None:
        assert reference is not None, f"C accepted what Python refuses: {blob.hex()}"
        assert fields == reference
        # Same types too (== would let True stand for 1, a list for a tuple).
        assert [type(x) for x in fields] == [type(x) for x in reference]
        assert _types(fields[6]) == _types(reference[6])
    return fields, reference


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def record_value(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "v": 1, "chain": "test-chain", "submitter": KEY.public_key, "nonce": 7, "ts": 1_763_848_000_000,
        "kind": "payment", "origin": {"system": "core", "country": "DE"},
        "body": {"amount": 1234, "currency": "EUR"}, "parents": [PARENT_A],
    }
    value.update(changes)
    return value


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def canonical_record(**changes: Any) -> bytes:
    from ledger.encoding import canonical

    return canonical(record_value(**changes))


# Integers at every boundary between MessagePack's forms.
BOUNDARY_INTS = sorted({0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1,
                        2**63, 2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769,
                        -(2**31), -(2**31) - 1, -(2**63)})

# Strings and bytes at every header boundary (characters, not bytes, for str).
BOUNDARY_LENGTHS = [0, 1, 31, 32, 255, 256, 65535, 65536]

canonical_values = st.recursive(
    st.none() | st.booleans() | st.sampled_from(BOUNDARY_INTS)
    | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=40) | st.binary(max_size=300),
    lambda children: st.lists(children, max_size=20)
    | st.dictionaries(st.text(max_size=8), children, max_size=20),
    max_leaves=40,
)


@needs_native
@FUZZ
@given(body=st.dictionaries(st.text(max_size=8), canonical_values, max_size=8),
       origin=st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=16),
       chain=st.text(min_size=1, max_size=64), kind=st.text(min_size=1, max_size=64),
       nonce=st.integers(0, 2**64 - 1), ts=st.integers(0, 2**64 - 1),
       parents=st.lists(st.binary(min_size=32, max_size=32), max_size=16, unique=True))
def test_canonical_records_decode_as_in_python(body: Any, origin: Any, chain: str, kind: str,
                                               nonce: int, ts: int, parents: list[bytes]) -> None:
    blob = canonical_record(body=body, origin=origin, chain=chain, kind=kind, nonce=nonce, ts=ts,
                            parents=parents)
    fields, reference = check_against_python(blob)
    assert reference is not None
    assert fields is not None, "a canonical record left to the Python path"


@needs_native
@FUZZ
@given(st.data())
def test_mutated_records_never_disagree(data: st.DataObject) -> None:
    from test_fuzz_decoders import mutated  # the decoders' mutation strategy

    blob = data.draw(mutated(canonical_record(body={"a": [1, -200, "x" * 40, b"\x00" * 3, None]})))
    check_against_python(bytes(blob))


@needs_native
@FUZZ
@given(st.data())
def test_any_field_values_never_disagree(data: st.DataObject) -> None:
    """Right keys, any values (floats, unsorted or non-string keys, wrong
    types, out-of-range lengths), any key order."""
    from test_fuzz_decoders import msgpack_values

    value = record_value()
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(value) + ["x"]))
        value[key] = data.draw(msgpack_values | st.text(max_size=70) | st.binary(max_size=40))
    if data.draw(st.booleans()):
        value = dict(data.draw(st.permutations(list(value.items()))))
    try:
        blob = pack(value)
    except (OverflowError, TypeError, ValueError):
        return
    check_against_python(blob)


def _int_forms(n: int) -> list[bytes]:
    """Every MessagePack encoding of the integer n."""
    forms = []
    if 0 <= n <= 0x7F:
        forms.append(bytes([n]))
    if -32 <= n < 0:
        forms.append(n.to_bytes(1, "big", signed=True))
    for tag, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        if 0 <= n < 1 << (8 * size):
            forms.append(bytes([tag]) + n.to_bytes(size, "big"))
    for tag, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        if -(1 << (8 * size - 1)) <= n < 1 << (8 * size - 1):
            forms.append(bytes([tag]) + n.to_bytes(size, "big", signed=True))
    return forms


@needs_native
@pytest.mark.parametrize("n", BOUNDARY_INTS)
def test_every_integer_form(n: int) -> None:
    """Only the shortest form is accepted, in the body and for nonce/ts."""
    marker = 0x7B  # body {"n": 123}: the int under test replaces its byte
    template = canonical_record(body={"n": 123})
    assert template.count(bytes([marker])) == 1
    accepted = []
    for form in _int_forms(n):
        blob = template.replace(bytes([marker]), form)
        fields, reference = check_against_python(blob)
        if fields is not None:
            accepted.append(form)
            assert fields[6] == {"n": n}
    assert accepted == [pack(n)]
    if n >= 0:
        nonce_template = canonical_record(nonce=123)
        for form in _int_forms(n):
            fields, _ = check_against_python(nonce_template.replace(b"\xa5nonce\x7b", b"\xa5nonce" + form))
            assert (fields is not None) == (form == pack(n))


def _str_forms(text: str) -> list[bytes]:
    raw = text.encode()
    n = len(raw)
    forms = []
    if n < 32:
        forms.append(bytes([0xA0 | n]) + raw)
    for tag, size in ((0xD9, 1), (0xDA, 2), (0xDB, 4)):
        if n < 1 << (8 * size):
            forms.append(bytes([tag]) + n.to_bytes(size, "big") + raw)
    return forms


def _bin_forms(raw: bytes) -> list[bytes]:
    n = len(raw)
    return [bytes([tag]) + n.to_bytes(size, "big") + raw
            for tag, size in ((0xC4, 1), (0xC5, 2), (0xC6, 4)) if n < 1 << (8 * size)]


@needs_native
@pytest.mark.parametrize("length", BOUNDARY_LENGTHS)
def test_every_string_and_bytes_header(length: int) -> None:
    for value, forms in (("é" * (length // 2) + "x" * (length % 2), _str_forms),
                         (b"\x01" * length, _bin_forms)):
        encoded = pack(value)
        head = canonical_record(body={"s": None})
        accepted = []
        for form in forms(value):  # type: ignore[operator]
            blob = head.replace(b"\xa1s\xc0", b"\xa1s" + form)
            fields, _ = check_against_python(blob)
            if fields is not None:
                accepted.append(form)
                assert fields[6] == {"s": value}
        assert accepted == [encoded]


@needs_native
def test_container_headers_and_limits() -> None:
    for n in (15, 16, 17):
        check = check_against_python(canonical_record(body={"l": list(range(n))}))
        assert check[0] is not None
        check = check_against_python(canonical_record(body={f"k{i:02}": i for i in range(n)}))
        assert check[0] is not None
    # array 16 for a short list, map 16 for a small map: not canonical
    short = canonical_record(body={"l": [1, 2]})
    assert check_against_python(short.replace(b"\xa1l\x92", b"\xa1l\xdc\x00\x02"))[0] is None
    small = canonical_record(body={"a": 1})
    assert check_against_python(small.replace(b"\xa4body\x81", b"\xa4body\xde\x00\x01"))[0] is None
    # limits of the record's fields
    assert check_against_python(canonical_record(origin={f"k{i:02}": "v" for i in range(17)}))[1] is None
    assert check_against_python(canonical_record(parents=[bytes([i]) * 32 for i in range(17)]))[1] is None
    assert check_against_python(canonical_record(parents=[PARENT_A, PARENT_A]))[1] is None
    assert check_against_python(canonical_record(chain="c" * 65))[1] is None
    assert check_against_python(canonical_record(kind="é" * 64))[0] is not None  # characters, not bytes
    assert check_against_python(canonical_record(kind=""))[1] is None
    assert check_against_python(canonical_record(origin={"a": 1}))[1] is None
    # unsorted and duplicate keys, non-string keys, floats, the timestamp extension
    sorted_body = canonical_record(body={"a": 1, "b": 2})
    assert check_against_python(sorted_body.replace(b"\xa1a\x01\xa1b\x02", b"\xa1b\x02\xa1a\x01"))[1] is None
    assert check_against_python(sorted_body.replace(b"\xa1b\x02", b"\xa1a\x02"))[1] is None
    for bad in (1.5, msgpack.Timestamp(1, 0)):
        assert check_against_python(pack(record_value(body={"x": bad})))[1] is None
    assert check_against_python(pack(record_value(body={1: "x"})))[1] is None
    # depth: the C decoder stops early, the Python path still decides
    deep: Any = 1
    for _ in range(30):
        deep = [deep]
    fields, reference = check_against_python(canonical_record(body={"d": deep}))
    assert fields is None and reference is not None
    # invalid UTF-8, trailing bytes, truncation, not bytes
    assert check_against_python(canonical_record(kind="ab").replace(b"\xa2ab", b"\xa2\xff\xfe"))[1] is None
    good = canonical_record()
    assert check_against_python(good + b"\x00")[1] is None
    for cut in range(len(good)):
        assert native.decode_record(good[:cut]) is None
    assert native.decode_record(bytearray(good)) is None  # type: ignore[arg-type]


# -- signatures ------------------------------------------------------------

# Public keys and signatures libsodium treats specially: small-order points,
# non-canonical encodings, S >= L.
L_ORDER = 2**252 + 27742317777372353535851937790883648493
SPECIAL_KEYS = [b"\x00" * 32, b"\x01" + b"\x00" * 31, b"\xff" * 32,
                bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
                b"\xec" + b"\xff" * 30 + b"\x7f"]


def _with_s(sig: bytes, s: int) -> bytes:
    return sig[:32] + (s % 2**256).to_bytes(32, "little")


def _reference(pk: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        verify_signature(pk, RECORD_DOMAIN, msg, sig)
        return True
    except BadSignature:
        return False


@needs_native
def test_verify_agrees_with_pynacl_on_special_cases() -> None:
    msg = b"record bytes"
    sig = KEY.sign(RECORD_DOMAIN, msg)
    s = int.from_bytes(sig[32:], "little")
    items = [(KEY.public_key, msg, sig), (KEY.public_key, msg + b"!", sig),
             (KEY.public_key, msg, _with_s(sig, s + L_ORDER)), (KEY.public_key, msg, sig[:63]),
             (KEY.public_key[:31], msg, sig), (KEY.public_key, b"", KEY.sign(RECORD_DOMAIN, b""))]
    items += [(pk, msg, sig) for pk in SPECIAL_KEYS]
    items += [(pk, msg, b"\x01" + b"\x00" * 63) for pk in SPECIAL_KEYS]
    got = verify_many(RECORD_DOMAIN, items)
    assert got == [_reference(*item) for item in items]
    assert got[0] and got[5] and not any(got[1:5])


@needs_native
@FUZZ
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=40), st.integers(0, 3), st.integers(0, 6)),
                max_size=12))
def test_verify_agrees_with_pynacl(cases: list[tuple[bytes, int, int]]) -> None:
    items = []
    for msg, key_no, damage in cases:
        key = SigningKey(bytes([key_no + 1]) * 32)
        sig = key.sign(RECORD_DOMAIN, msg)
        pk = key.public_key
        if damage == 1:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        elif damage == 2:
            msg = msg + b"x"
        elif damage == 3:
            pk = SigningKey(b"\x09" * 32).public_key
        elif damage == 4:
            sig = sig[:-1]
        items.append((pk, msg, sig))
    assert verify_many(RECORD_DOMAIN, items) == [_reference(*item) for item in items]


@needs_native
def test_verify_agrees_with_pynacl_on_crafted_signatures() -> None:
    """Signatures only libsodium's own checks tell apart, built with the
    RFC 8032 reference in tests/ed25519_ref.py: R at the identity with s = h a
    (the group equation holds), R of small order against a key with a torsion
    part, R and the key not canonically encoded (y >= p), and a key with a
    torsion part whose signatures libsodium accepts when h kills the torsion.
    Both paths must give libsodium's verdict on every one."""
    seed = b"\x02" * 32
    a, public_key = ref.secret_scalar(seed), SigningKey(seed).public_key
    items: list[tuple[bytes, bytes, bytes]] = []
    identity = ref.encode(ref.IDENTITY)
    for i in range(4):
        msg = b"identity R %d" % i
        h = ref.challenge(identity, public_key, RECORD_DOMAIN + msg)
        items.append((public_key, msg, identity + (h * a % ref.L).to_bytes(32, "little")))
    odd_key = ref.encode(ref.add(ref.multiply(a, ref.BASE), ref.TORSION8))
    for i in range(32):
        msg = b"torsion %d" % i
        items.append((odd_key, msg, ref.sign_with(a, odd_key, RECORD_DOMAIN + msg, 1000 + i)))
    for i in range(40):
        msg = b"small R %d" % i
        for j in range(1, 8):
            r = ref.encode(ref.multiply(j, ref.TORSION8))
            h = ref.challenge(r, odd_key, RECORD_DOMAIN + msg)
            if ref.encode(ref.negate(ref.multiply(h, ref.TORSION8))) == r:
                items.append((odd_key, msg, r + (h * a % ref.L).to_bytes(32, "little")))
    # Non-canonical encodings: y + p for a small y (the same point as y).
    for y in range(2, 40):
        if ref.decode(y.to_bytes(32, "little")) is None:
            continue
        alias = (y + ref.P).to_bytes(32, "little")
        good = sign_for(seed, b"alias %d" % y)
        items.append((public_key, b"alias %d" % y, alias + good[32:]))  # R not canonical
        items.append((alias, b"alias %d" % y, good))  # key not canonical
    expected = [_reference(*item) for item in items]
    assert verify_many(RECORD_DOMAIN, items) == expected
    torsion = expected[4:36]
    assert not any(expected[:4]) and 0 < sum(torsion) < 32, "libsodium's rules changed?"
    assert not any(expected[36:])


def sign_for(seed: bytes, msg: bytes) -> bytes:
    return SigningKey(seed).sign(RECORD_DOMAIN, msg)


@needs_native
def test_verify_releases_the_gil_and_keeps_answers_per_thread() -> None:
    """Batches checked from several threads at once (the C loop runs without
    the GIL) each get their own answers."""
    batches = [[(KEY.public_key, b"t%d-%d" % (t, i),
                 KEY.sign(RECORD_DOMAIN, b"t%d-%d" % (t, i + i % 3)))
                for i in range(60)] for t in range(4)]
    results: dict[int, list[bool]] = {}

    def run(t: int) -> None:
        for _ in range(5):
            results[t] = verify_many(RECORD_DOMAIN, batches[t])

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {t: [i % 3 == 0 for i in range(60)] for t in range(4)}


@needs_native
def test_verify_rejects_wrong_item_types() -> None:
    assert native is not None
    with pytest.raises(TypeError):
        native.verify_ed25519(RECORD_DOMAIN, [(b"k", "text", b"s")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        native.verify_ed25519(RECORD_DOMAIN, [(b"k", b"m")])  # type: ignore[list-item]
    assert native.verify_ed25519(RECORD_DOMAIN, []) == []
    with pytest.raises(TypeError):
        native.verify_ed25519(RECORD_DOMAIN, ())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        native.set_sodium(0)


def test_signatures_are_checked_by_libsodium_only() -> None:
    """The trust path is a vetted library: the package ships no curve
    arithmetic of its own (the retired ledger/_native_ed25519.c), and the C
    module reaches libsodium through crypto_sign_verify_detached alone."""
    import ledger

    package = Path(ledger.__file__).parent
    assert not [p.name for p in package.iterdir() if "ed25519" in p.name.lower()]
    assert "libsodium" in native_mod.description or native is None
    if native is not None:
        assert not hasattr(native, "ed25519_combine")
        sources = "".join(p.read_text() for p in package.glob("_native*.[ch]"))
        assert "crypto_sign_verify_detached" in sources
        for retired in ("ed25519_", "scalar_reduce", "is_valid_point", "key_table"):
            assert retired not in sources, retired


def test_pure_python_fallback() -> None:
    """With AUDITLEDGER_PURE_PYTHON=1 nothing loads the C module, and the
    same records decode and the same signatures verify."""
    script = (
        "import sys; from ledger import native; assert native.native is None, native.description\n"
        "assert 'ledger._native' not in sys.modules\n"
        "from ledger.crypto import SigningKey, verify_many, RECORD_DOMAIN\n"
        "from ledger.records import decode_record\n"
        "k = SigningKey(b'\\x01' * 32); s = k.sign(RECORD_DOMAIN, b'm')\n"
        "assert verify_many(RECORD_DOMAIN, [(k.public_key, b'm', s), (k.public_key, b'n', s)]) == [True, False]\n"
        "blob = bytes.fromhex(sys.argv[1])\n"
        "r = decode_record(blob); print(r.nonce, r.kind, sorted(r.body))\n"
    )
    env = dict(os.environ, AUDITLEDGER_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", script, canonical_record().hex()], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["7", "payment", "['amount',", "'currency']"]


# -- whole envelopes -------------------------------------------------------

def _envelope_bytes(record_bytes: bytes, sig: bytes) -> bytes:
    return pack({"record": record_bytes, "sig": sig})


def check_envelope(blob: bytes) -> Any:
    from dataclasses import FrozenInstanceError

    from ledger.encoding import H
    from ledger.records import Envelope, Record, _decode_envelope_general

    env = native.decode_envelope(blob)
    try:
        reference = _decode_envelope_general(blob)
    except LedgerError:
        reference = None
    if env is not None:
        assert reference is not None, f"C accepted an envelope Python refuses: {blob.hex()}"
        assert type(env) is Envelope and type(env.record) is Record
        assert env == reference and env.record == reference.record
        assert env.envelope_bytes is blob
        assert env.leaf_hash == H(b"\x00" + blob) == reference.leaf_hash
        assert env.id == env.record.id == H(env.record.record_bytes)
        assert repr(env) == repr(reference)
        with pytest.raises(FrozenInstanceError):
            env.sig = b""  # type: ignore[misc]
    return env, reference


@needs_native
@FUZZ
@given(body=st.dictionaries(st.text(max_size=8), canonical_values, max_size=8),
       parents=st.lists(st.binary(min_size=32, max_size=32), max_size=16, unique=True),
       sig=st.binary(min_size=64, max_size=64))
def test_canonical_envelopes_decode_as_in_python(body: Any, parents: list[bytes], sig: bytes) -> None:
    try:
        blob = _envelope_bytes(canonical_record(body=body, parents=parents), sig)
    except ValueError:
        return
    env, reference = check_envelope(blob)
    if len(blob) <= 8192:
        assert env is not None
    else:
        assert env is None and reference is None  # too large: refused by Python


@needs_native
@FUZZ
@given(st.data())
def test_mutated_envelopes_never_disagree(data: st.DataObject) -> None:
    from test_fuzz_decoders import mutated

    seed = _envelope_bytes(canonical_record(body={"memo": "m" * 300}), b"\x07" * 64)
    check_envelope(bytes(data.draw(mutated(seed))))


@needs_native
def test_envelope_corner_cases() -> None:
    record = canonical_record()
    sig = b"\x07" * 64
    good = _envelope_bytes(record, sig)
    assert check_envelope(good)[0] is not None
    bin16 = b"\x82\xa6record\xc5" + len(record).to_bytes(2, "big") + record + b"\xa3sig\xc4\x40" + sig
    assert check_envelope(bin16) == (None, None)  # bin 16 for a short record
    assert check_envelope(_envelope_bytes(record, sig[:63]))[1] is None
    assert check_envelope(pack({"sig": sig, "record": record}))[1] is None  # key order
    assert check_envelope(good + b"\x00")[1] is None
    for cut in range(len(good)):
        assert native.decode_envelope(good[:cut]) is None
    assert native.decode_envelope(bytearray(good)) is None  # type: ignore[arg-type]
    big = _envelope_bytes(canonical_record(body={"memo": "m" * 8000}), sig)
    assert len(big) > 8192 and check_envelope(big) == (None, None)


# -- Merkle interior nodes -------------------------------------------------

@needs_native
@FUZZ
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=40))
def test_pair_up_is_rfc9162_node_hash(nodes: list[bytes]) -> None:
    from ledger.merkle import node_hash

    expected = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
    assert native.pair_up(nodes) == expected


@needs_native
def test_pair_up_refuses_what_is_not_a_hash() -> None:
    with pytest.raises(ValueError):
        native.pair_up([b"\x00" * 32, b"\x00" * 31])
    with pytest.raises(TypeError):
        native.pair_up((b"\x00" * 32, b"\x00" * 32))  # type: ignore[arg-type]
    assert native.pair_up([b"\x00" * 32]) == []


@needs_native
@FUZZ
@given(st.binary(max_size=1000))
def test_sha256_is_hashlib(data: bytes) -> None:
    import hashlib

    from ledger.encoding import H

    assert H is native.sha256
    expected = hashlib.sha256(data).digest()
    assert native.sha256(data) == native.sha256(bytearray(data)) == expected
    assert native.sha256(memoryview(data)) == expected


def test_python_fast_paths_still_agree_with_the_general_path() -> None:
    """With the C module built, CI never runs the Python fast paths of
    ledger/records.py, which stay the fallback: run their property tests
    (tests/test_fuzz_decoders.py) in pure Python too."""
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, AUDITLEDGER_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          os.path.join(tests_dir, "test_fuzz_decoders.py"), "-k", "fast_path"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed is not None and int(passed.group(1)) >= 3, out.stdout[-1000:]


def test_a_missing_library_function_means_pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """If libsodium's or OpenSSL's function cannot be found, the C module is
    not used at all, and the description (the node's start log) says why."""
    if native is None:
        pytest.skip("ledger._native is not built")

    def missing() -> int:
        raise OSError("no such symbol")

    monkeypatch.setattr(native_mod, "_libsodium_verify", missing)
    module, why = native_mod._load()
    assert module is None and "libsodium's functions not found: no such symbol" in why
    monkeypatch.setattr(native_mod, "_openssl_sha256", missing)
    module, why = native_mod._load()
    assert module is None and "SHA-256 functions not found" in why
    monkeypatch.setenv(native_mod.PURE_PYTHON_ENV, "1")
    assert native_mod._load() == (None, "pure Python (AUDITLEDGER_PURE_PYTHON is set)")
