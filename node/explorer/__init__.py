"""The web explorer served at ``/explorer/`` (docs/auditors.md "The explorer").

A read-only page of small ES modules (``static/``, package data) that reads
the node's JSON API and verifies every proof it shows in the browser. The
node only serves the files: there is no build step and no third-party asset,
and the page loads nothing from anywhere but this node.
"""

from __future__ import annotations

import re
from importlib import resources

from aiohttp import web

from ledger.errors import NotFound

PREFIX = "/explorer"
_NAME = re.compile(r"^[a-z0-9_-]{1,40}\.(js|css|html)$")
_TYPES = {"js": "text/javascript", "css": "text/css", "html": "text/html"}
# Scripts, styles, fetches and images only from this origin; no inline
# script, no frames: record text reaches the page as data, never as markup.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _load_static() -> dict[str, bytes]:
    """Every file of ``static/``, read once at startup (a few tens of KiB)."""
    root = resources.files(__package__).joinpath("static")
    return {item.name: item.read_bytes() for item in root.iterdir()
            if item.is_file() and _NAME.match(item.name)}


class Explorer:
    def __init__(self) -> None:
        self.files = _load_static()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(PREFIX, self.redirect),
            web.get(PREFIX + "/", self.index),
            web.get(PREFIX + "/{name}", self.asset),
        ]

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PREFIX + "/")

    async def index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def asset(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.Response:
        match = _NAME.match(name)
        body = self.files.get(name) if match else None
        if match is None or body is None:
            raise NotFound(f"no explorer file {name!r}")
        return web.Response(body=body, headers={"Content-Type": _TYPES[match.group(1)] +
                                                "; charset=utf-8", **_HEADERS})
