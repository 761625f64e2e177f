"""The API's one error middleware: input bounds checked before a body is
read, per-client and global in-flight limits, and every exception turned
into a ``{"error", "message"}`` answer (PROTOCOL §6), counted and timed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import plyvel
from aiohttp import web

from ledger.errors import LedgerError, RateLimited, StorageCorruption

from .api_common import (
    CODE_FOR_STATUS,
    BodyTooLarge,
    SlowBody,
    UnsupportedEncoding,
    error_response,
)
from .auth import ACCEPT_SIGNATURE, WWW_AUTHENTICATE
from .metrics import Metrics
from .ratelimit import (EXEMPT_ROUTES, LONG_LIVED_ROUTES, ClientLimits, ClientRateLimited,
                        limit_middlewares)

log = logging.getLogger("node.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


# Asked before a request's body is read: a refusal that does not depend on
# the body (node/api_records.py: a saturated node's pushback), or None.
EarlyRefusal = Callable[[web.Request], LedgerError | None]


def make_middlewares(metrics: Metrics, max_inflight: int,
                     body_timeout_s: float = 30.0, *, max_body_bytes: int | None = None,
                     client_limits: ClientLimits | None = None,
                     refuse_unread: EarlyRefusal | None = None) -> list[Any]:
    """The errors middleware, then (with ``client_limits``) the limits per
    client address and per identity (node/ratelimit.py); build_app puts
    authentication between those two.  ``refuse_unread`` answers before
    the body is read; the connection is then closed, as for the other
    refusals that leave a body unread."""
    inflight = 0

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal inflight
        start = time.perf_counter()
        route = _route_name(request)
        status = 500
        counted = False
        unread = False
        try:
            coding = _content_coded(request)
            if coding is not None:  # checked before a byte of the body is read
                raise UnsupportedEncoding(f"{coding!r}: this node takes uncompressed "
                                          f"bodies only (identity)")
            length = request.content_length
            if max_body_bytes is not None and length is not None and length > max_body_bytes:
                raise BodyTooLarge(f"body of {length} bytes; at most {max_body_bytes}")
            if refuse_unread is not None and request.can_read_body:
                # A saturated node refuses a submission before reading it: the
                # client retries anyway, and reading megabytes only to refuse
                # them was a tenth of a node's CPU under sustained overload
                # (docs/performance.md).
                early = refuse_unread(request)
                if early is not None:
                    unread = True
                    raise early
            if request.can_read_body and route != "/v1/peer":
                # The whole body first, within a deadline and before taking an
                # inflight slot: slow-loris clients hold neither a slot nor a task.
                try:
                    async with asyncio.timeout(body_timeout_s):
                        await request.read()
                except TimeoutError:
                    raise SlowBody(f"body_timeout: request body not received within "
                                   f"{body_timeout_s:g}s") from None
            inflight += 1
            counted = True
            if inflight > max_inflight and route not in EXEMPT_ROUTES:
                raise RateLimited(f"more than {max_inflight} requests in flight; retry later")
            if route in LONG_LIVED_ROUTES:  # bounded by its own limit, not by a slot
                inflight -= 1
                counted = False
            response = await handler(request)
            status = response.status
            return response
        except LedgerError as exc:
            metrics.rejected.labels(code=exc.code).inc()
            if isinstance(exc, StorageCorruption):  # damaged store: say what, answer 503
                log.error("storage corruption while serving %s %s: %s", request.method,
                          request.path, exc, extra={"damaged": exc.message})
            resp = error_response(exc.code, exc.message)
            if unread or isinstance(exc, CLOSES_CONNECTION):
                resp.force_close()
            if isinstance(exc, UnsupportedEncoding):  # RFC 9110 §15.5.16
                resp.headers["Accept-Encoding"] = "identity"
            if exc.code == "unauthenticated":  # PROTOCOL §11: what to sign, and how
                resp.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
                resp.headers["Accept-Signature"] = ACCEPT_SIGNATURE
            elif resp.status == 401:
                resp.headers["WWW-Authenticate"] = "Ledger-Validator"
            if resp.status == 429:  # RFC 6585 §4: say when to come back (PROTOCOL §11.5)
                resp.headers["Retry-After"] = str(
                    exc.retry_after_s if isinstance(exc, ClientRateLimited) else 1)
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
            if exc.status == 429:  # peer handshakes over their allowance (node/transport.py)
                resp.headers["Retry-After"] = "1"
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
            metrics.observe_request(route, request.method, status, time.perf_counter() - start)

    if client_limits is None:
        return [errors]
    by_address, by_identity = limit_middlewares(
        _route_name, client_limits,
        on_limited=lambda scope, limit: metrics.client_limited.labels(scope=scope,
                                                                      limit=limit).inc())
    return [errors, by_address, by_identity]


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"

