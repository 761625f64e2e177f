"""The pure halves of TLS (issue 24 item 1): the handshake's certificate
binding, certificate checks, and `ledger-cluster keygen --tls-host`."""

from __future__ import annotations

import datetime
import hashlib
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner

from node import frames
from node.cluster import main as cluster_main
from node.tls import TlsConfigError, check_certificate, client_context

from helpers import as_genesis, make_genesis

GOOD = hashlib.sha256(b"the listener's certificate").digest()
OTHER = hashlib.sha256(b"a man in the middle's certificate").digest()


def _handshake(dialer_sees: bytes, listener_has: bytes) -> None:
    """One handshake in memory; raises :class:`frames.HandshakeError` on refusal."""
    doc, keys, _ = make_genesis(2)
    genesis = as_genesis(doc)
    dialer, listener = keys
    d_nonce, l_nonce = frames.fresh_nonce(), frames.fresh_nonce()
    hello = frames.check_hello(genesis, listener,
                               frames.hello(genesis, dialer, listener.public_key, d_nonce))
    challenge = frames.challenge(genesis, listener, hello, l_nonce, listener_has)
    their = frames.check_challenge(genesis, dialer, listener.public_key, d_nonce, challenge,
                                   dialer_sees)
    auth = frames.auth(genesis, dialer, listener.public_key, their, dialer_sees)
    frames.check_auth(genesis, listener, hello, l_nonce, auth, listener_has)


def test_handshake_bound_to_the_same_certificate_succeeds() -> None:
    _handshake(GOOD, GOOD)
    _handshake(b"", b"")  # plaintext (tls.insecure_plaintext): the version-1 transcript


@pytest.mark.parametrize("dialer_sees, listener_has", [(OTHER, GOOD), (b"", GOOD), (GOOD, b"")])
def test_handshake_signed_for_another_certificate_is_refused(dialer_sees: bytes,
                                                             listener_has: bytes) -> None:
    with pytest.raises(frames.HandshakeError) as info:
        _handshake(dialer_sees, listener_has)
    assert info.value.reason == "bad_signature"


def test_listener_refuses_an_auth_signed_for_another_certificate() -> None:
    doc, keys, _ = make_genesis(2)
    genesis = as_genesis(doc)
    dialer, listener = keys
    d_nonce, l_nonce = frames.fresh_nonce(), frames.fresh_nonce()
    hello = frames.check_hello(genesis, listener,
                               frames.hello(genesis, dialer, listener.public_key, d_nonce))
    auth = frames.auth(genesis, dialer, listener.public_key, l_nonce, OTHER)
    with pytest.raises(frames.HandshakeError) as info:
        frames.check_auth(genesis, listener, hello, l_nonce, auth, GOOD)
    assert info.value.reason == "bad_signature"


def test_keygen_tls_host_writes_a_certificate_for_the_key(tmp_path: Path) -> None:
    out = tmp_path / "org-a"
    result = CliRunner().invoke(cluster_main, ["keygen", "--name", "org-a", "--out", str(out),
                                               "--tls-host", "a.example"])
    assert result.exit_code == 0, result.output
    assert (out / "org-a.key").stat().st_mode & 0o077 == 0
    assert (out / "ca" / "ca.key").stat().st_mode & 0o077 == 0
    check_certificate(out / "org-a.pem", out / "org-a.key")
    # A second organisation's certificate signed by the same CA directory.
    result = CliRunner().invoke(cluster_main, ["keygen", "--name", "org-b", "--out", str(out),
                                               "--tls-host", "b.example", "--ca", str(out / "ca")])
    assert result.exit_code == 0, result.output
    with pytest.raises(TlsConfigError, match="does not match the private key"):
        check_certificate(out / "org-a.pem", out / "org-b.key")
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=900)
    with pytest.raises(TlsConfigError, match="expired on"):
        check_certificate(out / "org-a.pem", out / "org-a.key", now=later)
    ctx = client_context(out / "ca" / "ca.pem")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
