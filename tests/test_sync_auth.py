"""Block sync is served to genesis validators only (node/syncauth.py): an
unsigned, stale, forged or misaddressed request gets 401/403 in the JSON
error format, and a validator's signed fetches catch a fresh store up."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from helpers import make_envelope
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode, submit

from ledger.chain import ChainStore
from ledger.storage import MemoryStore
from node.api import SERVER_OPTIONS, build_app
from node.driver import now_ms
from node.metrics import Metrics
from node.sync import BlockSync, serve_blocks
from node.syncauth import check_request, sign_request

WINDOW_MS = 60_000


class ValidatorNode(StubNode):
    """The stub node as validator 0, checking sync requests as the node does."""

    async def sync_blocks(self, request: web.Request) -> web.StreamResponse:
        check_request(self.genesis, self.validator_keys[0].public_key, request.headers,
                      request.raw_path, now_ms(), WINDOW_MS)
        return await serve_blocks(self.chain, request, max_blocks=2, max_bytes=1 << 20,
                                  chunk_bytes=4096)


@pytest.fixture
async def served() -> AsyncIterator[tuple[ValidatorNode, TestClient[Any, Any]]]:
    node = ValidatorNode()
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app, **SERVER_OPTIONS)) as client:
        for n in range(3):
            await submit(client, [make_envelope(node.submitter, "test", 10 * n + i)
                                  for i in range(5)])
            node.commit()
        yield node, client


async def test_unsigned_and_badly_signed_sync_requests_are_refused(
        served: tuple[ValidatorNode, TestClient[Any, Any]]) -> None:
    node, client = served
    target = "/v1/sync/blocks?from=1"
    server = node.validator_keys[0].public_key
    good = sign_request(node.genesis, node.validator_keys[1], 1, server, target, now_ms())
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "unauthorized"),  # anyone
        (dict(good, **{"X-Ledger-Validator": "2"}), 401, "unauthorized"),  # another's index
        (dict(good, **{"X-Ledger-Signature": "00" * 64}), 401, "unauthorized"),
        (dict(good, **{"X-Ledger-Signature": "zz"}), 401, "unauthorized"),
        (dict(good, **{"X-Ledger-Validator": "x"}), 401, "unauthorized"),
        (sign_request(node.genesis, node.validator_keys[1], 1, server, target,
                      now_ms() - 2 * WINDOW_MS), 401, "unauthorized"),  # stale
        (sign_request(node.genesis, node.validator_keys[1], 1, b"\x01" * 32, target,
                      now_ms()), 401, "unauthorized"),  # addressed to another node
        (sign_request(node.genesis, node.validator_keys[1], 1, server,
                      "/v1/sync/blocks?from=2", now_ms()), 401, "unauthorized"),  # other query
        (sign_request(node.genesis, node.submitter, 1, server, target, now_ms()), 401,
         "unauthorized"),  # a submitter's key
        (sign_request(node.genesis, node.validator_keys[1], 9, server, target, now_ms()), 403,
         "forbidden"),  # not a genesis validator
        (sign_request(node.genesis, node.validator_keys[0], 0, server, target, now_ms()), 403,
         "forbidden"),  # itself
    ]
    for headers, status, code in cases:
        resp = await client.get(target, headers=headers)
        body = await resp.read()
        assert resp.status == status, (headers, body[:200])
        assert resp.content_type == "application/json" and json.loads(body)["error"] == code
        if status == 401:
            assert resp.headers["WWW-Authenticate"] == "Ledger-Validator"
    resp = await client.get(target, headers=good)
    assert resp.status == 200 and resp.content_type == "application/msgpack"


async def test_signed_fetches_catch_a_fresh_store_up(
        served: tuple[ValidatorNode, TestClient[Any, Any]]) -> None:
    from ledger.genesis import Validator

    node, client = served
    me = node.validator_keys[0].public_key
    peer = Validator(index=0, name="v0", pubkey=me, address=f"127.0.0.1:{client.port}")
    fresh = ChainStore(MemoryStore(), node.genesis)
    key = node.validator_keys[2]
    sync = BlockSync(fresh, [peer], Metrics(), batch_blocks=2,
                     sign=lambda p, target: sign_request(node.genesis, key, 2, p.pubkey, target,
                                                         now_ms()))
    while fresh.height < node.chain.height:
        blocks = await sync.fetch(fresh.height + 1)
        assert 1 <= len(blocks) <= 2
        for header, envelopes, cert in blocks:
            fresh.commit_block(header, envelopes, cert)
    assert fresh.tip() == node.chain.tip()
    unsigned = BlockSync(ChainStore(MemoryStore(), node.genesis), [peer], Metrics())
    assert await unsigned.fetch(1) == []  # refused (401): the peer is skipped
