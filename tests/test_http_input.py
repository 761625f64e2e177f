"""Hostile HTTP input against the API served as a node serves it (the API's
middleware, node/httpconn.py's guard and request handler, the node's aiohttp
options), on loopback: compressed bodies, malformed requests, oversized
bodies and clients that pipeline requests without reading the answers.

Each answer is read from a raw socket, so the test sees exactly what the node
sends and whether it closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import socket
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode

from node.api import SERVER_OPTIONS, build_app
from node.httpconn import GuardedTCPSite, HeadTimeout
from node.ratelimit import ClientLimits, KeyLimits

WRITE_TIMEOUT_S = 0.5


def concurrency_only(per_client: int) -> ClientLimits:
    """Requests in progress per address capped, no rate limits."""
    return ClientLimits(address=KeyLimits(0, 1, per_client), identity=KeyLimits(0, 1, per_client))
BIG_ANSWER = 4 * 1024 * 1024


@dataclass
class Served:
    port: int
    guard: HeadTimeout
    closed: Counter[str]
    refused: list[int]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    node = StubNode()
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000,
                    client_limits=concurrency_only(1000))

    async def big(request: web.Request) -> web.Response:  # a large answer, built whole
        return web.Response(body=b"x" * BIG_ANSWER)

    app.router.add_get("/big", big)
    closed: Counter[str] = Counter()
    refused: list[int] = []
    guard = HeadTimeout(10.0, lambda reason: closed.update([reason]),
                        write_timeout_s=WRITE_TIMEOUT_S)
    guard.install(app)
    options = dict(SERVER_OPTIONS, access_log=None)
    runner = web.AppRunner(app, shutdown_timeout=1.0, **options)
    await runner.setup()
    site = GuardedTCPSite(runner, "127.0.0.1", 0, guard=guard, handler_options=options,
                          on_refused=lambda: refused.append(1))
    await site.start()
    try:
        yield Served(site.port, guard, closed, refused)
    finally:
        await runner.cleanup()


async def exchange(port: int, data: bytes, *, then: bytes = b"",
                   keep_alive: bool = False) -> tuple[int, dict[str, str], bytes, bool]:
    """Send ``data``, read one answer; ``then`` is sent after the answer if the
    connection is still open.  Returns (status, headers, body, closed); with
    ``keep_alive`` the answer is not followed by waiting for the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        if keep_alive:
            return status, headers, body, False
        try:
            if then:
                writer.write(then)
                await writer.drain()
            closed = await asyncio.wait_for(reader.read(1), 10) == b""
        except ConnectionError:
            closed = True
        return status, headers, body, closed
    finally:
        writer.close()


def gzip_bomb(inflated: int) -> bytes:
    """A gzip member of ``inflated`` zero bytes (about a thousandth of it)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = [c.compress(chunk) for _ in range(inflated >> 20)]
    return b"".join(parts) + c.flush()


def post_head(length: int, encoding: str | None, ctype: str = "application/json") -> bytes:
    head = (f"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n")
    if encoding is not None:
        head += f"Content-Encoding: {encoding}\r\n"
    return (head + "\r\n").encode()


async def status_ok(port: int) -> bool:
    got = await exchange(port, b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                         keep_alive=True)
    return got[0] == 200


async def test_gzip_bomb_is_refused_unread_while_status_is_served(served: Served) -> None:
    bomb = gzip_bomb(256 << 20)  # 256 MiB of zeros in ~250 KB
    # Only the head and the first 16 KB of the body: the answer cannot wait for the rest.
    status, headers, body, closed = await exchange(
        served.port, post_head(len(bomb), "gzip") + bomb[:16384])
    doc = json.loads(body)
    assert (status, doc["error"]) == (415, "unsupported_media_type"), (status, body[:200])
    assert headers["accept-encoding"] == "identity"
    assert closed  # the rest of the body is never read
    # The whole bomb, while another client asks for the status.
    bombing = asyncio.create_task(exchange(served.port, post_head(len(bomb), "gzip") + bomb))
    assert await status_ok(served.port)
    status, _, body, closed = await bombing
    assert (status, json.loads(body)["error"], closed) == (415, "unsupported_media_type", True)
    assert await status_ok(served.port)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "x-gzip", "identity, gzip",
                                      "GZIP"])
async def test_malformed_compressed_bodies_get_a_json_415(served: Served, encoding: str) -> None:
    garbage = b"\x1f\x8b\x08\x00not really compressed" * 10
    status, headers, body, closed = await exchange(served.port,
                                                   post_head(len(garbage), encoding) + garbage)
    assert status == 415 and headers["content-type"].startswith("application/json"), body
    assert json.loads(body)["error"] == "unsupported_media_type"
    assert closed


async def test_a_transfer_coding_other_than_chunked_gets_a_json_415(served: Served) -> None:
    garbage = b"\x1f\x8b\x08\x00not really compressed"
    data = (b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (len(garbage), garbage))
    status, _, body, closed = await exchange(served.port, data)
    assert (status, json.loads(body)["error"], closed) == (415, "unsupported_media_type", True)


async def test_identity_encoding_is_accepted(served: Served) -> None:
    body = b'{"envelopes": []}'
    status, _, answer, _ = await exchange(served.port, post_head(len(body), "identity") + body,
                                          keep_alive=True)
    assert (status, json.loads(answer)["error"]) == (400, "bad_request")  # parsed, not refused


@pytest.mark.parametrize("request_bytes", [
    b"GET /v1/status HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n",
    b"G\x00T /v1/status HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/status HTTP/9.9\r\nHost: x\r\n\r\n",
    b"POST /v1/records HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
], ids=["no-colon", "long-header", "nul-method", "version", "bad-chunk",
        "two-lengths", "negative-length"])
async def test_unparsable_requests_get_the_json_error_format(served: Served,
                                                             request_bytes: bytes) -> None:
    status, headers, body, closed = await exchange(served.port, request_bytes)
    assert 400 <= status < 500 and headers["content-type"].startswith("application/json"), \
        (status, body[:200])
    assert json.loads(body)["error"] == "bad_request"
    assert closed and served.refused


async def test_a_413_closes_the_connection(served: Served) -> None:
    # Announced too large: refused before a byte of the body is sent.
    status, _, body, closed = await exchange(served.port, post_head(MAX_BODY + 1, None))
    assert (status, json.loads(body)["error"], closed) == (413, "too_large", True)
    # Chunked, found too large while reading: refused and closed, not drained.
    chunk = b"x" * 65536
    head = (b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    body_chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk)
                           for _ in range(MAX_BODY // len(chunk) + 2))
    status, headers, body, closed = await exchange(served.port, head + body_chunks,
                                                   then=body_chunks)
    assert (status, json.loads(body)["error"], closed) == (413, "too_large", True)
    assert headers.get("connection", "").lower() == "close"


async def test_non_reading_pipelining_clients_are_disconnected(served: Served) -> None:
    """Clients that pipeline requests for large answers and never read: each
    connection holds at most one answer, and is cut after the write timeout
    (counted as ``write``) while other clients are served."""
    socks = []
    for k in range(10):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", served.port))
        if k % 2:
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
        else:  # the node closes after this answer: its unsent bytes are still bounded in time
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        socks.append(s)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while served.closed["write"] < len(socks):
            assert loop.time() < deadline, served.closed
            # Never more buffered than one answer per connection.
            assert sum(t.get_write_buffer_size() for t in list(served.guard._open)) \
                <= len(socks) * BIG_ANSWER
            assert await status_ok(served.port)
            await asyncio.sleep(0.05)
        while served.guard.open_connections:  # the status probes' own, closing
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
    finally:
        for s in socks:
            s.close()


async def test_per_client_caps_answer_429_in_the_json_format() -> None:
    """Connections over ``max_connections_per_client`` from one address are
    answered 429 and closed before anything is read; requests in progress
    over ``max_requests_per_client`` get 429 ``rate_limited``."""
    node = StubNode()
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000,
                    client_limits=concurrency_only(1))
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="released")

    app.router.add_get("/hold", hold)
    closed: Counter[str] = Counter()
    guard = HeadTimeout(10.0, lambda reason: closed.update([reason]), max_per_client=2)
    guard.install(app)
    options = dict(SERVER_OPTIONS, access_log=None)
    runner = web.AppRunner(app, shutdown_timeout=1.0, **options)
    await runner.setup()
    site = GuardedTCPSite(runner, "127.0.0.1", 0, guard=guard, handler_options=options)
    await site.start()
    loop = asyncio.get_running_loop()

    async def open_connections(n: int) -> None:
        deadline = loop.time() + 10
        while guard.open_connections != n:
            assert loop.time() < deadline, guard.open_connections
            await asyncio.sleep(0.01)

    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")  # one request in progress
        await writer.drain()
        await open_connections(1)
        await asyncio.sleep(0.05)  # (the request reaches the handler; decides nothing)
        status, headers, body, _ = await exchange(site.port, b"GET /v1/status HTTP/1.1\r\n"
                                                  b"Host: x\r\n\r\n", keep_alive=True)
        assert (status, json.loads(body)["error"]) == (429, "rate_limited")
        assert headers["retry-after"] == "1"
        await open_connections(1)  # the probe's connection has closed
        _, w2 = await asyncio.open_connection("127.0.0.1", site.port)
        await open_connections(2)
        # The third connection from this address is refused at once.
        status, headers, body, closed_now = await exchange(site.port, b"")
        assert (status, json.loads(body)["error"], closed_now) == (429, "rate_limited", True)
        assert headers["retry-after"] == "1"
        assert closed["per_client"] >= 1
        release.set()
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(
            b"HTTP/1.1 200")
        writer.close()
        w2.close()
    finally:
        release.set()
        await runner.cleanup()
