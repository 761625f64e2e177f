"""A read-only node served from a :class:`memchain.MemChain`, for CLI tests.

It answers the four routes ``ledger-audit`` reads (status, blocks, trace,
consistency) in the node's JSON shapes, from a thread with the standard
library's HTTP server, so the CLI runs unchanged: its SDK client, its JSON
decoding and its output.  ``override`` maps a path to the ``(status, raw
body)`` to answer instead (a hostile or broken node).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from memchain import MemChain

from ledger.proofs import build_bundle, build_consistency
from ledger.records import decode_envelope


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class FakeNode:
    def __init__(self, chain: MemChain) -> None:
        self.chain = chain
        self.override: dict[str, tuple[int, bytes]] = {}
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                status, body = node.override.get(url.path, (200, b""))
                if url.path not in node.override:
                    try:
                        body = json.dumps(node.answer(url.path, parse_qs(url.query))).encode()
                    except LookupError as exc:
                        status, body = 404, json.dumps({"error": "not_found", "message": str(exc)}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeNode":
        self.thread.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    # -- answers ------------------------------------------------------------

    def answer(self, path: str, query: dict[str, list[str]]) -> Any:
        parts = path.strip("/").split("/")
        if parts == ["v1", "status"]:
            return {"chain": self.chain.genesis.chain, "height": self.chain.height}
        if parts[:2] == ["v1", "blocks"] and len(parts) == 3:
            height = self.chain.height if parts[2] == "latest" else int(parts[2])
            return self.block(height, query.get("envelopes") == ["1"])
        if parts[:2] == ["v1", "records"] and len(parts) == 4 and parts[3] == "trace":
            depth = int(query["depth"][0]) if "depth" in query else 64
            return self.trace(bytes.fromhex(parts[2]), depth)
        if parts == ["v1", "consistency"]:
            return build_consistency(self.chain, int(query["from"][0]), int(query["to"][0]))
        raise LookupError(path)

    def block(self, height: int, with_envelopes: bool) -> dict[str, Any]:
        header, cert = self.chain.header(height), self.chain.certificate(height)
        if header is None or cert is None:
            raise LookupError(f"no block at height {height}")
        first = header.log_size - header.tx_count
        raws = [self.chain.envelopes[first + i] for i in range(header.tx_count)]
        doc: dict[str, Any] = {
            "height": height, "hash": header.hash.hex(), "header": _b64(header.header_bytes),
            "fields": header.to_json(), "certificate": cert.to_json(),
            "records": [decode_envelope(r, cosigs=True).id.hex() for r in raws],
        }
        if with_envelopes:
            doc["envelopes"] = [_b64(r) for r in raws]
        return doc

    def trace(self, rid: bytes, depth: int) -> dict[str, Any]:
        """The node's breadth-first trace: bundles, parent edges, children."""
        if self.chain.record_location(rid) is None:
            raise LookupError(f"no record {rid.hex()}")
        by_id = {decode_envelope(r, cosigs=True).id: decode_envelope(r, cosigs=True) for r in self.chain.envelopes}
        bundles, edges, seen, frontier = [], [], {rid}, [rid]
        for level in range(depth + 1):
            following = []
            for current in frontier:
                bundles.append(build_bundle(self.chain, current))
                if level == depth:
                    continue
                for parent in by_id[current].record.parents:
                    edges.append([current.hex(), parent.hex()])
                    if parent not in seen:
                        seen.add(parent)
                        following.append(parent)
            frontier = following
            if not frontier:
                break
        children = [i.hex() for i, env in by_id.items() if rid in env.record.parents]
        return {"record": rid.hex(), "bundles": bundles, "edges": edges, "children": children}
