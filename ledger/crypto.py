"""Ed25519 signing and verification with domain separation (PROTOCOL §2, §4)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import BadSignature
from .native import native

RECORD_DOMAIN = b"auditledger/record/v1\n"
VOTE_DOMAIN = b"auditledger/vote/v1\n"
PUBKEY_LEN = 32
SIG_LEN = 64
# BadSignature's message for a signature that fails, however it was checked.
SIGNATURE_FAILS = "signature does not verify"

# Messages from this size on are signed through OpenSSL (the ``cryptography``
# package): PyNaCl exposes only libsodium's combined ``crypto_sign``, whose
# output (signature plus a copy of the message) is allocated, zeroed and
# copied for every message, a large share of signing a peer frame.  Below it
# PyNaCl is as fast or faster (docs/performance.md has the figures).  Ed25519 is
# deterministic: both give the same signature, byte for byte
# (tests/test_signing_detached.py); figures in docs/performance.md.
LARGE_MESSAGE = 16 * 1024


class SigningKey:
    """An Ed25519 key pair built from a 32-byte seed."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.seed = bytes(seed)
        self.public_key: bytes = bytes(self._key.verify_key)
        self._openssl = Ed25519PrivateKey.from_private_bytes(self.seed)

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, domain: bytes, message: bytes) -> bytes:
        signed = domain + message
        if len(signed) >= LARGE_MESSAGE:
            return self._openssl.sign(signed)
        return bytes(self._key.sign(signed).signature)


def verify_signature(public_key: bytes, domain: bytes, message: bytes, sig: bytes) -> None:
    """Raise :class:`BadSignature` unless ``sig`` signs ``domain + message``."""
    if len(public_key) != PUBKEY_LEN or len(sig) != SIG_LEN:
        raise BadSignature("malformed key or signature length")
    if native is not None:
        # crypto_sign_verify_detached, as PyNaCl's verify ends in, without
        # its two copies of the message (signature + message, then the
        # opened message): peer frames are up to megabytes.
        if not native.verify_ed25519(domain, [(public_key, message, sig)])[0]:
            raise BadSignature(SIGNATURE_FAILS)
        return
    try:
        nacl.signing.VerifyKey(public_key).verify(domain + message, sig)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        raise BadSignature(SIGNATURE_FAILS) from None


def verify_many(domain: bytes, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """For each ``(public_key, message, sig)``: does ``sig`` sign ``domain +
    message``?  The same answers as :func:`verify_signature`, as booleans.

    With the C module the whole batch runs without the GIL (one release, not
    one per signature: a thread that must take the GIL back after every
    check waits behind a busy event loop each time), and each signature is
    checked by libsodium's ``crypto_sign_verify_detached``, the function
    :func:`verify_signature` ends in.  Meant for chunks of a few hundred."""
    if native is not None:
        return native.verify_ed25519(domain, list(items))
    out = []
    for public_key, message, sig in items:
        try:
            verify_signature(public_key, domain, message, sig)
            out.append(True)
        except BadSignature:
            out.append(False)
    return out


def digest_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison for digests."""
    return hmac.compare_digest(a, b)
