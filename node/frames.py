"""Peer handshake and signed frames: the pure half of the peer transport.

A connection is opened by a *dialer* to a *listener*.  Both must hold a
genesis validator key; each proves it by signing the other's fresh nonce
together with the chain id and both identities under a domain of its own
(so a handshake signature can never be replayed as a vote, a record, or a
frame).  The two nonces give the session id.  Each frame carries a sequence
number and the sender's signature over ``session || seq || body``: a frame
replayed on this connection fails the sequence check, and one replayed on
another connection fails the signature check because the session differs.

Over TLS both transcripts also hold ``binding``: the SHA-256 of the
listener's DER certificate, as each side sees it (node/tls.py).  A man in
the middle that terminates TLS shows the dialer another certificate, so the
two sides sign different transcripts and each refuses the other's
signature; the session, and so every frame, is tied to that TLS connection's
authenticated listener.  Plaintext links (``tls.insecure_plaintext``) sign
the transcript without the ``tls`` key, as before.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.crypto import SigningKey, verify_signature
from ledger.encoding import H, canonical, decode
from ledger.errors import BadEncoding, BadSignature, LedgerError
from ledger.genesis import Genesis

HANDSHAKE_DOMAIN = b"auditledger/peer-handshake/v1\n"
FRAME_DOMAIN = b"auditledger/frame/v1\n"
NONCE_LEN = 32
PEER_PATH = "/v1/peer"


class HandshakeError(LedgerError):
    """The peer failed to prove it holds a genesis validator key."""

    code = "bad_signature"
    step = "handshake"

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class FrameError(LedgerError):
    """A frame is malformed, badly signed or out of sequence: drop it."""

    code = "bad_signature"
    step = "frame"

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


def fresh_nonce() -> bytes:
    return os.urandom(NONCE_LEN)


def _transcript(chain: str, dialer: bytes, listener: bytes, nonce: bytes, signer: str,
                binding: bytes = b"") -> bytes:
    # ``signer`` stops a signature made as listener being reflected as a dialer's.
    doc: dict[str, Any] = {"chain": chain, "dialer": dialer, "listener": listener,
                           "nonce": nonce, "signer": signer}
    if binding:
        doc["tls"] = binding
    return canonical(doc)


def _decode_map(data: Any, kind: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(data, (bytes, bytearray)):
        raise HandshakeError("malformed", f"{kind}: expected a binary message")
    try:
        value = decode(bytes(data))
    except LedgerError as exc:
        raise HandshakeError("malformed", f"{kind}: {exc}") from None
    if not isinstance(value, dict) or value.get("t") != kind or set(value) != keys:
        raise HandshakeError("malformed", f"expected a {kind!r} message")
    return value


# A peer key -> the id a node knows it by (None: not a validator it links with).
PeerIndex = Callable[[bytes], "int | None"]


def _validator_key(genesis: Genesis, value: Any, what: str,
                   index_of: PeerIndex | None = None) -> int:
    if not isinstance(value, bytes):
        raise HandshakeError("malformed", f"{what} must be a public key")
    index = (index_of or genesis.validator_index)(value)
    if index is None:
        raise HandshakeError("unknown_peer", f"{what} is not a validator of the sets in force")
    return index


# -- dialer side -----------------------------------------------------------


def hello(genesis: Genesis, me: SigningKey, listener: bytes, nonce: bytes) -> bytes:
    return canonical(
        {"t": "hello", "chain": genesis.chain, "from": me.public_key, "to": listener, "nonce": nonce}
    )


def check_challenge(
    genesis: Genesis, me: SigningKey, listener: bytes, my_nonce: bytes, data: Any,
    binding: bytes = b"",
) -> bytes:
    """Verify the listener's answer; return the listener's nonce."""
    msg = _decode_map(data, "challenge", {"t", "from", "nonce", "sig"})
    if msg["from"] != listener:
        raise HandshakeError("wrong_peer", "the listener is not the validator we dialed")
    nonce, sig = msg["nonce"], msg["sig"]
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN or not isinstance(sig, bytes):
        raise HandshakeError("malformed", "challenge nonce/sig malformed")
    try:
        verify_signature(
            listener, HANDSHAKE_DOMAIN,
            _transcript(genesis.chain, me.public_key, listener, my_nonce, "listener", binding),
            sig,
        )
    except BadSignature:
        raise HandshakeError("bad_signature", "listener's handshake signature is bad") from None
    return nonce


def auth(genesis: Genesis, me: SigningKey, listener: bytes, their_nonce: bytes,
         binding: bytes = b"") -> bytes:
    sig = me.sign(HANDSHAKE_DOMAIN, _transcript(genesis.chain, me.public_key, listener,
                                                their_nonce, "dialer", binding))
    return canonical({"t": "auth", "sig": sig})


# -- listener side ---------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    dialer: bytes
    dialer_index: int
    nonce: bytes


def check_hello(genesis: Genesis, me: SigningKey, data: Any,
                index_of: PeerIndex | None = None) -> Hello:
    """The dialer's hello, checked; ``index_of`` names the validators this
    node links with (default: the genesis set, by genesis index)."""
    msg = _decode_map(data, "hello", {"t", "chain", "from", "to", "nonce"})
    if msg["chain"] != genesis.chain:
        raise HandshakeError("wrong_chain", f"peer is on chain {msg['chain']!r}")
    if msg["to"] != me.public_key:
        raise HandshakeError("wrong_peer", "hello is addressed to another validator")
    index = _validator_key(genesis, msg["from"], "dialer", index_of)
    if msg["from"] == me.public_key:
        raise HandshakeError("wrong_peer", "a node cannot dial itself")
    nonce = msg["nonce"]
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN:
        raise HandshakeError("malformed", "hello nonce must be 32 bytes")
    return Hello(dialer=msg["from"], dialer_index=index, nonce=nonce)


def addressed_to(data: Any) -> bytes | None:
    """The ``to`` key of what looks like a hello (None otherwise): which of
    its keys a node holding several (around a rotation) answers with."""
    try:
        value = decode(bytes(data)) if isinstance(data, (bytes, bytearray)) else None
    except LedgerError:
        return None
    to = value.get("to") if isinstance(value, dict) else None
    return to if isinstance(to, bytes) else None


def challenge(genesis: Genesis, me: SigningKey, h: Hello, my_nonce: bytes,
              binding: bytes = b"") -> bytes:
    sig = me.sign(HANDSHAKE_DOMAIN, _transcript(genesis.chain, h.dialer, me.public_key,
                                                h.nonce, "listener", binding))
    return canonical({"t": "challenge", "from": me.public_key, "nonce": my_nonce, "sig": sig})


def check_auth(genesis: Genesis, me: SigningKey, h: Hello, my_nonce: bytes, data: Any,
               binding: bytes = b"") -> None:
    msg = _decode_map(data, "auth", {"t", "sig"})
    sig = msg["sig"]
    if not isinstance(sig, bytes):
        raise HandshakeError("malformed", "auth sig must be bytes")
    try:
        verify_signature(
            h.dialer, HANDSHAKE_DOMAIN,
            _transcript(genesis.chain, h.dialer, me.public_key, my_nonce, "dialer", binding),
            sig,
        )
    except BadSignature:
        raise HandshakeError("bad_signature", "dialer's handshake signature is bad") from None


READY = canonical({"t": "ready"})


def session_id(dialer_nonce: bytes, listener_nonce: bytes) -> bytes:
    return H(b"auditledger/session/v1\n" + dialer_nonce + listener_nonce)


# -- frames ----------------------------------------------------------------


def _frame_message(session: bytes, seq: int, body: bytes) -> bytes:
    return session + struct.pack(">Q", seq) + body


def seal(key: SigningKey, session: bytes, seq: int, body: bytes) -> bytes:
    sig = key.sign(FRAME_DOMAIN, _frame_message(session, seq, body))
    return canonical({"seq": seq, "body": body, "sig": sig})


def open_frame(sender: bytes, session: bytes, expected_seq: int, data: Any) -> bytes:
    """Return the body of a valid frame; raise :class:`FrameError` otherwise."""
    if not isinstance(data, (bytes, bytearray)):
        raise FrameError("malformed", "frames are binary")
    try:
        value = decode(bytes(data))
    except BadEncoding:
        raise FrameError("malformed", "frame is not MessagePack") from None
    except LedgerError:
        raise FrameError("malformed", "frame is not canonical") from None
    if not isinstance(value, dict) or set(value) != {"seq", "body", "sig"}:
        raise FrameError("malformed", "frame must hold seq, body, sig")
    seq, body, sig = value["seq"], value["body"], value["sig"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(body, bytes) \
            or not isinstance(sig, bytes):
        raise FrameError("malformed", "frame fields have wrong types")
    if not 0 <= seq <= 0xFFFF_FFFF_FFFF_FFFF:
        raise FrameError("malformed", "frame seq must be a u64")
    try:
        verify_signature(sender, FRAME_DOMAIN, _frame_message(session, seq, body), sig)
    except BadSignature:
        raise FrameError("bad_signature", "frame signature does not verify") from None
    if seq != expected_seq:
        # Checked after the signature so that only the sender's own frames can
        # be replays; anyone else's garbage is counted as a bad signature.
        raise FrameError("replay", f"frame seq {seq}, expected {expected_seq}")
    return body
