"""Label sets a client can make the node keep: the request-latency method
label is one of a fixed set (node/metrics.py REQUEST_METHODS), whatever
methods clients send, so ``/metrics`` and the registry stay bounded."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode

from node.api import build_app
from node.metrics import REQUEST_METHODS, Metrics

# Methods aiohttp's parser lets through to the application besides RFC 9110's.
EXTENSION_METHODS = ("PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK",
                     "SEARCH", "PURGE", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE",
                     "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "LINK", "UNLINK",
                     "BIND", "REBIND", "UNBIND", "ACL", "MKCALENDAR", "SOURCE")


def _methods(m: Metrics) -> set[str]:
    return {s.labels["method"] for family in m.registry.collect()
            if family.name == "ledger_http_request_seconds"
            for s in family.samples if s.name.endswith("_count")}


def test_an_unknown_method_is_labelled_other() -> None:
    m = Metrics()
    for method in EXTENSION_METHODS + ("GET", "POST"):
        m.observe_request("/v1/status", method, 405, 0.001)
    assert _methods(m) == {"GET", "POST", "other"}
    assert _methods(m) <= REQUEST_METHODS | {"other"}


async def test_methods_sent_over_http_make_a_bounded_set_of_labels() -> None:
    node = StubNode()
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app)) as client:
        c: TestClient[Any, Any] = client
        for method in EXTENSION_METHODS:
            for path in ("/v1/status", "/v1/records", "/nowhere"):
                async with c.request(method, path) as resp:
                    assert resp.status in (400, 404, 405)
    assert _methods(node.metrics) == {"other"}
