"""Request signatures and roles (PROTOCOL §11), in process: node/auth.py's
middleware in front of the real API, on a virtual clock.

The identities: ``submitter`` (submit only), ``reader`` (read), ``own``
(submit and read_own), ``auditor`` (audit), a member, and a stranger whose key
the chain does not list.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers import FIXED_TS, make_envelope, make_keys
from test_node_api import MAX_BODY, MAX_ENVELOPES, SPEC, StubNode

from ledger.crypto import SigningKey
from ledger.errors import RateLimited
from ledger.genesis import parse_genesis
from ledger.chain import ChainStore
from ledger.reqsig import RequestSigner
from ledger.storage import MemoryStore
from node import access
from node.api import build_app, route_groups
from node.auth import Authenticator, ReplayGuard, Unauthenticated
from node.mempool import Mempool
from node.openapi import check

WINDOW_MS = 60_000
NOW_MS = FIXED_TS + 5_000


class AuthNode(StubNode):
    """The API test node with one identity per role."""

    def __init__(self, public_read: int = 0) -> None:
        super().__init__()
        keys = make_keys(6, 3_000_000)
        self.keys = dict(zip(["reader", "own", "auditor", "member", "stranger", "monitor"], keys))
        doc = dict(self.genesis.raw)
        doc["submitters"] = list(doc["submitters"]) + [
            {"name": "reader", "pubkey": self.keys["reader"].public_key.hex(), "roles": ["read"]},
            {"name": "own", "pubkey": self.keys["own"].public_key.hex(),
             "roles": ["read_own", "submit"]},
            {"name": "auditor", "pubkey": self.keys["auditor"].public_key.hex(),
             "roles": ["audit"]},
            {"name": "monitor", "pubkey": self.keys["monitor"].public_key.hex(),
             "roles": ["monitor"]},
        ]
        doc["members"] = [{"name": "m0", "pubkey": self.keys["member"].public_key.hex()}]
        doc["params"] = dict(doc.get("params", {}), public_read=public_read)
        self.genesis = parse_genesis(doc)
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=1000,
                               clock=lambda: self.clock)
        self.keys["submitter"] = self.submitter


class Caller:
    """Signs requests as one key, with the clock and nonces the test picks."""

    def __init__(self, client: TestClient[Any, Any], key: SigningKey | None) -> None:
        self.client = client
        self.signer = RequestSigner(key) if key is not None else None
        self.created = NOW_MS // 1000
        self.count = 0

    def headers(self, method: str, path: str, body: bytes | None) -> dict[str, str]:
        if self.signer is None:
            return {}
        self.count += 1
        return self.signer.headers(method, str(self.client.make_url(path)), body,
                                   created=self.created, nonce=f"test-nonce-{self.count:08d}")

    async def call(self, method: str, path: str, body: bytes | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> tuple[int, Any]:
        hdrs = dict(headers if headers is not None else self.headers(method, path, body))
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        resp = await self.client.request(method, path, data=body, headers=hdrs, **extra)
        raw = await resp.read()
        ctype = resp.headers.get("Content-Type", "")
        doc = json.loads(raw) if ctype.startswith("application/json") else raw
        if resp.status in (401, 403):  # the error shape every route documents
            check(doc, SPEC["components"]["schemas"]["Error"], SPEC)
        return resp.status, doc


def submit_body(*envs: Any) -> bytes:
    return json.dumps({"envelopes": [base64.b64encode(e.envelope_bytes).decode()
                                     for e in envs]}).encode()


async def make_client(node: AuthNode, auth: Authenticator) -> TestClient[Any, Any]:
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000, auth=auth)
    return TestClient(TestServer(app))


def authenticator(node: AuthNode, clock: list[int] | None = None,
                  max_nonces: int = 10_000) -> Authenticator:
    now = clock if clock is not None else [NOW_MS]
    return Authenticator(lambda: node.chain.membership.at(node.chain.height + 1),
                         window_ms=WINDOW_MS, max_nonces=max_nonces, clock_ms=lambda: now[0])


@pytest.fixture
def node() -> AuthNode:
    return AuthNode()


@pytest.fixture
async def client(node: AuthNode) -> AsyncIterator[TestClient[Any, Any]]:
    async with await make_client(node, authenticator(node)) as c:
        yield c


def routes() -> list[tuple[str, str]]:
    """Every GET/POST route of the API, with a concrete path."""
    rid = "00" * 32
    return [("POST", "/v1/records"), ("GET", f"/v1/records/{rid}"),
            ("GET", f"/v1/records/{rid}/proof"), ("GET", f"/v1/records/{rid}/trace"),
            ("GET", "/v1/blocks/latest"), ("GET", "/v1/blocks/1"),
            ("GET", "/v1/consistency?from=1&to=1"), ("GET", "/checkpoint"),
            ("GET", "/v1/checkpoints/1"), ("GET", "/v1/checkpoint-keys"), ("GET", "/v1/status"),
            ("GET", "/v1/genesis"), ("GET", "/v1/membership"), ("GET", "/v1/evidence"),
            ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/no/such/route")]


async def test_unsigned_and_unregistered_get_401_everywhere_but_health(
        client: TestClient[Any, Any], node: AuthNode) -> None:
    for key in (None, node.keys["stranger"]):
        caller = Caller(client, key)
        for method, path in routes():
            status, doc = await caller.call(method, path, b"{}" if method == "POST" else None)
            assert status == 401 and doc["error"] == "unauthenticated", (key, method, path, doc)
        status, _ = await caller.call("GET", "/health")
        assert status == 200
        # The explorer's static page and modules (no chain data; the page
        # signs its API requests with a key the auditor loads).
        for path in ("/explorer/", "/explorer/app.js", "/explorer/sign.js"):
            assert (await caller.call("GET", path))[0] == 200, path
    resp = await client.get("/v1/status")
    assert resp.headers["WWW-Authenticate"].startswith("Signature")
    assert 'tag="auditledger/request/v1"' in resp.headers["Accept-Signature"]


async def test_roles_per_route(client: TestClient[Any, Any], node: AuthNode) -> None:
    as_ = {name: Caller(client, key) for name, key in node.keys.items()}
    mine = make_envelope(node.keys["own"], "test", 1)
    theirs = make_envelope(node.submitter, "test", 2)
    status, doc = await as_["submitter"].call("POST", "/v1/records", submit_body(theirs))
    assert status == 202 and doc["results"][0]["status"] == "accepted"
    status, doc = await as_["own"].call("POST", "/v1/records", submit_body(mine))
    assert status == 202 and doc["results"][0]["status"] == "accepted"
    status, doc = await as_["reader"].call("POST", "/v1/records", submit_body(theirs))
    assert (status, doc["error"]) == (403, "forbidden_role")

    # Pending: shown to its submitter and to audit, not to other readers.
    path = f"/v1/records/{mine.id.hex()}"
    assert (await as_["own"].call("GET", path))[0] == 200
    assert (await as_["auditor"].call("GET", path))[0] == 200
    status, doc = await as_["reader"].call("GET", path)
    assert (status, doc["error"]) == (409, "not_committed") and "record" not in doc
    # Waiting for the commit (wait_ms): refused at once to who may not read
    # the record at all; a reader who may not see it pending may wait for it.
    status, doc = await as_["own"].call("GET", f"/v1/records/{theirs.id.hex()}?wait_ms=10000")
    assert (status, doc["error"]) == (403, "forbidden_role")
    status, doc = await as_["reader"].call("GET", path + "?wait_ms=1")
    assert (status, doc["error"]) == (409, "not_committed") and "record" not in doc
    waiting = asyncio.create_task(as_["reader"].call("GET", path + "?wait_ms=10000"))
    for _ in range(1000):
        if node.mempool.waiters:
            break
        await asyncio.sleep(0)
    assert len(node.mempool.waiters) == 1
    node.commit()
    status, doc = await asyncio.wait_for(waiting, 10)
    assert status == 200 and doc["status"] == "committed"

    # A submitter without a read role cannot read, even its own records.
    for p in (f"/v1/records/{theirs.id.hex()}", f"/v1/records/{theirs.id.hex()}/proof",
              "/v1/blocks/1", "/v1/evidence"):
        status, doc = await as_["submitter"].call("GET", p)
        assert (status, doc.get("error")) == (403, "forbidden_role"), (p, doc)
    # Any registered identity reads status, genesis and membership.
    for name in ("submitter", "member", "monitor"):
        assert (await as_[name].call("GET", "/v1/status"))[0] == 200
    # read_own: its own records and what verifying them needs; nothing else.
    assert (await as_["own"].call("GET", path))[0] == 200
    assert (await as_["own"].call("GET", path + "/proof"))[0] == 200
    assert (await as_["own"].call("GET", "/v1/blocks/1"))[0] == 200
    for p in (f"/v1/records/{theirs.id.hex()}", f"/v1/records/{theirs.id.hex()}/proof",
              f"/v1/records/{mine.id.hex()}/trace", "/v1/blocks/1?envelopes=1"):
        status, doc = await as_["own"].call("GET", p)
        assert (status, doc.get("error")) == (403, "forbidden_role"), (p, doc)
    # read: every committed record; audit: that and the metrics.
    for p in (path, f"/v1/records/{theirs.id.hex()}/proof", "/v1/blocks/1?envelopes=1",
              f"/v1/records/{theirs.id.hex()}/trace"):
        assert (await as_["reader"].call("GET", p))[0] == 200, p
        assert (await as_["auditor"].call("GET", p))[0] == 200, p
    assert (await as_["reader"].call("GET", "/metrics"))[0] == 403
    assert (await as_["auditor"].call("GET", "/metrics"))[0] == 200
    assert (await as_["monitor"].call("GET", "/metrics"))[0] == 200
    # A member submits (governance records) but reads no records.
    status, doc = await as_["member"].call("POST", "/v1/records", submit_body(theirs))
    assert status == 202 and doc["results"][0]["status"] == "committed"
    assert (await as_["member"].call("GET", path))[0] == 403


async def test_replay_forgery_expiry_and_digest(node: AuthNode) -> None:
    clock = [NOW_MS]
    async with await make_client(node, authenticator(node, clock)) as client:
        reader = Caller(client, node.keys["reader"])
        headers = reader.headers("GET", "/v1/status", None)
        assert (await reader.call("GET", "/v1/status", headers=headers))[0] == 200
        status, doc = await reader.call("GET", "/v1/status", headers=headers)
        assert status == 401 and "replayed" in doc["message"]
        # The same signature sent for another path, query or method.
        fresh = reader.headers("GET", "/v1/status", None)
        assert (await reader.call("GET", "/v1/genesis", headers=fresh))[0] == 401
        assert (await reader.call("GET", "/v1/status?x=1", headers=fresh))[0] == 401
        # A forged signature: one bit of it flipped.
        fresh = reader.headers("GET", "/v1/status", None)
        label, _, value = fresh["Signature"].partition("=:")
        raw = bytearray(base64.b64decode(value.rstrip(":")))
        raw[0] ^= 1
        fresh["Signature"] = f"{label}=:{base64.b64encode(bytes(raw)).decode()}:"
        assert (await reader.call("GET", "/v1/status", headers=fresh))[0] == 401
        # Signed by another key than keyid names.
        other = RequestSigner(node.keys["auditor"]).headers(
            "GET", str(client.make_url("/v1/status")), created=reader.created, nonce="x" * 20)
        forged = dict(other, **{"Signature-Input": other["Signature-Input"].replace(
            node.keys["auditor"].public_key.hex(), node.keys["reader"].public_key.hex())})
        assert (await reader.call("GET", "/v1/status", headers=forged))[0] == 401
        # Outside the window, either side; the edge is accepted.
        for offset, ok in ((-WINDOW_MS // 1000 - 1, False), (WINDOW_MS // 1000 + 1, False),
                           (-WINDOW_MS // 1000, True)):
            reader.created = NOW_MS // 1000 + offset
            status, doc = await reader.call("GET", "/v1/status")
            assert (status == 200) == ok, (offset, doc)
        reader.created = NOW_MS // 1000
        # A body other than the one signed, or one the signature does not cover.
        submitter = Caller(client, node.submitter)
        env = make_envelope(node.submitter, "test", 7)
        signed = submitter.headers("POST", "/v1/records", submit_body(env))
        other_env = make_envelope(node.submitter, "test", 8)
        status, doc = await submitter.call("POST", "/v1/records", submit_body(other_env),
                                           headers=signed)
        assert status == 401 and "Content-Digest" in doc["message"]
        bare = submitter.headers("GET", "/v1/records", None)
        status, doc = await submitter.call("POST", "/v1/records", submit_body(env),
                                           headers=bare)
        assert status == 401
        # Nonces are forgotten once their signature left the window.
        clock[0] += WINDOW_MS + 1_000
        reader.created = clock[0] // 1000
        headers = reader.headers("GET", "/v1/status", None)
        assert (await reader.call("GET", "/v1/status", headers=headers))[0] == 200


async def test_public_read_opens_reads_only() -> None:
    node = AuthNode(public_read=1)
    async with await make_client(node, authenticator(node)) as client:
        anyone = Caller(client, None)
        env = make_envelope(node.submitter, "test", 1)
        status, _ = await anyone.call("POST", "/v1/records", submit_body(env))
        assert status == 401
        await Caller(client, node.submitter).call("POST", "/v1/records", submit_body(env))
        status, doc = await anyone.call("GET", f"/v1/records/{env.id.hex()}")
        assert (status, doc["error"]) == (409, "not_committed")
        node.commit()
        for path in (f"/v1/records/{env.id.hex()}", f"/v1/records/{env.id.hex()}/proof",
                     "/v1/blocks/1?envelopes=1", "/v1/status", "/explorer/"):
            assert (await anyone.call("GET", path))[0] == 200, path
        assert (await anyone.call("GET", "/metrics"))[0] == 401
        # A signed request is still checked: a bad signature is not a public read.
        bad = Caller(client, node.keys["stranger"])
        assert (await bad.call("GET", "/v1/status"))[0] == 401


def test_replay_guard_bounds() -> None:
    guard = ReplayGuard(window_ms=10_000, max_entries=3)
    guard.remember("k", "n1", 100, 100_000)
    with pytest.raises(Unauthenticated):
        guard.remember("k", "n1", 100, 100_001)
    guard.remember("k2", "n1", 100, 100_001)  # another key's nonce is its own
    guard.remember("k", "n2", 100, 100_001)
    with pytest.raises(RateLimited):
        guard.remember("k", "n3", 100, 100_002)
    guard.remember("k", "n3", 105, 110_001)  # the second-100 group left the window
    assert len(guard) == 1


def test_every_route_has_a_rule(node: AuthNode) -> None:
    """A route added to the API without a line in node/access.py's table
    would fall to DEFAULT_RULE (any registered identity): refuse that here."""
    groups = route_groups(node, max_envelopes=MAX_ENVELOPES, max_trace_depth=64,
                          max_trace_nodes=1000)
    for route in [r for g in groups for r in g.routes()]:
        assert isinstance(route.method, str)
        assert (route.method, route.path) in access.ROUTES, (route.method, route.path)


def test_genesis_public_read_is_0_or_1(node: AuthNode) -> None:
    from ledger.errors import GenesisError

    doc = dict(node.genesis.raw)
    for bad in (2, True, "1", -1):
        with pytest.raises(GenesisError, match="public_read"):
            parse_genesis(dict(doc, params=dict(doc["params"], public_read=bad)))
    parse_genesis(dict(doc, params=dict(doc["params"], public_read=1)))


async def test_a_signature_must_cover_method_path_and_query(client: TestClient[Any, Any],
                                                            node: AuthNode) -> None:
    import datetime

    from ledger import reqsig

    signer = RequestSigner(node.keys["reader"])
    for covered in (("@method", "@path"), ("@path", "@query"), ("@method", "@query")):
        message = reqsig._Message("GET", str(client.make_url("/v1/status")))
        signer._signer.sign(message, key_id=signer.keyid, nonce=f"partial-{covered[0][1:]}-{covered[1][1:]}",
                            created=datetime.datetime.fromtimestamp(NOW_MS // 1000,
                                                                    datetime.timezone.utc),
                            label="sig", tag=reqsig.TAG, covered_component_ids=covered)
        status, doc = await Caller(client, None).call("GET", "/v1/status",
                                                      headers=message.headers)
        assert status == 401 and "must cover" in doc["message"], (covered, doc)
