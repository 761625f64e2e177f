"""ledger/_native_batch.c, the C decoder of canonical batch envelopes,
against the Python reader it speeds up (``ledger.batch.canonical_batch_parts``
with ``ledger.records._canonical_batch_envelope``) and the general decoder.

Both directions are held: whatever C builds, the general decoder builds
the same (type, fields, leaf hash, batch position), and whatever the
Python reader of canonical batch envelopes accepts with a record the C
record decoder handles, C builds too (so the fast path does not silently
fall back).  Run with the C module built; tests/test_batches.py covers the
Python paths and, through ``decode_envelope``, this one as well."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutated

from ledger.batch import (
    BATCH_DOMAIN,
    MAX_BATCH_SIZE,
    MAX_PATH_LEN,
    BatchPosition,
    batch_message,
    batch_tree,
    canonical_batch_parts,
)
from ledger.crypto import SigningKey
from ledger.encoding import H, canonical
from ledger.errors import LedgerError
from ledger.native import native
from ledger.records import (
    BatchedEnvelope,
    Record,
    _canonical_batch_envelope,
    _decode_envelope_general,
    decode_record,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_RANDOM" not in os.environ,
                suppress_health_check=list(HealthCheck))

pytestmark = pytest.mark.skipif(native is None, reason="ledger._native is not built")

KEY = SigningKey(b"\x22" * 32)


def record_bytes(nonce: int, memo: str = "") -> bytes:
    body: dict[str, Any] = {"amount": nonce, "currency": "EUR"}
    if memo:
        body["memo"] = memo
    return canonical({"body": body, "chain": "c", "kind": "payment", "nonce": nonce,
                      "origin": {"system": "core"}, "parents": [], "submitter": KEY.public_key,
                      "ts": 1_765_000_000_000, "v": 1})


def batch_blobs(size: int, first: int = 1, memo: str = "") -> list[bytes]:
    recs = [record_bytes(first + i, memo) for i in range(size)]
    root, positions = batch_tree([hashlib.sha256(r).digest() for r in recs])
    sig = KEY.sign(BATCH_DOMAIN, batch_message(size, root))
    return [msgpack.packb({"batch": p.to_map(), "record": r, "sig": sig}, use_bin_type=True)
            for r, p in zip(recs, positions)]


def raw_blob(index: Any, size: Any, path: Any, record: bytes, sig: bytes = b"\x07" * 64) -> bytes:
    """Any batch map, packed as msgpack would (canonical for canonical values)."""
    return msgpack.packb({"batch": {"index": index, "path": path, "size": size},
                          "record": record, "sig": sig}, use_bin_type=True)


def check(blob: bytes) -> Any:
    """C's answer, held to the Python reader and the general decoder."""
    assert native is not None
    env = native.decode_envelope(blob)
    try:
        general = _decode_envelope_general(blob)
    except LedgerError:
        general = None
    try:
        python_fast = _canonical_batch_envelope(blob, decode_record)
    except LedgerError:  # canonical batch parts, a record the general path refuses
        python_fast = None
    if env is not None:
        assert general is not None, f"C accepted a batch envelope Python refuses: {blob.hex()}"
        assert type(env) is BatchedEnvelope and type(env.record) is Record
        assert type(env.batch) is BatchPosition and type(env.batch.path) is tuple
        assert env == general and env.record == general.record and env.batch == general.batch
        assert python_fast == env
        assert env.envelope_bytes is blob
        assert env.leaf_hash == H(b"\x00" + blob) == general.leaf_hash
        assert env.id == H(env.record.record_bytes)
        assert repr(env) == repr(general)
        with pytest.raises(dataclasses.FrozenInstanceError):
            env.batch = env.batch  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            env.batch.index = 0  # type: ignore[misc]
    elif python_fast is not None and native.decode_record(python_fast.record.record_bytes) is not None:
        raise AssertionError(f"C refused a canonical batch envelope: {blob.hex()}")
    return env


@pytest.mark.parametrize("size", [2, 3, 7, 64, 127, 128, 129, 255, 256, 257, 300])
def test_whole_batches_decode_as_in_python(size: int) -> None:
    for blob in batch_blobs(size):
        env = check(blob)
        assert env is not None


def test_index_and_size_at_every_integer_form() -> None:
    rec = record_bytes(5)
    for size in (2, 127, 128, 255, 256, 4095, MAX_BATCH_SIZE):
        for index in sorted({0, 1, 126, 127, 128, 254, 255, 256, size - 1, size}):
            if index < 0:
                continue
            blob = raw_blob(index, size, [b"\x01" * 32] * 3, rec)
            env = check(blob)
            assert (env is not None) == (index < size)
    for size in (0, 1, MAX_BATCH_SIZE + 1, 65535, 65536, -1):
        assert check(raw_blob(0, size, [b"\x01" * 32], rec)) is None
    assert check(raw_blob(-1, 4, [b"\x01" * 32], rec)) is None


def test_path_lengths_and_entries() -> None:
    rec = record_bytes(6)
    for count in range(0, MAX_PATH_LEN + 3):
        env = check(raw_blob(1, 4, [bytes([i]) * 32 for i in range(count)], rec))
        assert (env is not None) == (1 <= count <= MAX_PATH_LEN)
    for bad in ([b"\x01" * 31], [b"\x01" * 33], ["x" * 32], [1], [b"\x01" * 32, None]):
        assert check(raw_blob(1, 4, bad, rec)) is None


def test_records_sigs_and_sizes() -> None:
    for memo in ("", "m" * 200, "m" * 300, "m" * 7000, "m" * 7900):
        blobs = batch_blobs(2, 100, memo)
        for blob in blobs:
            env = check(blob)
            assert (env is not None) == (len(blob) <= 8192)
    rec = record_bytes(7)
    for sig in (b"\x07" * 63, b"\x07" * 65, b""):
        assert check(raw_blob(0, 2, [b"\x01" * 32], rec, sig)) is None
    assert check(raw_blob(0, 2, [b"\x01" * 32], b"not a record")) is None


def test_cut_extended_retyped_and_reordered() -> None:
    assert native is not None
    good = batch_blobs(7)[3]
    assert check(good) is not None
    for cut in range(len(good)):
        assert check(good[:cut]) is None
    assert check(good + b"\x00") is None
    assert native.decode_envelope(bytearray(good)) is None  # type: ignore[arg-type]
    value = msgpack.unpackb(good, raw=False)
    reordered = b"\x83\xa6record" + msgpack.packb(value["record"], use_bin_type=True)
    reordered += b"\xa5batch" + msgpack.packb(value["batch"], use_bin_type=True)
    reordered += b"\xa3sig" + msgpack.packb(value["sig"], use_bin_type=True)
    assert check(reordered) is None
    rec = value["record"]
    wide = good.replace(b"\xa6record\xc4" + bytes([len(rec)]),
                        b"\xa6record\xc5" + len(rec).to_bytes(2, "big"))
    assert wide != good and check(wide) is None
    for old, new in ((b"\xa5index\x03", b"\xa5index\xcc\x03"), (b"\xa4size\x07", b"\xa4size\xcd\x00\x07"),
                     (b"\xa4path\x93", b"\xa4path\xdc\x00\x03")):
        changed = good.replace(old, new)
        assert changed != good and check(changed) is None


@FUZZ
@given(st.data())
def test_mutated_batch_envelopes_never_disagree(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(SEEDS))
    check(data.draw(mutated(seed)))


@FUZZ
@given(index=st.integers(0, 70000), size=st.integers(0, 70000),
       path=st.lists(st.binary(min_size=30, max_size=34), max_size=14),
       nonce=st.integers(0, 2**64 - 1), memo=st.text(max_size=300))
def test_structured_batch_fields(index: int, size: int, path: list[bytes], nonce: int,
                                 memo: str) -> None:
    check(raw_blob(index, size, path, record_bytes(nonce, memo)))


SEEDS = [batch_blobs(7)[0], batch_blobs(300, 50)[200], batch_blobs(2, 9, "m" * 300)[1]]
