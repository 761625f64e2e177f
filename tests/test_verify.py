"""Proof bundles (PROTOCOL §5): built by ledger.proofs, verified offline by
ledger.verify.  Valid bundles verify; tampering with any field is rejected
at the step that names it.

Bundles come from an in-memory chain (tests/memchain.py) and, at the end,
from a real ChainStore on MemoryStore and LevelDBStore, which must produce
byte-identical bundles.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any, Callable

import msgpack
import pytest
from helpers import certify, commit_envelopes, commit_sample_blocks, make_envelope, make_keys
from hypothesis import given, settings
from hypothesis import strategies as st
from memchain import MemChain, build_chain

from ledger.blocks import Header, Vote, decode_header
from ledger.chain import ChainStore
from ledger.encoding import H, canonical
from ledger.errors import (
    BadRequest,
    GenesisError,
    LedgerError,
    NonCanonical,
    NotFound,
    StorageCorruption,
    TooLarge,
    VerificationError,
)
from ledger.genesis import parse_genesis
from ledger.merkle import EMPTY_ROOT
from ledger.proofs import build_bundle, build_consistency
from ledger.records import MAX_ENVELOPE_BYTES, Envelope, decode_envelope
from ledger.storage import LevelDBStore, MemoryStore
from ledger.verify import (
    STEPS,
    VerifiedBundle,
    parse_consistency,
    verify_bundle,
    verify_certified_header,
    verify_consistency_between,
)

PROPS = settings(derandomize=True, deadline=None, database=None, max_examples=150)

# Blocks of 3, 1, 4 and 2 records: a 10-leaf log, every record's path non-trivial.
MEM, DOC, VKEYS, SKEY, ENVS = build_chain((3, 1, 4, 2))
GENESIS = parse_genesis(DOC)
BUNDLE_KEYS = ["format", "chain", "record_id", "leaf_index", "envelope", "height", "header",
               "inclusion", "certificate"]


def bundle(i: int = 5, height: int | None = None, chain: Any = MEM) -> dict[str, Any]:
    """A fresh (deep-copied) bundle for record ``i``; record 5 is in block 3."""
    return copy.deepcopy(build_bundle(chain, ENVS[i].id, height))


def step_of(b: Any, genesis: Any = DOC) -> str:
    """The step at which ``b`` fails, or "valid"."""
    try:
        verify_bundle(b, genesis)
    except VerificationError as exc:
        assert exc.step in STEPS or exc.step == "genesis", exc.step
        return exc.step
    return "valid"


def rejects(b: Any, step: str, genesis: Any = DOC) -> VerificationError:
    with pytest.raises(VerificationError) as err:
        verify_bundle(b, genesis)
    assert err.value.step == step, f"{err.value.step}: {err.value}"
    return err.value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def flip_byte(data: bytes, i: int, mask: int = 1) -> bytes:
    out = bytearray(data)
    out[i] ^= mask
    return bytes(out)


def header_of(b: dict[str, Any]) -> Header:
    return decode_header(unb64(b["header"]))


def with_header(b: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``b`` with its header re-encoded canonically with ``changes``."""
    fields = header_of(b)._as_map()
    fields.update(changes)
    b["header"] = b64(canonical(fields))
    return b


def recertify(b: dict[str, Any], signers: Any = None, round: int = 0,
              keys: Any = None) -> dict[str, Any]:
    """``b`` with a fresh certificate for its (possibly changed) header."""
    header = header_of(b)
    b["certificate"] = certify(header, keys or VKEYS, GENESIS, round=round,
                               signers=signers).to_json()
    return b


# --------------------------------------------------------------------------
# Valid bundles
# --------------------------------------------------------------------------


def test_bundle_has_exactly_the_protocol_shape() -> None:
    b = build_bundle(MEM, ENVS[5].id)
    assert list(b) == BUNDLE_KEYS
    assert b["format"] == "auditledger-proof/1"
    assert b["chain"] == "test"
    assert b["record_id"] == ENVS[5].id.hex()
    assert b["leaf_index"] == 5
    assert unb64(b["envelope"]) == ENVS[5].envelope_bytes
    assert b["height"] == 3
    assert unb64(b["header"]) == MEM.header(3).header_bytes
    assert b["inclusion"] == [h.hex() for h in MEM.log.inclusion_path(5, 8)]
    assert b["certificate"] == MEM.certificate(3).to_json()
    assert list(b["certificate"]) == ["height", "round", "block", "signatures"]
    assert json.loads(json.dumps(b)) == b
    # Assembled independently from the raw lists: the same document.
    assert b == MEM.raw_bundle(ENVS[5].id, 5, 3)
    assert build_bundle(MEM, ENVS[0].id, 4) == MEM.raw_bundle(ENVS[0].id, 0, 4)


def test_bundles_of_one_block_share_no_mutable_part() -> None:
    """The header's base64 and the certificate's hex are encoded once per
    block; a caller that changes its bundle changes no later bundle."""
    first = build_bundle(MEM, ENVS[5].id)
    first["certificate"]["signatures"][0]["sig"] = "00" * 64
    first["certificate"]["signatures"].append({"validator": 9, "sig": "11"})
    first["certificate"]["block"] = "22" * 32
    first["inclusion"].clear()
    again = build_bundle(MEM, ENVS[5].id)
    assert again == MEM.raw_bundle(ENVS[5].id, 5, 3)
    assert again["certificate"] == MEM.certificate(3).to_json()
    assert MEM.header(3).header_b64 == b64(MEM.header(3).header_bytes)


def test_every_record_verifies_at_its_block_and_every_later_one() -> None:
    for i, env in enumerate(ENVS):
        block_height = MEM.record_location(env.id)[0]
        for height in [None] + list(range(block_height, MEM.height + 1)):
            b = json.loads(json.dumps(build_bundle(MEM, env.id, height)))
            verified = verify_bundle(b, DOC)
            assert isinstance(verified, VerifiedBundle)
            assert verified.envelope == env
            assert verified.record_id == env.id
            assert verified.leaf_index == i
            assert verified.submitter_name == "demo"
            assert verified.height == verified.header.height == (height or block_height)
            assert verified.header == MEM.header(verified.height)
            assert verified.certificate == MEM.certificate(verified.height)


def test_verify_accepts_a_parsed_genesis() -> None:
    assert verify_bundle(bundle(), GENESIS).submitter_name == "demo"


def test_bundle_against_a_later_block_uses_the_later_log() -> None:
    early, late = bundle(0), bundle(0, height=4)
    assert (early["height"], late["height"]) == (1, 4)
    assert early["leaf_index"] == late["leaf_index"] == 0
    assert len(early["inclusion"]) < len(late["inclusion"])
    assert header_of(late).log_size == 10
    verify_bundle(late, DOC)
    # A later block's header with the earlier inclusion path fails.
    late["inclusion"] = early["inclusion"]
    rejects(late, "inclusion")


def test_build_bundle_errors() -> None:
    with pytest.raises(NotFound) as nf:
        build_bundle(MEM, H(b"nothing"))
    assert nf.value.code == "not_found"
    for height in (0, 1, 2, 5, 99, -1):  # record 5 is in block 3, tip is 4
        with pytest.raises(BadRequest) as br:
            build_bundle(MEM, ENVS[5].id, height)
        assert br.value.code == "bad_request" and isinstance(br.value, LedgerError)
    for height in (True, "3", 3.0):
        with pytest.raises(BadRequest):
            build_bundle(MEM, ENVS[5].id, height)  # type: ignore[arg-type]


def test_build_bundle_refuses_a_corrupt_index() -> None:
    mem, *_ = build_chain((3, 1))
    mem.locations[ENVS[0].id] = (1, 1)  # points at another record's leaf
    with pytest.raises(StorageCorruption):
        build_bundle(mem, ENVS[0].id)
    mem.envelopes[2] = b"garbage"
    mem.locations[ENVS[2].id] = (1, 2)
    with pytest.raises(StorageCorruption):
        build_bundle(mem, ENVS[2].id)


def test_build_consistency() -> None:
    assert build_consistency(MEM, 3, 3) == {"from": 3, "to": 3, "path": []}
    doc = build_consistency(MEM, 3, 10)
    assert list(doc) == ["from", "to", "path"]
    assert doc["path"] == [h.hex() for h in MEM.log.consistency_path(3, 10)]
    for old, new in [(0, 3), (4, 3), (1, 11), (0, 0), (-1, 2), (True, 2), (1, "2")]:
        with pytest.raises(BadRequest):
            build_consistency(MEM, old, new)  # type: ignore[arg-type]
    empty = MemChain(GENESIS, VKEYS)
    with pytest.raises(BadRequest):
        build_consistency(empty, 1, 1)


# --------------------------------------------------------------------------
# The JSON shape and the plain fields
# --------------------------------------------------------------------------


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda b: b.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda b: b.pop(key)


SHAPE_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("format v2", _set("format", "auditledger-proof/2"), "format"),
    ("format case", _set("format", "AUDITLEDGER-PROOF/1"), "format"),
    ("format missing", _drop("format"), "bundle"),
    ("extra key", _set("note", "hi"), "bundle"),
    *[(f"{k} missing", _drop(k), "bundle") for k in BUNDLE_KEYS if k != "format"],
    ("chain other", _set("chain", "other"), "chain"),
    ("chain not str", _set("chain", 1), "bundle"),
    ("record_id other", lambda b: b.__setitem__("record_id", ENVS[4].id.hex()), "record_id"),
    ("record_id upper", lambda b: b.__setitem__("record_id", b["record_id"].upper()), "bundle"),
    ("record_id short", lambda b: b.__setitem__("record_id", b["record_id"][:-2]), "bundle"),
    ("record_id spaced", lambda b: b.__setitem__("record_id", " " + b["record_id"][1:]), "bundle"),
    ("record_id bytes", lambda b: b.__setitem__("record_id", ENVS[5].id), "bundle"),
    ("leaf_index +1", lambda b: b.__setitem__("leaf_index", 6), "inclusion"),
    ("leaf_index -1", lambda b: b.__setitem__("leaf_index", 4), "inclusion"),
    ("leaf_index log size", lambda b: b.__setitem__("leaf_index", 8), "inclusion"),
    ("leaf_index huge", lambda b: b.__setitem__("leaf_index", 2**70), "inclusion"),
    ("leaf_index negative", _set("leaf_index", -1), "bundle"),
    ("leaf_index str", _set("leaf_index", "5"), "bundle"),
    ("leaf_index bool", _set("leaf_index", True), "bundle"),
    ("leaf_index float", _set("leaf_index", 5.0), "bundle"),
    ("height +1", _set("height", 4), "height"),
    ("height -1", _set("height", 2), "height"),
    ("height 0", _set("height", 0), "height"),
    ("height str", _set("height", "3"), "bundle"),
    ("height null", _set("height", None), "bundle"),
    ("envelope not b64", _set("envelope", "not base64!"), "bundle"),
    ("envelope hex", lambda b: b.__setitem__("envelope", unb64(b["envelope"]).hex()), "bundle"),
    ("envelope empty", _set("envelope", ""), "envelope"),
    ("header not b64", _set("header", "%%%"), "bundle"),
    ("header empty", _set("header", ""), "header"),
    ("inclusion not list", _set("inclusion", "00" * 32), "bundle"),
    ("inclusion upper", lambda b: b["inclusion"].__setitem__(0, b["inclusion"][0].upper()),
     "bundle"),
    ("inclusion short entry", lambda b: b["inclusion"].__setitem__(0, "00" * 31), "bundle"),
    ("inclusion null entry", lambda b: b["inclusion"].__setitem__(0, None), "bundle"),
    ("inclusion too long", lambda b: b.__setitem__("inclusion", ["00" * 32] * 65), "bundle"),
    ("certificate not object", _set("certificate", []), "bundle"),
    ("certificate extra", lambda b: b["certificate"].__setitem__("chain", "test"), "bundle"),
    ("certificate missing round", lambda b: b["certificate"].pop("round"), "bundle"),
    ("certificate block upper",
     lambda b: b["certificate"].__setitem__("block", b["certificate"]["block"].upper()), "bundle"),
    ("certificate height bool", lambda b: b["certificate"].__setitem__("height", True), "bundle"),
    ("certificate sigs not list", lambda b: b["certificate"].__setitem__("signatures", {}),
     "bundle"),
    ("certificate sig extra key",
     lambda b: b["certificate"]["signatures"][0].__setitem__("pubkey", "00"), "bundle"),
    ("certificate sig non-hex",
     lambda b: b["certificate"]["signatures"][0].__setitem__("sig", "zz" * 64), "bundle"),
    ("certificate validator str",
     lambda b: b["certificate"]["signatures"][0].__setitem__("validator", "0"), "bundle"),
    ("certificate validator negative",
     lambda b: b["certificate"]["signatures"][0].__setitem__("validator", -1), "bundle"),
]


@pytest.mark.parametrize("desc,mutate,step", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_tampered_fields_rejected_at_their_step(
    desc: str, mutate: Callable[[dict[str, Any]], Any], step: str
) -> None:
    b = bundle()
    mutate(b)
    rejects(b, step)


@pytest.mark.parametrize("not_a_bundle", [None, [], "bundle", 5, [bundle()]])
def test_not_an_object_rejected(not_a_bundle: Any) -> None:
    rejects(not_a_bundle, "bundle")


# --------------------------------------------------------------------------
# The envelope
# --------------------------------------------------------------------------


def test_every_flipped_envelope_byte_is_rejected() -> None:
    good = unb64(bundle()["envelope"])
    for i in range(len(good)):
        for mask in (0x01, 0x80):
            b = bundle()
            b["envelope"] = b64(flip_byte(good, i, mask))
            assert step_of(b) in {"envelope", "record_id", "signature"}, (i, mask)


def test_tampered_record_with_matching_id_fails_the_signature() -> None:
    """Change the record and fix up record_id: the submitter's signature fails."""
    env = ENVS[5]
    fields = msgpack.unpackb(env.record.record_bytes, raw=False)
    for key, value in [("nonce", 999), ("body", {"amount": 1}), ("kind", "refund"),
                       ("ts", 1), ("origin", {}), ("parents", [])]:
        changed = dict(fields, **{key: value})
        record_bytes = canonical(changed)
        b = bundle()
        b["envelope"] = b64(canonical({"record": record_bytes, "sig": env.sig}))
        b["record_id"] = H(record_bytes).hex()
        rejects(b, "signature")


def test_record_for_another_chain() -> None:
    env = make_envelope(SKEY, "other", 5)
    b = bundle()
    b["envelope"] = b64(env.envelope_bytes)
    b["record_id"] = env.id.hex()
    rejects(b, "record_chain")


def test_record_by_an_unknown_submitter() -> None:
    env = make_envelope(make_keys(1, 9_000)[0], "test", 5)
    b = bundle()
    b["envelope"] = b64(env.envelope_bytes)
    b["record_id"] = env.id.hex()
    rejects(b, "submitter")


def _chain_with(envelope: Envelope) -> tuple[MemChain, dict[str, Any]]:
    """A properly certified chain whose only leaf is ``envelope`` (whatever its bytes)."""
    mem = MemChain(GENESIS, VKEYS)
    mem.commit([envelope])
    return mem, mem.raw_bundle(envelope.id, 0, 1)


def test_non_canonical_envelope_rejected_even_when_certified() -> None:
    env = ENVS[0]
    reordered = msgpack.packb({"sig": env.sig, "record": env.record.record_bytes},
                              use_bin_type=True)
    assert reordered != env.envelope_bytes
    _, b = _chain_with(Envelope(env.record, env.sig, reordered))
    err = rejects(b, "envelope")
    assert isinstance(err, NonCanonical) and err.code == "non_canonical"


def test_non_canonical_record_inside_the_envelope_rejected() -> None:
    env = ENVS[0]
    fields = msgpack.unpackb(env.record.record_bytes, raw=False)
    loose = msgpack.packb(dict(reversed(list(fields.items()))), use_bin_type=True)
    assert loose != env.record.record_bytes
    envelope_bytes = canonical({"record": loose, "sig": SKEY.sign(b"auditledger/record/v1\n", loose)})
    _, b = _chain_with(Envelope(env.record, env.sig, envelope_bytes))
    b["record_id"] = H(loose).hex()
    err = rejects(b, "envelope")
    assert isinstance(err, NonCanonical)


def test_oversize_envelope_rejected() -> None:
    env = ENVS[0]
    big = canonical({"record": env.record.record_bytes + b"", "sig": env.sig, "pad": b"x" * 9000})
    assert len(big) > MAX_ENVELOPE_BYTES
    _, b = _chain_with(Envelope(env.record, env.sig, big))
    err = rejects(b, "envelope")
    assert isinstance(err, TooLarge) and err.code == "too_large"


def test_envelope_is_decoded_not_trusted() -> None:
    """The verified envelope is decoded from the bundle's bytes."""
    verified = verify_bundle(bundle(), DOC)
    assert verified.envelope == decode_envelope(ENVS[5].envelope_bytes)


# --------------------------------------------------------------------------
# The header
# --------------------------------------------------------------------------


def test_every_flipped_header_byte_is_rejected() -> None:
    good = unb64(bundle()["header"])
    allowed = {"header", "header_chain", "validators", "height", "inclusion", "certificate_block"}
    for i in range(len(good)):
        for mask in (0x01, 0x80):
            b = bundle()
            b["header"] = b64(flip_byte(good, i, mask))
            assert step_of(b) in allowed, (i, mask)


@pytest.mark.parametrize(
    "changes,step",
    [
        ({"log_root": EMPTY_ROOT}, "inclusion"),
        ({"log_size": 9}, "inclusion"),
        # Leaf 5's path has the same shape in trees of 7 and 8 leaves, so the
        # old root still comes out: the size is bound by the certificate.
        ({"log_size": 7}, "certificate_block"),
        ({"log_size": 5}, "inclusion"),
        ({"validators": H(b"other validators")}, "validators"),
        ({"chain": "other"}, "header_chain"),
        ({"height": 4}, "height"),
        ({"time": 0}, "certificate_block"),
        ({"proposer": 3}, "certificate_block"),
        ({"tx_root": EMPTY_ROOT}, "certificate_block"),
        ({"prev": b"\x00" * 32}, "certificate_block"),
        ({"tx_count": 0}, "certificate_block"),
        ({"v": 2}, "header"),
        ({"v": True}, "header"),
        ({"height": 0}, "header"),
        ({"extra": 1}, "header"),
    ],
)
def test_reencoded_header_rejected(changes: dict[str, Any], step: str) -> None:
    rejects(with_header(bundle(), **changes), step)


def test_changed_header_with_matching_height_fails_the_certificate() -> None:
    b = with_header(bundle(), height=4)
    b["height"] = 4
    rejects(b, "certificate_block")


def test_recertified_header_with_another_log_fails_inclusion() -> None:
    """Even a header a quorum did sign cannot prove a leaf its log lacks."""
    b = recertify(with_header(bundle(), log_root=EMPTY_ROOT))
    rejects(b, "inclusion")


def test_non_canonical_header_rejected() -> None:
    b = bundle()
    fields = header_of(b)._as_map()
    loose = msgpack.packb(dict(reversed(list(fields.items()))), use_bin_type=True)
    b["header"] = b64(loose)
    err = rejects(b, "header")
    assert isinstance(err, NonCanonical)


# --------------------------------------------------------------------------
# The inclusion path
# --------------------------------------------------------------------------


def test_every_inclusion_entry_is_checked() -> None:
    good = bundle()["inclusion"]
    assert len(good) >= 3
    for i in range(len(good)):
        for bit in (0, 7, 255):
            b = bundle()
            raw = bytearray(bytes.fromhex(good[i]))
            raw[bit // 8] ^= 1 << (bit % 8)
            b["inclusion"][i] = raw.hex()
            rejects(b, "inclusion")
        removed = bundle()
        del removed["inclusion"][i]
        rejects(removed, "inclusion")
    for at in range(len(good) + 1):
        for extra in ("00" * 32, good[0], bundle()["certificate"]["block"]):
            b = bundle()
            b["inclusion"].insert(at, extra)
            rejects(b, "inclusion")
    swapped = bundle()
    swapped["inclusion"][0], swapped["inclusion"][1] = good[1], good[0]
    rejects(swapped, "inclusion")
    empty = bundle()
    empty["inclusion"] = []
    rejects(empty, "inclusion")


# --------------------------------------------------------------------------
# The certificate
# --------------------------------------------------------------------------


def test_certificate_block_and_height() -> None:
    b = bundle()
    b["certificate"]["block"] = MEM.header(2).hash.hex()
    rejects(b, "certificate_block")
    for h in (2, 4, 0):
        b = bundle()
        b["certificate"]["height"] = h
        rejects(b, "certificate_height")


def test_certificate_round_is_signed() -> None:
    b = bundle()
    b["certificate"]["round"] = 1
    rejects(b, "certificate")
    # A quorum's precommits in another round are just as good.
    verify_bundle(recertify(bundle(), round=7), DOC)


def test_every_signature_byte_is_checked() -> None:
    sigs = bundle()["certificate"]["signatures"]
    for s in range(len(sigs)):
        for i in (0, 31, 32, 63):
            b = bundle()
            raw = bytearray(bytes.fromhex(sigs[s]["sig"]))
            raw[i] ^= 0x01
            b["certificate"]["signatures"][s]["sig"] = raw.hex()
            rejects(b, "certificate")


def test_certificate_signer_problems() -> None:
    # Another validator index for a valid signature.
    b = bundle()
    b["certificate"]["signatures"][0]["validator"] = 3
    rejects(b, "certificate")
    # Two indexes swapped.
    b = bundle()
    s = b["certificate"]["signatures"]
    s[0]["validator"], s[1]["validator"] = s[1]["validator"], s[0]["validator"]
    rejects(b, "certificate")
    # An index outside genesis.
    b = bundle()
    b["certificate"]["signatures"].append({"validator": 4, "sig": "00" * 64})
    rejects(b, "certificate")
    # The same signer twice, padding up to a "quorum".
    b = recertify(bundle(), signers=[0, 1])
    b["certificate"]["signatures"].append(dict(b["certificate"]["signatures"][0]))
    rejects(b, "certificate")
    # A key outside genesis signing in validator 3's name.
    b = recertify(bundle(), signers=[0, 1])
    stranger = make_keys(1, 7_000)[0]
    header = header_of(b)
    vote = Vote("precommit", "test", header.height, 0, header.hash)
    b["certificate"]["signatures"].append({"validator": 3, "sig": vote.sign(stranger).hex()})
    rejects(b, "certificate")


def test_too_few_signers() -> None:
    for signers in ([0, 1], [2], []):
        rejects(recertify(bundle(), signers=signers), "quorum")
    verify_bundle(recertify(bundle(), signers=[1, 2, 3]), DOC)
    verify_bundle(recertify(bundle(), signers=[0, 1, 2, 3]), DOC)


@pytest.mark.parametrize(
    "vote_type,chain",
    [("prevote", "test"), ("precommit", "other")],
)
def test_signatures_over_another_vote_rejected(vote_type: str, chain: str) -> None:
    b = bundle()
    header = header_of(b)
    vote = Vote(vote_type, chain, header.height, 0, header.hash)
    b["certificate"]["signatures"] = [
        {"validator": i, "sig": vote.sign(VKEYS[i]).hex()} for i in range(3)
    ]
    rejects(b, "certificate")


def test_minority_of_validators_cannot_forge_a_record() -> None:
    """Two of four keys (f = 1 is tolerated, 2 is not enough to certify)."""
    forged = make_envelope(SKEY, "test", 12345)
    mem = MemChain(GENESIS, VKEYS)
    mem.commit([forged], signers=[0, 1])
    rejects(build_bundle(mem, forged.id), "quorum")


# --------------------------------------------------------------------------
# The genesis the auditor trusts
# --------------------------------------------------------------------------


def _doc(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    doc.update(changes)
    return doc


def test_wrong_genesis() -> None:
    b = bundle()
    other_validators = [
        {"name": f"x{i}", "pubkey": k.public_key.hex(), "address": ""}
        for i, k in enumerate(make_keys(4, 500))
    ]
    rejects(b, "validators", _doc(validators=other_validators))
    rejects(b, "validators", _doc(validators=list(reversed(DOC["validators"]))))
    rejects(b, "validators", _doc(validators=DOC["validators"][:3]))
    rejects(b, "validators", _doc(validators=DOC["validators"] + other_validators[:1]))
    rejects(b, "chain", _doc(chain="other"))
    rejects(b, "submitter", _doc(submitters=[]))
    lacking = _doc()
    lacking["submitters"][0]["roles"] = ["read"]
    rejects(b, "role", lacking)
    with pytest.raises(GenesisError):
        verify_bundle(b, _doc(validators=[]))
    with pytest.raises(GenesisError):
        verify_bundle(b, [])  # type: ignore[arg-type]


def test_same_validators_other_submitter_names() -> None:
    doc = _doc()
    doc["submitters"][0]["name"] = "payments-eu"
    assert verify_bundle(bundle(), doc).submitter_name == "payments-eu"


# --------------------------------------------------------------------------
# Arbitrary garbage never escapes as anything but a VerificationError
# --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)
CERT_KEYS = ["height", "round", "block", "signatures"]


@PROPS
@given(st.sampled_from(BUNDLE_KEYS + [f"certificate.{k}" for k in CERT_KEYS]), json_values)
def test_prop_any_field_replaced_is_rejected_cleanly(path: str, value: Any) -> None:
    b = bundle()
    if path.startswith("certificate."):
        target, key = b["certificate"], path.split(".", 1)[1]
    else:
        target, key = b, path
    if target[key] == value:
        return
    target[key] = value
    with pytest.raises(VerificationError):
        verify_bundle(b, DOC)


@PROPS
@given(st.sampled_from(["envelope", "header"]), st.binary(max_size=300))
def test_prop_arbitrary_bytes_rejected_cleanly(field: str, data: bytes) -> None:
    b = bundle()
    if unb64(b[field]) == data:
        return
    b[field] = b64(data)
    with pytest.raises(VerificationError):
        verify_bundle(b, DOC)


# --------------------------------------------------------------------------
# Consistency between two certified blocks
# --------------------------------------------------------------------------


def _between(mem: Any, h1: int, h2: int, path: Any = None) -> Any:
    old, new = mem.header(h1), mem.header(h2)
    if path is None:
        path = parse_consistency(build_consistency(mem, old.log_size, new.log_size)).path
    return verify_consistency_between(
        old.header_bytes, mem.certificate(h1).to_json(), new.header_bytes,
        mem.certificate(h2), path, DOC,
    )


def test_consistency_between_every_pair_of_blocks() -> None:
    for h1 in range(1, MEM.height + 1):
        for h2 in range(h1, MEM.height + 1):
            result = _between(MEM, h1, h2)
            assert (result.old.height, result.new.height) == (h1, h2)


def test_consistency_between_rejections() -> None:
    path = parse_consistency(build_consistency(MEM, 3, 10)).path
    with pytest.raises(VerificationError) as err:
        _between(MEM, 1, 4, [path[0], bytes(32)] + list(path[2:]))
    assert err.value.step == "consistency"
    with pytest.raises(VerificationError) as err:
        _between(MEM, 1, 4, list(path[:-1]))
    assert err.value.step == "consistency"
    with pytest.raises(VerificationError) as err:
        _between(MEM, 4, 1, path)
    assert err.value.step == "consistency"
    # Old header not certified by a quorum.
    old = MEM.header(1)
    weak = certify(old, VKEYS, GENESIS, signers=[0])
    with pytest.raises(VerificationError) as err:
        verify_consistency_between(old.header_bytes, weak, MEM.header(4).header_bytes,
                                   MEM.certificate(4), path, DOC)
    assert err.value.step == "quorum" and "old header" in str(err.value)
    # New header tampered.
    with pytest.raises(VerificationError) as err:
        verify_consistency_between(old.header_bytes, MEM.certificate(1),
                                   MEM.header(3).header_bytes, MEM.certificate(4), path, DOC)
    assert err.value.step == "certificate_block" and "new header" in str(err.value)


def test_consistency_between_detects_a_fork() -> None:
    """Two certified headers at one height: the safety violation auditors hunt."""
    fork = MemChain(GENESIS, VKEYS)
    fork.commit([make_envelope(SKEY, "test", 777)])
    with pytest.raises(VerificationError) as err:
        verify_consistency_between(MEM.header(1).header_bytes, MEM.certificate(1),
                                   fork.header(1).header_bytes, fork.certificate(1), [], DOC)
    assert err.value.step == "consistency" and "fork" in str(err.value)
    # And a longer fork's log is not an extension of ours.
    for _ in range(3):
        fork.commit([make_envelope(SKEY, "test", 800 + fork.height)])
    proof = build_consistency(fork, 1, fork.log.size)
    with pytest.raises(VerificationError) as err:
        verify_consistency_between(MEM.header(1).header_bytes, MEM.certificate(1),
                                   fork.header(4).header_bytes, fork.certificate(4),
                                   parse_consistency(proof).path, DOC)
    assert err.value.step == "consistency"


def test_verify_certified_header() -> None:
    assert verify_certified_header(MEM.header(2).header_bytes, MEM.certificate(2), GENESIS) \
        == MEM.header(2)
    with pytest.raises(VerificationError):
        verify_certified_header(MEM.header(2).header_bytes, MEM.certificate(3), GENESIS)


def test_parse_consistency_is_strict() -> None:
    good = build_consistency(MEM, 2, 9)
    assert parse_consistency(good).path == tuple(MEM.log.consistency_path(2, 9))
    for bad in [dict(good, extra=1), {"from": 2, "to": 9}, dict(good, path=["AB" * 32]),
                dict(good, to="9"), dict(good, **{"from": -1}), []]:
        with pytest.raises(VerificationError) as err:
            parse_consistency(bad)
        assert err.value.step == "bundle"


# --------------------------------------------------------------------------
# Bundles from the real ChainStore, on both storage engines
# --------------------------------------------------------------------------


@pytest.fixture(params=["memory", "leveldb"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    if request.param == "memory":
        store = MemoryStore()
        return lambda: store
    return lambda: LevelDBStore(str(tmp_path / "db"))


def test_chainstore_bundles_verify_and_match_the_reference(
    store_factory: Callable[[], Any]
) -> None:
    store = store_factory()
    chain = ChainStore(store, GENESIS)
    blocks = commit_sample_blocks(chain, VKEYS, SKEY)
    # The same blocks in the in-memory reference chain.
    ref = MemChain(GENESIS, VKEYS)
    for block in blocks:
        ref.commit(block)
    assert [chain.header(h) for h in (1, 2, 3)] == [ref.header(h) for h in (1, 2, 3)]
    envelopes = [env for block in blocks for env in block]
    for env in envelopes:
        block_height = chain.record_location(env.id)[0]
        for height in [None] + list(range(block_height, chain.height + 1)):
            built = build_bundle(chain, env.id, height)
            assert built == build_bundle(ref, env.id, height)
            verified = verify_bundle(json.loads(json.dumps(built)), DOC)
            assert verified.envelope == env
    for old in range(1, 9):
        for new in range(old, 9):
            assert build_consistency(chain, old, new) == build_consistency(ref, old, new)
    with pytest.raises(NotFound):
        build_bundle(chain, H(b"missing"))
    with pytest.raises(BadRequest):
        build_bundle(chain, envelopes[-1].id, 2)
    with pytest.raises(BadRequest):
        build_bundle(chain, envelopes[0].id, 4)
    with pytest.raises(BadRequest):
        build_consistency(chain, 1, 9)
    store.close()


def test_chainstore_bundles_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    chain = ChainStore(LevelDBStore(path), GENESIS)
    blocks = commit_sample_blocks(chain, VKEYS, SKEY)
    first = build_bundle(chain, blocks[0][1].id)
    chain.close()
    again = ChainStore(LevelDBStore(path), GENESIS)
    commit_envelopes(again, [make_envelope(SKEY, "test", 40)], VKEYS)
    assert build_bundle(again, blocks[0][1].id) == first
    later = build_bundle(again, blocks[0][1].id, height=4)
    assert verify_bundle(later, DOC).header.log_size == 9
    again.close()
