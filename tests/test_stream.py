"""``GET /v1/stream`` (PROTOCOL §12.1) and ``ledger-monitor follow``'s walk
(monitor/follow.py): events of certified blocks, resumable from a height,
bounded (streams over the limit refused, slow readers cut, both counted);
the follower verifies every block before scoring it and reconnects from the
next height when the stream breaks."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from helpers import certify, make_envelope
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode

from ledger.blocks import certificate_from_json
from monitor.builtin import BuiltinDetector
from monitor.follow import (
    Alert,
    Follower,
    StreamFormatError,
    StreamVerificationError,
    follow,
    parse_events,
)
from node.api import build_app
from node.settings import StreamSettings
from node.stream import BlockStream


class StreamNode(StubNode):
    def __init__(self, settings: StreamSettings | None = None) -> None:
        super().__init__()
        self.stream = BlockStream(settings or StreamSettings(keepalive_ms=200), self.metrics)
        self.nonce = 0

    async def stream_blocks(self, request: web.Request) -> web.StreamResponse:
        return await self.stream.serve(self.chain, request)

    def add_block(self, n: int = 3, **kw: Any) -> None:
        envs = []
        for _ in range(n):
            self.nonce += 1
            envs.append(make_envelope(self.submitter, "test", self.nonce,
                                      origin={"system": "shop", "account": "a1",
                                              "country": "DE"}, **kw))
        self.clock += 1
        header = self.chain.next_header(envs, self.clock, 0)
        self.chain.commit_block(header, envs, certify(header, self.validator_keys, self.genesis))
        self.stream.committed(self.chain.height)


async def _client(node: StreamNode) -> TestClient[Any, Any]:
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    return TestClient(TestServer(app))


@pytest.fixture
async def node_client() -> AsyncIterator[tuple[StreamNode, TestClient[Any, Any]]]:
    node = StreamNode()
    async with await _client(node) as c:
        yield node, c


async def _events(resp: Any, count: int) -> list[tuple[str, str, bytes]]:
    buffer, out = bytearray(), []
    try:
        async for chunk in resp.content.iter_any():
            buffer += chunk
            out.extend(e for e in parse_events(buffer) if e[0] == "block")
            if len(out) >= count:
                return out
    except aiohttp.ClientPayloadError:
        pass  # the node cut the answer
    return out


async def test_stream_from_a_height_then_live(node_client: Any) -> None:
    node, client = node_client
    for _ in range(3):
        node.add_block()
    resp = await client.get("/v1/stream?from=2")
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    got = await _events(resp, 2)
    assert [(e[0], e[1]) for e in got] == [("block", "2"), ("block", "3")]
    doc = orjson.loads(got[0][2])
    assert doc["height"] == 2 and doc["tip"] == 3 and len(doc["envelopes"]) == 3
    header = node.chain.header(2)
    assert header is not None and base64.b64decode(doc["header"]) == header.header_bytes
    assert doc["hash"] == header.hash.hex()
    assert certificate_from_json(doc["certificate"]).block == header.hash
    assert node.metrics.stream_clients._value.get() == 1
    # At the tip the stream waits for the next commit.
    waiting = asyncio.ensure_future(_events(resp, 1))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    node.add_block()
    (live,) = await asyncio.wait_for(waiting, 5)
    assert live[1] == "4"
    resp.close()


async def test_last_event_id_resumes_and_default_is_the_tip(node_client: Any) -> None:
    node, client = node_client
    node.add_block()
    node.add_block()
    resp = await client.get("/v1/stream", headers={"Last-Event-ID": "1"})
    assert [e[1] for e in await _events(resp, 1)] == ["2"]
    resp.close()
    live = await client.get("/v1/stream")
    pending = asyncio.ensure_future(_events(live, 1))
    await asyncio.sleep(0.05)
    node.add_block()
    assert [e[1] for e in await asyncio.wait_for(pending, 5)] == ["3"]
    live.close()


@pytest.mark.parametrize("query, header", [("from=0", None), ("from=x", None),
                                           ("", "abc"), ("from=-1", None)])
async def test_bad_start_is_400(node_client: Any, query: str, header: str | None) -> None:
    _, client = node_client
    resp = await client.get(f"/v1/stream?{query}",
                            headers={"Last-Event-ID": header} if header else {})
    assert resp.status == 400 and (await resp.json())["error"] == "bad_request"


async def test_streams_over_the_limit_are_refused_and_counted() -> None:
    node = StreamNode(StreamSettings(max_clients=1, keepalive_ms=200))
    async with await _client(node) as client:
        first = await client.get("/v1/stream?from=1")
        assert first.status == 200
        second = await client.get("/v1/stream?from=1")
        assert second.status == 429 and (await second.json())["error"] == "rate_limited"
        assert node.metrics.stream_cut.labels(reason="limit")._value.get() == 1
        first.close()


async def test_a_slow_reader_is_cut_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    node = StreamNode(StreamSettings(write_timeout_ms=100, keepalive_ms=200))
    for _ in range(3):
        node.add_block()
    real = web.StreamResponse.write
    calls = 0

    async def stalls(self: web.StreamResponse, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls > 2:  # the reader takes the preamble and one block, then nothing
            await asyncio.Event().wait()
        await real(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", stalls)
    async with await _client(node) as client:
        resp = await client.get("/v1/stream?from=1")
        got = await _events(resp, 3)
        assert [e[1] for e in got] == ["1"]  # the answer ended after block 1
        for _ in range(100):
            if node.stream.clients == 0:
                break
            await asyncio.sleep(0.01)
        assert node.metrics.stream_cut.labels(reason="slow")._value.get() == 1
        assert node.stream.clients == 0


def _block_data(node: StreamNode, height: int) -> bytes:
    from node.stream import block_event
    (event,) = list(parse_events(bytearray(block_event(node.chain, height))))
    return event[2]


def test_follower_verifies_scores_and_skips_walked_blocks() -> None:
    node = StreamNode()
    for _ in range(4):
        node.add_block()
    follower = Follower(node.genesis, BuiltinDetector(), flag=0.0)
    alerts: list[Alert] = []
    for h in range(1, 5):
        alerts += follower.on_block(_block_data(node, h))
    assert follower.height == 4 and follower.records == 12 and follower.scored == 12
    assert len(alerts) == 12 and alerts[0].height == 1  # flag 0: everything is flagged
    assert follower.on_block(_block_data(node, 2)) == []  # an overlap after a reconnect
    assert follower.metrics.lag_blocks._value.get() == 0


@pytest.mark.parametrize("field", ["certificate", "envelope", "header"])
def test_follower_stops_at_a_block_that_fails_verification(field: str) -> None:
    node = StreamNode()
    node.add_block()
    node.add_block()
    follower = Follower(node.genesis, BuiltinDetector())
    follower.on_block(_block_data(node, 1))
    doc = orjson.loads(_block_data(node, 2))
    if field == "certificate":
        doc["certificate"]["signatures"] = doc["certificate"]["signatures"][:2]
    elif field == "envelope":
        doc["envelopes"] = doc["envelopes"][:2] + doc["envelopes"][:1]
    else:
        doc["header"], doc["certificate"] = orjson.loads(_block_data(node, 1))["header"], \
            orjson.loads(_block_data(node, 1))["certificate"]
    with pytest.raises(StreamVerificationError):
        follower.on_block(orjson.dumps(doc))
    assert follower.height == 1
    assert follower.metrics.verification_failures._value.get() == 1


@pytest.mark.parametrize("data", [b"{", b"[]", b'{"height": 1}',
                                  b'{"height": 1, "tip": 1, "header": "!", "certificate": {},'
                                  b' "envelopes": []}'])
def test_follower_names_malformed_events(data: bytes) -> None:
    follower = Follower(StreamNode().genesis, BuiltinDetector())
    with pytest.raises(StreamFormatError):
        follower.on_block(data)


def test_parse_events_keeps_a_partial_event() -> None:
    buffer = bytearray(b": hello\n\nid: 1\nevent: block\ndata: {}\n\nid: 2\nev")
    assert list(parse_events(buffer)) == [("block", "1", b"{}")]
    assert bytes(buffer) == b"id: 2\nev"


async def test_follow_catches_up_after_the_stream_breaks() -> None:
    """The stream is cut after every block (a slow monitor); the follower
    reconnects from the next height each time and ends at the tip."""
    node = StreamNode()
    for _ in range(5):
        node.add_block()
    real = BlockStream.serve
    served: list[int] = []

    async def one_block_then_cut(self: BlockStream, chain: Any, request: web.Request
                                 ) -> web.StreamResponse:
        served.append(int(request.query["from"]))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        from node.stream import block_event
        await resp.write(block_event(chain, int(request.query["from"])))
        if request.transport is not None:
            request.transport.abort()
        return resp

    BlockStream.serve = one_block_then_cut  # type: ignore[method-assign]
    try:
        async with await _client(node) as client:
            follower = Follower(node.genesis, BuiltinDetector())
            slept: list[float] = []

            async def sleep(s: float) -> None:
                slept.append(s)

            async def sink(alerts: list[Alert]) -> None:
                pass

            url = str(client.make_url("/")).rstrip("/")
            await asyncio.wait_for(follow(follower, url, sink, session=client.session,
                                          stop_at=5, sleep=sleep), 10)
    finally:
        BlockStream.serve = real  # type: ignore[method-assign]
    assert follower.height == 5 and served == [1, 2, 3, 4, 5]
    assert follower.metrics.reconnects._value.get() == 4
