"""TLS on the API and peer links (issue 24 item 1), against a live cluster.

A 4-node cluster with certificates from ``ledger-cluster init``'s local CA
commits and catches up over HTTPS/WSS; a plaintext client gets nothing; a
process without a validator key gets no peer link; and a TLS-terminating man
in the middle, even with a validator's key, fails the handshake because the
signed transcript binds the listener's certificate (node/frames.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from client import LedgerClient
from harness.localnet import LocalCluster
from ledger.crypto import SigningKey
from ledger.encoding import decode
from ledger.keys import load_key_file
from node import frames
from node.tls import client_context, peer_fingerprint
from node.tls_certs import make_ca, make_node_cert

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, 4, tls=True)
    try:
        yield c
    finally:
        await c.stop_all()


def _ca_context(c: LocalCluster) -> ssl.SSLContext:
    assert c.ca_file is not None
    return client_context(c.ca_file)


async def _audit(*args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_CA_FILE"}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("ledger-audit")), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def _handshake_failures(c: LocalCluster, i: int, reason: str) -> float:
    return await c.metric(i, "ledger_peer_handshakes_failed_total", reason=reason)


async def test_tls_cluster_commits_and_catches_up(cluster: LocalCluster) -> None:
    c = cluster
    await c.start_all()
    c.kill(3)
    urls = [c.url(i) for i in range(3)]
    assert all(u.startswith("https://") for u in urls)
    async with LedgerClient(urls, key_file=c.dir / "keys" / "demo.json",
                            ca_file=c.ca_file) as lc:
        ids = await lc.submit_many([{"kind": "payment", "body": {"amount": i}}
                                    for i in range(20)])
        doc = await lc.wait_committed(ids[-1], timeout=30)
    height = doc["height"]
    c.start(3)
    await c.wait_height([3], height, timeout=30)
    await c.wait_connected([0, 1, 2, 3])
    assert "serving on https://" in c.log_path(3).read_text()
    # ledger-audit over https: with the cluster's CA it verifies the chain;
    # without it the node's certificate is not trusted and no node answers.
    genesis = str(c.dir / "genesis.json")
    code, out = await _audit("audit", "--node", c.url(1), "--genesis", genesis,
                             "--ca-file", str(c.ca_file))
    assert code == 0, out
    code, out = await _audit("audit", "--node", c.url(1), "--genesis", genesis)
    assert code == 2, out
    # No key material in any log (issue 24 item 6).
    seeds = [load_key_file(p).key.seed.hex() for p in (c.dir / "keys").glob("*.json")]
    for i in range(4):
        text = c.log_path(i).read_text()
        assert not any(seed in text for seed in seeds)


async def test_plaintext_and_untrusted_clients_get_nothing(cluster: LocalCluster) -> None:
    c = cluster
    await c.start_all()
    plain = c.url(0).replace("https://", "http://")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(plain + "/v1/status") as resp:
                await resp.read()
        with pytest.raises(aiohttp.ClientError):
            async with session.ws_connect(plain.replace("http://", "ws://") + frames.PEER_PATH):
                pass
        # A client that does not trust the cluster's CA refuses the certificate.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(c.url(0) + "/v1/status") as resp:
                await resp.read()


async def test_peer_without_validator_key_gets_no_link(cluster: LocalCluster) -> None:
    c = cluster
    await c.start_all()
    before = await _handshake_failures(c, 0, "unknown_peer")
    outsider = SigningKey.generate()
    node0 = c.genesis.validators[0].pubkey
    url = c.url(0).replace("https://", "wss://") + frames.PEER_PATH
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, ssl=_ca_context(c)) as ws:
            await ws.send_bytes(frames.hello(c.genesis, outsider, node0, frames.fresh_nonce()))
            # No challenge is signed for it: the listener closes the link.
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            # A frame sealed by the outsider goes nowhere either.
            with pytest.raises((ConnectionError, aiohttp.ClientError)):
                await ws.send_bytes(frames.seal(outsider, b"\0" * 32, 1, b"x"))
                await ws.send_bytes(frames.seal(outsider, b"\0" * 32, 2, b"x"))
    assert await _handshake_failures(c, 0, "unknown_peer") == before + 1


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def test_tls_terminating_man_in_the_middle_is_refused(cluster: LocalCluster) -> None:
    """A proxy that terminates TLS with its own certificate (issued by the
    same CA, so it even passes certificate checks) and relays to node0: a
    dialer holding a validator's key sees the proxy's certificate, so the
    listener's challenge does not verify, and an answer signed for the
    proxy's certificate is refused by node0."""
    c = cluster
    await c.start_all()
    c.kill(3)  # the proxy's "dialer" borrows node3's key
    with tempfile.TemporaryDirectory() as tmp:
        mitm_ca = make_ca(Path(tmp) / "ca")
        cert, key = make_node_cert(mitm_ca, Path(tmp), "mitm", ["127.0.0.1"])
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(str(cert), str(key))
        mitm_fp = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).digest()
    upstream_ctx = _ca_context(c)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", c.base_port,
                                                   ssl=upstream_ctx, server_hostname="127.0.0.1")
        await asyncio.gather(_relay(reader, up_w), _relay(up_r, writer))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = proxy.sockets[0].getsockname()[1]
    node3 = load_key_file(c.dir / "keys" / "node3.json").key
    node0 = c.genesis.validators[0].pubkey
    before = await _handshake_failures(c, 0, "bad_signature")
    lax = client_context(None, verify=False)  # as a peer with tls.require = false
    try:
        async with aiohttp.ClientSession() as session:
            for dialer_checks in (True, False):
                async with session.ws_connect(f"wss://127.0.0.1:{port}{frames.PEER_PATH}",
                                              ssl=lax) as ws:
                    binding = peer_fingerprint(ws.get_extra_info("ssl_object"))
                    assert binding == mitm_fp
                    nonce = frames.fresh_nonce()
                    await ws.send_bytes(frames.hello(c.genesis, node3, node0, nonce))
                    challenge = (await ws.receive(timeout=10)).data
                    if dialer_checks:
                        with pytest.raises(frames.HandshakeError) as info:
                            frames.check_challenge(c.genesis, node3, node0, nonce, challenge,
                                                   binding)
                        assert info.value.reason == "bad_signature"
                        continue
                    their = decode(challenge)["nonce"]
                    await ws.send_bytes(frames.auth(c.genesis, node3, node0, their, binding))
                    msg = await ws.receive(timeout=10)
                    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    finally:
        proxy.close()
    assert await _handshake_failures(c, 0, "bad_signature") == before + 1


async def test_plaintext_needs_the_explicit_setting_and_warns(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, 1)  # tls.insecure_plaintext = true
    try:
        c.start(0)
        await c.wait_height([0], 0)
        assert c.url(0).startswith("http://")
    finally:
        await c.stop_all()
    log = c.log_path(0).read_text()
    assert '"level":"warning"' in log and "tls.insecure_plaintext = true" in log
    assert "serving on http://" in log
