"""Batch envelopes (PROTOCOL §2, issue 28 item 1) in ledger/: their exact
bytes, canonical form, the decoders against each other, path and signature
checks, and the offline verifier on a batched record's bundle."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import msgpack
import pytest
from helpers import FIXED_TS, make_genesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memchain import MemChain
from mutations import mutated

from ledger.batch import BATCH_DOMAIN, MAX_BATCH_SIZE, batch_message
from ledger.batch_envelopes import check_batched, sign_batch
from ledger.crypto import RECORD_DOMAIN, SigningKey, verify_signature
from ledger.encoding import H, canonical, to_b64
from ledger.errors import BadEncoding, BadSignature, LedgerError, NonCanonical
from ledger.genesis import parse_genesis
from ledger.merkle import leaf_hash, root, verify_inclusion
from ledger.native import native
from ledger.proofs import build_bundle
from ledger.records import (
    BatchedEnvelope,
    Envelope,
    _decode_envelope_general,
    cosign,
    decode_committed_envelope,
    decode_envelope,
    make_record,
    sign_record,
    verify_signatures,
)
from ledger.verify import STEPS, verify_bundle

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_RANDOM" not in os.environ,
                suppress_health_check=list(HealthCheck))

DOC, VKEYS, SKEY = make_genesis(4, "test")
GENESIS = parse_genesis(DOC)


def records(n: int, first: int = 0, key: SigningKey = SKEY) -> list[Any]:
    return [make_record(chain="test", submitter=key.public_key, nonce=first + i, ts=FIXED_TS,
                        kind="payment", body={"amount": first + i}) for i in range(n)]


BATCH = sign_batch(records(7), SKEY)


def value_of(env: Envelope) -> dict[str, Any]:
    out: dict[str, Any] = msgpack.unpackb(env.envelope_bytes, raw=False)
    return out


def with_batch(env: Envelope, **changes: Any) -> bytes:
    value = value_of(env)
    value["batch"] = dict(value["batch"], **changes)
    return canonical(value)


def test_the_bytes_are_the_documented_ones() -> None:
    """PROTOCOL §2: leaves H(0x00 || id), the RFC 9162 root, the signed
    message domain || uint64_be(n) || root, and the envelope map."""
    ids = [e.id for e in BATCH]
    batch_root = root([leaf_hash(i) for i in ids])
    assert BATCH_DOMAIN == b"auditledger/batch/v1\n"
    message = len(ids).to_bytes(8, "big") + batch_root
    assert batch_message(len(ids), batch_root) == message
    for i, env in enumerate(BATCH):
        assert type(env) is BatchedEnvelope
        verify_signature(SKEY.public_key, BATCH_DOMAIN, message, env.sig)
        verify_inclusion(i, len(ids), H(b"\x00" + env.id), env.batch.path, batch_root)
        assert env.envelope_bytes == canonical({
            "batch": {"index": i, "path": list(env.batch.path), "size": 7},
            "record": env.record.record_bytes, "sig": env.sig})
        assert env.id == H(env.record.record_bytes)  # the id does not depend on the batch
        assert env.leaf_hash == H(b"\x00" + env.envelope_bytes)
    assert len({e.sig for e in BATCH}) == 1


def test_decoders_agree() -> None:
    for env in BATCH:
        if native is not None:  # ledger/_native_batch.c (tests/test_native_batch.py)
            assert native.decode_envelope(env.envelope_bytes) == env
        for decode in (decode_envelope, _decode_envelope_general, decode_committed_envelope):
            assert decode(env.envelope_bytes) == env
        verify_signatures(decode_envelope(env.envelope_bytes))


def test_one_signature_envelopes_are_unchanged() -> None:
    record = records(1, 100)[0]
    env = sign_record(record, SKEY)
    assert env.envelope_bytes == canonical({"record": record.record_bytes, "sig": env.sig})
    assert type(decode_envelope(env.envelope_bytes)) is Envelope


@pytest.mark.parametrize("change, error", [
    ({"size": 1, "index": 0}, BadEncoding), ({"size": MAX_BATCH_SIZE + 1}, BadEncoding),
    ({"index": 7}, BadEncoding), ({"index": -1}, BadEncoding), ({"index": True}, BadEncoding),
    ({"path": []}, BadEncoding), ({"path": [b"\x01" * 31]}, BadEncoding),
    ({"path": [b"\x01" * 32] * 13}, BadEncoding), ({"extra": 1}, BadEncoding),
])
def test_malformed_batch_maps_are_refused(change: dict[str, Any], error: type[Exception]) -> None:
    blob = with_batch(BATCH[0], **change)
    for decode in (decode_envelope, decode_committed_envelope):
        with pytest.raises(error):
            decode(blob)


def test_non_canonical_batch_envelopes_are_refused() -> None:
    value = value_of(BATCH[2])
    # keys out of order inside 'batch', and a wider integer header for 'index'
    unsorted = msgpack.packb({"batch": {"size": 7, "path": value["batch"]["path"], "index": 2},
                              "record": value["record"], "sig": value["sig"]}, use_bin_type=True)
    with pytest.raises(NonCanonical):
        decode_envelope(unsorted)
    wide = BATCH[2].envelope_bytes.replace(b"\xa5index\x02", b"\xa5index\xcc\x02")
    assert wide != BATCH[2].envelope_bytes
    with pytest.raises(NonCanonical):
        decode_envelope(wide)


def test_batch_and_cosigs_do_not_combine() -> None:
    value = value_of(BATCH[0])
    value["cosigs"] = [{"key": VKEYS[0].public_key, "sig": b"\x01" * 64}]
    with pytest.raises(BadEncoding, match="exactly 'batch', 'record' and 'sig'"):
        decode_envelope(canonical(value), cosigs=True)
    # cosign() of a one-signature envelope is still a §9.2 envelope
    assert b"batch" not in cosign(sign_record(records(1, 50)[0], SKEY), [VKEYS[0]]).envelope_bytes


def test_a_forged_path_or_signature_is_bad_signature() -> None:
    env = BATCH[3]
    other = list(env.batch.path)
    other[0] = bytes(32)
    forged = decode_envelope(with_batch(env, path=other))
    moved = decode_envelope(with_batch(env, index=4))  # another place, same path
    short = decode_envelope(with_batch(env, path=other[:-1]))  # length does not fit
    for bad in (forged, moved, short):
        assert bad.id == env.id
        with pytest.raises(BadSignature):
            verify_signatures(bad)
    # a record signed as a batch cannot pass as signed on its own, nor the
    # other way round: the domains differ
    with pytest.raises(BadSignature):
        verify_signature(SKEY.public_key, RECORD_DOMAIN, env.record.record_bytes, env.sig)
    verdicts, good = check_batched([BATCH[0], forged, moved, short, BATCH[5]])
    assert verdicts == [True, False, False, False, True] and len(good) == 1


def test_a_cached_signature_does_not_carry_a_forged_path() -> None:
    _, good = check_batched(list(BATCH))
    other = list(BATCH[1].batch.path)
    other[-1] = b"\x05" * 32
    forged = decode_envelope(with_batch(BATCH[1], path=other))
    verdicts, _ = check_batched([forged, BATCH[1]], good.__contains__)
    assert verdicts == [False, True]


def test_sign_batch_bounds() -> None:
    with pytest.raises(ValueError):
        sign_batch(records(1), SKEY)
    with pytest.raises(ValueError):
        sign_batch(records(3), VKEYS[0])  # not the submitter's key
    big = sign_batch(records(MAX_BATCH_SIZE), SKEY)
    assert max(len(e.batch.path) for e in big) == 12
    assert decode_envelope(big[-1].envelope_bytes) == big[-1]


# -- fuzz: typed errors only, and the fast path is the general path --------

def outcome(fn: Any, blob: bytes) -> Any:
    try:
        env = fn(blob)
    except LedgerError as exc:
        return (type(exc), exc.code, str(exc))
    return (env, type(env), env.envelope_bytes, env.leaf_hash)


@FUZZ
@given(st.data())
def test_mutated_batch_envelopes(data: st.DataObject) -> None:
    """Any mutation: a typed error or an envelope, the same from the fast
    (C and Python) paths as from the general path; the C decoder builds
    only what the general path builds, of the same type."""
    seed = data.draw(st.sampled_from(BATCH)).envelope_bytes
    blob = data.draw(mutated(seed))
    assert outcome(decode_envelope, blob) == outcome(_decode_envelope_general, blob)
    if native is not None:
        env = native.decode_envelope(blob)
        if env is not None:
            assert outcome(lambda b: env, blob) == outcome(_decode_envelope_general, blob)
    try:
        decode_committed_envelope(blob)
    except LedgerError:
        pass


batch_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1),
                         st.binary(max_size=40), st.text(max_size=8),
                         st.lists(st.binary(min_size=31, max_size=33), max_size=14))


@FUZZ
@given(st.data())
def test_structured_batch_fields(data: st.DataObject) -> None:
    """Right shape, any field values: typed errors, fast path = general path,
    and whatever decodes either verifies or is bad_signature."""
    value = value_of(data.draw(st.sampled_from(BATCH)))
    batch = dict(value["batch"])
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(["index", "path", "size", "x"]))
        batch[key] = data.draw(batch_values)
    value["batch"] = batch
    try:
        blob = msgpack.packb(value, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return
    assert outcome(decode_envelope, blob) == outcome(_decode_envelope_general, blob)
    try:
        env = decode_envelope(blob)
    except LedgerError:
        return
    try:
        verify_signatures(env)
    except BadSignature:
        pass


# -- offline verification of a batched record's bundle ---------------------

def chain_with_batch() -> tuple[MemChain, list[BatchedEnvelope]]:
    mem = MemChain(GENESIS, VKEYS)
    envs = sign_batch(records(5, 10), SKEY)
    mem.commit(envs[:3])
    mem.commit(envs[3:])
    return mem, envs


def test_a_batched_records_bundle_verifies_offline() -> None:
    mem, envs = chain_with_batch()
    assert STEPS.index("role") < STEPS.index("batch_path") < STEPS.index("signature")
    for env in envs:
        bundle = json.loads(json.dumps(build_bundle(mem, env.id)))
        verified = verify_bundle(bundle, DOC)
        assert verified.envelope == env and isinstance(verified.envelope, BatchedEnvelope)


def test_bundle_steps_name_a_bad_path_and_a_bad_batch_signature() -> None:
    mem, envs = chain_with_batch()
    bundle = json.loads(json.dumps(build_bundle(mem, envs[1].id)))
    short = copy.deepcopy(bundle)
    short["envelope"] = to_b64(with_batch(envs[1], path=list(envs[1].batch.path[:-1])))
    with pytest.raises(LedgerError) as exc:
        verify_bundle(short, DOC)
    assert exc.value.step == "batch_path"
    other = list(envs[1].batch.path)
    other[0] = bytes(32)
    forged = copy.deepcopy(bundle)
    forged["envelope"] = to_b64(with_batch(envs[1], path=other))
    with pytest.raises(LedgerError) as exc:
        verify_bundle(forged, DOC)
    assert exc.value.step == "signature"


def test_batch_fast_path_corner_cases() -> None:
    """The byte-level reader of canonical batch envelopes (ledger/batch.py)
    answers exactly as the general decoder: wide integer and bin headers,
    array 16 for a short path, trailing or missing bytes."""
    from ledger.batch import canonical_batch_parts

    big = sign_batch(records(300, 1000), SKEY)
    long_record = sign_batch([make_record(chain="test", submitter=SKEY.public_key, nonce=5000 + i,
                                          ts=FIXED_TS, kind="payment", body={"memo": "m" * 300})
                              for i in range(2)], SKEY)
    for env in (BATCH[0], BATCH[6], big[0], big[200], big[299], long_record[1]):
        assert canonical_batch_parts(env.envelope_bytes, 8192) is not None
        assert decode_envelope(env.envelope_bytes) == _decode_envelope_general(env.envelope_bytes)
    env = big[200]  # index 200 (0xcc 0xc8), size 300 (0xcd 0x01 0x2c)
    cases = [
        env.envelope_bytes.replace(b"\xa5index\xcc\xc8", b"\xa5index\xcd\x00\xc8"),
        env.envelope_bytes.replace(b"\xa4size\xcd\x01\x2c", b"\xa4size\xce\x00\x00\x01\x2c"),
        BATCH[0].envelope_bytes.replace(b"\xa4size\x07", b"\xa4size\xcc\x07"),
        BATCH[0].envelope_bytes.replace(b"\xa4path\x93", b"\xdc\x00\x03", 1),
        BATCH[0].envelope_bytes.replace(b"\xa4path\x93", b"\xa4path\xdc\x00\x03"),
        BATCH[0].envelope_bytes + b"\x00", BATCH[0].envelope_bytes[:-1],
    ]
    record = BATCH[0].record.record_bytes
    cases.append(BATCH[0].envelope_bytes.replace(
        b"\xa6record\xc4" + bytes([len(record)]), b"\xa6record\xc5" + len(record).to_bytes(2, "big")))
    for blob in cases:
        assert blob not in (env.envelope_bytes, BATCH[0].envelope_bytes)
        assert canonical_batch_parts(blob, 8192) is None
        assert outcome(decode_envelope, blob) == outcome(_decode_envelope_general, blob)
        with pytest.raises(LedgerError):
            decode_envelope(blob)


def test_fast_built_objects_equal_those_init_builds() -> None:
    """ledger.record_types.new_record / new_batched_envelope (the decoders'
    constructors without ``__init__``): the same objects, field for field,
    with the leaf hash ``__post_init__`` computes, and as frozen."""
    import dataclasses

    from ledger.record_types import Record, new_batched_envelope, new_record

    for env in (BATCH[0], BATCH[6]):
        fast = decode_envelope(env.envelope_bytes)
        general = _decode_envelope_general(env.envelope_bytes)
        assert type(fast) is type(general) is BatchedEnvelope
        assert type(fast.record) is type(general.record) is Record
        for a, b in ((fast, general), (fast.record, general.record)):
            assert a == b and repr(a) == repr(b)
            assert all(getattr(a, f.name) == getattr(b, f.name) for f in dataclasses.fields(a))
        assert fast.leaf_hash == general.leaf_hash == env.leaf_hash
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.sig = b""  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.record.nonce = 1  # type: ignore[misc]
        r = general.record
        rebuilt = new_record(r.chain, r.submitter, r.nonce, r.ts, r.kind, r.origin, r.body,
                             r.parents, r.record_bytes, r.id)
        assert rebuilt == r and repr(rebuilt) == repr(r)
        again = new_batched_envelope(rebuilt, general.sig, general.envelope_bytes, general.batch)
        assert again == general and again.leaf_hash == general.leaf_hash
