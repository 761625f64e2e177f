"""What every HTTP route module shares (PROTOCOL §6): the node surface the
routes read (:class:`ApiBackend`), the JSON answer and error shapes, the
API's own refusals and the query-parameter parsers.

The routes live by area in ``api_records``, ``api_chain`` and ``api_node``;
the error middleware in ``api_middleware``; ``api`` registers them all.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from aiohttp import web

from ledger.chain import ChainStore
from ledger.encoding import UINT64_MAX, from_hex
from ledger.errors import BadEncoding, BadRequest, LedgerError, NotFound
from ledger.genesis import Genesis
from ledger.records import ID_LEN

from .checkpoints import Checkpoints
from .health import Health
from .mempool import Mempool
from .metrics import Metrics

JSON_TYPES = ("application/json",)
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack")

STATUS_FOR_CODE = {
    "unauthorized": 401,
    "unauthenticated": 401,
    "forbidden": 403,
    "forbidden_role": 403,
    "too_large": 413,
    "unsupported_media_type": 415,
    "not_found": 404,
    "not_committed": 409,
    "rate_limited": 429,
    "alert_flood": 429,  # one envelope's refusal in a 202's results (PROTOCOL §12.3)
    "param_out_of_range": 400,  # likewise (PROTOCOL §9.3); 400 wherever it is a status
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

    @property
    def validator_index(self) -> int | None: ...

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

    async def stream_blocks(self, request: web.Request) -> web.StreamResponse: ...

    def breakers_doc(self) -> dict[str, Any]: ...


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


class SlowBody(LedgerError):
    """The request body did not arrive within ``http.body_timeout_ms``."""

    code = "bad_request"



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



def note_response(body: bytes, height: int | None = None) -> web.Response:
    # Checkpoint-Height: which block's validator set signed it (the note
    # itself names only the log size); a verifier checks the note's root
    # against that block, so the header is a hint it does not trust.
    headers = {"Cache-Control": "no-cache"}
    if height is not None:
        headers["Checkpoint-Height"] = str(height)
    return web.Response(body=body, content_type="text/plain", charset="utf-8", headers=headers)


def cosigned(node: ApiBackend) -> Checkpoints:
    """The node's C2SP checkpoints (PROTOCOL §6.1), or 404 if it serves none."""
    cps = node.checkpoints()
    if cps is None:
        raise NotFound("this node serves no checkpoints (its chain id cannot be an origin)")
    return cps
