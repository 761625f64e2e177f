"""C2SP checkpoints cosigned by the validators, and tlog-proof files (PROTOCOL §6.1).

Pure formatting and verification; the node gathers the signatures.

* A checkpoint is a C2SP signed note (c2sp.org/tlog-checkpoint) whose text
  is ``<origin>\\n<log size>\\n<base64 RFC 6962 root>\\n``.  The origin is
  ``<chain id>.auditledger``.
* Each validator signs the note text itself with its validator key as an
  Ed25519 note signature (c2sp.org/signed-note, type 0x01) under the key
  name ``<origin>/validator-<index>``; the key id is
  ``SHA-256(name || "\\n" || 0x01 || public key)[:4]``.
* The text can never be a message of our other signature domains: those
  start with a line ``auditledger/<kind>/v1``, while the first line of a note
  text is the origin, which ends in ``.auditledger``.
* A tlog-proof (c2sp.org/tlog-proof@v1) is ``c2sp.org/tlog-proof@v1\\n``,
  ``index <leaf index>\\n``, one line per inclusion path hash (base64, the
  leaf's sibling first), an empty line, then the checkpoint note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .crypto import SigningKey, verify_signature
from .errors import BadSignature, BundleFormatError, VerificationError
from .merkle import leaf_hash, verify_inclusion

ORIGIN_SUFFIX = ".auditledger"
ED25519_TYPE = b"\x01"
SIG_PREFIX = "\u2014 "  # em dash, space
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
HASH_LEN = 32
MAX_PATH = 64


class NoteError(VerificationError):
    """A checkpoint note or tlog-proof that is malformed or not signed by a quorum."""

    code = "bad_encoding"
    step = "checkpoint"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(f"{what} is not base64") from None


def origin(chain: str) -> str:
    """The checkpoint origin of chain ``chain``; ValueError if the chain id
    cannot be one (C2SP key names exclude whitespace and ``+``)."""
    name = chain + ORIGIN_SUFFIX
    if not name.isprintable() or any(c.isspace() or c == "+" for c in name):
        raise ValueError(f"chain id {chain!r} cannot name a C2SP checkpoint origin")
    return name


def key_name(origin_line: str, validator: int) -> str:
    return f"{origin_line}/validator-{validator}"


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte C2SP key id of an Ed25519 note key."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_TYPE + public_key).digest()[:4]


def vkey(name: str, public_key: bytes) -> str:
    """The C2SP verifier key string ``name+<hex id>+base64(0x01 || key)``."""
    return f"{name}+{key_id(name, public_key).hex()}+{_b64(ED25519_TYPE + public_key)}"


def checkpoint_text(origin_line: str, log_size: int, log_root: bytes) -> bytes:
    """The note text a validator signs for a log of ``log_size`` leaves."""
    if len(log_root) != HASH_LEN or log_size < 0:
        raise ValueError("a checkpoint needs a 32-byte root and a size >= 0")
    return f"{origin_line}\n{log_size}\n{_b64(log_root)}\n".encode()


def sign_text(key: SigningKey, text: bytes) -> bytes:
    """The 64-byte Ed25519 signature over the note text (no domain prefix:
    the note text is its own domain, see the module docstring)."""
    return key.sign(b"", text)


@dataclass(frozen=True)
class Verifier:
    """One validator's note key."""

    index: int
    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        return vkey(self.name, self.public_key)


def verifiers(origin_line: str, public_keys: Sequence[bytes]) -> list[Verifier]:
    """The note keys of validators ``0..n-1`` with these public keys."""
    return [Verifier(i, key_name(origin_line, i), pk) for i, pk in enumerate(public_keys)]


def verify_one(verifier: Verifier, text: bytes, signature: bytes) -> None:
    verify_signature(verifier.public_key, b"", text, signature)


def format_note(text: bytes, signatures: Mapping[int, bytes], keys: Sequence[Verifier]) -> bytes:
    """The signed note: text, an empty line, one signature line per validator
    (in validator order)."""
    lines = [text, b"\n"]
    for index in sorted(signatures):
        v = keys[index]
        lines.append(f"{SIG_PREFIX}{v.name} {_b64(v.key_id + signatures[index])}\n".encode())
    return b"".join(lines)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    log_size: int
    log_root: bytes
    text: bytes
    signers: tuple[int, ...]  # validator indexes whose signatures verified


def parse_text(text: bytes) -> tuple[str, int, bytes]:
    """Origin, size and root of a checkpoint note text."""
    try:
        lines = text.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise NoteError("checkpoint text is not UTF-8") from None
    if len(lines) != 4 or lines[3] != "":
        raise NoteError("checkpoint text must be exactly three lines ending in a newline")
    size_s = lines[1]
    if not size_s.isascii() or not size_s.isdigit() or (size_s != "0" and size_s[0] == "0"):
        raise NoteError("checkpoint size must be a decimal without leading zeros")
    root = _unb64(lines[2], "checkpoint root")
    if len(root) != HASH_LEN:
        raise NoteError("checkpoint root must be 32 bytes")
    return lines[0], int(size_s), root


def open_note(note: bytes, keys: Sequence[Verifier], quorum: int) -> Checkpoint:
    """Verify a checkpoint note: well formed, and at least ``quorum`` distinct
    validators among ``keys`` signed it.  Signature lines of unknown keys are
    ignored (as C2SP allows); a line naming a known key that does not verify
    is an error."""
    sep = note.rfind(b"\n\n")
    if sep < 0 or not note.endswith(b"\n"):
        raise NoteError("a signed note is text, an empty line, then signature lines")
    text, sig_block = note[: sep + 1], note[sep + 2:]
    origin_line, size, root = parse_text(text)
    by_id = {(v.name, v.key_id): v for v in keys}
    signers: set[int] = set()
    try:
        sig_lines = sig_block.decode("utf-8").split("\n")[:-1]
    except UnicodeDecodeError:
        raise NoteError("signature lines are not UTF-8") from None
    if not sig_lines:
        raise NoteError("a signed note needs at least one signature line")
    for line in sig_lines:
        if not line.startswith(SIG_PREFIX) or line.count(" ") != 2:
            raise NoteError(f"malformed signature line {line[:80]!r}")
        name, blob_s = line[len(SIG_PREFIX):].split(" ")
        blob = _unb64(blob_s, "signature")
        if len(blob) < 5:
            raise NoteError("signature too short")
        v = by_id.get((name, blob[:4]))
        if v is None:
            continue
        try:
            verify_one(v, text, blob[4:])
        except BadSignature:
            raise BadSignature(f"the signature of {name} does not verify") from None
        signers.add(v.index)
    if len(signers) < quorum:
        raise NoteError(f"{len(signers)} validator signatures verify; {quorum} are needed")
    return Checkpoint(origin_line, size, root, text, tuple(sorted(signers)))


# -- tlog-proof ---------------------------------------------------------------


def format_tlog_proof(index: int, path: Sequence[bytes], note: bytes) -> bytes:
    """A c2sp.org/tlog-proof@v1 file (no ``extra`` line)."""
    head = [TLOG_PROOF_HEADER, f"index {index}"] + [_b64(h) for h in path]
    return ("\n".join(head) + "\n\n").encode() + note


@dataclass(frozen=True)
class TlogProof:
    index: int
    path: tuple[bytes, ...]
    note: bytes


def parse_tlog_proof(data: bytes) -> TlogProof:
    sep = data.find(b"\n\n")
    if sep < 0:
        raise BundleFormatError("a tlog-proof needs an empty line before its checkpoint")
    try:
        lines = data[:sep].decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise BundleFormatError("tlog-proof header is not ASCII") from None
    if lines[0] != TLOG_PROOF_HEADER:
        raise BundleFormatError(f"not a tlog-proof: first line {lines[0][:40]!r}")
    rest = lines[1:]
    if rest and rest[0].startswith("extra "):
        rest = rest[1:]
    if not rest or not rest[0].startswith("index "):
        raise BundleFormatError("tlog-proof: missing index line")
    index_s = rest[0][len("index "):]
    if not index_s.isdigit() or (index_s != "0" and index_s[0] == "0"):
        raise BundleFormatError("tlog-proof: index must be a decimal")
    path = tuple(_unb64(line, "inclusion hash") for line in rest[1:])
    if len(path) > MAX_PATH or any(len(h) != HASH_LEN for h in path):
        raise BundleFormatError("tlog-proof: inclusion hashes must be 32 bytes")
    return TlogProof(int(index_s), path, data[sep + 2:])


def verify_tlog_proof(data: bytes, entry: bytes, origin_line: str, keys: Sequence[Verifier],
                      quorum: int) -> tuple[TlogProof, Checkpoint]:
    """A tlog-proof of ``entry`` (the envelope bytes, the RFC 6962 leaf data)
    under a checkpoint of this origin signed by ``quorum`` validators."""
    proof = parse_tlog_proof(data)
    cp = open_note(proof.note, keys, quorum)
    if cp.origin != origin_line:
        raise NoteError(f"checkpoint origin {cp.origin[:80]!r}; expected {origin_line!r}")
    verify_inclusion(proof.index, cp.log_size, leaf_hash(entry), proof.path, cp.log_root)
    return proof, cp
