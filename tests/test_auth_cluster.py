"""Request authentication and roles against a live 4-node TLS cluster
(issue 24, "Done when"; PROTOCOL §11).

Identities: ``writer`` (submit only), ``reader`` (read), the cluster's own
``harness`` key (audit, submit) and keys the chain does not list.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from client.errors import LedgerAPIError
from client.sdk import LedgerClient
from harness.localnet import LocalCluster, free_base_port
from ledger.crypto import SigningKey
from ledger.reqsig import RequestSigner

pytestmark = pytest.mark.cluster

RID = "00" * 32
ROUTES = [("POST", "/v1/records"), ("GET", f"/v1/records/{RID}"),
          ("GET", f"/v1/records/{RID}/proof"), ("GET", f"/v1/records/{RID}/trace"),
          ("GET", "/v1/blocks/latest"), ("GET", "/v1/blocks/1"),
          ("GET", "/v1/consistency?from=1&to=1"), ("GET", "/checkpoint"),
          ("GET", "/v1/checkpoints/1"), ("GET", "/v1/checkpoint-keys"), ("GET", "/v1/status"),
          ("GET", "/v1/genesis"), ("GET", "/v1/membership"), ("GET", "/v1/evidence"),
          ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/no/such/route")]


async def raw(c: LocalCluster, method: str, path: str, headers: dict[str, str] | None = None,
              body: bytes | None = None) -> tuple[int, Any]:
    """A request from a plain HTTPS client (trusting the cluster CA), not the harness's."""
    ctx = ssl.create_default_context(cafile=str(c.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        url = URL(c.url(0) + path, encoded=True)
        async with s.request(method, url, headers=headers or {}, data=body) as resp:
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, (await resp.json() if ctype.startswith("application/json")
                                 else await resp.read())


async def test_signed_requests_and_roles_on_a_tls_cluster(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, tls=True, auth=True, members=True,
                     submitters={"writer": ["submit"], "reader": ["read"], "auditor": ["audit"]})
    try:
        await c.start_all()
        # Without a key, or with a key the chain does not list: 401 everywhere but /health.
        stranger = RequestSigner(SigningKey.generate())
        for method, path in ROUTES:
            body = b'{"envelopes": []}' if method == "POST" else None
            status, doc = await raw(c, method, path, body=body)
            assert (status, doc["error"]) == (401, "unauthenticated"), (method, path, doc)
            signed = stranger.headers(method, c.url(0) + path, body)
            status, doc = await raw(c, method, path, signed, body)
            assert (status, doc["error"]) == (401, "unauthenticated"), (method, path, doc)
        assert (await raw(c, "GET", "/health"))[0] == 200
        assert (await raw(c, "GET", "/explorer/"))[0] == 200  # static: the page signs its reads

        keys = tmp_path / "keys"
        urls = [c.url(i) for i in range(c.n)]
        async with LedgerClient(urls, keys / "writer.json", ca_file=c.ca_file,
                                chain=c.genesis.chain) as writer:
            rid = await writer.submit(kind="payment", origin={"system": "pos"},
                                      body={"amount": 5})
            await c.wait_committed([0, 1, 2, 3], rid)
            # A submitter without a read role cannot read, not even its own record.
            for call in (writer.record(rid), writer.proof(rid), writer.block(1)):
                with pytest.raises(LedgerAPIError) as refused:
                    await call
                assert (refused.value.status, refused.value.code) == (403, "forbidden_role")
        async with LedgerClient(urls, auth_key_file=keys / "reader.json",
                                ca_file=c.ca_file) as reader:
            assert (await reader.record(rid))["status"] == "committed"
            bundle = await reader.proof(rid)
            reader.verify_bundle(bundle, c.genesis.raw)
            with pytest.raises(LedgerAPIError) as refused:  # the reader holds no audit role
                await reader._request("GET", "/metrics", raw=True)
            assert refused.value.code == "forbidden_role"

        await cli_signs(c, tmp_path, rid)

        signer = RequestSigner(SigningKey(bytes.fromhex(
            json.loads((keys / "reader.json").read_text())["seed"])))
        path = f"/v1/records/{rid}"
        headers = signer.headers("GET", c.url(0) + path)
        assert (await raw(c, "GET", path, headers))[0] == 200
        status, doc = await raw(c, "GET", path, headers)  # replayed
        assert status == 401 and "replayed" in doc["message"]
        expired = signer.headers("GET", c.url(0) + path, created=int(time.time()) - 3600)
        status, doc = await raw(c, "GET", path, expired)
        assert status == 401 and "created" in doc["message"]
        forged = signer.headers("GET", c.url(0) + path)
        label, _, value = forged["Signature"].partition("=:")
        sig = bytearray(base64.b64decode(value.rstrip(":")))
        sig[-1] ^= 0x80
        forged["Signature"] = f"{label}=:{base64.b64encode(bytes(sig)).decode()}:"
        assert (await raw(c, "GET", path, forged))[0] == 401
    finally:
        await c.stop_all()


async def test_public_read_opens_the_read_routes(tmp_path: Path) -> None:
    operator = free_base_port(1)
    c = LocalCluster(tmp_path, tls=True, auth=True, params={"public_read": 1},
                     toml_edits={0: [("max_body_bytes = 16777216",
                                      f"max_body_bytes = 16777216\noperator_port = {operator}")]})
    try:
        await c.start_all()
        async with LedgerClient([c.url(0)], tmp_path / "keys" / "demo.json",
                                ca_file=c.ca_file) as demo:
            rid = await demo.submit(kind="payment", origin={"system": "pos"}, body={"n": 1})
            await demo.wait_committed(rid)
        async with LedgerClient([c.url(0)], ca_file=c.ca_file) as anyone:  # no key at all
            assert (await anyone.record(rid))["status"] == "committed"
            anyone.verify_bundle(await anyone.proof(rid), c.genesis.raw)
        assert (await raw(c, "GET", "/metrics"))[0] == 401
        status, doc = await raw(c, "POST", "/v1/records", body=b'{"envelopes": []}')
        assert (status, doc["error"]) == (401, "unauthenticated")
        # The operator listener serves /metrics and /health unsigned, and nothing else.
        ctx = ssl.create_default_context(cafile=str(c.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            base = f"https://127.0.0.1:{operator}"
            async with s.get(base + "/metrics") as resp:
                assert resp.status == 200 and b"ledger_height" in await resp.read()
            async with s.get(base + "/health") as resp:
                assert resp.status == 200
            async with s.get(base + f"/v1/records/{rid}") as resp:
                assert resp.status == 404
    finally:
        await c.stop_all()


def tool(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


async def run(*argv: str | Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *[str(a) for a in argv], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def cli_signs(c: LocalCluster, tmp_path: Path, rid: str) -> None:
    """``ledger-audit`` and ``ledger-admin submit`` sign with ``--key``."""
    keys, genesis = tmp_path / "keys", tmp_path / "genesis.json"
    audit = [tool("ledger-audit"), "audit", "--node", c.url(1), "--ca-file", c.ca_file,
             "--genesis", genesis, "--checkpoint-file", tmp_path / "checkpoints.json", "--json"]
    code, out = await run(*audit, "--key", keys / "auditor.json")
    assert code == 0 and json.loads(out)["valid"], out
    code, out = await run(*audit)
    assert code != 0 and "unauthenticated" in out, out
    code, out = await run(tool("ledger-audit"), "trace", rid, "--node", c.url(2), "--ca-file",
                          c.ca_file, "--genesis", genesis, "--key", keys / "reader.json", "--json")
    assert code == 0, out

    proposal = tmp_path / "proposal.json"
    code, out = await run(tool("ledger-admin"), "propose", "scope.pause", "scope=kind",
                          "value=payment", "--key", keys / "member0.json", "--genesis", genesis,
                          "--expires-height", 1000, "--out", proposal)
    assert code == 0, out
    submit = [tool("ledger-admin"), "submit", proposal, "--node", c.url(0), "--ca-file",
              c.ca_file, "--json"]
    code, out = await run(*submit)
    assert code != 0 and "unauthenticated" in out, out
    # Signed by the member: authenticated, then judged (one signature of the three needed).
    code, out = await run(*submit, "--key", keys / "member0.json")
    assert json.loads(out)["error"] == "too_few_signatures", out
