"""Which C accelerators this process uses.

``ledger._native`` (ledger/_native*.c, built by setup.py where a C compiler
is present) speeds up the per-record hot spots of a node: decoding a
canonical envelope, checking a batch of signatures (libsodium's checks,
with the point arithmetic from a precomputed table per submitter key),
SHA-256 (through OpenSSL's own functions, without hashlib's per-call EVP
setup) and the interior nodes of Merkle trees.  The Python code it
replaces stays the reference and the fallback: without the module, or with
``AUDITLEDGER_PURE_PYTHON=1`` in the environment (read once, at import, as
msgpack's ``MSGPACK_PUREPYTHON``), every path is pure Python and behaves the
same, only slower.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from typing import Any, Protocol

PURE_PYTHON_ENV = "AUDITLEDGER_PURE_PYTHON"


class Native(Protocol):
    """What ledger._native offers (ledger/_native.pyi has the same)."""

    def decode_record(self, record_bytes: bytes, /) -> tuple[
            str, bytes, int, int, str, dict[str, str], dict[str, Any], tuple[bytes, ...]] | None: ...
    def decode_envelope(self, envelope_bytes: bytes, /) -> Any: ...
    def set_classes(self, record_cls: type, envelope_cls: type, /) -> None: ...
    def set_sha256(self, init: int, update: int, final: int, /) -> None: ...
    def sha256(self, data: bytes, /) -> bytes: ...
    def pair_up(self, nodes: list[bytes], /) -> list[bytes]: ...
    def set_sodium(self, verify_detached: int, is_valid_point: int, sha512: int,
                   scalar_reduce: int, /) -> None: ...
    def ed25519_combine(self, public_key: bytes, s: bytes, h: bytes, /) -> bytes: ...
    def verify_ed25519(self, domain: bytes, items: list[tuple[bytes, bytes, bytes]],
                       tables: dict[bytes, bytes | None] | None, max_tables: int,
                       /) -> list[bool]: ...


def _load() -> tuple[Native | None, str, bool]:
    """The module, why (or why not), and whether its key tables may be used."""
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None, f"pure Python ({PURE_PYTHON_ENV} is set)", False
    try:
        from . import _native
    except ImportError as exc:
        return None, f"pure Python (ledger._native is not built: {exc})", False
    try:
        _native.set_sha256(*_openssl_sha256())
    except (ImportError, OSError, AttributeError, ValueError) as exc:
        return None, f"pure Python (OpenSSL's SHA-256 functions not found: {exc})", False
    if _native.sha256(b"abc") != hashlib.sha256(b"abc").digest():
        return None, "pure Python (OpenSSL's SHA256_* functions disagree with hashlib)", False
    try:
        _native.set_sodium(*_libsodium_functions())
    except (ImportError, OSError, AttributeError, ValueError) as exc:
        return None, f"pure Python (libsodium's functions not found: {exc})", False
    if not _key_tables_agree(_native):
        return (_native, "C (ledger._native; Ed25519 by libsodium alone: the key tables "
                "disagreed with it at start)", False)
    return _native, "C (ledger._native; Ed25519 from per-key tables)", True


def _addresses(library_file: str, names: tuple[str, ...]) -> list[int]:
    """Where the functions ``names`` are in a library this process already
    loaded (``dlopen`` of the same file returns the loaded copy, and
    ``dlsym`` searches its dependencies too)."""
    library = ctypes.CDLL(library_file)
    addresses = [ctypes.cast(getattr(library, name), ctypes.c_void_p).value or 0
                 for name in names]
    if not all(addresses):
        raise OSError(f"one of {', '.join(names)} has no address")
    return addresses


def _libsodium_functions() -> tuple[int, int, int, int]:
    """Where four libsodium functions are, in the copy PyNaCl loaded (and
    initialised).  ``crypto_sign_verify_detached`` is the very function
    PyNaCl's ``VerifyKey.verify`` ends in (``crypto_sign_open`` checks the
    signature with it); the key tables need the other three: which keys they
    may serve, and the hash of a signature as libsodium computes it."""
    import nacl._sodium
    import nacl.signing  # noqa: F401  (initialises libsodium)

    verify, valid, sha512, reduce = _addresses(nacl._sodium.__file__, (
        "crypto_sign_verify_detached", "crypto_core_ed25519_is_valid_point",
        "crypto_hash_sha512", "crypto_core_ed25519_scalar_reduce"))
    return verify, valid, sha512, reduce


def _key_tables_agree(module: Native) -> bool:
    """Do the key tables give libsodium's answers on a few signatures, good
    and damaged?  tests/test_native_ed25519.py checks them thoroughly; this guards a
    process against a build that computes wrong (a miscompiled extension)."""
    import nacl.signing

    key = nacl.signing.SigningKey(bytes(range(32)))
    public_key = bytes(key.verify_key)
    items = []
    for i in range(8):
        message = b"self-check %d" % i
        sig = key.sign(message).signature
        damaged = bytearray(sig)
        damaged[i * 7] ^= 1 << i
        items += [(public_key, message, sig), (public_key, message + b"!", sig),
                  (public_key, message, bytes(damaged))]
    tables: dict[bytes, bytes | None] = {}
    with_tables = module.verify_ed25519(b"", items, tables, 1)
    libsodium = module.verify_ed25519(b"", items, None, 0)
    return (with_tables == libsodium and with_tables.count(True) == 8
            and isinstance(tables.get(public_key), bytes))


def _openssl_sha256() -> tuple[int, int, int]:
    """Addresses of SHA256_Init, SHA256_Update and SHA256_Final in the
    libcrypto that hashlib's ``_hashlib`` loaded: the same SHA-256 code
    hashlib runs."""
    import _hashlib

    init, update, final = _addresses(_hashlib.__file__,
                                     ("SHA256_Init", "SHA256_Update", "SHA256_Final"))
    return init, update, final


native, description, key_tables = _load()
"""The C module, or None; one line saying which, for logs and reports; and
whether ``native.verify_ed25519`` may use key tables."""
