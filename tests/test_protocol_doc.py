"""The worked examples and rules that docs/protocol.md spells out for
independent implementers hold for the code (a wrong example in the contract
would send another verifier astray)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from ledger.blocks import Header, Vote, verify_certificate
from ledger.encoding import H, canonical
from ledger.errors import BundleFormatError, CertificateError
from ledger.genesis import parse_genesis
from ledger.verify import STEPS

from helpers import certify, make_genesis

PROTOCOL = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text("utf-8")


def _header(genesis_hash: bytes) -> Header:
    return Header(chain="test", height=5, prev=b"\x01" * 32, time=1, proposer=0, tx_count=0,
                  tx_root=b"\x02" * 32, log_size=0, log_root=b"\x03" * 32,
                  validators=genesis_hash)


def test_the_canonical_example() -> None:
    spaced = re.search(r"encodes as\s+`([0-9a-f ]+)`", PROTOCOL)
    assert spaced is not None
    value = {"b": 1, "a": [True, b"\x00"], "aa": None, "\u00e9": -1, "n": 2**64 - 1}
    assert canonical(value).hex() == spaced.group(1).replace(" ", "")


def test_the_vote_example() -> None:
    vote = Vote("precommit", "demo", 5, 0, bytes(range(32)))
    assert f"i.e. `{vote.vote_bytes.hex()}`" in PROTOCOL


def test_validators_hash_is_over_an_array_of_bin32() -> None:
    doc, _keys, _ = make_genesis(4)
    genesis = parse_genesis(doc)
    keys = [bytes.fromhex(v["pubkey"]) for v in doc["validators"]]
    manual = bytes([0x94]) + b"".join(b"\xc4\x20" + k for k in keys)
    assert genesis.validators_hash == H(manual)


def test_one_bad_extra_signature_invalidates_a_quorate_certificate() -> None:
    doc, keys, _ = make_genesis(4)
    genesis = parse_genesis(doc)
    header = _header(genesis.validators_hash)
    good = certify(header, keys, genesis, signers=[0, 1, 2])
    verify_certificate(good, header, genesis)  # a quorum of 3 of 4: valid
    bad = replace(good, signatures=good.signatures + ((3, b"\x00" * 64),))
    with pytest.raises(CertificateError):
        verify_certificate(bad, header, genesis)
    outside = replace(good, signatures=good.signatures + ((4, good.signatures[0][1]),))
    with pytest.raises(CertificateError):
        verify_certificate(outside, header, genesis)


def test_the_documented_step_order_is_the_verifiers() -> None:
    listed = re.search(r"a verifier names the first that fails: (.*?)\. A record", PROTOCOL, re.S)
    assert listed is not None
    assert tuple(re.findall(r"`([a-z_]+)`", listed.group(1))) == STEPS


def test_unknown_bundle_keys_are_rejected() -> None:
    from ledger.verify import parse_bundle

    with pytest.raises(BundleFormatError) as caught:
        parse_bundle({"format": "auditledger-proof/1", "extra": 1})
    assert caught.value.step == "bundle"


def test_the_signed_request_example() -> None:
    """§11.3: the request signed by hand is what ledger/reqsig.py signs, and
    the node's middleware accepts its fields."""
    import datetime

    from ledger.crypto import SigningKey
    from ledger.reqsig import COVERED, LABEL, TAG, RequestSigner, _Message

    key = SigningKey(bytes(range(32)))
    assert f"public key\n`{key.public_key.hex()}`" in PROTOCOL
    url, body, created, nonce = ("https://node0.example:7700/v1/records", b'{"envelopes": []}',
                                 1767225600, "ZXhhbXBsZS1ub25jZS0x")
    signer = RequestSigner(key)
    headers = signer.headers("POST", url, body, created=created, nonce=nonce)
    for name, value in headers.items():
        assert f"    {name}: {value}\n" in PROTOCOL, name
    prepared = signer._signer.prepare(
        _Message("POST", url), key_id=signer.keyid, nonce=nonce, label=LABEL, tag=TAG,
        created=datetime.datetime.fromtimestamp(created, datetime.timezone.utc),
        covered_component_ids=COVERED, body=body)
    base = "\n".join("    " + line for line in prepared.signature_base.decode().split("\n"))
    assert base + "\n" in PROTOCOL
    # The Signature is Ed25519 over exactly those bytes.
    import base64
    sig = base64.b64decode(headers["Signature"].split("=:", 1)[1].rstrip(":"))
    from ledger.crypto import verify_signature
    verify_signature(key.public_key, b"", prepared.signature_base, sig)  # raises if not


def test_the_roles_table_is_node_access() -> None:
    """§11.4 lists every route of node/access.py with the roles it takes."""
    from node.access import ROUTES, VALIDATOR

    section = PROTOCOL[PROTOCOL.index("### 11.4"):]
    table = section[:section.index("\n\n", section.index("| route"))]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for route in re.findall(r"`(?:GET|POST) ([^`]+)`", cells[0]):
            rows[route] = cells[1]
    for (method, route), rule in ROUTES.items():
        if method == "HEAD":
            continue
        assert route in rows, route
        if rule.auth == VALIDATOR:
            assert rows[route].startswith("validators"), route
            continue
        for role in rule.roles - {"*"}:
            assert f"`{role}`" in rows[route], (route, role)
        if "*" in rule.roles:
            assert rows[route] == "any registered key", route
