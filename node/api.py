"""The HTTP API of PROTOCOL §6 (aiohttp).

Handlers are thin: parse and bound the input, call the node, shape JSON.
Every refusal is a :class:`~ledger.errors.LedgerError` whose ``code`` picks
the answer; the error middleware is the one place that turns exceptions
into ``{"error", "message"}`` responses, so no input can produce a 5xx
except through a bug, which is logged with its traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgpack
import orjson
import plyvel
from aiohttp import web

from ledger import note
from ledger.chain import ChainStore
from ledger.encoding import UINT64_MAX, from_b64, from_hex, to_b64, to_hex
from ledger.errors import (
    BadEncoding,
    BadRequest,
    LedgerError,
    NotCommitted,
    NotFound,
    RateLimited,
    StorageCorruption,
    TooMany,
    Unavailable,
)
from ledger.genesis import Genesis
from ledger.merkle import EMPTY_ROOT
from ledger.proofs import build_bundle, build_consistency, build_record_bundle
from ledger.records import ID_LEN, decode_envelope
from ledger.statesync import below_snapshot

from . import trace
from .checkpoints import Checkpoints
from .explorer import Explorer
from .health import Health
from .mempool import Mempool
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .openapi import openapi_spec

log = logging.getLogger("node.api")

JSON_TYPES = ("application/json",)
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack")

STATUS_FOR_CODE = {
    "unauthorized": 401,
    "forbidden": 403,
    "too_large": 413,
    "unsupported_media_type": 415,
    "not_found": 404,
    "not_committed": 409,
    "rate_limited": 429,
    "unavailable": 503,
}
# aiohttp's own refusals (no route, wrong method, body over the limit).
CODE_FOR_STATUS = {404: "not_found", 405: "bad_request", 413: "too_large",
                   415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable"}


class UnsupportedMediaType(LedgerError):
    """The request body's Content-Type is not one this route accepts."""

    code = "unsupported_media_type"


class UnsupportedEncoding(UnsupportedMediaType):
    """The request has a Content-Encoding: bodies are never decompressed."""


class BodyTooLarge(LedgerError):
    """The request body is over ``http.max_body_bytes``."""

    code = "too_large"


class TooManyFromClient(RateLimited):
    """The client address has ``http.max_requests_per_client`` requests in progress."""


# The options of aiohttp's request handler that the node relies on (given to
# AppRunner; tests give them to TestServer):
# * auto_decompress=False - aiohttp would otherwise inflate gzip, deflate, br
#   and zstd bodies as they arrive, on the event loop and whatever they
#   inflate to; the node refuses any Content-Encoding instead (415);
# * lingering_time=0 - a request whose body was refused unread (415, 413, body
#   timeout) has its connection closed after the answer instead of having
#   the rest of its body read and discarded for up to 10 s.
SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False, "lingering_time": 0}


class ApiBackend(Protocol):
    """What the API needs from a node (``node.app.Node``; tests stub it)."""

    name: str
    genesis: Genesis
    mempool: Mempool
    metrics: Metrics
    validator_index: int | None

    @property
    def chain(self) -> ChainStore: ...

    def peers(self) -> list[dict[str, Any]]: ...

    def unavailable_reason(self) -> str | None: ...

    def health(self) -> Health: ...

    def consensus_status(self) -> dict[str, Any]: ...

    def evidence(self) -> list[dict[str, Any]]: ...

    async def peer_socket(self, request: web.Request) -> web.StreamResponse: ...

    async def sync_blocks(self, request: web.Request) -> web.StreamResponse: ...

    def checkpoints(self) -> Checkpoints | None: ...

    async def sync_snapshot(self, request: web.Request) -> web.Response: ...


def json_response(doc: Any, status: int = 200) -> web.Response:
    """A JSON answer, encoded by orjson: proof bundles are the most frequent
    answer and orjson encodes them far faster than the standard library
    (compact output; the same JSON values, UTF-8 as the header has always
    said)."""
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json",
                        charset="utf-8")


def error_response(code: str, message: str, status: int | None = None) -> web.Response:
    return json_response({"error": code, "message": message},
                         status=status or STATUS_FOR_CODE.get(code, 400))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SlowBody(LedgerError):
    """The request body did not arrive within ``http.body_timeout_ms``."""

    code = "bad_request"


def _content_coded(request: web.Request) -> str | None:
    """The request's content or transfer coding other than identity (and
    chunked framing), if any: aiohttp ignores a transfer coding such as
    ``Transfer-Encoding: gzip, chunked``, and the node takes neither."""
    for header, plain in (("Content-Encoding", ("identity",)),
                          ("Transfer-Encoding", ("identity", "chunked"))):
        for value in request.headers.getall(header, ()):
            for coding in value.split(","):
                coding = coding.strip().lower()
                if coding and coding not in plain:
                    return f"{header}: {coding}"
    return None


# Refusals that leave the request body unread: the connection is closed after
# the answer (SERVER_OPTIONS: no lingering), never drained.
CLOSES_CONNECTION = (SlowBody, UnsupportedEncoding, BodyTooLarge)
UNCOUNTED_ROUTES = ("/health", "/metrics", "/v1/peer")


def make_middlewares(metrics: Metrics, max_inflight: int,
                     body_timeout_s: float = 30.0, *, max_body_bytes: int | None = None,
                     max_per_client: int | None = None) -> list[Any]:
    inflight = 0
    per_client: dict[str, int] = {}

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal inflight
        start = time.perf_counter()
        route = _route_name(request)
        status = 500
        counted = False
        client: str | None = None
        try:
            coding = _content_coded(request)
            if coding is not None:  # checked before a byte of the body is read
                raise UnsupportedEncoding(f"{coding!r}: this node takes uncompressed "
                                          f"bodies only (identity)")
            length = request.content_length
            if max_body_bytes is not None and length is not None and length > max_body_bytes:
                raise BodyTooLarge(f"body of {length} bytes; at most {max_body_bytes}")
            if request.can_read_body and route != "/v1/peer":
                # The whole body first, within a deadline and before taking an
                # inflight slot: slow-loris clients hold neither a slot nor a task.
                try:
                    async with asyncio.timeout(body_timeout_s):
                        await request.read()
                except TimeoutError:
                    raise SlowBody(f"body_timeout: request body not received within "
                                   f"{body_timeout_s:g}s") from None
            if max_per_client is not None and route not in UNCOUNTED_ROUTES:
                client = request.remote or ""
                if per_client.get(client, 0) >= max_per_client:
                    client = None
                    raise TooManyFromClient(f"more than {max_per_client} requests in progress "
                                            f"from this address; retry later")
                per_client[client] = per_client.get(client, 0) + 1
            inflight += 1
            counted = True
            if inflight > max_inflight and route not in ("/health", "/metrics", "/v1/peer"):
                raise RateLimited(f"more than {max_inflight} requests in flight; retry later")
            response = await handler(request)
            status = response.status
            return response
        except LedgerError as exc:
            metrics.rejected.labels(code=exc.code).inc()
            if isinstance(exc, StorageCorruption):  # damaged store: say what, answer 503
                log.error("storage corruption while serving %s %s: %s", request.method,
                          request.path, exc, extra={"damaged": exc.message})
            resp = error_response(exc.code, exc.message)
            if isinstance(exc, CLOSES_CONNECTION):
                resp.force_close()
            if isinstance(exc, UnsupportedEncoding):  # RFC 9110 §15.5.16
                resp.headers["Accept-Encoding"] = "identity"
            if resp.status == 401:
                resp.headers["WWW-Authenticate"] = "Ledger-Validator"
            status = resp.status
            return resp
        except web.HTTPException as exc:
            if exc.status < 400:
                status = exc.status
                raise
            code = CODE_FOR_STATUS.get(exc.status, "bad_request")
            metrics.rejected.labels(code=code).inc()
            resp = error_response(code, exc.reason or code, exc.status)
            if "Allow" in exc.headers:  # 405 must say what is allowed (RFC 9110)
                resp.headers["Allow"] = exc.headers["Allow"]
            if exc.status == 413:  # over client_max_size while reading: body left unread
                resp.force_close()
            status = resp.status
            return resp
        except (asyncio.CancelledError, ConnectionError):
            status = 499  # the client went away (or was disconnected) mid-answer
            raise
        except plyvel.CorruptionError as exc:  # LevelDB's own checks (damaged table file)
            text = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
                exc.args[0], bytes) else str(exc)
            log.error("storage corruption while serving %s %s: LevelDB: %s", request.method,
                      request.path, text)
            metrics.rejected.labels(code="unavailable").inc()
            resp = error_response("unavailable", f"storage is damaged (LevelDB: {text})")
            status = resp.status
            return resp
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            resp = error_response("unavailable", "internal error", 500)
            status = 500
            return resp
        finally:
            if counted:
                inflight -= 1
            if client is not None:
                left = per_client[client] - 1
                if left:
                    per_client[client] = left
                else:
                    del per_client[client]
            metrics.observe_request(route, request.method, status, time.perf_counter() - start)

    return [errors]


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


# -- parameter parsing ---------------------------------------------------------


def parse_id(text: str, what: str = "record id") -> bytes:
    try:
        return from_hex(text, length=ID_LEN, what=what)
    except BadEncoding as exc:
        raise BadRequest(str(exc)) from None


def parse_uint(request: web.Request, name: str, *, default: int | None = None,
               minimum: int = 0, maximum: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"query parameter {name!r} is required")
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20 or int(raw) > UINT64_MAX:
        raise BadRequest(f"{name} must be an integer in 0..2^64-1")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        raise BadRequest(f"{name} must be in {minimum}..{maximum if maximum is not None else 'inf'}")
    return value


def parse_flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None or raw in ("0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise BadRequest(f"{name} must be 0, 1, true or false")


# -- the routes ------------------------------------------------------------


class Api:
    def __init__(self, node: ApiBackend, *, max_envelopes: int, max_trace_depth: int,
                 max_trace_nodes: int, genesis_json: bytes | None = None) -> None:
        self.node = node
        # The genesis file's bytes as the node loaded them, so that their
        # SHA-256 is the file's; a node built from a parsed document only
        # (tests) serves that document as JSON.
        self._genesis_json = (genesis_json if genesis_json is not None
                              else orjson.dumps(node.genesis.raw))
        self.max_envelopes = max_envelopes
        self.max_trace_depth = max_trace_depth
        self.max_trace_nodes = max_trace_nodes
        self._spec = openapi_spec(max_envelopes=max_envelopes, max_trace_depth=max_trace_depth)
        self._trace_gate = asyncio.Semaphore(trace.TRACE_BUILDERS)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/records", self.submit),
            # The proof route first: aiohttp tries routes under one prefix in
            # this order, and proofs are the most frequent read.
            web.get("/v1/records/{id}/proof", self.get_proof),
            web.get("/v1/records/{id}", self.get_record),
            web.get("/v1/records/{id}/trace", self.get_trace),
            web.get("/v1/blocks/latest", self.get_latest_block),
            web.get("/v1/blocks/{height}", self.get_block),
            web.get("/v1/consistency", self.get_consistency),
            web.get("/checkpoint", self.get_checkpoint),
            web.get("/v1/checkpoints/{height}", self.get_checkpoint_at),
            web.get("/v1/checkpoint-keys", self.get_checkpoint_keys),
            web.get("/v1/status", self.get_status),
            web.get("/v1/genesis", self.get_genesis),
            web.get("/v1/membership", self.get_membership),
            web.get("/v1/evidence", self.get_evidence),
            web.get("/v1/sync/blocks", self.sync_blocks),
            web.get("/v1/sync/snapshot", self.sync_snapshot),
            web.get("/v1/peer", self.peer),
            web.get("/health", self.health),
            web.get("/metrics", self.metrics),
            web.get("/openapi.json", self.openapi),
        ]

    # POST /v1/records --------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        ctype = request.content_type
        if ctype not in JSON_TYPES and ctype not in MSGPACK_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type {ctype!r}: send application/json or application/msgpack"
            )
        reason = self.node.unavailable_reason()
        if reason is not None:
            raise Unavailable(reason)
        pushback = self.node.mempool.pushback()
        if pushback is not None:
            raise RateLimited(pushback)
        body = await request.read()
        items = self._json_items(body) if ctype in JSON_TYPES else self._msgpack_items(body)
        if not items:
            raise BadRequest("send at least one envelope")
        if len(items) > self.max_envelopes:
            raise TooMany(f"{len(items)} envelopes; at most {self.max_envelopes} per request")
        decoded: list[bytes | LedgerError] = []
        for item in items:
            try:
                decoded.append(item if isinstance(item, bytes)
                               else from_b64(item, what="envelope"))
            except LedgerError as exc:
                decoded.append(exc.as_value())
        good = [d for d in decoded if isinstance(d, bytes)]
        admitted = iter(await self.node.mempool.admit(good, "api"))
        results: list[dict[str, Any]] = []
        for d in decoded:
            if isinstance(d, LedgerError):
                self.node.metrics.rejected.labels(code=d.code).inc()
                results.append({"error": d.code, "message": d.message})
                continue
            a = next(admitted)
            if a.error is not None:
                results.append({"error": a.error.code, "message": a.error.message})
            else:
                assert a.id is not None
                results.append({"id": to_hex(a.id), "status": a.status})
        return json_response({"results": results}, status=202)

    def _json_items(self, body: bytes) -> Sequence[Any]:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadEncoding("body is not valid JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("envelopes"), list):
            raise BadRequest('body must be {"envelopes": ["<base64>", ...]}')
        items: list[Any] = doc["envelopes"]
        if len(items) > self.max_envelopes:
            raise TooMany(f"{len(items)} envelopes; at most {self.max_envelopes} per request")
        for item in items:
            if not isinstance(item, str):
                raise BadRequest("each envelope must be a base64 string")
        return items

    def _msgpack_items(self, body: bytes) -> Sequence[Any]:
        try:
            doc = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=False,
                                  max_array_len=self.max_envelopes + 1)
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
            if body[:1] and 0xdc <= body[0] <= 0xdd:  # array16/32 header: likely just too many
                raise TooMany(f"at most {self.max_envelopes} envelopes per request") from None
            raise BadEncoding("body is not a MessagePack value") from None
        if not isinstance(doc, list):
            raise BadRequest("body must be a MessagePack array of envelope bytes")
        if len(doc) > self.max_envelopes:
            raise TooMany(f"{len(doc)} envelopes; at most {self.max_envelopes} per request")
        if not all(isinstance(item, bytes) for item in doc):
            raise BadRequest("each array item must be envelope bytes (bin)")
        return doc

    # GET /v1/records/{id}[/proof|/trace] ------------------------------------

    async def get_record(self, request: web.Request) -> web.Response:
        rid = parse_id(request.match_info["id"])
        chain = self.node.chain
        location = chain.record_location(rid)
        if location is not None:
            height, leaf_index = location
            raw = chain.envelope_at(leaf_index)
            doc: dict[str, Any] = {"id": to_hex(rid), "status": "committed", "height": height,
                                   "leaf_index": leaf_index}
        else:
            pending = self.node.mempool.get(rid)
            if pending is None:
                raise self._not_found(rid)
            raw = pending.envelope_bytes
            doc = {"id": to_hex(rid), "status": "pending"}
        env = decode_envelope(raw, cosigs=True)
        doc["envelope"] = to_b64(raw)
        doc["record"] = env.record.to_json()
        return json_response(doc)

    def _committed_or_raise(self, rid: bytes) -> tuple[int, int]:
        location = self.node.chain.record_location(rid)
        if location is not None:
            return location
        if rid in self.node.mempool:
            raise NotCommitted(f"record {to_hex(rid)} is pending; retry once committed")
        raise self._not_found(rid)

    def _not_found(self, rid: bytes) -> LedgerError:
        """404, or 503 while a node that joined by state sync may simply not
        hold the record yet (node/statesync.py)."""
        gap = self.node.chain.history_gap
        if gap:
            return below_snapshot(gap, f"record {to_hex(rid)}")
        return NotFound(f"no record {to_hex(rid)}")

    async def get_proof(self, request: web.Request) -> web.Response:
        rid = parse_id(request.match_info["id"])
        location = self._committed_or_raise(rid)
        height = None
        if request.query_string and "height" in request.query:  # parsed only when present
            height = parse_uint(request, "height", minimum=1)
        fmt = request.query.get("format", "json") if request.query_string else "json"
        if fmt == "tlog-proof":
            return self._tlog_proof(rid, location)
        if fmt != "json":
            raise BadRequest("format must be json or tlog-proof")
        chain = self.node.chain
        if height is None:  # version 1 or 2, as PROTOCOL §6 says
            return json_response(build_record_bundle(chain, chain.membership, rid,
                                                     location=location))
        return json_response(build_bundle(chain, rid, height, location=location))

    def _tlog_proof(self, rid: bytes, location: tuple[int, int]) -> web.Response:
        """The record's inclusion in the latest cosigned checkpoint, as a
        c2sp.org/tlog-proof@v1 file (PROTOCOL §6.1)."""
        cps = self._cosigned()
        height, signed = cps.latest()
        if height < location[0]:
            raise NotCommitted(f"record {to_hex(rid)} is not yet in a cosigned checkpoint")
        header = self.node.chain.header(height)
        assert header is not None
        path = self.node.chain.log.inclusion_path(location[1], header.log_size)
        return _note_response(note.format_tlog_proof(location[1], path, signed))

    # C2SP checkpoints (PROTOCOL §6.1) ----------------------------------------

    def _cosigned(self) -> Checkpoints:
        cps = self.node.checkpoints()
        if cps is None:
            raise NotFound("this node serves no checkpoints (its chain id cannot be an origin)")
        return cps

    async def get_checkpoint(self, request: web.Request) -> web.Response:
        height, signed = self._cosigned().latest()
        return _note_response(signed, height)

    async def get_checkpoint_at(self, request: web.Request) -> web.Response:
        raw = request.match_info["height"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
            raise BadRequest("height must be a positive integer")
        return _note_response(self._cosigned().note_at(int(raw)), int(raw))

    async def get_checkpoint_keys(self, request: web.Request) -> web.Response:
        cps = self._cosigned()
        height = max(1, self.node.chain.height)
        return json_response({
            "origin": cps.origin,
            "quorum": cps.quorum(height),
            "keys": [{"validator": v.index, "name": v.name, "vkey": v.vkey}
                     for v in cps.verifiers(height)],
        })

    async def get_trace(self, request: web.Request) -> web.Response:
        rid = parse_id(request.match_info["id"])
        self._committed_or_raise(rid)
        depth = parse_uint(request, "depth", default=self.max_trace_depth,
                           maximum=self.max_trace_depth)
        limit = parse_uint(request, "children_limit", default=trace.CHILDREN_DEFAULT,
                           minimum=1, maximum=trace.CHILDREN_MAX)
        after_raw = request.query.get("children_after")
        after = None if after_raw is None else parse_id(after_raw, "children_after")
        query = trace.TraceQuery(rid, depth, limit, after)
        doc = await trace.build_trace(self.node.chain, query,
                                      trace.TraceLimits(self.max_trace_nodes), self._trace_gate)
        return json_response(doc)

    # blocks, consistency ---------------------------------------------------

    async def get_latest_block(self, request: web.Request) -> web.Response:
        height = self.node.chain.height
        if height < 1:
            raise NotFound("no block has been committed yet")
        return json_response(self._block(height, parse_flag(request, "envelopes")))

    async def get_block(self, request: web.Request) -> web.Response:
        raw = request.match_info["height"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
            raise BadRequest("height must be a positive integer or 'latest'")
        height = int(raw)
        if height < 1 or height > self.node.chain.height:
            raise NotFound(f"no block at height {height} (tip is {self.node.chain.height})")
        return json_response(self._block(height, parse_flag(request, "envelopes")))

    def _block(self, height: int, with_envelopes: bool) -> dict[str, Any]:
        chain = self.node.chain
        if height in chain.history_gap:  # also the tip, right after a state sync
            raise below_snapshot(chain.history_gap, f"block {height}")
        header, cert = chain.header(height), chain.certificate(height)
        if header is None or cert is None:
            raise NotFound(f"no block at height {height}")
        ids = chain.block_record_ids(height)
        doc: dict[str, Any] = {
            "height": height,
            "hash": to_hex(header.hash),
            "header": to_b64(header.header_bytes),
            "fields": header.to_json(),
            "certificate": cert.to_json(),
            "records": [to_hex(i) for i in ids],
        }
        if with_envelopes:
            first = header.log_size - header.tx_count
            doc["envelopes"] = [to_b64(chain.envelope_at(first + i)) for i in range(header.tx_count)]
        return doc

    async def get_consistency(self, request: web.Request) -> web.Response:
        old = parse_uint(request, "from", minimum=1)
        new = parse_uint(request, "to", minimum=1)
        tip = self.node.chain.tip()
        size = tip.log_size if tip is not None else 0
        if new > size:  # a size the log has not reached: nothing to prove yet
            raise NotFound(f"the log has {size} leaves; no consistency proof to size {new}")
        gap = self.node.chain.history_gap
        snapshot = self.node.chain.header(gap.stop - 1) if gap else None
        if snapshot is not None and old < snapshot.log_size:
            raise below_snapshot(gap, f"the log below size {snapshot.log_size}")
        return json_response(build_consistency(self.node.chain, old, new))

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


def _note_response(body: bytes, height: int | None = None) -> web.Response:
    # Checkpoint-Height: which block's validator set signed it (the note
    # itself names only the log size); a verifier checks the note's root
    # against that block, so the header is a hint it does not trust.
    headers = {"Cache-Control": "no-cache"}
    if height is not None:
        headers["Checkpoint-Height"] = str(height)
    return web.Response(body=body, content_type="text/plain", charset="utf-8", headers=headers)


def build_app(node: ApiBackend, *, max_body_bytes: int, max_inflight: int, max_envelopes: int,
              max_trace_depth: int, max_trace_nodes: int,
              body_timeout_s: float = 30.0, genesis_json: bytes | None = None,
              max_requests_per_client: int | None = None) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes,
                          middlewares=make_middlewares(node.metrics, max_inflight,
                                                       body_timeout_s,
                                                       max_body_bytes=max_body_bytes,
                                                       max_per_client=max_requests_per_client))
    api = Api(node, max_envelopes=max_envelopes, max_trace_depth=max_trace_depth,
              max_trace_nodes=max_trace_nodes, genesis_json=genesis_json)
    app.add_routes(api.routes())
    app.add_routes(Explorer().routes())
    return app
