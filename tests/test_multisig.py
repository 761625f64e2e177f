"""Multi-signed envelopes (PROTOCOL §9.2): canonical form, the record id that
signatures never change, verification through the libsodium path, and the C
fast path that defers them to the Python decoder instead of mis-decoding."""

from __future__ import annotations

import os
from typing import Any

import msgpack
import pytest
from helpers import make_envelope, make_keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.encoding import canonical
from ledger.errors import BadEncoding, BadSignature, DuplicateSignature, LedgerError, NonCanonical
from ledger.native import native
from ledger.records import (
    Envelope,
    MultiSignedEnvelope,
    _decode_envelope_general,
    cosign,
    decode_committed_envelope,
    decode_envelope,
    sign_record,
    verify_signatures,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_RANDOM" not in os.environ,
                suppress_health_check=list(HealthCheck))

SUBMITTER = make_keys(1, 1_000_000)[0]
COSIGNERS = make_keys(3, 4_000_000)
ONE = make_envelope(SUBMITTER, "test", 1)
MULTI = cosign(ONE, COSIGNERS)


def _value(env: Envelope) -> dict[str, Any]:
    return dict(msgpack.unpackb(env.envelope_bytes, raw=False))


def test_cosigning_keeps_the_record_id_and_the_one_signature_form() -> None:
    assert isinstance(MULTI, MultiSignedEnvelope) and MULTI.id == ONE.id
    assert MULTI.leaf_hash != ONE.leaf_hash
    assert [k for k, _ in MULTI.cosigs] == sorted(k.public_key for k in COSIGNERS)
    # the version 1 envelope is untouched: same bytes as signing alone gives
    assert sign_record(ONE.record, SUBMITTER).envelope_bytes == ONE.envelope_bytes
    assert type(decode_envelope(ONE.envelope_bytes)) is Envelope
    # nodes of this version (the default) refuse them: they check the
    # submitter's signature only, and do not apply governance yet
    with pytest.raises(BadEncoding, match="not admitted"):
        decode_envelope(MULTI.envelope_bytes)
    assert set(_value(ONE)) == {"record", "sig"}
    assert cosign(ONE, [SUBMITTER]) is ONE  # nothing to add
    decoded = decode_envelope(MULTI.envelope_bytes, cosigs=True)
    assert decoded == MULTI and decoded.signatures() == MULTI.signatures()
    assert decode_committed_envelope(MULTI.envelope_bytes) == MULTI
    verify_signatures(decoded)
    # adding signatures in two steps gives the same bytes as in one
    assert cosign(cosign(ONE, COSIGNERS[2:]), COSIGNERS[:2]).envelope_bytes == MULTI.envelope_bytes


def test_encoding_is_the_documented_one() -> None:
    value = _value(MULTI)
    assert list(value) == ["cosigs", "record", "sig"]
    assert all(list(c) == ["key", "sig"] for c in value["cosigs"])
    assert MULTI.envelope_bytes[:8] == b"\x83\xa6cosigs"
    assert canonical(value) == MULTI.envelope_bytes


def _with(**changes: Any) -> bytes:
    value = _value(MULTI)
    value.update(changes)
    return canonical(value)


def test_non_canonical_and_duplicate_forms_are_refused() -> None:
    cosigs = _value(MULTI)["cosigs"]
    cases: list[tuple[bytes, type[LedgerError], str]] = [
        (_with(cosigs=[]), NonCanonical, "non_canonical"),
        (_with(cosigs=list(reversed(cosigs))), NonCanonical, "non_canonical"),
        (_with(cosigs=[cosigs[0], cosigs[0]]), DuplicateSignature, "duplicate_signature"),
        (_with(cosigs=[{"key": SUBMITTER.public_key, "sig": ONE.sig}]), DuplicateSignature,
         "duplicate_signature"),
        (_with(cosigs=[dict(cosigs[0], extra=1)]), BadEncoding, "bad_encoding"),
        (_with(cosigs=[{"key": cosigs[0]["key"][:31], "sig": cosigs[0]["sig"]}]), BadEncoding,
         "bad_encoding"),
        (_with(cosigs=cosigs * 11), BadEncoding, "bad_encoding"),  # 33 > 32 entries
        (_with(cosigs={"k": 1}), BadEncoding, "bad_encoding"),
        (_with(extra=1), BadEncoding, "bad_encoding"),
    ]
    for blob, error, code in cases:
        with pytest.raises(error) as err:
            decode_envelope(blob, cosigs=True)
        assert err.value.code == code, blob.hex()
    # a longer bin header for a key than needed: well-formed MessagePack, not canonical
    key = cosigs[0]["key"]
    longer = MULTI.envelope_bytes.replace(b"\xa3key\xc4\x20" + key, b"\xa3key\xc5\x00\x20" + key)
    assert longer != MULTI.envelope_bytes
    with pytest.raises(NonCanonical):
        decode_envelope(longer, cosigs=True)


def test_every_signature_must_verify() -> None:
    cosigs = _value(MULTI)["cosigs"]
    cosigs[1] = dict(cosigs[1], sig=bytes(64))
    bad = decode_envelope(cosigs=True, envelope_bytes=canonical(dict(_value(MULTI), cosigs=cosigs)))
    with pytest.raises(BadSignature, match=cosigs[1]["key"].hex()):
        verify_signatures(bad)


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data.insert(i, draw(st.integers(0, 255)))
        elif op == "delete":
            del data[i]
        else:
            del data[i:]
    return bytes(data)


def _outcome(fn: Any, blob: bytes) -> Any:
    try:
        env = fn(blob)
    except LedgerError as exc:
        return (type(exc), exc.code, str(exc))
    return (type(env), env, env.envelope_bytes, env.leaf_hash)


@FUZZ
@given(st.data())
def test_mutated_multi_signed_envelopes(data: st.DataObject) -> None:
    """Any mutation: a typed error or an envelope, the same as the general path's."""
    blob = data.draw(mutated(MULTI.envelope_bytes))
    assert (_outcome(lambda b: decode_envelope(b, cosigs=True), blob)
            == _outcome(_decode_envelope_general, blob))


@pytest.mark.skipif(native is None, reason="ledger._native is not built")
@FUZZ
@given(st.data())
def test_c_decoder_defers_multi_signed_envelopes(data: st.DataObject) -> None:
    """The C decoder answers None for a multi-signed envelope (and anything
    near it), or exactly what the Python decoder answers: never another
    envelope."""
    assert native is not None
    assert native.decode_envelope(MULTI.envelope_bytes) is None
    blob = data.draw(mutated(MULTI.envelope_bytes))
    fast = native.decode_envelope(blob)
    if fast is not None:
        assert _outcome(lambda b: fast, blob) == _outcome(_decode_envelope_general, blob)
