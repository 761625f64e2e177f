"""Witness cosignatures of checkpoints: C2SP tlog-cosignature/v1 (PROTOCOL §13).

A witness outside the validators checks that each checkpoint it sees is
consistent with the last one it saw, and signs ``cosignature/v1\\n``, a
``time <seconds>\\n`` line and the checkpoint's note text with its own
Ed25519 key; the signature line is a signed-note line whose key id uses
type ``0x04``, and whose blob is ``key id || timestamp (u64, big-endian) ||
signature``.  Pure functions over bytes, as ledger/note.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from .crypto import SigningKey, verify_signature
from .errors import BadSignature
from .note import NoteError

COSIGNATURE_TYPE = b"\x04"
HEADER = b"cosignature/v1\n"
SIG_PREFIX = "\u2014 "
MAX_TIMESTAMP = 2**63 - 1
# A witness name: a signed-note key name (printable, no space, no "+").
_NAME = re.compile(r"^[!-*,-~]{1,255}$")


@dataclass(frozen=True)
class Witness:
    """A trusted witness: its key name and Ed25519 public key."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        blob = base64.b64encode(COSIGNATURE_TYPE + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: who, when, and its note signature line."""

    witness: Witness
    timestamp: int
    line: str  # "— <name> <base64>", no newline


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0a || 0x04 || public key)[:4] (tlog-cosignature)."""
    return hashlib.sha256(name.encode() + b"\n" + COSIGNATURE_TYPE + public_key).digest()[:4]


def parse_vkey(text: str) -> Witness:
    """A witness verifier key ``name+<hex id>+base64(0x04 || key)``;
    ValueError when malformed, of another type, or its id does not match."""
    parts = text.strip().split("+", 2)  # base64 may hold "+"
    if len(parts) != 3 or not _NAME.match(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise ValueError(f"witness key {text[:60]!r} is not name+<8 hex>+<base64>")
    try:
        blob = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"witness key {parts[0]!r}: key is not base64") from None
    if len(blob) != 33 or blob[:1] != COSIGNATURE_TYPE:
        raise ValueError(f"witness key {parts[0]!r}: not a cosignature/v1 Ed25519 key (type 0x04)")
    witness = Witness(parts[0], blob[1:])
    if witness.key_id.hex() != parts[1]:
        raise ValueError(f"witness key {parts[0]!r}: key id does not match name and key")
    return witness


def signed_message(text: bytes, timestamp: int) -> bytes:
    """What a witness signs over checkpoint note text ``text``."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("timestamp out of range")
    return HEADER + f"time {timestamp}\n".encode() + text


def cosign(key: SigningKey, name: str, text: bytes, timestamp: int) -> str:
    """The signature line of witness ``name`` with ``key`` over ``text``."""
    sig = key.sign(b"", signed_message(text, timestamp))
    blob = key_id(name, key.public_key) + struct.pack(">Q", timestamp) + sig
    return f"{SIG_PREFIX}{name} {base64.b64encode(blob).decode()}"


def verify_line(line: str, witnesses: list[Witness], text: bytes) -> Cosignature:
    """A signature line by one of ``witnesses`` over checkpoint ``text``:
    NoteError if malformed or by no such witness, BadSignature if it does
    not verify."""
    if not line.startswith(SIG_PREFIX) or line.count(" ") != 2:
        raise NoteError("a cosignature is one signature line: '\u2014 <name> <base64>'")
    name, blob_b64 = line[len(SIG_PREFIX):].split(" ")
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("the cosignature is not base64") from None
    if len(blob) != 4 + 8 + 64:
        raise NoteError("a cosignature/v1 blob is key id, timestamp and signature (76 bytes)")
    match = [w for w in witnesses if w.name == name and w.key_id == blob[:4]]
    if not match:
        raise NoteError(f"no trusted witness {name!r} with key id {blob[:4].hex()}")
    (timestamp,) = struct.unpack(">Q", blob[4:12])
    if timestamp > MAX_TIMESTAMP:
        raise NoteError("cosignature timestamp above 2^63 - 1")
    try:
        verify_signature(match[0].public_key, b"", signed_message(text, timestamp), blob[12:])
    except BadSignature:
        raise BadSignature(f"the cosignature of witness {name!r} does not verify") from None
    return Cosignature(match[0], timestamp, line)


def cosigners(signed: bytes, witnesses: list[Witness], text: bytes) -> list[Cosignature]:
    """The witnesses among ``witnesses`` whose cosignature lines in
    ``signed`` (a signed note, or a tlog-proof holding one) verify over
    checkpoint ``text``; lines of other keys are skipped, and a line of a
    listed witness that does not verify raises BadSignature."""
    found: dict[str, Cosignature] = {}
    trusted = {(w.name, w.key_id) for w in witnesses}
    for raw in signed.decode("utf-8", errors="replace").split("\n"):
        if not raw.startswith(SIG_PREFIX) or raw.count(" ") != 2:
            continue
        name, blob_b64 = raw[len(SIG_PREFIX):].split(" ")
        try:
            blob = base64.b64decode(blob_b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        if (name, blob[:4]) in trusted and len(blob) == 76:
            found[name] = verify_line(raw, witnesses, text)
    return list(found.values())
