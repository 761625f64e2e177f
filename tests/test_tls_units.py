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


def _tls_server(directory: Path, name: str) -> tuple[object, int, bytes]:
    """An HTTPS server (own CA) answering 200 to GET; (server, port, cert fingerprint)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from node.tls_certs import make_ca, make_node_cert

    ca = make_ca(directory / f"{name}-ca", f"{name} CA")
    cert, key = make_node_cert(ca, directory, name, ["127.0.0.1"])

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).digest()
    return srv, srv.server_address[1], fingerprint


def test_fetches_from_a_validator_use_the_certificate_its_handshake_proved(
        tmp_path: Path) -> None:
    """NodeTls.https: before a handshake, the CA of tls.ca_file decides (a
    new organisation's CA is not in it); once a handshake pinned the
    certificate, exactly that one is accepted, and another is refused."""
    from node.tls import NodeTls, PinMismatch, PeerPins

    srv, port, fingerprint = _tls_server(tmp_path, "neworg")
    ours = _tls_server(tmp_path, "cluster")  # only for its CA file
    try:
        tls = NodeTls(server=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
                      client=client_context(tmp_path / "cluster-ca" / "ca.pem"),
                      fingerprint=b"", pins=PeerPins())
        key, other = b"\x01" * 32, b"\x02" * 32
        with pytest.raises(ssl.SSLCertVerificationError):
            tls.https(key, "127.0.0.1", port, 5.0)
        tls.pins.learn(key, fingerprint)
        conn = tls.https(key, "127.0.0.1", port, 5.0)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        tls.pins.learn(other, hashlib.sha256(b"another certificate").digest())
        with pytest.raises(PinMismatch) as info:
            tls.https(other, "127.0.0.1", port, 5.0)
        assert isinstance(info.value, OSError)  # sync skips the peer like any failure
    finally:
        for s in (srv, ours[0]):
            s.shutdown()  # type: ignore[attr-defined]
            s.server_close()  # type: ignore[attr-defined]


async def test_status_probes_use_the_pinned_certificate_too(tmp_path: Path) -> None:
    """NodeTls.aiohttp_ssl (BlockSync.probe_heights): the CA context before a
    pin, then exactly the pinned certificate."""
    import aiohttp

    from node.tls import NodeTls, PeerPins

    srv, port, fingerprint = _tls_server(tmp_path, "neworg")
    try:
        tls = NodeTls(server=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
                      client=client_context(tmp_path / "neworg-ca" / "ca.pem"),
                      fingerprint=b"", pins=PeerPins())
        key = b"\x01" * 32
        url = f"https://127.0.0.1:{port}/"
        async with aiohttp.ClientSession() as session:
            assert tls.aiohttp_ssl(key) is tls.client
            tls.pins.learn(key, fingerprint)
            async with session.get(url, ssl=tls.aiohttp_ssl(key)) as resp:
                assert resp.status == 200
            tls.pins.learn(key, hashlib.sha256(b"another certificate").digest())
            with pytest.raises(aiohttp.ServerFingerprintMismatch):
                async with session.get(url, ssl=tls.aiohttp_ssl(key)):
                    pass
    finally:
        srv.shutdown()  # type: ignore[attr-defined]
        srv.server_close()  # type: ignore[attr-defined]
