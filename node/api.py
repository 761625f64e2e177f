"""The HTTP API of PROTOCOL §6 (aiohttp): the one place its routes are
registered.

Handlers are thin: parse and bound the input, call the node, shape JSON.
Every refusal is a :class:`~ledger.errors.LedgerError` whose ``code`` picks
the answer; the error middleware is the one place that turns exceptions
into ``{"error", "message"}`` responses, so no input can produce a 5xx
except through a bug, which is logged with its traceback.
"""

from __future__ import annotations

from functools import partial
from typing import Protocol

from aiohttp import web

from .api_evaluate import EvaluateRoutes
from .api_chain import ChainRoutes
from .api_common import CODE_FOR_STATUS, SERVER_OPTIONS, ApiBackend, parse_uint
from .api_middleware import make_middlewares
from .auth import Authenticator, make_auth_middleware
from .api_node import NodeRoutes
from .api_records import RecordRoutes, refuse_unread_submission
from .api_reviews import ReviewRoutes
from .ratelimit import ClientLimits
from .explorer import Explorer

# What other modules and the tests import from here.
__all__ = ["CODE_FOR_STATUS", "SERVER_OPTIONS", "ApiBackend", "RouteGroup", "build_app",
           "parse_uint", "route_groups"]


class RouteGroup(Protocol):
    """A module's routes (``api_records``, ``api_chain``, ``api_node``, the explorer)."""

    def routes(self) -> list[web.RouteDef]: ...


def route_groups(node: ApiBackend, *, max_envelopes: int, max_trace_depth: int,
                 max_trace_nodes: int, genesis_json: bytes | None = None
                 ) -> list[RouteGroup]:
    """Every route module, in the order their routes are added: records
    first, as proofs are the most frequent read."""
    return [
        RecordRoutes(node, max_envelopes=max_envelopes, max_trace_depth=max_trace_depth,
                     max_trace_nodes=max_trace_nodes),
        ChainRoutes(node),
        EvaluateRoutes(node),
        ReviewRoutes(node),
        NodeRoutes(node, max_envelopes=max_envelopes, max_trace_depth=max_trace_depth,
                   genesis_json=genesis_json),
        Explorer(),
    ]


def build_app(node: ApiBackend, *, max_body_bytes: int, max_inflight: int, max_envelopes: int,
              max_trace_depth: int, max_trace_nodes: int,
              body_timeout_s: float = 30.0, genesis_json: bytes | None = None,
              client_limits: ClientLimits | None = None,
              auth: Authenticator | None = None) -> web.Application:
    """The node's aiohttp application; with ``auth``, every request is
    authenticated and authorised (node/auth.py, node/access.py), without it
    every route is open (``auth.insecure_open``, and in-process tests)."""
    middlewares = make_middlewares(node.metrics, max_inflight, body_timeout_s,
                                   max_body_bytes=max_body_bytes,
                                   client_limits=client_limits,
                                   refuse_unread=partial(refuse_unread_submission, node))
    if auth is not None:  # after the address limits, before the identity ones
        middlewares.insert(len(middlewares) - (client_limits is not None),
                           make_auth_middleware(auth))
    app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
    for group in route_groups(node, max_envelopes=max_envelopes, max_trace_depth=max_trace_depth,
                              max_trace_nodes=max_trace_nodes, genesis_json=genesis_json):
        app.add_routes(group.routes())
    return app
