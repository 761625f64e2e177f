"""Successful Ed25519 verifications of consensus messages, remembered."""

from __future__ import annotations

from ledger.crypto import verify_signature


class SignatureCache:
    """Successful Ed25519 verifications of consensus messages, remembered.

    A vote reaches us directly, inside a proposal's POL and inside
    certificates: each distinct (key, domain, message, signature) is checked
    once.  Only successes are cached, keyed by the exact bytes, so a forged
    signature is checked (and refused) every time.
    """

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity  # entries are ~400 bytes: a few MB at most
        self._ok: set[tuple[bytes, bytes, bytes, bytes]] = set()

    def __call__(self, public_key: bytes, domain: bytes, message: bytes, sig: bytes) -> None:
        key = (public_key, domain, message, sig)
        if key in self._ok:
            return
        verify_signature(public_key, domain, message, sig)
        if len(self._ok) >= self.capacity:
            self._ok.clear()  # cheap bound; the working set is one or two heights
        self._ok.add(key)
