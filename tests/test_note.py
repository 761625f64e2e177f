"""C2SP checkpoint notes and tlog-proof files (ledger/note.py), byte for byte."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ledger import note
from ledger.crypto import RECORD_DOMAIN, VOTE_DOMAIN, SigningKey
from ledger.errors import BadSignature, BundleFormatError
from node import peer_messages
from node.peer_messages import BadPeerMessage, Cosign

KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
ORIGIN = note.origin("test-chain")
VERIFIERS = note.verifiers(ORIGIN, [k.public_key for k in KEYS])
ROOT = hashlib.sha256(b"root").digest()
TEXT = note.checkpoint_text(ORIGIN, 7, ROOT)


def signed(signers: list[int], text: bytes = TEXT) -> bytes:
    return note.format_note(text, {i: note.sign_text(KEYS[i], text) for i in signers}, VERIFIERS)


def test_text_and_key_layout() -> None:
    assert TEXT == b"test-chain.auditledger\n7\n" + base64.b64encode(ROOT) + b"\n"
    v = VERIFIERS[2]
    assert v.name == "test-chain.auditledger/validator-2"
    expected_id = hashlib.sha256(v.name.encode() + b"\n\x01" + KEYS[2].public_key).digest()[:4]
    assert v.key_id == expected_id
    assert v.vkey == (f"{v.name}+{expected_id.hex()}+"
                      + base64.b64encode(b"\x01" + KEYS[2].public_key).decode())
    body = signed([0, 2])
    lines = body.split(b"\n")
    assert lines[3] == b""
    assert lines[4].startswith("\u2014 test-chain.auditledger/validator-0 ".encode())
    assert len(base64.b64decode(lines[5].split(b" ")[2])) == 68


def test_note_text_never_starts_like_a_domain() -> None:
    for domain in (RECORD_DOMAIN, VOTE_DOMAIN):
        assert not TEXT.startswith(domain)
        assert not domain.split(b"\n")[0].endswith(note.ORIGIN_SUFFIX.encode())
    with pytest.raises(ValueError):
        note.origin("bad chain")


def test_quorum_counts_distinct_validators() -> None:
    cp = note.open_note(signed([0, 1, 3]), VERIFIERS, 3)
    assert (cp.origin, cp.log_size, cp.log_root, cp.signers) == (ORIGIN, 7, ROOT, (0, 1, 3))
    with pytest.raises(note.NoteError, match="2 validator signatures"):
        note.open_note(signed([0, 1]), VERIFIERS, 3)
    twice = signed([0, 1]) + signed([1]).split(b"\n\n")[1]
    with pytest.raises(note.NoteError, match="2 validator signatures"):
        note.open_note(twice, VERIFIERS, 3)


def test_tampering_is_rejected() -> None:
    good = signed([0, 1, 2])
    flipped = good.replace(b"\n7\n", b"\n8\n")
    with pytest.raises(BadSignature):
        note.open_note(flipped, VERIFIERS, 3)
    stranger = SigningKey(b"\x09" * 32)
    others = note.verifiers(ORIGIN, [stranger.public_key] * 4)
    forged = note.format_note(TEXT, {i: note.sign_text(stranger, TEXT) for i in range(3)}, others)
    with pytest.raises(note.NoteError, match="0 validator signatures"):
        note.open_note(forged, VERIFIERS, 3)


def test_tlog_proof_round_trip() -> None:
    path = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    data = note.format_tlog_proof(5, path, signed([0, 1, 2]))
    assert data.startswith(b"c2sp.org/tlog-proof@v1\nindex 5\n" + base64.b64encode(path[0]) + b"\n")
    parsed = note.parse_tlog_proof(data)
    assert (parsed.index, parsed.path) == (5, tuple(path))
    assert note.open_note(parsed.note, VERIFIERS, 3).log_size == 7
    with pytest.raises(BundleFormatError):
        note.parse_tlog_proof(data.replace(b"index 5", b"index x"))


def test_cosign_peer_message() -> None:
    msg = Cosign(12, b"\x05" * 64)
    assert peer_messages.decode(peer_messages.encode(msg)) == msg
    for bad in (Cosign(0, b"\x05" * 64), Cosign(3, b"\x05" * 63)):
        with pytest.raises(BadPeerMessage):
            peer_messages.decode(peer_messages.encode(bad))
