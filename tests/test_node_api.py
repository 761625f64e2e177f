"""In-process tests of the HTTP API (PROTOCOL §6) with aiohttp's test client.

The node behind the API is real (ChainStore on a MemoryStore, the real
mempool and metrics) except consensus, which is stubbed here: ``commit()``
certifies whatever the mempool would propose with the test validator keys.
Every answer is checked against the node's own OpenAPI document.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from helpers import FIXED_TS, certify, make_envelope, make_genesis, make_keys

from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.encoding import canonical
from ledger.genesis import parse_genesis
from ledger.records import Envelope, make_record, sign_record
from ledger.storage import MemoryStore
from ledger.verify import verify_bundle
from node import peer_messages
from node.api import build_app
from node.app_peers import PeerRouting
from node.commit_waiters import CommitWaiters
from node.driver import evidence_json, store_evidence
from node.health import Health
from node.mempool import Mempool
from node.mempool_links import AdmittedLeaves, PeerBacklog
from node.metrics import Metrics
from node.openapi import check, openapi_spec, response_schema
from node.peer_messages import Records
from node.sync import serve_blocks

MAX_ENVELOPES = 50
MAX_BODY = 256 * 1024


class StubNode:
    """An ApiBackend whose consensus is this test: ``commit()`` makes a block."""

    def __init__(self, max_mempool: int = 1000) -> None:
        doc, self.validator_keys, self.submitter = make_genesis(4, "test")
        self.reader = make_keys(1, 2_000_000)[0]
        doc["submitters"].append(
            {"name": "reader", "pubkey": self.reader.public_key.hex(), "roles": ["read"]}
        )
        self.genesis = parse_genesis(doc)
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.metrics = Metrics()
        self.clock = FIXED_TS
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=max_mempool,
                               clock=lambda: self.clock)
        self.name = "stub0"
        self.validator_index = 0
        self.unavailable: str | None = None

    def commit(self) -> None:
        envs = self.mempool.select(1000)
        self.clock += 1
        header = self.chain.next_header(envs, self.clock, 0)
        self.chain.commit_block(header, envs, certify(header, self.validator_keys, self.genesis))
        self.mempool.committed(envs)

    def peers(self) -> list[dict[str, Any]]:
        return []

    def unavailable_reason(self) -> str | None:
        return self.unavailable

    def consensus_status(self) -> dict[str, Any]:
        return {"round": 0, "syncing": False}

    def health(self) -> Health:
        return Health(self.name, self.chain.height, self.chain.height, 0, False)

    def evidence(self) -> list[dict[str, Any]]:
        return [evidence_json(blob) for blob in self.chain.evidence()]

    async def peer_socket(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    async def sync_blocks(self, request: web.Request) -> web.StreamResponse:
        return await serve_blocks(self.chain, request, max_blocks=64, max_bytes=1 << 20)


SPEC = openapi_spec(max_envelopes=MAX_ENVELOPES, max_trace_depth=64)


@pytest.fixture
def node() -> StubNode:
    return StubNode()


@pytest.fixture
async def client(node: StubNode) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app)) as c:
        yield c


async def call(client: TestClient[Any, Any], method: str, url: str, template: str,
               expect: int, **kwargs: Any) -> Any:
    """Make a request, check its status and its body against the OpenAPI spec."""
    resp = await client.request(method, url, **kwargs)
    body = await resp.read()
    assert resp.status == expect, (resp.status, body[:300])
    doc = json.loads(body)
    check(doc, response_schema(SPEC, template, method, resp.status), SPEC)
    return doc


def b64(env: Envelope | bytes) -> str:
    raw = env.envelope_bytes if isinstance(env, Envelope) else env
    return base64.b64encode(raw).decode()


async def submit(client: TestClient[Any, Any], envs: list[Envelope | bytes]) -> list[dict[str, Any]]:
    doc = await call(client, "POST", "/v1/records", "/v1/records", 202,
                     json={"envelopes": [b64(e) for e in envs]})
    results: list[dict[str, Any]] = doc["results"]
    return results


async def test_submit_commit_and_read_back(client: TestClient[Any, Any], node: StubNode) -> None:
    pay = make_envelope(node.submitter, "test", 1)
    settle = make_envelope(node.submitter, "test", 2, parents=[pay.id], kind="settlement")
    results = await submit(client, [pay, settle])
    assert [r["status"] for r in results] == ["accepted", "accepted"]
    assert results[0]["id"] == pay.id.hex()
    # Idempotent while pending, then after commit.
    assert [r["status"] for r in await submit(client, [pay])] == ["duplicate"]
    rec = await call(client, "GET", f"/v1/records/{pay.id.hex()}", "/v1/records/{id}", 200)
    assert rec["status"] == "pending" and rec["record"]["nonce"] == 1
    err = await call(client, "GET", f"/v1/records/{pay.id.hex()}/proof",
                     "/v1/records/{id}/proof", 409)
    assert err["error"] == "not_committed"

    node.commit()
    assert [r["status"] for r in await submit(client, [pay])] == ["committed"]
    rec = await call(client, "GET", f"/v1/records/{settle.id.hex()}", "/v1/records/{id}", 200)
    assert rec["status"] == "committed" and rec["height"] == 1 and rec["leaf_index"] == 1
    # no policy: every record allowed, nothing decided (PROTOCOL §10.8)
    assert rec["verdict"] == {"outcome": "allow", "rule": "", "reason": "", "approvals": 0,
                              "role": "", "policy_version": 0, "deadline": 0,
                              "status": "allowed"}
    bundle = await call(client, "GET", f"/v1/records/{pay.id.hex()}/proof",
                        "/v1/records/{id}/proof", 200)
    assert verify_bundle(bundle, node.genesis.raw).leaf_index == 0

    refund = make_envelope(node.submitter, "test", 3, parents=[pay.id], kind="refund")
    await submit(client, [refund])
    node.commit()
    later = await call(client, "GET", f"/v1/records/{pay.id.hex()}/proof?height=2",
                       "/v1/records/{id}/proof", 200)
    assert later["height"] == 2
    verify_bundle(later, node.genesis.raw)

    trace = await call(client, "GET", f"/v1/records/{settle.id.hex()}/trace",
                       "/v1/records/{id}/trace", 200)
    assert trace["edges"] == [[settle.id.hex(), pay.id.hex()]]
    assert [b["record_id"] for b in trace["bundles"]] == [settle.id.hex(), pay.id.hex()]
    for b in trace["bundles"]:
        verify_bundle(b, node.genesis.raw)
    parent_trace = await call(client, "GET", f"/v1/records/{pay.id.hex()}/trace?depth=0",
                              "/v1/records/{id}/trace", 200)
    assert sorted(parent_trace["children"]) == sorted([settle.id.hex(), refund.id.hex()])

    block = await call(client, "GET", "/v1/blocks/1", "/v1/blocks/{height}", 200)
    assert block["records"] == [pay.id.hex(), settle.id.hex()]
    assert block["certificate"]["block"] == block["hash"]
    latest = await call(client, "GET", "/v1/blocks/latest?envelopes=1", "/v1/blocks/latest", 200)
    assert latest["height"] == 2 and latest["envelopes"] == [b64(refund)]
    cons = await call(client, "GET", "/v1/consistency?from=2&to=3", "/v1/consistency", 200)
    assert cons["from"] == 2 and cons["to"] == 3 and cons["path"]
    status = await call(client, "GET", "/v1/status", "/v1/status", 200)
    assert status["height"] == 2 and status["log_size"] == 3 and status["mempool"] == 0
    await call(client, "GET", "/v1/evidence", "/v1/evidence", 200)
    await call(client, "GET", "/health", "/health", 200)
    metrics = await client.get("/metrics")
    text = await metrics.text()
    assert "ledger_records_admitted_total" in text and "ledger_http_request_seconds" in text
    spec = await call(client, "GET", "/openapi.json", "/openapi.json", 200)
    assert set(spec["paths"]) >= {"/v1/records", "/v1/records/{id}/trace", "/v1/blocks/{height}"}


async def test_msgpack_submission(client: TestClient[Any, Any], node: StubNode) -> None:
    envs = [make_envelope(node.submitter, "test", n) for n in range(10)]
    body = msgpack.packb([e.envelope_bytes for e in envs], use_bin_type=True)
    doc = await call(client, "POST", "/v1/records", "/v1/records", 202, data=body,
                     headers={"Content-Type": "application/msgpack"})
    assert [r["id"] for r in doc["results"]] == [e.id.hex() for e in envs]
    assert len(node.mempool) == 10


def _tampered(env: Envelope) -> bytes:
    sig = bytearray(env.sig)
    sig[0] ^= 1
    return canonical({"record": env.record.record_bytes, "sig": bytes(sig)})


def _record_envelope(key: SigningKey, chain: str, nonce: int) -> Envelope:
    record = make_record(chain=chain, submitter=key.public_key, nonce=nonce, ts=FIXED_TS,
                         kind="payment", origin={"system": "t"}, body={"amount": 1})
    return sign_record(record, key)


async def test_every_envelope_error_code(client: TestClient[Any, Any], node: StubNode) -> None:
    good = make_envelope(node.submitter, "test", 7)
    await submit(client, [good])
    stranger = make_keys(1, 3_000_000)[0]
    non_canonical = b"\x82\xa3sig" + msgpack.packb(good.sig) + b"\xa6record" + \
        msgpack.packb(good.record.record_bytes)
    big = canonical({"record": b"\x00" * 9000, "sig": b"\x00" * 64})  # over 8 KiB
    cases: list[tuple[bytes | Envelope | str, str]] = [
        (b"\xc1", "bad_encoding"),
        (non_canonical, "non_canonical"),
        (_tampered(make_envelope(node.submitter, "test", 9)), "bad_signature"),
        (_record_envelope(stranger, "test", 1), "unknown_submitter"),
        (_record_envelope(node.reader, "test", 1), "forbidden_role"),
        (make_envelope(node.submitter, "other", 10), "wrong_chain"),
        (make_envelope(node.submitter, "test", 7, body={"amount": 5}), "nonce_reused"),
        (make_envelope(node.submitter, "test", 11, parents=[b"\x11" * 32]), "unknown_parent"),
        (big, "too_large"),
    ]
    doc = await call(client, "POST", "/v1/records", "/v1/records", 202,
                     json={"envelopes": [b64(e) if not isinstance(e, str) else e
                                         for e, _ in cases] + ["not base64!"]})
    codes = [r.get("error") for r in doc["results"]]
    assert codes == [code for _, code in cases] + ["bad_encoding"]
    assert len(node.mempool) == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'ledger_inputs_rejected_total{code="bad_signature"} 1.0' in metrics


async def test_request_level_errors(client: TestClient[Any, Any], node: StubNode) -> None:
    rec = "/v1/records"
    env = make_envelope(node.submitter, "test", 1)
    cases: list[tuple[str, str, str, int, str, dict[str, Any]]] = [
        ("POST", rec, rec, 400, "bad_request", {"json": {"envelope": []}}),
        ("POST", rec, rec, 400, "bad_request", {"json": {"envelopes": []}}),
        ("POST", rec, rec, 400, "bad_request", {"json": {"envelopes": [1]}}),
        ("POST", rec, rec, 400, "bad_encoding", {"data": b"{nope",
                                                 "headers": {"Content-Type": "application/json"}}),
        ("POST", rec, rec, 400, "bad_encoding", {"data": b"\xc1",
                                                 "headers": {"Content-Type": "application/msgpack"}}),
        ("POST", rec, rec, 400, "bad_request", {"data": msgpack.packb({"a": 1}),
                                                "headers": {"Content-Type": "application/msgpack"}}),
        ("POST", rec, rec, 400, "too_many", {"json": {"envelopes": [b64(env)] * (MAX_ENVELOPES + 1)}}),
        ("POST", rec, rec, 400, "too_many", {
            "data": msgpack.packb([env.envelope_bytes] * (MAX_ENVELOPES + 1)),
            "headers": {"Content-Type": "application/msgpack"}}),
        ("POST", rec, rec, 413, "too_large", {"data": b"x" * (MAX_BODY + 1),
                                              "headers": {"Content-Type": "application/json"}}),
        ("POST", rec, rec, 415, "unsupported_media_type", {"data": b"hi",
                                                           "headers": {"Content-Type": "text/plain"}}),
        ("GET", "/v1/records/XYZ", "/v1/records/{id}", 400, "bad_request", {}),
        ("GET", "/v1/records/" + "ab" * 32, "/v1/records/{id}", 404, "not_found", {}),
        ("GET", "/v1/records/" + "ab" * 32 + "/proof", "/v1/records/{id}/proof", 404, "not_found", {}),
        ("GET", "/v1/records/" + "ab" * 32 + "/trace?depth=-1", "/v1/records/{id}/trace", 404,
         "not_found", {}),
        ("GET", "/v1/blocks/1", "/v1/blocks/{height}", 404, "not_found", {}),
        ("GET", "/v1/blocks/0", "/v1/blocks/{height}", 404, "not_found", {}),
        ("GET", "/v1/blocks/abc", "/v1/blocks/{height}", 400, "bad_request", {}),
        ("GET", "/v1/blocks/latest", "/v1/blocks/latest", 404, "not_found", {}),
        ("GET", "/v1/consistency", "/v1/consistency", 400, "bad_request", {}),
        ("GET", "/v1/consistency?from=1&to=2", "/v1/consistency", 404, "not_found", {}),
    ]
    for method, url, template, status, code, kwargs in cases:
        doc = await call(client, method, url, template, status, **kwargs)
        assert doc["error"] == code, (url, doc)
    resp = await client.get("/v1/peer")  # validators only; not in the OpenAPI paths
    assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    resp = await client.get("/no/such/route")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await client.delete("/v1/status")
    assert resp.status == 405 and (await resp.json())["error"] == "bad_request"
    assert "GET" in resp.headers["Allow"]
    # Bad query values on a committed record.
    await submit(client, [env])
    node.commit()
    for url in (f"/v1/records/{env.id.hex()}/proof?height=x",
                f"/v1/records/{env.id.hex()}/proof?height=5",
                f"/v1/records/{env.id.hex()}/trace?depth=65",
                "/v1/blocks/1?envelopes=maybe",
                "/v1/consistency?from=2&to=1",
                "/v1/consistency?from=0&to=1",
                "/v1/sync/blocks?from=18446744073709551616"):
        resp = await client.get(url)
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request", url


async def _long_poll(client: TestClient[Any, Any], node: StubNode, pay: Envelope,
                     url: str) -> asyncio.Task[Any]:
    """Submit ``pay`` and GET ``url`` (a long poll on it) until the node holds the request."""
    await submit(client, [pay])
    waiting = asyncio.create_task(call(client, "GET", url, "/v1/records/{id}", 200))
    for _ in range(1000):
        if node.mempool.waiters:
            break
        await asyncio.sleep(0)
    assert len(node.mempool.waiters) == 1 and not waiting.done()
    return waiting


async def test_record_long_poll_answers_when_the_record_commits(
        client: TestClient[Any, Any], node: StubNode) -> None:
    """GET /v1/records/{id}?wait_ms=N (PROTOCOL §6): held while the record is
    pending here, answered by the commit, not by a timer."""
    pay = make_envelope(node.submitter, "test", 1)
    url = f"/v1/records/{pay.id.hex()}?wait_ms=10000"
    waiting = await _long_poll(client, node, pay, url)
    node.commit()
    rec = await asyncio.wait_for(waiting, 10)
    assert rec["status"] == "committed" and rec["height"] == 1
    assert len(node.mempool.waiters) == 0
    # committed, or unknown: answered at once; still pending after wait_ms: pending
    assert (await call(client, "GET", url, "/v1/records/{id}", 200))["status"] == "committed"
    await call(client, "GET", f"/v1/records/{'ab' * 32}?wait_ms=10000", "/v1/records/{id}", 404)
    other = make_envelope(node.submitter, "test", 2)
    await submit(client, [other])
    rec = await call(client, "GET", f"/v1/records/{other.id.hex()}?wait_ms=1",
                     "/v1/records/{id}", 200)
    assert rec["status"] == "pending" and len(node.mempool.waiters) == 0
    for bad in ("10001", "-1", "x"):
        resp = await client.get(f"/v1/records/{other.id.hex()}?wait_ms={bad}")
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request"


async def test_commit_waiters_are_bounded() -> None:
    waiters = CommitWaiters(limit=1)
    first = asyncio.create_task(waiters.wait(b"a", 10))
    await asyncio.sleep(0)
    assert len(waiters) == 1
    assert await waiters.wait(b"b", 10) is False  # over the limit: at once
    waiters.committed([b"b", b"a"])
    assert await first is True and len(waiters) == 0
    assert await waiters.wait(b"a", 0.001) is False  # timed out


async def test_rate_limited_and_unavailable(node: StubNode) -> None:
    node.mempool.max_size = 3
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app)) as client:
        envs = [make_envelope(node.submitter, "test", n) for n in range(5)]
        results = await submit(client, envs)
        assert [r.get("status", r.get("error")) for r in results] == \
            ["accepted"] * 3 + ["rate_limited"] * 2
        doc = await call(client, "POST", "/v1/records", "/v1/records", 429,
                         json={"envelopes": [b64(envs[4])]})
        assert doc["error"] == "rate_limited"
        node.commit()
        assert len(node.mempool) == 0
        node.unavailable = "catching up"
        doc = await call(client, "POST", "/v1/records", "/v1/records", 503,
                         json={"envelopes": [b64(envs[4])]})
        assert doc["error"] == "unavailable"


async def test_a_saturated_node_refuses_submissions_unread(
        node: StubNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pushback and unavailability are answered before the body is read (and
    the connection closed); any other route, a media type the route does not
    take, and a node with room read the body as before."""
    reads: list[str] = []
    real_read = web.BaseRequest.read

    async def counted(self: web.BaseRequest) -> bytes:
        if self._read_bytes is None:  # read from the connection, not the cached body
            reads.append(self.path)
        return await real_read(self)

    monkeypatch.setattr(web.BaseRequest, "read", counted)
    node.mempool.max_size = 1
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app)) as client:
        envs = [make_envelope(node.submitter, "test", n) for n in range(3)]
        assert [r["status"] for r in await submit(client, envs[:1])] == ["accepted"]
        assert reads == ["/v1/records"]
        body = msgpack.packb([e.envelope_bytes for e in envs[1:]] * 200, use_bin_type=True)
        for headers, status, code in (
                ({"Content-Type": "application/msgpack"}, 429, "rate_limited"),
                ({"Content-Type": "application/json"}, 429, "rate_limited")):
            resp = await client.post("/v1/records", data=body, headers=headers)
            doc = await resp.json()
            assert (resp.status, doc["error"]) == (status, code)
            assert resp.headers["Retry-After"] == "1"
            assert resp.headers.get("Connection", "").lower() == "close"
        assert reads == ["/v1/records"]
        resp = await client.post("/v1/records", data=b"x", headers={"Content-Type": "text/plain"})
        assert resp.status == 415 and reads[-1] == "/v1/records" and len(reads) == 2
        node.commit()
        node.unavailable = "catching up"
        resp = await client.post("/v1/records", data=body,
                                 headers={"Content-Type": "application/msgpack"})
        assert resp.status == 503 and (await resp.json())["error"] == "unavailable"
        assert len(reads) == 2
        node.unavailable = None
        results = await submit(client, envs[1:2])
        assert [r["status"] for r in results] == ["accepted"] and len(reads) == 3


async def test_peers_records_get_twice_the_room_of_clients(node: StubNode) -> None:
    """A full mempool pushes clients back at max_size but still takes a
    peer's records up to twice that: refusing them would only mean fetching
    them when the peer proposes them."""
    node.mempool.max_size = 2
    envs = [make_envelope(node.submitter, "test", n) for n in range(6)]
    api = await node.mempool.admit([e.envelope_bytes for e in envs[:3]], "api")
    assert [r.status or r.error.code for r in api] == ["accepted", "accepted", "rate_limited"]
    gossip = await node.mempool.admit([e.envelope_bytes for e in envs[2:]], "gossip")
    assert [r.status or r.error.code for r in gossip] == \
        ["accepted", "accepted", "rate_limited", "rate_limited"]
    assert len(node.mempool) == 4


async def test_refusals_leave_no_reference_cycles(node: StubNode) -> None:
    """Refused records come back as data; their exceptions keep no traceback,
    whose frame would hold the whole batch in a cycle that only a (rare, see
    node/gctune.py) full collection frees.  Every refusal path: undecodable,
    wrong chain, bad signature, nonce reused, mempool full."""
    # Room for six records new to the node as the request is read: three
    # admitted; the reused nonce, the bad signature (its record is not
    # pending yet when the request is read) and the wrong chain checked and
    # refused; the last two past the room.
    node.mempool.max_size = 6
    envs = [make_envelope(node.submitter, "test", n) for n in range(5)]
    reused = _record_envelope(node.submitter, "test", 2)  # nonce 2 names envs[2]
    items = ([e.envelope_bytes for e in envs[:3]] + [
             reused.envelope_bytes, _tampered(envs[0]), b"\xc1 not msgpack",
             make_envelope(node.submitter, "other-chain", 9).envelope_bytes] +
             [e.envelope_bytes for e in envs[3:]])
    gc.collect()
    gc.disable()
    try:
        results = await node.mempool.admit(items, "api")
        codes = [r.status or r.error.code for r in results]  # type: ignore[union-attr]
        del results
        garbage = gc.collect()
    finally:
        gc.enable()
    assert codes == ["accepted"] * 3 + [
        "nonce_reused", "bad_signature", "bad_encoding", "wrong_chain"] + [
        "rate_limited"] * 2, codes
    assert garbage == 0


async def test_every_admission_wakes_proposal_assembly_while_it_waits(node: StubNode) -> None:
    """A parked proposal can wait for a record a client just sent this node,
    not only for gossip: any admit() that feeds the leaf sink wakes the
    assembler (else it slept until the next gossip batch or its timer)."""
    wakes: list[int] = []
    leaves = AdmittedLeaves(lambda: wakes.append(len(leaves)))
    node.mempool = Mempool(node.genesis, node.chain, node.metrics, max_size=1000,
                           clock=lambda: FIXED_TS, leaves=leaves)
    envs = [make_envelope(node.submitter, "test", n) for n in range(3)]
    await node.mempool.admit([envs[0].envelope_bytes], "api")
    assert wakes == []  # nothing parked: no collecting, no wake
    leaves.start()
    await node.mempool.admit([envs[1].envelope_bytes], "api")
    await node.mempool.admit([envs[2].envelope_bytes], "gossip")
    assert wakes == [1, 2]
    assert leaves.take() == [envs[1].leaf_hash, envs[2].leaf_hash]
    await node.mempool.admit([envs[2].envelope_bytes], "api")  # a duplicate adds nothing
    assert wakes == [1, 2]


@pytest.mark.parametrize("committed", ["itself", "rival", "nothing"])
async def test_admission_rereads_nonces_when_a_block_commits_during_verification(
        node: StubNode, committed: str) -> None:
    """Admission reads the chain's nonce index before verifying signatures
    and reuses that answer afterwards only if no block committed meanwhile:
    a block that commits the record itself (it came in by catch-up) or a
    rival with its nonce must be seen, and a quiet chain costs no second read."""
    env = make_envelope(node.submitter, "test", 5)
    rival = make_envelope(node.submitter, "test", 5, body={"rival": 1})
    reads: list[int] = []
    chain_read = node.chain.id_for_nonce

    def counted_read(submitter: bytes, nonce: int) -> bytes | None:
        reads.append(nonce)
        return chain_read(submitter, nonce)

    node.chain.id_for_nonce = counted_read  # type: ignore[method-assign]
    verify = node.mempool._verify_many

    def verify_while_a_block_commits(envs: list[Envelope]) -> list[Any]:
        block = {"itself": [env], "rival": [rival], "nothing": []}[committed]
        if block:
            header = node.chain.next_header(block, FIXED_TS, 0)
            node.chain.commit_block(header, block,
                                    certify(header, node.validator_keys, node.genesis))
        return verify(envs)

    node.mempool._verify_many = verify_while_a_block_commits  # type: ignore[method-assign]
    [got] = await node.mempool.admit([env.envelope_bytes], "api")
    if committed == "itself":
        assert got.status == "committed" and reads == [5, 5]
    elif committed == "rival":
        assert got.error is not None and got.error.code == "nonce_reused" and reads == [5, 5]
    else:
        assert got.status == "accepted" and reads == [5]
    assert (env.id in node.mempool) == (committed == "nothing")


def test_clients_are_pushed_back_while_peers_records_wait(node: StubNode) -> None:
    backlog = PeerBacklog()
    node.mempool = Mempool(node.genesis, node.chain, node.metrics, max_size=1000,
                           clock=lambda: FIXED_TS, max_peer_backlog=100, peer_backlog=backlog)
    assert node.mempool.pushback() is None
    backlog.queued(101)
    assert "from peers" in (node.mempool.pushback() or "")
    backlog.admitted(101)
    assert node.mempool.pushback() is None
    node.mempool.max_size = 0
    assert "holds 0 records" in (node.mempool.pushback() or "")


async def test_gossip_orphans_wait_for_their_parent(node: StubNode) -> None:
    parent = make_envelope(node.submitter, "test", 1)
    child = make_envelope(node.submitter, "test", 2, parents=[parent.id])
    got = await node.mempool.admit([child.envelope_bytes], "gossip")
    assert got[0].status == "accepted" and child.id not in node.mempool
    await node.mempool.admit([parent.envelope_bytes], "gossip")
    assert [e.id for e in node.mempool.select(10)] == [parent.id, child.id]
    assert node.mempool.take_gossip(10) == []  # gossip is not re-gossiped
    assert not node.mempool.gossip_ready.is_set()


async def test_gossip_ready_while_clients_records_wait_to_be_sent(node: StubNode) -> None:
    """node.app_peers sends a client's records to the peers when this event
    is set (at once after a quiet interval), not at the next tick."""
    envs = [make_envelope(node.submitter, "test", n) for n in range(3)]
    await node.mempool.admit([envs[0].envelope_bytes], "gossip")
    assert not node.mempool.gossip_ready.is_set()
    await node.mempool.admit([e.envelope_bytes for e in envs[1:]], "api")
    assert node.mempool.gossip_ready.is_set()
    assert node.mempool.take_gossip(1) == [envs[1].envelope_bytes]
    assert node.mempool.gossip_ready.is_set()  # one left
    assert node.mempool.take_gossip(10) == [envs[2].envelope_bytes]
    assert not node.mempool.gossip_ready.is_set()


class GossipHost:
    """The part of a Node that gossips (node.app_peers.PeerRouting), over a
    real mempool and a transport that keeps what it broadcasts."""

    _flush_gossip = PeerRouting._flush_gossip
    _gossip_out = PeerRouting._gossip_out

    def __init__(self, mempool: Mempool, interval_ms: int) -> None:
        self.mempool = mempool
        self.frames: list[bytes] = []
        self.transport = SimpleNamespace(broadcast=self.frames.append)
        self.config = SimpleNamespace(settings=SimpleNamespace(
            gossip=SimpleNamespace(batch=500, interval_ms=interval_ms)))


async def test_clients_records_are_gossiped_at_once_then_not_before_the_interval(
        node: StubNode) -> None:
    """After a quiet interval a client's records leave at once (the next
    proposer may be a peer); records admitted within gossip.interval_ms of
    a frame wait for it to end, so that frames stay large under load."""
    host = GossipHost(node.mempool, interval_ms=60_000)
    task = asyncio.create_task(host._gossip_out())  # type: ignore[arg-type]
    try:
        envs = [make_envelope(node.submitter, "test", n) for n in range(3)]
        await node.mempool.admit([e.envelope_bytes for e in envs[:2]], "api")
        for _ in range(100):
            if host.frames:
                break
            await asyncio.sleep(0)
        assert len(host.frames) == 1
        frame = peer_messages.decode(host.frames[0])
        assert isinstance(frame, Records)
        assert list(frame.envelopes) == [e.envelope_bytes for e in envs[:2]]
        await node.mempool.admit([envs[2].envelope_bytes], "api")
        for _ in range(100):
            await asyncio.sleep(0)
        assert len(host.frames) == 1 and node.mempool.gossip_ready.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_select_keeps_parents_first_and_commit_prunes(node: StubNode) -> None:
    a = make_envelope(node.submitter, "test", 1)
    b = make_envelope(node.submitter, "test", 2, parents=[a.id])
    c = make_envelope(node.submitter, "test", 3, parents=[b.id])
    await node.mempool.admit([a.envelope_bytes, b.envelope_bytes, c.envelope_bytes])
    assert [e.id for e in node.mempool.select(2)] == [a.id, b.id]
    # A conflicting record (same nonce as b) commits elsewhere: b and c can never commit.
    rival = make_envelope(node.submitter, "test", 2, body={"rival": 1})
    header = node.chain.next_header([a, rival], FIXED_TS, 1)
    node.chain.commit_block(header, [a, rival], certify(header, node.validator_keys, node.genesis))
    node.mempool.committed([a, rival])
    assert len(node.mempool) == 0
    assert c.id not in node.mempool and b.id not in node.mempool


async def test_equivocation_evidence_is_stored_and_served(client: TestClient[Any, Any],
                                                          node: StubNode) -> None:
    from consensus import Evidence, sign_vote, verify_evidence
    from ledger.blocks import Vote

    key = node.validator_keys[2]
    a = sign_vote(Vote("prevote", "test", 5, 1, b"\xaa" * 32), 2, key)
    b = sign_vote(Vote("prevote", "test", 5, 1, b"\xbb" * 32), 2, key)
    verify_evidence(Evidence(a, b), node.genesis)
    store_evidence(node.chain, Evidence(a, b))
    store_evidence(node.chain, Evidence(a, b))  # idempotent
    doc = await call(client, "GET", "/v1/evidence", "/v1/evidence", 200)
    assert len(doc["evidence"]) == 1
    ev = doc["evidence"][0]
    assert (ev["validator"], ev["height"], ev["round"], ev["type"]) == (2, 5, 1, "prevote")
    assert [v["block"] for v in ev["votes"]] == ["aa" * 32, "bb" * 32]


async def test_sync_serves_blocks_that_verify_on_a_fresh_store(
        client: TestClient[Any, Any], node: StubNode) -> None:
    from ledger.genesis import Validator
    from node.sync import BlockSync

    for n in range(3):
        await submit(client, [make_envelope(node.submitter, "test", 10 * n + i) for i in range(5)])
        node.commit()
    peer = Validator(index=1, name="peer", pubkey=b"\x00" * 32,
                     address=f"127.0.0.1:{client.port}")
    fresh = ChainStore(MemoryStore(), node.genesis)
    sync = BlockSync(fresh, [peer], Metrics(), batch_blocks=2)
    while fresh.height < node.chain.height:
        blocks = await sync.fetch(fresh.height + 1)
        assert 1 <= len(blocks) <= 2
        for header, envelopes, cert in blocks:
            fresh.commit_block(header, envelopes, cert)  # checks header, roots, certificate
    assert sync.peer_heights == {1: 3}
    assert fresh.tip() == node.chain.tip()


async def test_sync_skips_peers_whose_answer_is_unusable(
        client: TestClient[Any, Any], node: StubNode) -> None:
    """A peer that errs or sends garbage is skipped (logged), and the next
    one that has the blocks serves them; a peer that is down is skipped too."""
    from ledger.genesis import Validator
    from harness.localnet import free_base_port
    from node.sync import BlockSync

    await submit(client, [make_envelope(node.submitter, "test", i) for i in range(3)])
    node.commit()

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b"\xc1not msgpack", content_type="application/msgpack")

    peers, servers = [], []
    for handler in (broken, garbage):
        app = web.Application()
        app.router.add_get("/v1/sync/blocks", handler)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        peers.append(Validator(index=len(peers) + 1, name=handler.__name__,
                               pubkey=b"\x00" * 32, address=f"127.0.0.1:{server.port}"))
    down = free_base_port(1)
    peers.append(Validator(index=3, name="down", pubkey=b"\x00" * 32,
                           address=f"127.0.0.1:{down}"))
    good = Validator(index=4, name="good", pubkey=b"\x00" * 32,
                     address=f"127.0.0.1:{client.port}")
    fresh = ChainStore(MemoryStore(), node.genesis)
    sync = BlockSync(fresh, [*peers, good], Metrics())
    assert await sync.fetch(1, limit=1) != []
    sync = BlockSync(fresh, peers, Metrics())
    assert await sync.fetch(1) == []
    for server in servers:
        await server.close()


async def test_sync_refuses_trickling_and_oversized_answers(
        client: TestClient[Any, Any], node: StubNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer cannot hold a fetch past its deadline by trickling bytes, nor
    fill memory with an endless answer: either way it is skipped."""
    import asyncio

    from ledger.genesis import Validator
    from node import sync as sync_module
    from node.sync import BlockSync

    await submit(client, [make_envelope(node.submitter, "test", i) for i in range(3)])
    node.commit()

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"\x00")
            await asyncio.sleep(0.05)
        return resp

    app = web.Application()
    app.router.add_get("/v1/sync/blocks", trickle)
    server = TestServer(app)
    await server.start_server()
    slow = Validator(index=1, name="slow", pubkey=b"\x00" * 32, address=f"127.0.0.1:{server.port}")
    fresh = ChainStore(MemoryStore(), node.genesis)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await BlockSync(fresh, [slow], Metrics(), request_timeout_s=0.5).fetch(1) == []
    assert loop.time() - started < 2.0  # the deadline, not the 5 s the peer would take
    await server.close()

    good = Validator(index=2, name="good", pubkey=b"\x00" * 32, address=f"127.0.0.1:{client.port}")
    monkeypatch.setattr(sync_module, "MAX_ANSWER_BYTES", 100)
    assert await BlockSync(fresh, [good], Metrics()).fetch(1) == []
    monkeypatch.undo()
    assert await BlockSync(fresh, [good], Metrics()).fetch(1) != []


async def test_released_long_polls_answer_with_what_the_node_holds(
        client: TestClient[Any, Any], node: StubNode) -> None:
    """A stopping node releases its long polls (node/app.py ``Node.stop``,
    before the HTTP server closes): a waiting request is answered at once
    with the record as the node holds it, and later ones do not wait."""
    pay = make_envelope(node.submitter, "test", 1)
    url = f"/v1/records/{pay.id.hex()}?wait_ms=10000"
    waiting = await _long_poll(client, node, pay, url)
    node.mempool.waiters.release()
    rec = await asyncio.wait_for(waiting, 10)
    assert rec["status"] == "pending" and len(node.mempool.waiters) == 0
    assert await node.mempool.waiters.wait(pay.id, 10) is False  # released: at once
    assert (await call(client, "GET", url, "/v1/records/{id}", 200))["status"] == "pending"
