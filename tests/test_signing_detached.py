"""ledger.crypto signs large messages through OpenSSL (no copies of the
message behind the signature) and checks single signatures through
libsodium's crypto_sign_verify_detached: the same signatures and answers as
PyNaCl's combined calls."""

from __future__ import annotations

import os

import nacl.signing
import pytest

import ledger.crypto as crypto
from ledger.crypto import RECORD_DOMAIN, SigningKey, verify_signature
from ledger.errors import BadSignature

MESSAGES = [b"", b"m", os.urandom(1000), os.urandom(900_000),
            # either side of the size from which OpenSSL signs
            os.urandom(crypto.LARGE_MESSAGE - len(RECORD_DOMAIN) - 1),
            os.urandom(crypto.LARGE_MESSAGE - len(RECORD_DOMAIN))]


def test_signing_gives_pynacl_signatures_on_both_paths() -> None:
    for seed in (b"\x01" * 32, b"\x7f" * 32, os.urandom(32)):
        key = SigningKey(seed)
        reference = nacl.signing.SigningKey(seed)
        for message in MESSAGES:
            sig = key.sign(RECORD_DOMAIN, message)
            assert sig == reference.sign(RECORD_DOMAIN + message).signature
            verify_signature(key.public_key, RECORD_DOMAIN, message, sig)


@pytest.mark.parametrize("path", ["native", "pynacl"])
def test_single_signatures_are_refused_as_before(path: str, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    if path == "pynacl":
        monkeypatch.setattr(crypto, "native", None)
    key, other = SigningKey(b"\x02" * 32), SigningKey(b"\x03" * 32)
    for message in MESSAGES:
        sig = key.sign(RECORD_DOMAIN, message)
        verify_signature(key.public_key, RECORD_DOMAIN, message, sig)
        flipped = bytes([sig[0] ^ 1]) + sig[1:]
        for args in ((other.public_key, RECORD_DOMAIN, message, sig),
                     (key.public_key, RECORD_DOMAIN, message + b"x", sig),
                     (key.public_key, b"auditledger/vote/v1\n", message, sig),
                     (key.public_key, RECORD_DOMAIN, message, flipped),
                     (key.public_key, RECORD_DOMAIN, message, sig[:63]),
                     (key.public_key[:31], RECORD_DOMAIN, message, sig)):
            with pytest.raises(BadSignature):
                verify_signature(*args)
