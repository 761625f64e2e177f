"""The operator listener: ``GET /metrics`` and ``GET /health`` without request
signatures, on an address of their own (``http.operator_port``).

A Prometheus scraper or a load balancer's probe holds no registered key;
rather than opening ``/metrics`` on the API listener, an operator serves it
here, on an address only the monitoring network reaches (127.0.0.1 by
default), over TLS when the node has TLS.  Nothing else is served: every
other path is 404.
"""

from __future__ import annotations

from aiohttp import web

from .api_common import ApiBackend
from .api_middleware import make_middlewares
from .api_node import NodeRoutes

# Requests handled at once on this listener (scrapes and probes are few).
MAX_INFLIGHT = 16


def build_operator_app(node: ApiBackend) -> web.Application:
    routes = NodeRoutes(node, max_envelopes=1, max_trace_depth=0)
    app = web.Application(client_max_size=1024,
                          middlewares=make_middlewares(node.metrics, MAX_INFLIGHT, 5.0,
                                                       max_body_bytes=1024))
    app.add_routes([web.get("/metrics", routes.metrics), web.get("/health", routes.health)])
    return app
