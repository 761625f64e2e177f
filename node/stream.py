"""``GET /v1/stream?from=H``: committed blocks with their certificates as
server-sent events (PROTOCOL §12.1), for monitors and other followers.

Each answer reads blocks from the store as it writes them, one block at a
time, so a connection never holds more than one block however far behind
its reader is; once at the tip it waits for the next commit
(:meth:`BlockStream.committed` wakes every waiting answer) and sends a
comment line every ``stream.keepalive_ms`` meanwhile.  Two bounds:

* at most ``stream.max_clients`` answers at once; the next request is
  answered 429 ``rate_limited`` (counted, ``reason="limit"``);
* a reader that takes an event's bytes slower than
  ``stream.write_timeout_ms`` is cut (connection aborted; counted,
  ``reason="slow"``).  It resumes with ``from`` (or ``Last-Event-ID``) set to
  the last height it received plus one.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import plyvel
from aiohttp import web

from ledger.chain import ChainStore
from ledger.encoding import to_b64, to_hex
from ledger.errors import BadRequest, LedgerError, RateLimited, StorageCorruption
from ledger.statesync import below_snapshot

from .api import parse_uint
from .metrics import Metrics
from .settings import StreamSettings

log = logging.getLogger("node.stream")

STREAM_PATH = "/v1/stream"
EVENT_STREAM = "text/event-stream"
CUT_REASONS = ("limit", "slow")


class TooManyStreams(RateLimited):
    """The node serves ``stream.max_clients`` streams already."""


def block_event(chain: ChainStore, height: int) -> bytes:
    """The ``block`` event of one committed block (PROTOCOL §12.1)."""
    header, cert = chain.header(height), chain.certificate(height)
    if header is None or cert is None:
        raise StorageCorruption(f"block {height} at or below the tip is not stored")
    doc = {
        "height": height,
        "tip": chain.height,
        "hash": to_hex(header.hash),
        "header": to_b64(header.header_bytes),
        "certificate": cert.to_json(),
        "envelopes": [to_b64(e) for e in chain.block_envelopes(height)],
    }
    # orjson writes no newline inside the value: one data line per event.
    return b"id: %d\nevent: block\ndata: %s\n\n" % (height, orjson.dumps(doc))


def first_height(request: web.Request, tip: int) -> int:
    """``from``, else ``Last-Event-ID`` + 1 (an EventSource reconnecting),
    else the next block to commit."""
    if "from" in request.query:
        return parse_uint(request, "from", minimum=1)
    last = request.headers.get("Last-Event-ID")
    if last is not None:
        if not last.isascii() or not last.isdigit() or len(last) > 19:
            raise BadRequest("Last-Event-ID must be a block height")
        return int(last) + 1
    return tip + 1


class BlockStream:
    """The streams of one node: who waits for the next commit, and the bounds."""

    def __init__(self, settings: StreamSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clients = 0
        self._next_commit = asyncio.Event()
        for reason in CUT_REASONS:
            metrics.stream_cut.labels(reason=reason)
        metrics.stream_clients.set(0)

    def committed(self, height: int) -> None:
        """A block committed: wake every stream waiting at the tip."""
        event, self._next_commit = self._next_commit, asyncio.Event()
        event.set()

    async def serve(self, chain: ChainStore, request: web.Request) -> web.StreamResponse:
        height = first_height(request, chain.height)
        gap = chain.history_gap
        if gap and height < gap.stop:
            raise below_snapshot(gap, f"block {height}")
        if self.clients >= self.settings.max_clients:
            self.metrics.stream_cut.labels(reason="limit").inc()
            raise TooManyStreams(f"this node serves {self.settings.max_clients} streams already")
        resp = web.StreamResponse(headers={"Content-Type": EVENT_STREAM,
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        self.clients += 1
        self.metrics.stream_clients.set(self.clients)
        try:
            await resp.prepare(request)
            await self._send(resp, request, chain, height)
        finally:
            self.clients -= 1
            self.metrics.stream_clients.set(self.clients)
        return resp

    async def _write(self, resp: web.StreamResponse, data: bytes) -> None:
        await asyncio.wait_for(resp.write(data), self.settings.write_timeout_ms / 1000)

    async def _send(self, resp: web.StreamResponse, request: web.Request, chain: ChainStore,
                    height: int) -> None:
        keepalive = self.settings.keepalive_ms / 1000
        try:
            await self._write(resp, b": auditledger block stream\nretry: 1000\n\n")
            while True:
                while height <= chain.height:
                    await self._write(resp, block_event(chain, height))
                    self.metrics.stream_blocks.inc()
                    height += 1
                waiter = self._next_commit
                if height > chain.height:  # nothing committed since the last check
                    try:
                        await asyncio.wait_for(waiter.wait(), keepalive)
                    except TimeoutError:
                        await self._write(resp, b": keepalive\n\n")
        except TimeoutError:
            self.metrics.stream_cut.labels(reason="slow").inc()
            log.info("block stream cut: the reader took no event for %d ms (at height %d)",
                     self.settings.write_timeout_ms, height, extra={"height": height})
            _abort(request)
        except (ConnectionResetError, ConnectionError):
            pass  # the reader left
        except (LedgerError, plyvel.Error) as exc:
            # Mid-answer nothing else can be said: log it and cut the answer.
            log.error("block stream cut at height %d: %s", height, exc)
            _abort(request)


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
