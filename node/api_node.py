"""Routes about the node itself (PROTOCOL §6): status, genesis,
membership, evidence, health, metrics, the OpenAPI description, and the
validators' endpoints (peer WebSocket, block and snapshot sync)."""

from __future__ import annotations

import orjson
from aiohttp import web

from ledger.encoding import to_hex
from ledger.errors import BadRequest
from ledger.merkle import EMPTY_ROOT
from ledger.statesync import below_snapshot

from .api_common import ApiBackend, json_response, parse_uint
from .metrics import CONTENT_TYPE_LATEST
from .openapi import openapi_spec


class NodeRoutes:
    """Status and operations routes, and the validators' endpoints."""

    def __init__(self, node: ApiBackend, *, max_envelopes: int, max_trace_depth: int,
                 genesis_json: bytes | None = None) -> None:
        self.node = node
        # The genesis file's bytes as the node loaded them, so that their
        # SHA-256 is the file's; a node built from a parsed document only
        # (tests) serves that document as JSON.
        self._genesis_json = (genesis_json if genesis_json is not None
                              else orjson.dumps(node.genesis.raw))
        self._spec = openapi_spec(max_envelopes=max_envelopes, max_trace_depth=max_trace_depth)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/status", self.get_status),
            web.get("/v1/genesis", self.get_genesis),
            web.get("/v1/membership", self.get_membership),
            web.get("/v1/evidence", self.get_evidence),
            web.get("/v1/sync/blocks", self.sync_blocks),
            web.get("/v1/sync/snapshot", self.sync_snapshot),
            web.get("/v1/stream", self.stream),
            web.get("/v1/breakers", self.get_breakers),
            web.get("/v1/peer", self.peer),
            web.get("/health", self.health),
            web.get("/metrics", self.metrics),
            web.get("/openapi.json", self.openapi),
        ]

    # node ------------------------------------------------------------------

    async def get_status(self, request: web.Request) -> web.Response:
        node = self.node
        tip = node.chain.tip()
        doc = {
            "chain": node.genesis.chain,
            "node": node.name,
            "validator": node.validator_index,
            "height": node.chain.height,
            "log_size": tip.log_size if tip is not None else 0,
            "log_root": to_hex(tip.log_root if tip is not None else EMPTY_ROOT),
            "peers": node.peers(),
            "mempool": len(node.mempool),
        }
        doc.update(node.consensus_status())
        return json_response(doc)

    async def get_genesis(self, request: web.Request) -> web.Response:
        return web.Response(body=self._genesis_json, content_type="application/json",
                            charset="utf-8")

    async def get_membership(self, request: web.Request) -> web.Response:
        """PROTOCOL §9.7: the membership in force at ``height`` (default:
        the next block's, which submissions are judged against)."""
        chain = self.node.chain
        if chain.history_gap:  # governance below a snapshot is not known yet
            raise below_snapshot(chain.history_gap, "the governance history")
        height = parse_uint(request, "height", default=chain.height + 1, minimum=1,
                            maximum=chain.height + 1)
        doc = {"height": height}
        doc.update(chain.membership.at(height).to_json())
        return json_response(doc)

    async def get_evidence(self, request: web.Request) -> web.Response:
        return json_response({"evidence": self.node.evidence()})

    async def sync_blocks(self, request: web.Request) -> web.StreamResponse:
        return await self.node.sync_blocks(request)

    async def sync_snapshot(self, request: web.Request) -> web.Response:
        return await self.node.sync_snapshot(request)

    async def get_breakers(self, request: web.Request) -> web.Response:
        return json_response(self.node.breakers_doc())

    async def stream(self, request: web.Request) -> web.StreamResponse:
        return await self.node.stream_blocks(request)

    async def peer(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise BadRequest("this is the validators' WebSocket endpoint")
        return await self.node.peer_socket(request)

    async def health(self, request: web.Request) -> web.Response:
        # One field per capability (node/health.py); the status code says
        # only whether the node serves, so a probe that reads no body still
        # routes reads to a node that is behind but answering.
        health = self.node.health()
        doc = health.as_json()
        if health.status_code != 200:
            doc.update(error="unavailable", message=doc.get("reason", "not serving"))
        return json_response(doc, status=health.status_code)

    async def metrics(self, request: web.Request) -> web.Response:
        self.node.metrics.mempool_size.set(len(self.node.mempool))
        body = self.node.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(self._spec)
