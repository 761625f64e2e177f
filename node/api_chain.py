"""Routes over the chain (PROTOCOL §6, §6.1): blocks, consistency proofs
and the C2SP checkpoints cosigned by the validators."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ledger.encoding import to_b64, to_hex
from ledger.errors import BadRequest, NotFound
from ledger.proofs import build_consistency
from ledger.statesync import below_snapshot

from .access import grant_of
from .api_common import ApiBackend, cosigned, json_response, note_response, parse_flag, parse_uint


class ChainRoutes:
    """``/v1/blocks``, ``/v1/consistency`` and the checkpoint routes."""

    def __init__(self, node: ApiBackend) -> None:
        self.node = node

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/blocks/latest", self.get_latest_block),
            web.get("/v1/blocks/{height}", self.get_block),
            web.get("/v1/consistency", self.get_consistency),
            web.get("/checkpoint", self.get_checkpoint),
            web.get("/v1/checkpoints/{height}", self.get_checkpoint_at),
            web.get("/v1/checkpoint-keys", self.get_checkpoint_keys),
            web.post("/v1/checkpoints/{height}/cosignatures", self.post_cosignature),
        ]

    # blocks, consistency ---------------------------------------------------

    async def get_latest_block(self, request: web.Request) -> web.Response:
        height = self.node.chain.height
        if height < 1:
            raise NotFound("no block has been committed yet")
        return json_response(self._block(height, _envelopes_flag(request)))

    async def get_block(self, request: web.Request) -> web.Response:
        raw = request.match_info["height"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
            raise BadRequest("height must be a positive integer or 'latest'")
        height = int(raw)
        if height < 1 or height > self.node.chain.height:
            raise NotFound(f"no block at height {height} (tip is {self.node.chain.height})")
        return json_response(self._block(height, _envelopes_flag(request)))

    def _block(self, height: int, with_envelopes: bool) -> dict[str, Any]:
        chain = self.node.chain
        if height in chain.history_gap:  # also the tip, right after a state sync
            raise below_snapshot(chain.history_gap, f"block {height}")
        header, cert = chain.header(height), chain.certificate(height)
        if header is None or cert is None:
            raise NotFound(f"no block at height {height}")
        ids = chain.block_record_ids(height)
        doc: dict[str, Any] = {
            "height": height,
            "hash": to_hex(header.hash),
            "header": to_b64(header.header_bytes),
            "fields": header.to_json(),
            "certificate": cert.to_json(),
            "records": [to_hex(i) for i in ids],
        }
        if with_envelopes:
            first = header.log_size - header.tx_count
            doc["envelopes"] = [to_b64(chain.envelope_at(first + i)) for i in range(header.tx_count)]
            entries = chain.verdict_entries(height)
            if entries is not None:  # PROTOCOL §10.5: what the version 2 header's root covers
                doc["verdicts"] = [to_b64(e) for e in entries]
        return doc

    async def get_consistency(self, request: web.Request) -> web.Response:
        old = parse_uint(request, "from", minimum=1)
        new = parse_uint(request, "to", minimum=1)
        tip = self.node.chain.tip()
        size = tip.log_size if tip is not None else 0
        if new > size:  # a size the log has not reached: nothing to prove yet
            raise NotFound(f"the log has {size} leaves; no consistency proof to size {new}")
        gap = self.node.chain.history_gap
        snapshot = self.node.chain.header(gap.stop - 1) if gap else None
        if snapshot is not None and old < snapshot.log_size:
            raise below_snapshot(gap, f"the log below size {snapshot.log_size}")
        return json_response(build_consistency(self.node.chain, old, new))

    # C2SP checkpoints (PROTOCOL §6.1) ----------------------------------------

    async def get_checkpoint(self, request: web.Request) -> web.Response:
        height, signed = cosigned(self.node).latest()
        return note_response(signed, height)

    async def get_checkpoint_at(self, request: web.Request) -> web.Response:
        height = _height(request)
        return note_response(cosigned(self.node).note_at(height), height)

    async def post_cosignature(self, request: web.Request) -> web.Response:
        """A trusted witness's tlog-cosignature/v1 line (PROTOCOL §13)."""
        height = _height(request)
        body = await request.read()  # read by the middleware already, within http limits
        if len(body) > MAX_COSIGNATURE_BYTES:
            raise BadRequest(f"a cosignature is one line of at most {MAX_COSIGNATURE_BYTES} bytes")
        cosig = cosigned(self.node).witness_cosign(height, body)
        return json_response({"height": height, "witness": cosig.witness.name,
                              "timestamp": cosig.timestamp})

    async def get_checkpoint_keys(self, request: web.Request) -> web.Response:
        cps = cosigned(self.node)
        height = max(1, self.node.chain.height)
        return json_response({
            "origin": cps.origin,
            "quorum": cps.quorum(height),
            "keys": [{"validator": v.index, "name": v.name, "vkey": v.vkey}
                     for v in cps.verifiers(height)],
            "witnesses": [{"name": w.name, "vkey": w.vkey} for w in cps.witnesses],
        })


MAX_COSIGNATURE_BYTES = 1024


def _height(request: web.Request) -> int:
    raw = request.match_info["height"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise BadRequest("height must be a positive integer")
    return int(raw)


def _envelopes_flag(request: web.Request) -> bool:
    """``envelopes=1``: the records' contents, which ``read_own`` may not see
    (PROTOCOL §11.4)."""
    wanted = parse_flag(request, "envelopes")
    if wanted:
        grant_of(request).check_bodies("a block's envelopes")
    return wanted
