"""Fake nodes for SDK tests: aiohttp test servers speaking just enough of
PROTOCOL §6 (POST /v1/records, GET /v1/records/{id}, /v1/status,
/v1/blocks/{h}) that can refuse, fail or forget what they are sent.
Signatures are not checked; every envelope received is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from aiohttp import web
from aiohttp.test_utils import TestServer

from ledger.keys import write_key_file
from ledger.records import decode_envelope
from helpers import SUBMITTER_SEED_BASE, make_keys

CHAIN = "sdk-test"


@dataclass
class FakeNode:
    """``fail_requests``: answer that many POSTs with 503; ``garble``: that
    many (after those) with a 202 that is not JSON; ``rate_limit``:
    refuse that many envelopes (counted one by one) with ``rate_limited``;
    ``capacity``: refuse envelopes with ``rate_limited`` once it holds that
    many records; ``refuse_codes``/``refuse_nonces``: per record id or
    nonce, a permanent error code;
    ``forget``: answer ``accepted`` but keep nothing (a node killed before
    gossip); ``commit_after``: a record is committed at its n-th lookup."""

    fail_requests: int = 0
    garble: int = 0
    rate_limit: int = 0
    capacity: int | None = None
    refuse_codes: dict[str, str] = field(default_factory=dict)
    refuse_nonces: dict[int, str] = field(default_factory=dict)
    forget: bool = False
    commit_after: int = 1
    received: list[bytes] = field(default_factory=list)  # every envelope, in arrival order
    posts: int = 0
    records: dict[str, str] = field(default_factory=dict)  # id -> status
    lookups: dict[str, int] = field(default_factory=dict)
    blocks: list[list[str]] = field(default_factory=list)
    waits: list[str | None] = field(default_factory=list)  # wait_ms of every record lookup

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/records", self._post)
        app.router.add_get("/v1/records/{rid}", self._get)
        app.router.add_get("/v1/status", self._status)
        app.router.add_get("/v1/blocks/{height}", self._block)
        return app

    def commit_all(self) -> None:
        """Put every pending record in a new block."""
        new = [rid for rid, st in self.records.items() if st == "pending"]
        for rid in new:
            self.records[rid] = "committed"
        self.blocks.append(new)

    async def _post(self, request: web.Request) -> web.Response:
        self.posts += 1
        envelopes = msgpack.unpackb(await request.read(), raw=False)
        if self.fail_requests:
            self.fail_requests -= 1
            return web.json_response({"error": "unavailable", "message": "fake outage"}, status=503)
        if self.garble:
            self.garble -= 1
            return web.Response(body=b"<html>proxy error</html>", status=202)
        results: list[dict[str, Any]] = []
        for raw in envelopes:
            self.received.append(raw)
            envelope = decode_envelope(raw, cosigs=True)
            rid = envelope.id.hex()
            code = self.refuse_codes.get(rid) or self.refuse_nonces.get(envelope.record.nonce)
            if code:
                results.append({"error": code, "message": "fake refusal"})
            elif rid in self.records:
                status = self.records[rid]
                results.append({"id": rid, "status": "committed" if status == "committed" else "duplicate"})
            elif self.rate_limit or (self.capacity is not None and len(self.records) >= self.capacity):
                self.rate_limit = max(0, self.rate_limit - 1)
                results.append({"error": "rate_limited", "message": "fake pushback"})
            else:
                if not self.forget:
                    self.records[rid] = "pending"
                results.append({"id": rid, "status": "accepted"})
        return web.json_response({"results": results}, status=202)

    async def _get(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        self.waits.append(request.query.get("wait_ms"))
        if rid not in self.records:
            return web.json_response({"error": "not_found", "message": "unknown record"}, status=404)
        self.lookups[rid] = self.lookups.get(rid, 0) + 1
        if self.lookups[rid] >= self.commit_after and self.records[rid] == "pending":
            self.records[rid] = "committed"
            self.blocks.append([rid])
        return web.json_response({"id": rid, "status": self.records[rid]})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"chain": CHAIN, "height": len(self.blocks), "mempool": 0})

    async def _block(self, request: web.Request) -> web.Response:
        height = int(request.match_info["height"])
        if not 1 <= height <= len(self.blocks):
            return web.json_response({"error": "not_found", "message": "no such block"}, status=404)
        return web.json_response({"height": height, "records": self.blocks[height - 1]})


@asynccontextmanager
async def serve(*nodes: FakeNode) -> AsyncIterator[list[str]]:
    """Run the fake nodes on loopback; yields their base URLs."""
    servers = [TestServer(n.app(), host="127.0.0.1") for n in nodes]
    try:
        for s in servers:
            await s.start_server()
        yield [str(s.make_url("")).rstrip("/") for s in servers]
    finally:
        for s in servers:
            await s.close()


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "svc.json"
    write_key_file(path, "svc", make_keys(1, SUBMITTER_SEED_BASE)[0])
    return path


def nonces(envelopes: list[bytes]) -> list[int]:
    return [decode_envelope(e).record.nonce for e in envelopes]
