"""Nothing secret is logged, and no answer echoes key material (issue 24
item 6), on a live 4-node cluster with TLS and request authentication: the
nodes start, serve signed submissions and reads, refuse unsigned, forged
and malformed requests (one with a seed pasted into its signature header),
a node is killed and restarted, all stop; then every log line and every
answer is searched for every secret of the cluster, in the spellings a bug
would print: the Ed25519 seeds (hex, upper-case hex, base64) and the TLS
private keys (PEM body lines, DER hex)."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from yarl import URL

from client.sdk import LedgerClient
from harness.localnet import LocalCluster

pytestmark = pytest.mark.cluster


def _secrets(directory: Path) -> dict[str, str]:
    """Every secret of the cluster directory: spelling -> where it is from."""
    found: dict[str, str] = {}
    for path in sorted((directory / "keys").glob("*.json")):
        seed = bytes.fromhex(json.loads(path.read_text())["seed"])
        for spelling in (seed.hex(), seed.hex().upper(), base64.b64encode(seed).decode(),
                         base64.urlsafe_b64encode(seed).decode().rstrip("=")):
            found[spelling] = f"seed of {path.name}"
    for path in sorted((directory / "tls").glob("*.key")):
        pem = path.read_bytes()
        der = serialization.load_pem_private_key(pem, password=None).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        found[der.hex()[-64:]] = f"DER of {path.name}"
        for line in pem.decode().splitlines():
            if not line.startswith("-----") and len(line) >= 40:  # a body line, not a marker
                found[line] = f"PEM of {path.name}"
    assert len(found) > 20
    return found


async def test_no_key_material_in_logs_or_answers(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "cluster", tls=True, auth=True,
                     submitters={"writer": ["submit", "read"]})
    answers: list[str] = []
    try:
        everyone = await c.start_all()
        keys = c.dir / "keys"
        seed_hex = json.loads((keys / "writer.json").read_text())["seed"]
        async with LedgerClient([c.url(i) for i in everyone], keys / "writer.json",
                                nonce_file=tmp_path / "nonce", ca_file=c.ca_file) as lc:
            rid = (await lc.submit(kind="payment", body={"amount": 1}))
            await lc.wait_committed(rid, timeout=30)
        ctx = ssl.create_default_context(cafile=str(c.ca_file))
        bad_headers = [
            {},  # unsigned
            {"Signature-Input": 'sig1=("@method");created=1;keyid="x";alg="ed25519"',
             "Signature": "sig1=:" + base64.b64encode(b"\x00" * 64).decode() + ":"},
            # A client that pasted its seed where the signature goes.
            {"Signature-Input": f'sig1=("@method");keyid="{seed_hex}";alg="ed25519"',
             "Signature": "sig1=:" + base64.b64encode(bytes.fromhex(seed_hex)).decode() + ":"},
            {"Signature-Input": "garbage(((", "Signature": seed_hex},
        ]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            for headers in bad_headers:
                for path in ("/v1/status", f"/v1/records/{rid}", "/v1/sync/blocks?from=1"):
                    async with s.get(URL(c.url(0) + path, encoded=True),
                                     headers=headers) as resp:
                        assert resp.status in (400, 401), (headers, path, resp.status)
                        answers.append(json.dumps(dict(resp.headers)) + await resp.text())
        c.kill(1)
        c.start(1)
        await c.wait_connected(everyone, timeout=60)
    finally:
        await c.stop_all()
    secrets = _secrets(c.dir)
    logs = {f"node{i}.log": c.log_path(i).read_text(errors="replace") for i in range(c.n)}
    assert all(logs.values())
    for spelling, what in secrets.items():
        for name, text in logs.items():
            assert spelling not in text, f"{what} appears in {name}"
        for answer in answers:
            assert spelling not in answer, f"{what} echoed in an answer: {answer[:300]}"
