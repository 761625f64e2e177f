"""TLS for the client API and peer links (PROTOCOL §6, docs/operators.md).

The node serves HTTPS (and WSS for ``/v1/peer``) with the certificate and
key of ``[tls]``; it dials peers and fetches blocks over HTTPS, trusting the
roots in ``tls.ca_file``.  TLS 1.2 is the floor; Python negotiates 1.3 where
both sides have it.

Who a peer is comes from the signed handshake (node/frames.py), not from its
certificate: each side signs a transcript that includes the SHA-256 of the
listener's DER certificate, as each side sees it.  A TLS-terminating man in
the middle presents its own certificate, so the two sides sign different
transcripts and the handshake fails.  (Python's ``ssl`` has no keying
material exporter and ``tls-unique`` does not exist in TLS 1.3, hence the
certificate fingerprint.)

So peer links are dialed without consulting ``tls.ca_file`` (:attr:`NodeTls.peer`):
the certificate is bound to the validator key the membership in force
lists, and a validator added by governance with a certificate from its own
organisation's CA is linked to at once, without a restart.  A handshake
that completes proves the listener's certificate is that validator's: its
fingerprint is kept (:class:`PeerPins`) and the node's HTTPS fetches from
that validator (block sync, snapshots, status) accept exactly that
certificate; before any handshake with it they verify against ``ca_file``
(``tls.require``).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .settings import TlsSettings


class TlsConfigError(ValueError):
    """A TLS file is missing, unreadable, mismatched or expired; ``key`` names the setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class PeerPins:
    """Validator key -> SHA-256 of the certificate that validator proved its
    own in a peer handshake (its listener's, bound into the transcript its
    key signed).  Written on the event loop, read by sync threads: one dict
    assignment or lookup at a time."""

    def __init__(self) -> None:
        self._by_key: dict[bytes, bytes] = {}

    def learn(self, pubkey: bytes, fingerprint: bytes) -> None:
        self._by_key[pubkey] = fingerprint

    def get(self, pubkey: bytes) -> bytes | None:
        return self._by_key.get(pubkey)


class PinMismatch(ssl.SSLError):
    """A validator served a certificate other than the one its key proved."""


@dataclass(frozen=True)
class NodeTls:
    """The node's TLS material, loaded once at start."""

    server: ssl.SSLContext
    # Verifies against tls.ca_file (or not, with tls.require = false): HTTPS
    # fetches from a validator before a handshake has pinned its certificate.
    client: ssl.SSLContext
    # SHA-256 of the node's own DER certificate: its handshake binding as listener.
    fingerprint: bytes
    # Peer links: TLS without CA checks, the handshake authenticates (module doc).
    peer: ssl.SSLContext = field(default_factory=lambda: client_context(None, verify=False))
    pins: PeerPins = field(default_factory=PeerPins)

    def https(self, peer_key: bytes, host: str, port: int | None,
              timeout: float) -> http.client.HTTPSConnection:
        """A connected HTTPS connection to the validator of ``peer_key``: its
        pinned certificate if a handshake proved one (else
        :class:`PinMismatch`, an ``OSError``), else verified by :attr:`client`."""
        pin = self.pins.get(peer_key)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=self.client if pin is None else self.peer)
        conn.connect()
        if pin is not None and not hmac.compare_digest(peer_fingerprint(conn.sock), pin):
            conn.close()
            raise PinMismatch(f"{host}:{port} served a certificate other than the one its "
                              "validator key proved in the peer handshake")
        return conn

    def aiohttp_ssl(self, peer_key: bytes) -> "ssl.SSLContext | aiohttp.Fingerprint":
        """The ``ssl=`` argument of an aiohttp request to that validator."""
        pin = self.pins.get(peer_key)
        return self.client if pin is None else aiohttp.Fingerprint(pin)


def fingerprint_der(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


def peer_fingerprint(ssl_object: Any) -> bytes:
    """The handshake binding of a TLS connection seen from the dialer: SHA-256
    of the certificate the listener presented (b"" if there is none)."""
    if ssl_object is None:
        return b""
    der = ssl_object.getpeercert(binary_form=True)
    return fingerprint_der(der) if der else b""


def _read(path: Path, key: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(key, f"cannot read the {what} {path}: {exc.strerror}") from None


def check_certificate(cert_path: Path, key_path: Path,
                      now: datetime.datetime | None = None) -> bytes:
    """The DER certificate, after checking it is current and matches the key.

    Messages name the files, never their contents."""
    pem = _read(cert_path, "tls.cert_file", "certificate")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise TlsConfigError("tls.cert_file", f"{cert_path} is not a PEM certificate") from None
    key_pem = _read(key_path, "tls.key_file", "TLS key")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise TlsConfigError("tls.key_file", f"{key_path} is not an unencrypted PEM private "
                             "key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise TlsConfigError("tls.cert_file", f"the certificate {cert_path} does not match the "
                             f"private key {key_path}: configure the key the certificate was "
                             "issued for")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now > cert.not_valid_after_utc:
        raise TlsConfigError("tls.cert_file", f"the certificate {cert_path} expired on "
                             f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: issue a new one")
    if now < cert.not_valid_before_utc:
        raise TlsConfigError("tls.cert_file", f"the certificate {cert_path} is not valid before "
                             f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    return cert.public_bytes(serialization.Encoding.DER)


def client_context(ca_file: Path | None, verify: bool = True) -> ssl.SSLContext:
    """A client context: TLS 1.2+, trusting ``ca_file`` (else the system roots)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                     cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        # The peer handshake authenticates the listener (bound to its certificate).
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def load_node_tls(settings: TlsSettings, base: Path) -> NodeTls | None:
    """The node's contexts, or None with ``tls.insecure_plaintext``."""
    if settings.insecure_plaintext:
        return None
    if not settings.cert_file or not settings.key_file:
        raise TlsConfigError("tls.cert_file", "TLS needs tls.cert_file and tls.key_file "
                             "(`ledger-cluster init` makes a local CA and certificates), or "
                             "set tls.insecure_plaintext = true for a local demo")
    cert_path, key_path = base / settings.cert_file, base / settings.key_file
    der = check_certificate(cert_path, key_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.load_cert_chain(str(cert_path), str(key_path))
    ca = base / settings.ca_file if settings.ca_file else None
    if ca is not None and not ca.is_file():
        raise TlsConfigError("tls.ca_file", f"cannot read the CA file {ca}")
    return NodeTls(server=server, client=client_context(ca, verify=settings.require),
                   fingerprint=fingerprint_der(der), peer=client_context(None, verify=False))
