"""Routes over records (PROTOCOL §6): submission, a record, its proof
bundle or tlog-proof, and its lineage trace."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import msgpack
from aiohttp import web

from ledger import note
from ledger.verdict_store import verdict_doc
from ledger.encoding import from_b64, to_b64, to_hex
from ledger.errors import (
    BadEncoding,
    BadRequest,
    LedgerError,
    NotCommitted,
    NotFound,
    RateLimited,
    TooMany,
    Unavailable,
)
from ledger.proofs import build_bundle
from ledger.proofs_verdicts import build_served_bundle
from ledger.records import decode_committed_envelope, decode_envelope
from ledger.statesync import below_snapshot

from . import trace
from .access import OWN, grant_of
from .api_common import (
    JSON_TYPES,
    MSGPACK_TYPES,
    ApiBackend,
    UnsupportedMediaType,
    cosigned,
    json_response,
    note_response,
    parse_id,
    parse_uint,
)
from .commit_waiters import MAX_WAIT_MS


def _busy(node: ApiBackend) -> LedgerError | None:
    """Why this node takes no submission now (503, 429), or None."""
    reason = node.unavailable_reason()
    if reason is not None:
        return Unavailable(reason)
    pushback = node.mempool.pushback()
    if pushback is not None:
        return RateLimited(pushback)
    return None


def refuse_unread_submission(node: ApiBackend, request: web.Request) -> LedgerError | None:
    """For the error middleware, before a body is read: a submission in a
    media type this route takes, to a node that would refuse it whatever it
    holds (unavailable, or pushing back), is refused unread."""
    if request.method != "POST" or request.path != "/v1/records":
        return None
    ctype = request.content_type
    if ctype not in JSON_TYPES and ctype not in MSGPACK_TYPES:
        return None  # the handler says 415
    return _busy(node)


class RecordRoutes:
    """``/v1/records`` and everything under it."""

    def __init__(self, node: ApiBackend, *, max_envelopes: int, max_trace_depth: int,
                 max_trace_nodes: int) -> None:
        self.node = node
        self.max_envelopes = max_envelopes
        self.max_trace_depth = max_trace_depth
        self.max_trace_nodes = max_trace_nodes
        self._trace_gate = asyncio.Semaphore(trace.TRACE_BUILDERS)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/records", self.submit),
            # The proof route first: aiohttp tries routes under one prefix in
            # this order, and proofs are the most frequent read.
            web.get("/v1/records/{id}/proof", self.get_proof),
            web.get("/v1/records/{id}", self.get_record),
            web.get("/v1/records/{id}/trace", self.get_trace),
        ]

    # POST /v1/records --------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        ctype = request.content_type
        if ctype not in JSON_TYPES and ctype not in MSGPACK_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type {ctype!r}: send application/json or application/msgpack"
            )
        busy = _busy(self.node)  # asked again: the body took time to arrive
        if busy is not None:
            raise busy
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
        wait_ms = parse_uint(request, "wait_ms", default=0, maximum=MAX_WAIT_MS)
        chain = self.node.chain
        location = chain.record_location(rid)
        if location is None and wait_ms and (waiting := self.node.mempool.get(rid)) is not None:
            # Long poll (PROTOCOL §6): answer when the record commits, or
            # after wait_ms as without it.  Who may not read the record even
            # once committed is refused before waiting; who may not see it
            # pending waits too, and is answered 409 if it still is.
            grant_of(request).check_record(waiting.record.submitter, pending=False)
            await self.node.mempool.waiters.wait(rid, wait_ms / 1000)
            location = chain.record_location(rid)
        if location is not None:
            height, leaf_index = location
            raw = chain.envelope_at(leaf_index)
            doc: dict[str, Any] = {"id": to_hex(rid), "status": "committed", "height": height,
                                   "leaf_index": leaf_index}
            verdict = chain.record_verdict(rid)
            if verdict is not None:  # PROTOCOL §10.8: what the policy decided, and where it stands
                doc["verdict"] = verdict_doc(verdict, chain.verdicts.held.get(rid))
        else:
            pending = self.node.mempool.get(rid)
            if pending is None:
                raise self._not_found(rid)
            raw = pending.envelope_bytes
            doc = {"id": to_hex(rid), "status": "pending"}
        env = decode_envelope(raw, cosigs=True)
        grant_of(request).check_record(env.record.submitter, pending=location is None)
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
        grant = grant_of(request)
        if grant.scope == OWN:  # read_own: only the caller's own records
            env = decode_committed_envelope(self.node.chain.envelope_at(location[1]))
            grant.check_record(env.record.submitter, pending=False)
        height = None
        if request.query_string and "height" in request.query:  # parsed only when present
            height = parse_uint(request, "height", minimum=1)
        fmt = request.query.get("format", "json") if request.query_string else "json"
        if fmt == "tlog-proof":
            return self._tlog_proof(rid, location)
        if fmt != "json":
            raise BadRequest("format must be json or tlog-proof")
        chain = self.node.chain
        if height is None:  # version 1 or 2, with the verdict proof, as PROTOCOL §6 says
            try:
                return json_response(build_served_bundle(chain, chain.membership, rid,
                                                         location=location))
            except NotFound:  # a governance record it carries is below a state-sync snapshot
                gap = chain.history_gap
                if not gap:
                    raise
                raise below_snapshot(gap, "a governance record this proof carries") from None
        return json_response(build_bundle(chain, rid, height, location=location))

    def _tlog_proof(self, rid: bytes, location: tuple[int, int]) -> web.Response:
        """The record's inclusion in the latest cosigned checkpoint, as a
        c2sp.org/tlog-proof@v1 file (PROTOCOL §6.1)."""
        cps = cosigned(self.node)
        height, signed = cps.latest()
        if height < location[0]:
            raise NotCommitted(f"record {to_hex(rid)} is not yet in a cosigned checkpoint")
        header = self.node.chain.header(height)
        assert header is not None
        path = self.node.chain.log.inclusion_path(location[1], header.log_size)
        return note_response(note.format_tlog_proof(location[1], path, signed))


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
