"""node/httpconn.py on loopback: connections that dribble their request head,
send nothing, or sit idle after a response are closed after the head timeout
and counted; a normal client is served all along, and a request being
handled is never cut."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from node.httpconn import GuardedTCPSite, HeadTimeout
from harness.localnet import until

TIMEOUT_S = 0.5
DRIBBLERS = 8
SILENT = 3
HEAD = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200


class Server:
    def __init__(self) -> None:
        self.closed: Counter[str] = Counter()
        self.guard = HeadTimeout(TIMEOUT_S, lambda reason: self.closed.update([reason]))
        self.release = asyncio.Event()
        self.port = 0

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def hold(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(text="released")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.add_routes([web.get("/ping", srv.ping), web.get("/hold", srv.hold)])
    srv.guard.install(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = GuardedTCPSite(runner, "127.0.0.1", 0, guard=srv.guard)
    await site.start()
    srv.port = site.port
    try:
        yield srv
    finally:
        srv.release.set()
        await runner.cleanup()


async def dribble(writer: asyncio.StreamWriter) -> None:
    """One byte of a never-ending request head every 50 ms."""
    for i in range(10_000):
        writer.write(HEAD[i % len(HEAD):i % len(HEAD) + 1])
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(0.05)


async def wait_closed(reader: asyncio.StreamReader) -> float:
    """The monotonic time at which the server closed the connection (EOF or reset)."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionError:
        pass
    return time.monotonic()


async def open_conn(port: int) -> tuple[float, asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection and a time no later than the server's accepting it."""
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return opened, reader, writer


async def serve_ping(guard: HeadTimeout) -> tuple[web.AppRunner, int]:
    app = web.Application()

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong")

    app.add_routes([web.get("/ping", ping)])
    guard.install(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = GuardedTCPSite(runner, "127.0.0.1", 0, guard=guard)
    await site.start()
    return runner, site.port


async def test_slow_heads_and_idle_connections_are_closed(server: Server) -> None:
    conns = [await open_conn(server.port) for _ in range(DRIBBLERS + SILENT)]
    dribblers = [asyncio.create_task(dribble(w)) for _, _, w in conns[:DRIBBLERS]]
    closes = [asyncio.create_task(wait_closed(r)) for _, r, _ in conns]
    served = 0
    url = f"http://127.0.0.1:{server.port}/ping"
    try:
        async with aiohttp.ClientSession() as session:
            async def all_closed() -> bool:
                nonlocal served
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    assert resp.status == 200 and await resp.text() == "pong"
                    served += 1
                return all(t.done() for t in closes)

            await until(all_closed, 15, "slow connections to be closed")
        waited = [t.result() - opened for t, (opened, _, _) in zip(closes, conns)]
    finally:
        for t in dribblers:
            t.cancel()
        for _, _, w in conns:
            w.close()
    print(f"{len(conns)} slow connections closed after {min(waited):.2f}..{max(waited):.2f}s; "
          f"{served} normal requests served meanwhile")
    assert min(waited) >= TIMEOUT_S  # the timer, not something else, closed them
    assert served >= 2
    assert server.closed["head"] == DRIBBLERS
    # The normal client's pooled keep-alive connection may also have gone idle.
    assert SILENT <= server.closed["idle"] <= SILENT + 1


async def test_idle_keepalive_closed_after_a_response(server: Server) -> None:
    _, reader, writer = await open_conn(server.port)
    sent = time.monotonic()  # the idle deadline starts after the request arrived
    writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    first = await reader.readuntil(b"pong")
    assert first.startswith(b"HTTP/1.1 200")
    closed = await asyncio.wait_for(wait_closed(reader), 10)
    writer.close()
    assert closed - sent >= TIMEOUT_S
    assert server.closed == Counter(idle=1)


async def test_request_in_progress_is_not_cut(server: Server) -> None:
    """A handler outliving the timeout keeps its connection; a slow head
    opened after it is closed first, which proves the deadline passed."""
    async with aiohttp.ClientSession() as session:
        held = asyncio.create_task(session.get(f"http://127.0.0.1:{server.port}/hold"))

        async def holding() -> bool:
            return server.guard.open_connections == 1 and not held.done()

        await until(holding, 5, "the held request to reach its handler")
        _, reader, writer = await open_conn(server.port)
        writer.write(HEAD)
        await writer.drain()
        await asyncio.wait_for(wait_closed(reader), 10)
        writer.close()
        assert not held.done()
        server.release.set()
        resp = await asyncio.wait_for(held, 5)
        assert resp.status == 200 and await resp.text() == "released"
        resp.release()
    assert server.closed == Counter(head=1)


async def test_idle_deadline_is_separate_but_a_request_head_still_gets_the_short_one() -> None:
    """Between keep-alive requests the (longer) idle deadline applies; the
    first byte of the next request cuts it back to the head deadline."""
    idle_s = 10.0
    closed: Counter[str] = Counter()
    guard = HeadTimeout(TIMEOUT_S, lambda reason: closed.update([reason]), idle_timeout_s=idle_s)
    runner, port = await serve_ping(guard)
    try:
        _, reader, writer = await open_conn(port)
        writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"pong")
        # Still open well past the head deadline: idle keep-alive.
        await asyncio.sleep(3 * TIMEOUT_S)
        assert guard.open_connections == 1 and closed == Counter()
        started = time.monotonic()
        slow = asyncio.create_task(dribble(writer))
        done = await asyncio.wait_for(wait_closed(reader), idle_s)
        slow.cancel()
        writer.close()
        assert TIMEOUT_S <= done - started < idle_s
        assert closed == Counter(head=1)
    finally:
        await runner.cleanup()


async def test_keepalive_requests_reuse_the_connections_one_timer(server: Server) -> None:
    """A request moves the deadline; it schedules no timer of its own."""
    _, reader, writer = await open_conn(server.port)
    try:
        handles = set()
        for _ in range(20):
            writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            await reader.readuntil(b"pong")
            (conn,) = server.guard._open.values()
            handles.add(id(conn._handle))
        assert len(handles) == 1 and conn._handle is not None
    finally:
        writer.close()
    assert server.closed == Counter()


async def test_idle_deadline_shorter_than_the_head_deadline() -> None:
    """An idle timeout below the head timeout closes idle keep-alive
    connections at the idle deadline, not at the next head-length tick."""
    idle_s, head_s = 0.3, 5.0
    closed: Counter[str] = Counter()
    guard = HeadTimeout(head_s, lambda reason: closed.update([reason]), idle_timeout_s=idle_s)
    runner, port = await serve_ping(guard)
    try:
        _, reader, writer = await open_conn(port)
        sent = time.monotonic()
        writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"pong")
        done = await asyncio.wait_for(wait_closed(reader), 2 * head_s)
        writer.close()
        assert idle_s <= done - sent < head_s
        assert closed == Counter(idle=1)
    finally:
        await runner.cleanup()


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HeadTimeout(0)
    with pytest.raises(ValueError):
        HeadTimeout(1, idle_timeout_s=0)
