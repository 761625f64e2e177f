"""Incident webhooks (PROTOCOL §12.4, node/webhooks.py): a signed JSON POST
per event and URL, retried with backoff until the receiver takes it; what
cannot be delivered is counted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.metrics import Metrics
from node.webhooks import Webhooks, signature

SECRET = b"s3cret"


async def test_signed_post_retried_until_delivered() -> None:
    got: list[tuple[bytes, str, str]] = []
    calls = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=500)
        got.append((await request.read(), request.headers["X-Ledger-Timestamp"],
                    request.headers["X-Ledger-Signature"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with TestServer(app) as server:
        metrics = Metrics()
        hooks = Webhooks([str(server.make_url("/hook"))], SECRET, metrics, backoff_s=0.01)
        task = asyncio.create_task(hooks.run())
        hooks.notify({"event": "breaker_open", "scope": "account", "value": "mule"})
        for _ in range(500):
            if got:
                break
            await asyncio.sleep(0.01)
        task.cancel()
    body, ts, sig = got[0]
    assert orjson.loads(body)["event"] == "breaker_open" and calls == 2
    expected = hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert sig == "sha256=" + expected == signature(SECRET, ts, body)
    assert metrics.webhooks.labels(outcome="delivered")._value.get() == 1


async def test_an_unreachable_receiver_is_counted_failed() -> None:
    metrics = Metrics()
    hooks = Webhooks(["http://127.0.0.1:9/x"], SECRET, metrics, max_attempts=2, backoff_s=0.01,
                     timeout_s=1.0)
    task = asyncio.create_task(hooks.run())
    hooks.notify({"event": "pause"})
    for _ in range(500):
        if metrics.webhooks.labels(outcome="failed")._value.get():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert metrics.webhooks.labels(outcome="failed")._value.get() == 1


def test_no_urls_no_events() -> None:
    metrics = Metrics()
    Webhooks([], SECRET, metrics).notify({"event": "x"})
    assert metrics.webhooks.labels(outcome="dropped")._value.get() == 0
