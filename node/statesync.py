"""State sync for a node: fetch a certified snapshot, then back-fill history.

A validator whose store is empty and whose ``sync.mode`` is ``"snapshot"``
asks every peer for ``GET /v1/sync/snapshot`` (signed like block sync,
node/syncauth.py: only validators are served), verifies each answer
(ledger/statesync.py: certificate against genesis, frontier against the
header's ``log_root``), installs the highest one and starts from it.  When
governance changed the validator set, the snapshot carries the governance
records (each with its proof) from which the set in force at its height is
walked from genesis; from peers of an earlier version, which send none, no
snapshot can be checked and the node joins by blocks, saying so in its log.  Then
:class:`HistoryBackfill` fetches blocks 1..H over block sync and writes them
below the snapshot, oldest first.

Until the gap is closed the node does not know every nonce ever used, so:

* ``POST /v1/records`` answers ``503 unavailable`` (``unavailable_reason``),
  and records gossiped by peers are dropped, not admitted;
* it proposes no block and votes nil on every proposal
  (:class:`node.chainapp.HistoryIncomplete`): validators that know the whole
  history decide, and the node applies what they certified;
* reads of a record or block below the snapshot answer ``503 unavailable``,
  and so does ``GET /v1/membership``: governance records below the snapshot
  are not known until back-fill has written them all (their ``g`` index),
  and the membership is then rebuilt.  Meanwhile blocks above the snapshot
  are judged by genesis with the governance records the snapshot carried
  (verified at install) and those committed above it; back-fill checks each
  block below by the validator set walked from genesis.

An index that came with the snapshot could not be checked without the
envelopes it was built from (a peer could leave a used nonce out), so the
node waits for the verified blocks instead of trusting one.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import msgpack
from aiohttp import web

from ledger.chain import ChainStore
from ledger.proofs import build_bundle
from ledger.errors import BadEncoding, LedgerError, NotFound, Unavailable, VerificationError
from ledger.genesis import Genesis, Validator
from ledger.statesync import Backfill, Snapshot, ValidatorSetChanged, verify_snapshot
from ledger.storage import KeyValueStore

from .aio import in_daemon_thread
from .config import peer_url
from .sync import MSGPACK, BlockSync, Signer, SyncError, _read_bounded
from .tls import NodeTls

log = logging.getLogger("node.statesync")

SNAPSHOT_PATH = "/v1/sync/snapshot"
# A snapshot is a header, a certificate, at most 8 partial tiles (16 KiB
# each) and up to MAX_GOVERNANCE governance records with their proofs (a
# few KiB each).
MAX_SNAPSHOT_BYTES = 32 << 20
# Rounds of asking every peer before a node with an empty store falls back to
# replaying blocks (peers still starting, or a chain with no block yet).
SNAPSHOT_ROUNDS = 5
RETRY_S = 1.0


# ---------------------------------------------------------------- serving


def snapshot_response(chain: ChainStore) -> web.Response:
    """``{header, certificate, log_size, tails[, governance]}`` of the tip
    (MessagePack): ``governance`` the §5 bundle of every governance record
    committed so far, in log order, when there is any (PROTOCOL §6)."""
    gap = chain.history_gap
    if gap:  # it would pass on governance it has not verified block by block
        raise Unavailable(f"this node is back-filling blocks {gap.start}..{gap.stop - 1} "
                          "after state sync and serves no snapshot; ask another validator")
    tip = chain.tip()
    if tip is None:
        raise NotFound("no block has been committed yet")
    size, tails = chain.log.frontier()
    cert = chain.certificate(tip.height)
    if size != tip.log_size or cert is None:
        raise Unavailable("a block is being committed; retry")
    doc: dict[str, Any] = {"header": tip.header_bytes, "certificate": cert.to_bytes(),
                           "log_size": size, "tails": list(tails)}
    changes = [c for c in chain.membership.changes if c.committed <= tip.height]
    if changes:
        entries = [build_bundle(chain, c.record_id) for c in changes]
        doc["governance"] = sorted(entries, key=lambda e: int(e["leaf_index"]))
    return web.Response(body=msgpack.packb(doc, use_bin_type=True), content_type=MSGPACK)


def parse_snapshot(body: bytes) -> Snapshot:
    try:
        doc = msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BadEncoding(f"snapshot is not MessagePack: {exc}") from None
    keys = {"header", "certificate", "log_size", "tails"}
    if not isinstance(doc, dict) or set(doc) - {"governance"} != keys \
            or not isinstance(doc["header"], bytes) or not isinstance(doc["certificate"], bytes) \
            or not isinstance(doc["log_size"], int) or doc["log_size"] < 0 \
            or not isinstance(doc["tails"], list) \
            or not all(isinstance(t, bytes) for t in doc["tails"]) \
            or not isinstance(doc.get("governance", []), list):
        raise BadEncoding("snapshot must be {header, certificate, log_size, tails[, governance]}")
    return Snapshot(doc["header"], doc["certificate"], doc["log_size"], tuple(doc["tails"]),
                    tuple(doc.get("governance", ())))


# ---------------------------------------------------------------- fetching


def _fetch_one(peer: Validator, sign: Signer, timeout_s: float,
               tls: NodeTls | None = None) -> bytes:
    url = urlsplit(peer_url(peer, SNAPSHOT_PATH, tls is not None))
    conn = (tls.https(peer.pubkey, url.hostname or "", url.port, timeout_s)
            if tls is not None else
            http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout_s))
    try:
        conn.request("GET", url.path, headers=sign(peer, url.path))
        resp = conn.getresponse()
        if resp.status != 200:
            raise SyncError(f"{peer.name} answered {resp.status}")
        return _read_bounded(resp, MAX_SNAPSHOT_BYTES, time.monotonic() + timeout_s, peer.name)
    finally:
        conn.close()


def fetch_snapshot(genesis: Genesis, peers: Sequence[Validator], sign: Signer,
                   timeout_s: float = 10.0, tls: NodeTls | None = None) -> Snapshot | None:
    """The highest snapshot a peer serves that verifies, or None.  Blocking.

    Raises :class:`ValidatorSetChanged` when none verifies and some peer's
    header names a validator set other than genesis's: the set changed by
    governance, and no later round can do better."""
    best: tuple[int, Snapshot] | None = None
    changed: ValidatorSetChanged | None = None
    for peer in peers:
        try:
            snapshot = parse_snapshot(_fetch_one(peer, sign, timeout_s, tls))
            header, _ = verify_snapshot(snapshot, genesis)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            log.info("no snapshot from %s: %s", peer.name, exc)
            continue
        except ValidatorSetChanged as exc:
            log.info("snapshot from %s: %s", peer.name, exc)
            changed = exc
            continue
        except LedgerError as exc:
            log.warning("peer %s served a snapshot that does not verify: %s", peer.name, exc)
            continue
        if best is None or header.height > best[0]:
            best = header.height, snapshot
    if best is None and changed is not None:
        raise changed
    return None if best is None else best[1]


async def join_by_snapshot(store: KeyValueStore, genesis: Genesis, peers: Sequence[Validator],
                           sign: Signer, tls: NodeTls | None = None) -> int:
    """Install a peer's snapshot into the empty ``store``; its height, or 0
    when no peer served one (the node then replays blocks)."""
    from ledger.statesync import install_snapshot

    for _ in range(SNAPSHOT_ROUNDS):
        try:
            snapshot = await in_daemon_thread(fetch_snapshot, genesis, peers, sign, 10.0, tls)
        except ValidatorSetChanged:
            log.warning("state sync: the validator set has changed since genesis (governance), "
                        "and the peers' snapshots carry no governance records to check it "
                        "(peers of an earlier version); sync.mode \"snapshot\" falls back to "
                        "blocks: replaying blocks from height 1", extra={"sync_mode": "blocks"})
            return 0
        if snapshot is not None:
            header = install_snapshot(store, snapshot, genesis)
            log.info("state sync: started from the snapshot at height %d (log size %d, %d "
                     "governance records); back-filling blocks 1..%d", header.height,
                     header.log_size, len(snapshot.governance), header.height,
                     extra={"snapshot_height": header.height,
                            "snapshot_governance": len(snapshot.governance)})
            return header.height
        await asyncio.sleep(RETRY_S)
    log.warning("state sync: no peer served a snapshot; replaying blocks from height 1")
    return 0


# ---------------------------------------------------------------- back-fill


class HistoryBackfill:
    """Fetches the blocks below the snapshot and writes them, oldest first."""

    def __init__(self, store: KeyValueStore, chain: ChainStore, sync: BlockSync) -> None:
        self.fill = Backfill(store, chain)
        self.chain = chain
        self.sync = sync

    async def run(self) -> None:
        fill = self.fill
        started = time.perf_counter()
        while not fill.done:
            first = fill.next_height
            blocks = await self.sync.fetch(first, fill.top - first + 1)
            if not blocks:
                await asyncio.sleep(RETRY_S)
                continue
            try:
                await in_daemon_thread(fill.apply, blocks)
            except VerificationError as exc:
                # The peer's blocks are not the certified history: try again
                # (BlockSync asks the peers in turn).
                log.warning("back-fill refused blocks from %d: %s", first, exc)
                await asyncio.sleep(RETRY_S)
        # The governance below the snapshot counts from now on (ChainStore
        # ._load_membership); on the loop, between commits.
        self.chain.reload_membership()
        log.info("state sync: history back-filled to height %d in %.1f s", fill.top,
                 time.perf_counter() - started,
                 extra={"backfill_seconds": round(time.perf_counter() - started, 3)})


def status(gap: range) -> dict[str, Any]:
    """The ``backfill`` field of ``/health`` while a gap is open."""
    return {"from": gap.start, "to": gap.stop - 1}
