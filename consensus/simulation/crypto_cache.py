"""Signing and verification caches that keep simulations fast without
weakening any check.

Ed25519 is deterministic, so a cached signature is byte-identical to a fresh
one.  Only *successful* verifications are cached, keyed by the exact
(public key, domain, message, signature): a forged or altered signature is
never in the cache and is verified (and rejected) every time.
"""

from __future__ import annotations

from ledger.crypto import SigningKey, verify_signature
from ledger.records import Envelope, verify_signatures

_MAX_ENTRIES = 400_000
_verified: set[tuple[bytes, bytes, bytes, bytes]] = set()
# Leaf hashes (which cover every signature of the envelope) of envelopes
# whose signatures verified: the same few client records recur in every
# node of every enumerated scenario.
_verified_leaves: set[bytes] = set()
_signatures: dict[tuple[bytes, bytes, bytes], bytes] = {}


def cached_verify(public_key: bytes, domain: bytes, message: bytes, sig: bytes) -> None:
    key = (public_key, domain, message, sig)
    if key in _verified:
        return
    verify_signature(public_key, domain, message, sig)
    if len(_verified) >= _MAX_ENTRIES:
        _verified.clear()
    _verified.add(key)


def envelope_verified(leaf_hash: bytes) -> bool:
    return leaf_hash in _verified_leaves


def verify_envelope_once(envelope: Envelope) -> None:
    """:func:`ledger.records.verify_signatures`, skipped for an envelope
    (by leaf hash) that verified before in this process."""
    if envelope.leaf_hash in _verified_leaves:
        return
    verify_signatures(envelope)
    if len(_verified_leaves) >= _MAX_ENTRIES:
        _verified_leaves.clear()
    _verified_leaves.add(envelope.leaf_hash)


class CachedSigner:
    """A :class:`SigningKey` whose signatures are memoised process-wide."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.public_key = key.public_key

    def sign(self, domain: bytes, message: bytes) -> bytes:
        cache_key = (self.public_key, domain, message)
        sig = _signatures.get(cache_key)
        if sig is None:
            sig = self.key.sign(domain, message)
            if len(_signatures) >= _MAX_ENTRIES:
                _signatures.clear()
            _signatures[cache_key] = sig
        return sig
