"""Incident webhooks (PROTOCOL §12.4): breaker transitions and scope pauses,
POSTed as signed JSON to the URLs of ``[webhooks]``.

Each event is sent to every URL from a bounded queue by one task, with
retries and exponential backoff (``webhooks.max_attempts``; 0.5 s, 1 s,
2 s, ... at most 30 s between tries); what the queue cannot hold is dropped
and counted.  The signature is HMAC-SHA256 with the shared secret of
``webhooks.secret_file`` over ``timestamp + "." + body``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

import aiohttp
import orjson

from .metrics import Metrics

log = logging.getLogger("node.webhooks")

QUEUE = 1024
OUTCOMES = ("delivered", "failed", "dropped")


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(self, urls: list[str], secret: bytes, metrics: Metrics, *,
                 max_attempts: int = 5, timeout_s: float = 5.0, backoff_s: float = 0.5) -> None:
        self.urls = urls
        self.secret = secret
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE)
        for outcome in OUTCOMES:
            metrics.webhooks.labels(outcome=outcome)

    def notify(self, event: dict[str, Any]) -> None:
        if not self.urls:
            return
        try:
            self._queue.put_nowait(orjson.dumps(event))
        except asyncio.QueueFull:
            self.metrics.webhooks.labels(outcome="dropped").inc(len(self.urls))

    async def _deliver(self, session: aiohttp.ClientSession, url: str, body: bytes) -> None:
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            ts = str(int(time.time()))
            headers = {"Content-Type": "application/json", "X-Ledger-Timestamp": ts,
                       "X-Ledger-Signature": signature(self.secret, ts, body)}
            try:
                async with session.post(url, data=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as r:
                    if 200 <= r.status < 300:
                        self.metrics.webhooks.labels(outcome="delivered").inc()
                        return
                    why = f"HTTP {r.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
            if attempt < self.max_attempts:
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
        self.metrics.webhooks.labels(outcome="failed").inc()
        log.warning("webhook to %s failed after %d attempts: %s", url, self.max_attempts, why)

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                body = await self._queue.get()
                await asyncio.gather(*(self._deliver(session, u, body) for u in self.urls))
