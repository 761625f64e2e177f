"""Ed25519 signing and verification with domain separation (PROTOCOL §2, §4)."""

from __future__ import annotations

import ctypes
import hmac
from collections.abc import Callable, Sequence

import nacl.bindings
import nacl.exceptions
import nacl.signing

from .errors import BadSignature
from .native import native

RECORD_DOMAIN = b"auditledger/record/v1\n"
VOTE_DOMAIN = b"auditledger/vote/v1\n"
PUBKEY_LEN = 32
SIG_LEN = 64
# BadSignature's message for a signature that fails, however it was checked.
SIGNATURE_FAILS = "signature does not verify"

Detached = Callable[[bytes, bytes], bytes]


def _libsodium_sign_detached() -> Detached | None:
    """libsodium's ``crypto_sign_detached`` in the copy PyNaCl loaded (and
    initialised), or None.  PyNaCl's ``SigningKey.sign`` ends in the same
    function (``crypto_sign`` is it plus a copy of the message behind the
    signature) but exposes only the combined form, whose output buffer is
    allocated, zeroed and copied for every message: for a peer frame of
    800 KB that was half the cost of signing it (docs/performance.md).
    Ed25519 is deterministic: both give the same signature, byte for byte."""
    try:
        import nacl._sodium

        function = ctypes.CDLL(nacl._sodium.__file__).crypto_sign_detached
    except (ImportError, OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p,
                         ctypes.c_ulonglong, ctypes.c_char_p]
    function.restype = ctypes.c_int

    def sign(secret_key: bytes, message: bytes) -> bytes:
        out = ctypes.create_string_buffer(SIG_LEN)
        if function(out, None, message, len(message), secret_key) != 0:
            raise ValueError("crypto_sign_detached failed")
        return out.raw

    return sign


_sign_detached = _libsodium_sign_detached()


class SigningKey:
    """An Ed25519 key pair built from a 32-byte seed."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.seed = bytes(seed)
        self.public_key: bytes = bytes(self._key.verify_key)
        # libsodium's 64-byte secret key (seed || public key), for _sign_detached.
        self._secret = nacl.bindings.crypto_sign_seed_keypair(self.seed)[1]

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, domain: bytes, message: bytes) -> bytes:
        if _sign_detached is not None:
            return _sign_detached(self._secret, domain + message)
        return bytes(self._key.sign(domain + message).signature)


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
