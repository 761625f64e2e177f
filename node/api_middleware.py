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
    TooManyFromClient,
    UnsupportedEncoding,
    error_response,
)
from .auth import ACCEPT_SIGNATURE, WWW_AUTHENTICATE
from .metrics import Metrics

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
            if exc.code == "unauthenticated":  # PROTOCOL §11: what to sign, and how
                resp.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
                resp.headers["Accept-Signature"] = ACCEPT_SIGNATURE
            elif resp.status == 401:
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

