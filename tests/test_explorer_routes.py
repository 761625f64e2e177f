"""The node's explorer routes and ``GET /v1/genesis``, in process (no
browser): what is served, with which headers, and what is refused; and the
static files keep to the explorer's rules (no HTML from strings, nothing
loaded from elsewhere)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode

from node.api import build_app
from node.explorer import Explorer

STATIC = Path(__file__).resolve().parent.parent / "node" / "explorer" / "static"
GENESIS_FILE = b'{"chain": "x",\n  "validators": []}\n'  # spacing kept: the file's own bytes


async def client_for(node: StubNode, genesis_json: bytes | None) -> TestClient[Any, Any]:
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000, genesis_json=genesis_json)
    return TestClient(TestServer(app))


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    async with await client_for(StubNode(), GENESIS_FILE) as c:
        yield c


async def test_genesis_is_served_byte_for_byte(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v1/genesis")
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.read() == GENESIS_FILE


async def test_genesis_without_file_bytes_is_the_parsed_document() -> None:
    node = StubNode()
    async with await client_for(node, None) as c:
        resp = await c.get("/v1/genesis")
        assert resp.status == 200
        assert json.loads(await resp.read()) == node.genesis.raw


async def test_explorer_page_and_modules(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/explorer", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/explorer/"
    page = await client.get("/explorer/")
    assert page.status == 200 and page.content_type == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for name, ctype in (("app.js", "text/javascript"), ("verify.js", "text/javascript"),
                        ("explorer.css", "text/css")):
        resp = await client.get(f"/explorer/{name}")
        assert resp.status == 200 and resp.content_type == ctype
        assert await resp.read() == (STATIC / name).read_bytes()


@pytest.mark.parametrize("name", ["nope.js", "..%2Fapi.py", "%2E%2E%2F__init__.py", "APP.JS",
                                  "app.js.map", "__init__.py"])
async def test_other_names_are_not_found(client: TestClient[Any, Any], name: str) -> None:
    resp = await client.get(f"/explorer/{name}")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


def test_every_module_imported_is_served() -> None:
    served = set(Explorer().files)
    assert served == {p.name for p in STATIC.iterdir()}
    page = (STATIC / "index.html").read_text()
    wanted = set(re.findall(r'(?:src|href)="([a-z0-9_-]+\.(?:js|css))"', page))
    for path in STATIC.glob("*.js"):
        wanted |= set(re.findall(r'from "\./([a-z0-9_-]+\.js)"', path.read_text()))
    assert wanted and wanted <= served


def test_static_files_build_no_html_from_strings_and_load_nothing_from_elsewhere() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                     "new Function"):
            assert sink not in text, (path.name, sink)
        # The only absolute URL is the SVG namespace name (never fetched).
        urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)
