"""Catch-up: a validator that is behind fetches certified blocks from peers.

Blocks travel over ``GET /v1/sync/blocks?from=H&limit=N`` between validators
(plain HTTP on the genesis address: nothing in a committed block is secret,
and nothing fetched is trusted).  Only validators are served: each request
is signed with the fetching validator's key (node/syncauth.py).  The answer
is a sequence of MessagePack values, ``{"tip": T}`` and then one
``{"header", "certificate", "envelopes"}`` per block, written block by block
in ``http.stream_chunk_bytes`` pieces, each after the client took the
previous one: a node never holds more than one block of an answer.  The driver feeds each fetched block to the
consensus machine as ``CommittedBlock``; before it is applied, the machine
verifies that the certificate carries a quorum of genesis validators'
precommits for the header hash and validates the block on our tip (height,
prev hash, chain, validator set, ``tx_root`` and ``log_size``/``log_root``
recomputed from the envelopes, nonces, parents), and
:meth:`ChainStore.commit_block` re-checks the header against the tip and the
log in the same write.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgpack
import plyvel
from aiohttp import web

from ledger.blocks import Certificate, Header, certificate_from_bytes, decode_header
from ledger.chain import ChainStore
from ledger.errors import BadEncoding, LedgerError, StorageCorruption
from ledger.genesis import Validator
from ledger.records import Envelope, decode_committed_envelope

from .aio import in_daemon_thread
from .api import parse_uint
from .config import peer_url
from .metrics import Metrics
from .tls import NodeTls

log = logging.getLogger("node.sync")

SYNC_PATH = "/v1/sync/blocks"
MSGPACK = "application/msgpack"

class SyncError(LedgerError):
    """A peer's answer could not be used."""

    code = "unavailable"
    step = "sync"


async def serve_blocks(chain: ChainStore, request: web.Request, *, max_blocks: int,
                       max_bytes: int, chunk_bytes: int = 64 * 1024) -> web.StreamResponse:
    """The server side: consecutive certified blocks from ``from``, bounded in
    count and size, streamed with backpressure (the caller authenticated it)."""
    first = parse_uint(request, "from", minimum=1)
    limit = parse_uint(request, "limit", default=max_blocks, minimum=1)
    limit = min(limit, max_blocks)
    tip = chain.height
    last = min(tip, first + limit - 1)
    # The first block is read before the answer starts, so that a storage
    # error is still an ordinary error answer.
    block = _packed_block(chain, first) if first <= last else None
    resp = web.StreamResponse(headers={"Content-Type": MSGPACK})
    await resp.prepare(request)
    await resp.write(msgpack.packb({"tip": tip}, use_bin_type=True))
    size, height = 0, first
    try:
        while block is not None:
            size += len(block)
            view = memoryview(block)
            for offset in range(0, len(block), chunk_bytes):
                # StreamWriter.write waits for the transport to drain once a
                # chunk's worth is buffered: a client that does not read holds
                # at most one chunk (and one block) here, until the write
                # timeout disconnects it.
                await resp.write(view[offset:offset + chunk_bytes])
            height += 1
            block = _packed_block(chain, height) if height <= last and size < max_bytes \
                else None
    except (LedgerError, plyvel.Error) as exc:
        # Mid-answer nothing else can be said: log it and cut the answer, which
        # the fetching node then refuses (a truncated sequence).
        log.error("block sync answer cut at height %d: %s", height, exc)
        if request.transport is not None:
            request.transport.abort()
        return resp
    await resp.write_eof()
    return resp


def _packed_block(chain: ChainStore, height: int) -> bytes:
    header_bytes = chain.header_bytes(height)
    cert = chain.certificate(height)
    if header_bytes is None or cert is None:
        raise StorageCorruption(f"block {height} at or below the tip is not stored")
    return msgpack.packb({"header": header_bytes, "certificate": cert.to_bytes(),  # type: ignore[no-any-return]
                          "envelopes": chain.block_envelopes(height)}, use_bin_type=True)


def _check_block(b: Any) -> dict[str, Any]:
    if not isinstance(b, dict) or not isinstance(b.get("header"), bytes) \
            or not isinstance(b.get("certificate"), bytes) \
            or not isinstance(b.get("envelopes"), list) \
            or not all(isinstance(e, bytes) for e in b["envelopes"]):
        raise BadEncoding("sync block must be {header, certificate, envelopes}")
    return b


def _parse_blocks(body: bytes) -> tuple[int, list[dict[str, Any]]]:
    """``(tip, blocks)`` from a whole answer (the sequence of the module doc)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                max_buffer_size=max(len(body), 1))
    unpacker.feed(body)
    try:
        values = list(unpacker)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BadEncoding(f"sync answer is not MessagePack: {exc}") from None
    if unpacker.tell() != len(body):
        raise BadEncoding("sync answer ends inside a block")
    if not values or not isinstance(values[0], dict) or set(values[0]) != {"tip"} \
            or not isinstance(values[0]["tip"], int):
        raise BadEncoding("sync answer must start with {tip}")
    return values[0]["tip"], [_check_block(b) for b in values[1:]]


FetchedBlock = tuple[Header, list[Envelope], Certificate]
# (the validator asked, the request's path and query) -> authentication headers
Signer = Callable[[Validator, str], dict[str, str]]

# A sync answer larger than this is refused (the peer is skipped): answers
# hold at least one block, so the bound is far above any block's size.
MAX_ANSWER_BYTES = 1 << 30
_READ_CHUNK = 1 << 20


def _read_bounded(resp: http.client.HTTPResponse, limit: int, deadline: float,
                  peer: str) -> bytes:
    """The answer's body, refused past ``limit`` bytes or ``deadline``: a
    peer cannot hold a fetch open (or fill memory) by trickling bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{peer} did not finish its sync answer in time")
        chunk = resp.read1(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise SyncError(f"{peer} sent a sync answer over {limit} bytes")
        chunks.append(chunk)


class BlockSync:
    """Fetches certified blocks from the peers that are ahead.

    Fetching only parses; verification and application happen in the
    consensus machine (certificate, header chain, recomputed roots) and
    ``ChainStore.commit_block`` (header against the tip and the log, again),
    so a block from a lying peer is refused there.
    """

    def __init__(
        self,
        chain: ChainStore,
        peers: Sequence[Validator],
        metrics: Metrics,
        *,
        batch_blocks: int = 64,
        request_timeout_s: float = 15.0,
        sign: Signer | None = None,
        tls: NodeTls | None = None,
    ) -> None:
        self.chain = chain
        self.tls = tls  # peers are fetched from over HTTPS (node/tls.py NodeTls.https)
        self.peers = list(peers)
        self.metrics = metrics
        self.batch_blocks = batch_blocks
        self.timeout_s = request_timeout_s  # a whole fetch, and each socket operation in it
        self.peer_heights: dict[int, int] = {}  # learnt from status gossip and sync answers
        self.sign = sign  # headers that prove we are a validator (node/syncauth.py)

    async def probe_heights(self, session: aiohttp.ClientSession,
                            timeout_s: float = 2.0) -> None:
        """Ask every peer's ``/v1/status`` for its height, all at once.

        Status gossip would tell us within a second or two; a node that has
        just (re)started asks instead, so catch-up begins at once.  Peers
        that do not answer in time are skipped."""
        timeout = aiohttp.ClientTimeout(total=timeout_s)

        async def one(peer: Validator) -> None:
            try:
                async with session.get(peer_url(peer, "/v1/status", self.tls is not None),
                                       timeout=timeout,
                                       ssl=self.tls.aiohttp_ssl(peer.pubkey)
                                       if self.tls is not None else True) as resp:
                    doc = await resp.json() if resp.status == 200 else None
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
                return
            height = doc.get("height") if isinstance(doc, dict) else None
            if isinstance(height, int) and not isinstance(height, bool) and height >= 0:
                self.note_height(peer.index, height)

        await asyncio.gather(*(one(p) for p in self.peers))

    def note_height(self, peer: int, height: int) -> None:
        if height > self.peer_heights.get(peer, -1):
            self.peer_heights[peer] = height

    def height_of_at_least(self, k: int) -> int:
        """The greatest height that ``k`` peers report reaching (0 if fewer report).

        With k = f+1 at least one honest validator is there, so one lying peer
        cannot send us chasing blocks that do not exist.
        """
        heights = sorted(self.peer_heights.values(), reverse=True)
        return heights[k - 1] if len(heights) >= k else 0

    def record(self, blocks: int, records: int) -> None:
        self.metrics.sync_blocks.inc(blocks)
        self.metrics.sync_records.inc(records)

    async def fetch(self, first: int, limit: int | None = None) -> list[FetchedBlock]:
        """Up to ``limit`` (default ``batch_blocks``) blocks from height
        ``first`` on, from the first peer that has them."""
        # Most advanced peers first; peers of unknown height last (they may
        # still have the block: heights are learnt lazily).
        order = sorted(self.peers, key=lambda p: -self.peer_heights.get(p.index, 0))
        for peer in order:
            if self.peer_heights.get(peer.index, first) < first:
                continue
            try:
                tip, blocks = await in_daemon_thread(
                    self._fetch_from, peer, first,
                    min(limit or self.batch_blocks, self.batch_blocks))
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                log.info("sync from %s failed: %s", peer.name, exc)
                continue
            except LedgerError as exc:
                log.warning("peer %s served an unusable sync answer: %s", peer.name, exc)
                continue
            self.peer_heights[peer.index] = tip  # its own word beats what we guessed
            if blocks:
                return blocks
        return []

    def _fetch_from(self, peer: Validator, first: int,
                    limit: int) -> tuple[int, list[FetchedBlock]]:
        """``(peer's tip, decoded blocks)``, in a thread of its own.

        Blocking on purpose: while the event loop applies the previous batch
        (a large block in one go), an asyncio read would
        only advance one socket read between blocks, leaving the answer
        half-read when it is needed.  A thread drains the socket (blocking
        I/O releases the GIL) and decodes the envelopes (pure functions)
        alongside."""
        url = urlsplit(peer_url(peer, SYNC_PATH, self.tls is not None))
        deadline = time.monotonic() + self.timeout_s
        conn = (self.tls.https(peer.pubkey, url.hostname or "", url.port, self.timeout_s)
                if self.tls is not None else
                http.client.HTTPConnection(url.hostname or "", url.port, timeout=self.timeout_s))
        try:
            target = f"{url.path}?from={first}&limit={limit}"
            conn.request("GET", target,
                         headers=self.sign(peer, target) if self.sign is not None else {})
            resp = conn.getresponse()
            if resp.status != 200:
                raise SyncError(f"{peer.name} answered {resp.status}")
            body = _read_bounded(resp, MAX_ANSWER_BYTES, deadline, peer.name)
        finally:
            conn.close()
        tip, raw_blocks = _parse_blocks(body)
        out: list[FetchedBlock] = []
        expected = first
        for raw in raw_blocks:
            header = decode_header(raw["header"])
            if header.height != expected:
                raise SyncError(f"{peer.name} sent height {header.height}, expected {expected}")
            # Certified blocks: the certificate's tx_root names these bytes,
            # checked (before any record rule) when the block is validated.
            out.append((header, [decode_committed_envelope(e) for e in raw["envelopes"]],
                        certificate_from_bytes(raw["certificate"])))
            expected += 1
        return tip, out
