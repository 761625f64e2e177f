"""Which C accelerators this process uses.

``ledger._native`` (ledger/_native*.c, built by setup.py where a C compiler
is present) speeds up the per-record hot spots of a node: decoding a
canonical envelope, checking a batch of signatures (each one by
libsodium's ``crypto_sign_verify_detached``, without a Python call per
signature), SHA-256 (through OpenSSL's own functions, without hashlib's per-call EVP
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
    def set_batch_classes(self, batched_cls: type, position_cls: type, /) -> None: ...
    def set_sha256(self, init: int, update: int, final: int, /) -> None: ...
    def sha256(self, data: bytes, /) -> bytes: ...
    def pair_up(self, nodes: list[bytes], /) -> list[bytes]: ...
    def shaped_leaves(self, prefix: bytes, shapes: list[tuple[bytes, bytes]], slots: bytes,
                      ids: bytes, /) -> list[bytes]: ...
    def set_sodium(self, verify_detached: int, /) -> None: ...
    def verify_ed25519(self, domain: bytes, items: list[tuple[bytes, bytes, bytes]],
                       /) -> list[bool]: ...


def _load() -> tuple[Native | None, str]:
    """The module, and why (or why not)."""
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None, f"pure Python ({PURE_PYTHON_ENV} is set)"
    try:
        from . import _native
    except ImportError as exc:
        return None, f"pure Python (ledger._native is not built: {exc})"
    try:
        _native.set_sha256(*_openssl_sha256())
    except (ImportError, OSError, AttributeError, ValueError) as exc:
        return None, f"pure Python (OpenSSL's SHA-256 functions not found: {exc})"
    if _native.sha256(b"abc") != hashlib.sha256(b"abc").digest():
        return None, "pure Python (OpenSSL's SHA256_* functions disagree with hashlib)"
    try:
        _native.set_sodium(_libsodium_verify())
    except (ImportError, OSError, AttributeError, ValueError) as exc:
        return None, f"pure Python (libsodium's functions not found: {exc})"
    return _native, "C (ledger._native; Ed25519 by libsodium)"


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


def _libsodium_verify() -> int:
    """Where ``crypto_sign_verify_detached`` is, in the copy of libsodium
    PyNaCl loaded (and initialised): the very function PyNaCl's
    ``VerifyKey.verify`` ends in (``crypto_sign_open`` checks the signature
    with it), so both paths accept exactly the same signatures."""
    import nacl._sodium
    import nacl.signing  # noqa: F401  (initialises libsodium)

    (verify,) = _addresses(nacl._sodium.__file__, ("crypto_sign_verify_detached",))
    return verify


def _openssl_sha256() -> tuple[int, int, int]:
    """Addresses of SHA256_Init, SHA256_Update and SHA256_Final in the
    libcrypto that hashlib's ``_hashlib`` loaded: the same SHA-256 code
    hashlib runs."""
    import _hashlib

    init, update, final = _addresses(_hashlib.__file__,
                                     ("SHA256_Init", "SHA256_Update", "SHA256_Final"))
    return init, update, final


native, description = _load()
"""The C module, or None; and one line saying which, for logs and reports."""
