"""Limits per client address and identity (node/ratelimit.py, PROTOCOL §11.5),
on a virtual clock: the token bucket's arithmetic, the in-progress caps, the
bounded bucket table, and the 429 answers with ``Retry-After`` through the
API's middlewares."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.api import make_middlewares
from node.metrics import Metrics
from node.ratelimit import ClientLimits, KeyedLimiter, KeyLimits, retry_after
from node.settings import HttpSettings


class Clock:
    """A virtual monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_grants_its_burst_then_one_token_per_interval() -> None:
    clock = Clock()
    lim = KeyedLimiter(KeyLimits(rate_per_s=4, burst=3, max_concurrent=10), clock=clock)
    assert [lim.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.take("a") == pytest.approx(0.25)  # empty: a token is back in 1/4 s
    assert lim.take("a") == pytest.approx(0.25)  # a refusal takes nothing
    clock.now += 0.25
    assert lim.take("a") == 0.0
    assert lim.take("a") == pytest.approx(0.25)
    clock.now += 100  # refills to the burst, never beyond
    assert [lim.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.take("a") > 0
    assert lim.take("b") == 0.0  # keys are apart


def test_rate_zero_is_no_limit() -> None:
    lim = KeyedLimiter(KeyLimits(rate_per_s=0, burst=1, max_concurrent=10), clock=Clock())
    assert all(lim.take("a") == 0.0 for _ in range(10_000))
    assert len(lim) == 0  # nothing is remembered either


def test_in_progress_cap() -> None:
    lim = KeyedLimiter(KeyLimits(rate_per_s=0, burst=1, max_concurrent=2), clock=Clock())
    assert lim.enter("a") and lim.enter("a")
    assert not lim.enter("a")
    assert lim.enter("b")
    lim.leave("a")
    assert lim.in_progress("a") == 1 and lim.enter("a")
    for key in ("a", "a", "b"):
        lim.leave(key)
    assert lim.in_progress("a") == lim.in_progress("b") == 0


def test_bucket_table_is_bounded_forgetting_full_buckets_first() -> None:
    clock = Clock()
    lim = KeyedLimiter(KeyLimits(rate_per_s=1, burst=2, max_concurrent=10), clock=clock,
                       max_keys=4)
    lim.take("spent")
    for i in range(20):  # a spray of new addresses, one request each, a second apart
        assert lim.take("spent") == 0.0  # a busy client: its bucket never refills whole
        lim.take(f"new{i}")
        assert len(lim) <= 4
        clock.now += 1.0  # the new bucket is full again, spent's holds one token
    assert lim.take("spent") == 0.0
    assert lim.take("spent") > 0  # remembered throughout: still limited
    # With every bucket in use the least recently used goes.
    lim2 = KeyedLimiter(KeyLimits(rate_per_s=1, burst=1, max_concurrent=10), clock=clock,
                        max_keys=2)
    for key in ("x", "y", "z"):
        lim2.take(key)
    assert len(lim2) == 2
    assert lim2.take("x") == 0.0  # forgotten: a full bucket again
    assert lim2.take("z") > 0


@pytest.mark.parametrize(("wait", "header"), [(0.0001, 1), (0.5, 1), (1.0, 1), (1.01, 2),
                                              (59.2, 60)])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: int) -> None:
    assert retry_after(wait) == header


def test_settings_defaults_build_limits() -> None:
    http = HttpSettings(port=1)
    limits = ClientLimits.from_settings(http)
    assert limits.address == KeyLimits(2000, 4000, 64)
    assert limits.identity == KeyLimits(1000, 2000, 32)
    assert limits.max_keys == 65536 and limits.identity_of is None


# -- through the API's middlewares ------------------------------------------------


@dataclass
class Served:
    client: TestClient[web.Request, web.Application]
    clock: Clock
    metrics: Metrics
    release: asyncio.Event
    entered: asyncio.Queue[None]


def _identity(request: web.Request) -> str | None:
    """The test's stand-in for authentication: a header names the identity."""
    return request.headers.get("X-Test-Identity")


async def _serve(address: KeyLimits, identity: KeyLimits, max_inflight: int = 1000) -> Served:
    clock, metrics, release = Clock(), Metrics(), asyncio.Event()
    entered: asyncio.Queue[None] = asyncio.Queue()
    limits = ClientLimits(address=address, identity=identity, identity_of=_identity,
                          clock=clock)
    app = web.Application(middlewares=make_middlewares(metrics, max_inflight,
                                                           client_limits=limits))

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def hold(request: web.Request) -> web.Response:
        entered.put_nowait(None)
        await release.wait()
        return web.json_response({"ok": True})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"serving": True})

    app.router.add_get("/v1/status", ok)
    app.router.add_get("/hold", hold)
    app.router.add_get("/v1/stream", hold)  # a block stream: answers while the client reads
    app.router.add_get("/health", health)
    client = TestClient(TestServer(app))
    await client.start_server()
    return Served(client, clock, metrics, release, entered)


@pytest.fixture
async def rate_served() -> AsyncIterator[Served]:
    s = await _serve(KeyLimits(rate_per_s=2, burst=3, max_concurrent=100),
                     KeyLimits(rate_per_s=1, burst=2, max_concurrent=100))
    yield s
    await s.client.close()


def _limited(s: Served, scope: str, limit: str) -> float:
    return s.metrics.client_limited.labels(scope=scope, limit=limit)._value.get()


async def test_address_rate_limit_answers_429_with_retry_after(rate_served: Served) -> None:
    s = rate_served
    for _ in range(3):
        assert (await s.client.get("/v1/status")).status == 200
    resp = await s.client.get("/v1/status")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"  # a token is back in 0.5 s
    doc = await resp.json()
    assert doc["error"] == "rate_limited" and "this address" in doc["message"]
    assert _limited(s, "address", "rate") == 1
    assert s.metrics.rejected.labels(code="rate_limited")._value.get() == 1
    # Probes are never limited.
    assert (await s.client.get("/health")).status == 200
    s.clock.now += 0.5
    assert (await s.client.get("/v1/status")).status == 200


async def test_identity_rate_limit_is_per_identity() -> None:
    s = await _serve(KeyLimits(rate_per_s=0, burst=1, max_concurrent=100),
                     KeyLimits(rate_per_s=1, burst=2, max_concurrent=100))
    try:
        await _identity_rate_limit_is_per_identity(s)
    finally:
        await s.client.close()


async def _identity_rate_limit_is_per_identity(s: Served) -> None:
    alice = {"X-Test-Identity": "alice"}
    assert (await s.client.get("/v1/status", headers=alice)).status == 200
    assert (await s.client.get("/v1/status", headers=alice)).status == 200
    resp = await s.client.get("/v1/status", headers=alice)
    assert resp.status == 429
    assert "this identity" in (await resp.json())["message"]
    assert _limited(s, "identity", "rate") == 1
    # Bob is another identity.
    assert (await s.client.get("/v1/status", headers={"X-Test-Identity": "bob"})).status == 200
    s.clock.now += 1.0
    assert (await s.client.get("/v1/status", headers=alice)).status == 200


async def test_retry_after_counts_the_seconds_until_a_token() -> None:
    s = await _serve(KeyLimits(rate_per_s=0.1, burst=1, max_concurrent=100),
                     KeyLimits(rate_per_s=0, burst=1, max_concurrent=100))
    try:
        assert (await s.client.get("/v1/status")).status == 200
        s.clock.now += 0.5
        resp = await s.client.get("/v1/status")  # a token is back 9.5 s from now
        assert (resp.status, resp.headers["Retry-After"]) == (429, "10")
        s.clock.now += 9.0
        assert (await s.client.get("/v1/status")).headers["Retry-After"] == "1"
        s.clock.now += 0.5
        assert (await s.client.get("/v1/status")).status == 200
    finally:
        await s.client.close()


async def test_in_progress_caps_per_address_and_identity() -> None:
    s = await _serve(KeyLimits(rate_per_s=0, burst=1, max_concurrent=3),
                     KeyLimits(rate_per_s=0, burst=1, max_concurrent=1))
    try:
        alice = {"X-Test-Identity": "alice"}
        held = [asyncio.create_task(s.client.get("/hold", headers=alice))]
        await s.entered.get()  # alice's request holds its slots, parked in the handler
        resp = await s.client.get("/v1/status", headers=alice)
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert "in progress from this identity" in (await resp.json())["message"]
        assert _limited(s, "identity", "concurrent") == 1
        # Two more requests, of another identity and of none, fill the address's three.
        held.append(asyncio.create_task(s.client.get("/hold", headers={"X-Test-Identity": "b"})))
        held.append(asyncio.create_task(s.client.get("/hold")))
        await s.entered.get()
        await s.entered.get()
        resp = await s.client.get("/v1/status", headers={"X-Test-Identity": "c"})
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert "in progress from this address" in (await resp.json())["message"]
        assert _limited(s, "address", "concurrent") == 1
        assert _limited(s, "identity", "concurrent") == 1  # refused before identity was looked at
        s.release.set()
        assert [r.status for r in await asyncio.gather(*held)] == [200, 200, 200]
        assert (await s.client.get("/v1/status", headers=alice)).status == 200
    finally:
        await s.client.close()


async def test_an_open_stream_holds_no_slot() -> None:
    """A follower's block stream is limited when it starts but then holds no
    in-flight or concurrency slot (node/stream.py bounds streams): the same
    client's other requests still get through."""
    s = await _serve(KeyLimits(rate_per_s=0, burst=1, max_concurrent=1),
                     KeyLimits(rate_per_s=0, burst=1, max_concurrent=1), max_inflight=1)
    try:
        alice = {"X-Test-Identity": "alice"}
        streams = [asyncio.create_task(s.client.get("/v1/stream", headers=alice))
                   for _ in range(2)]
        await s.entered.get()
        await s.entered.get()
        assert (await s.client.get("/v1/status", headers=alice)).status == 200
        held = asyncio.create_task(s.client.get("/hold", headers=alice))
        await s.entered.get()  # an ordinary request does hold a slot (the node's only one)
        resp = await s.client.get("/v1/status", headers=alice)
        assert resp.status == 429 and "in flight" in (await resp.json())["message"]
        s.release.set()
        assert [r.status for r in await asyncio.gather(*streams, held)] == [200, 200, 200]
    finally:
        await s.client.close()


def test_identity_key_is_the_authenticated_pubkey() -> None:
    from aiohttp.test_utils import make_mocked_request

    from ledger.access import Identity
    from node.access import IDENTITY_KEY
    from node.ratelimit import identity_key

    request = make_mocked_request("GET", "/v1/status")
    assert identity_key(request) is None  # not authenticated (yet, or a public read)
    request[IDENTITY_KEY] = None
    assert identity_key(request) is None
    request[IDENTITY_KEY] = Identity(name="alice", pubkey=b"\x01" * 32,
                                     roles=frozenset({"read"}), kinds=("submitter",))
    assert identity_key(request) == "01" * 32
