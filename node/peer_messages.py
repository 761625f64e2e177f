"""The messages validators exchange inside signed frames (node/frames.py).

Each is a MessagePack map whose ``"t"`` names the kind; the frame already
authenticates the sender.  The layout, key order included (``"t"`` first,
then the fields in the order below), is what every validator of this version
sends and expects:

=========  ====  ==========================================================
kind       t     fields
=========  ====  ==========================================================
consensus  c     ``m``: a consensus message (consensus/messages.py)
compact    c     ``m``: a proposal or decision with no envelopes, ``l``: the leaf hashes
                 of its envelopes, concatenated (node/assembly.py)
records    r     ``e``: [envelope bytes] gossiped by a validator
status     s     ``h``: the sender's committed height
want       w     ``l``: concatenated leaf hashes: send me these envelopes
fetched    f     ``e``: [envelope bytes], the answer to a want
cosign     k     ``h``: a committed height, ``s``: the sender's 64-byte note
                 signature over that block's C2SP checkpoint (ledger/note.py)
want sigs  q     ``h``: [heights], at most 64: send me the checkpoint
                 signatures you hold for these blocks
sigs       g     ``c``: [[height, validator index, 64-byte signature]], at
                 most 64 * 64: the answer to a want sigs
=========  ====  ==========================================================

:func:`decode` checks this layer only (kinds, field types, leaf hash
lengths) and raises :class:`BadPeerMessage` for anything else; the consensus
message inside ``m`` and the envelopes are decoded by their own decoders.
Keys it does not use are ignored, as validators always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Union

import msgpack

from ledger.errors import BadEncoding

from .assembly import check_leaves


class PeerKind(StrEnum):
    """The ``"t"`` of a peer message."""

    CONSENSUS = "c"
    RECORDS = "r"
    STATUS = "s"
    WANT = "w"
    FETCHED = "f"
    COSIGN = "k"
    WANT_SIGS = "q"
    SIGS = "g"


MAX_WANT_SIGS = 64  # heights per want sigs
MAX_SIGS = 64 * 64  # signatures per answer


class BadPeerMessage(BadEncoding):
    """A peer message that is not MessagePack, or not one of the kinds with
    fields of the right types: the caller counts and drops it."""

    step = "peer message"


@dataclass(frozen=True)
class ConsensusMessage:
    """A consensus message in full (votes, decisions, full proposals)."""

    message: bytes


@dataclass(frozen=True)
class CompactProposal:
    """A proposal without its envelopes, which are named by leaf hash."""

    message: bytes
    leaves: bytes  # concatenated 32-byte leaf hashes


@dataclass(frozen=True)
class Records:
    envelopes: tuple[bytes, ...]


@dataclass(frozen=True)
class Status:
    height: int


@dataclass(frozen=True)
class Want:
    leaves: bytes  # concatenated 32-byte leaf hashes


@dataclass(frozen=True)
class Fetched:
    envelopes: tuple[bytes, ...]


@dataclass(frozen=True)
class Cosign:
    """The sender's signature over the checkpoint of block ``height``."""

    height: int
    signature: bytes


@dataclass(frozen=True)
class WantSigs:
    """Ask for every checkpoint signature the peer holds for ``heights``
    (a node that missed cosign messages while down or catching up)."""

    heights: tuple[int, ...]


@dataclass(frozen=True)
class Sigs:
    """Checkpoint signatures relayed: ``(height, validator, signature)``;
    each is verified against that validator's key, so a relay adds no trust."""

    sigs: tuple[tuple[int, int, bytes], ...]


PeerMessage = Union[ConsensusMessage, CompactProposal, Records, Status, Want, Fetched, Cosign,
                    WantSigs, Sigs]


def encode(msg: PeerMessage) -> bytes:
    """The bytes of ``msg`` inside a frame."""
    fields: dict[str, Any]
    if isinstance(msg, ConsensusMessage):
        fields = {"t": PeerKind.CONSENSUS.value, "m": msg.message}
    elif isinstance(msg, CompactProposal):
        fields = {"t": PeerKind.CONSENSUS.value, "m": msg.message, "l": msg.leaves}
    elif isinstance(msg, Records):
        fields = {"t": PeerKind.RECORDS.value, "e": list(msg.envelopes)}
    elif isinstance(msg, Status):
        fields = {"t": PeerKind.STATUS.value, "h": msg.height}
    elif isinstance(msg, Want):
        fields = {"t": PeerKind.WANT.value, "l": msg.leaves}
    elif isinstance(msg, Cosign):
        fields = {"t": PeerKind.COSIGN.value, "h": msg.height, "s": msg.signature}
    elif isinstance(msg, WantSigs):
        fields = {"t": PeerKind.WANT_SIGS.value, "h": list(msg.heights)}
    elif isinstance(msg, Sigs):
        fields = {"t": PeerKind.SIGS.value, "c": [list(c) for c in msg.sigs]}
    else:
        fields = {"t": PeerKind.FETCHED.value, "e": list(msg.envelopes)}
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


def decode(body: bytes) -> PeerMessage:
    """The message in a frame's body; :class:`BadPeerMessage` if malformed."""
    try:
        value = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise BadPeerMessage(f"not MessagePack: {exc}") from None
    if not isinstance(value, dict):
        raise BadPeerMessage("a peer message must be a map")
    tag = value.get("t")
    try:
        kind = PeerKind(tag) if isinstance(tag, str) else None
    except ValueError:
        kind = None
    if kind is None:
        raise BadPeerMessage(f"unknown peer message kind {tag!r}")
    if kind is PeerKind.CONSENSUS:
        message = _bytes(value, "m")
        if "l" in value:
            return CompactProposal(message, _leaves(value))
        return ConsensusMessage(message)
    if kind is PeerKind.RECORDS:
        return Records(_envelopes(value))
    if kind is PeerKind.STATUS:
        height = value.get("h")
        if type(height) is not int or height < 0:
            raise BadPeerMessage("status height must be a non-negative integer")
        return Status(height)
    if kind is PeerKind.WANT:
        return Want(_leaves(value))
    if kind is PeerKind.COSIGN:
        height, sig = value.get("h"), _bytes(value, "s")
        if type(height) is not int or not 1 <= height < 2**64 or len(sig) != 64:
            raise BadPeerMessage("cosign needs a height >= 1 and a 64-byte signature")
        return Cosign(height, sig)
    if kind is PeerKind.WANT_SIGS:
        heights = value.get("h")
        if not isinstance(heights, list) or not 1 <= len(heights) <= MAX_WANT_SIGS \
                or not all(_is_height(h) for h in heights):
            raise BadPeerMessage(f"want sigs needs 1..{MAX_WANT_SIGS} heights >= 1")
        return WantSigs(tuple(heights))
    if kind is PeerKind.SIGS:
        return Sigs(_sigs(value))
    return Fetched(_envelopes(value))


def _is_height(h: Any) -> bool:
    return type(h) is int and 1 <= h < 2**64


def _sigs(value: dict[Any, Any]) -> tuple[tuple[int, int, bytes], ...]:
    entries = value.get("c")
    if not isinstance(entries, list) or len(entries) > MAX_SIGS:
        raise BadPeerMessage(f"sigs must be a list of at most {MAX_SIGS} entries")
    out = []
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3 and _is_height(entry[0])
                and type(entry[1]) is int and 0 <= entry[1] < 2**16
                and isinstance(entry[2], bytes) and len(entry[2]) == 64):
            raise BadPeerMessage("each sig is [height, validator index, 64-byte signature]")
        out.append((entry[0], entry[1], entry[2]))
    return tuple(out)


def _bytes(value: dict[Any, Any], key: str) -> bytes:
    field = value.get(key)
    if not isinstance(field, bytes):
        raise BadPeerMessage(f"{key!r} must be bytes")
    return field


def _leaves(value: dict[Any, Any]) -> bytes:
    leaves = _bytes(value, "l")
    try:
        check_leaves(leaves)
    except BadEncoding as exc:
        raise BadPeerMessage(str(exc)) from None
    return leaves


def _envelopes(value: dict[Any, Any]) -> tuple[bytes, ...]:
    envs = value.get("e")
    if not isinstance(envs, list) or not all(isinstance(e, bytes) for e in envs):
        raise BadPeerMessage("records must be a list of envelope bytes")
    return tuple(envs)
