"""State sync: start a store from a certified snapshot, then back-fill history.

A snapshot at height ``H`` is the header at ``H``, its certificate, the log
size and the log's right frontier as stored: one partial tile per stratum
(:mod:`ledger.tiles`), which holds every perfect subtree ("peak") of the
RFC 9162 tree at that size and the nodes under the smaller peaks.  It is
accepted only when

* the header names the validator set in force at its height and the
  certificate carries a quorum of that set's precommits for it (so the
  header is the chain's, not the peer's).  The set is genesis's, changed by
  the governance records the snapshot carries: every one committed up to
  the snapshot, each proven in its block and certified by the set in force
  there, walked from genesis as an auditor walks a version 2 bundle
  (:func:`snapshot_membership`).  A record left out that changed the
  validators shows as a header naming a set the walk does not reach.  A
  header naming another set than genesis's with no governance at all (a
  peer of an earlier version) raises :class:`ValidatorSetChanged`, and the
  node joins by blocks instead (node/statesync.py);
* every partial tile is internally consistent (each stored node is the hash
  of its two children), so the nodes under the peaks are the tree's;
* the peaks fold to ``header.log_root`` at ``header.log_size``.

Installed, the store has the tip, the frontier and nothing below: blocks
``1..H`` (their envelopes, the record / nonce / children / submitter
indexes and the complete tiles) are missing.  The store records that gap
(``history_from``: the lowest height whose block is stored in full) and the
node back-fills it with :class:`Backfill`, oldest block first: each block's
certificate is verified against the validator set in force at its height
(walked from genesis over the blocks back-filled before it), its ``prev`` must be the hash of the block below,
its envelopes must hash to ``tx_root`` and extend the log to its header's
``log_size`` / ``log_root``, and the last one must be byte-for-byte the
snapshot's header - so the back-filled history is the hash chain the
certified snapshot header commits to.

Back-fill also writes the governance index (``g``) of the blocks it
writes, as commit does; the chain's membership (who may submit, PROTOCOL
§9) is rebuilt from that index once the gap is closed.  Until the gap is
closed a node therefore does not know the governance below the snapshot,
and answers ``GET /v1/membership`` with 503 (node/api_node.py).

No index travels in the snapshot: a (submitter, nonce) or record-id entry
can only be checked against the envelope it came from, which is the block
itself.  Until the gap is closed the node therefore does not know every
used nonce, and it must not admit records or vote for blocks that hold any
(node/statesync.py enforces that); certified blocks above ``H`` are applied
as in catch-up.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from . import blocks, schema
from .blocks import ZERO_HASH, Certificate, Header, certificate_from_bytes, decode_header
from .chain import ChainStore
from .crypto import digest_equal
from .errors import HeaderError, Unavailable, VerificationError
from .genesis import Genesis
from .log import MerkleLog
from .membership import Membership, is_governance
from .merkle import HASH_LEN, node_hash, root
from .records import Envelope
from .storage import KeyValueStore, MemoryStore, WriteBatch
from .tiles import TILE_BYTES, TILE_HEIGHT, UNIT_MASK, strata, tile_entries, tile_offset
from .verify_epochs import MAX_GOVERNANCE, walk_governance


class SnapshotError(VerificationError):
    """A state-sync snapshot or back-filled block failed a check."""

    step = "snapshot"


class ValidatorSetChanged(SnapshotError):
    """The snapshot's header names a validator set other than genesis's (it
    changed by governance, PROTOCOL §9.9) and the snapshot carries no
    governance records to derive that set from (a peer of an earlier
    version): it cannot be checked.  The node joins by blocks instead."""


@dataclass(frozen=True)
class Snapshot:
    header_bytes: bytes
    certificate_bytes: bytes
    log_size: int
    tails: tuple[bytes, ...]  # stratum s's partial tile (b"" when none)
    # Every governance record committed at or below the header's height, in
    # log order, each as its PROTOCOL §5 bundle against its own block (the
    # entries of a version 2 bundle's ``governance``): the membership in
    # force at the snapshot, walked from genesis.  Empty on a chain without
    # governance (and from peers of an earlier version).
    governance: tuple[Any, ...] = ()


def history_reason(gap: range) -> str:
    """Why a node with a history gap refuses submissions (protocol §6)."""
    return (f"back-filling history after state sync: blocks {gap.start}..{gap.stop - 1} are "
            "not verified yet, so this node cannot tell a used nonce from a new one")


def below_snapshot(gap: range, what: str) -> Unavailable:
    """The answer for a read of history a node does not hold yet (protocol §6)."""
    return Unavailable(f"{what} is not held by this node yet: it joined by state sync at "
                       f"height {gap.stop - 1} and is back-filling blocks {gap.start}.."
                       f"{gap.stop - 1}; retry later or ask another validator")


def tail_index(size: int, stratum: int) -> int:
    """Index of the last (partial, or next) tile of ``stratum`` at ``size``."""
    return (size >> stratum * TILE_HEIGHT) >> TILE_HEIGHT


def tail_length(size: int, stratum: int) -> int:
    units = (size >> stratum * TILE_HEIGHT) & UNIT_MASK
    return tile_entries(units) * HASH_LEN if units else 0


def _rebuilt_tile(tail: bytes, units: int) -> bytes:
    """The tile that ``units`` units (taken from ``tail``) build, in the
    tile's append order: each unit, then the nodes it completes."""
    out: list[bytes] = []
    stack: list[tuple[int, bytes]] = []
    for m in range(units):
        at = tile_offset(0, m + 1)
        h, level = tail[at:at + HASH_LEN], 0
        out.append(h)
        while stack and stack[-1][0] == level:
            h, level = node_hash(stack.pop()[1], h), level + 1
            out.append(h)  # never the tile root: a partial tile has < 256 units
        stack.append((level, h))
    return b"".join(out)


def check_frontier(log_size: int, tails: Sequence[bytes], log_root: bytes) -> None:
    """Raise :class:`SnapshotError` unless ``tails`` is the right frontier of
    a tree of ``log_size`` leaves whose root is ``log_root``."""
    if len(tails) != strata(log_size):
        raise SnapshotError(f"frontier has {len(tails)} strata; a log of {log_size} "
                            f"leaves has {strata(log_size)}")
    for s, tail in enumerate(tails):
        if len(tail) != tail_length(log_size, s):
            raise SnapshotError(f"frontier tile of stratum {s} is {len(tail)} bytes, "
                                f"expected {tail_length(log_size, s)}")
        units = (log_size >> s * TILE_HEIGHT) & UNIT_MASK
        if not digest_equal(_rebuilt_tile(tail, units), tail):
            raise SnapshotError(f"frontier tile of stratum {s} is not a Merkle tile "
                                "(a node is not the hash of its children)")
    # The peaks as the log itself reads them from its partial tiles.
    store = MemoryStore()
    batch = WriteBatch()
    stage_frontier(batch, log_size, tails)
    store.write(batch)
    if not digest_equal(MerkleLog(store).root(), log_root):
        raise SnapshotError("frontier does not fold to the header's log_root")


def stage_frontier(batch: WriteBatch, log_size: int, tails: Sequence[bytes]) -> None:
    for s, tail in enumerate(tails):
        if tail:
            batch.put(schema.tile_key(s, tail_index(log_size, s)), tail)
    batch.put(schema.META_LOG_SIZE, schema.pack_u64(log_size))


def snapshot_membership(governance: Sequence[Any], genesis: Genesis,
                        height: int) -> Membership:
    """The membership the snapshot's governance entries make, each proven in
    its block and certified by the set in force there as walked so far
    (ledger/verify_epochs.py, as an auditor walks a version 2 bundle); none
    may lie above the snapshot's ``height``."""
    if len(governance) > MAX_GOVERNANCE:
        raise SnapshotError(f"snapshot carries {len(governance)} governance records, at most "
                            f"{MAX_GOVERNANCE}")
    try:
        membership = walk_governance(list(governance), genesis)
    except VerificationError as exc:
        raise SnapshotError(f"snapshot governance ({exc.step}): {exc}") from None
    for change in membership.changes:
        if change.committed > height:
            raise SnapshotError(f"snapshot governance record of block {change.committed} is "
                                f"above the snapshot's height {height}")
    return membership


def verify_snapshot(snapshot: Snapshot, genesis: Genesis) -> tuple[Header, Certificate]:
    """The snapshot's header and certificate, every check of the module doc passed."""
    header = decode_header(snapshot.header_bytes)
    cert = certificate_from_bytes(snapshot.certificate_bytes)
    if header.chain != genesis.chain:
        raise SnapshotError(f"snapshot is of chain {header.chain!r}")
    epoch = genesis
    if snapshot.governance:
        epoch = snapshot_membership(snapshot.governance, genesis,
                                    header.height).validator_genesis(header.height)
        if not digest_equal(header.validators, epoch.validators_hash):
            raise SnapshotError(
                f"the governance records the snapshot carries do not lead to the validator "
                f"set its header at height {header.height} names (one is missing)")
    elif not digest_equal(header.validators, genesis.validators_hash):
        raise ValidatorSetChanged(
            f"snapshot header at height {header.height} names another validator set than "
            "genesis (changed by governance) and carries no governance records to derive it "
            "from (a peer of an earlier version)")
    try:
        blocks.verify_certificate(cert, header, epoch)
    except VerificationError as exc:
        raise SnapshotError(f"snapshot certificate does not verify: {exc}") from None
    if snapshot.log_size != header.log_size:
        raise SnapshotError(f"snapshot log size {snapshot.log_size}, header says "
                            f"{header.log_size}")
    check_frontier(snapshot.log_size, snapshot.tails, header.log_root)
    return header, cert


def install_snapshot(store: KeyValueStore, snapshot: Snapshot, genesis: Genesis) -> Header:
    """Verify ``snapshot`` and write it into an EMPTY store, in one batch."""
    header, cert = verify_snapshot(snapshot, genesis)
    if next(iter(store.iterate(b"")), None) is not None:
        raise SnapshotError("a snapshot is installed only into an empty store")
    batch = WriteBatch()
    batch.put(schema.META_SCHEMA_VERSION, schema.schema_version_value())
    stage_frontier(batch, snapshot.log_size, snapshot.tails)
    batch.put(schema.header_key(header.height), header.header_bytes)
    batch.put(schema.certificate_key(header.height), cert.to_bytes())
    batch.put(schema.META_TIP, schema.pack_u64(header.height))
    batch.put(schema.META_HISTORY_FROM, schema.pack_u64(header.height + 1))
    if snapshot.governance:  # verified above: the membership until back-fill ends
        batch.put(schema.META_SNAPSHOT_GOVERNANCE,
                  msgpack.packb(list(snapshot.governance), use_bin_type=True))
    store.write(batch, sync=True)
    return header


class _HistoryView:
    """The store as the back-filled log of ``size`` leaves sees it.

    Tiles from the snapshot's partial tiles onward belong to the live log
    (they hold nodes above the snapshot too); the back-fill log reads them
    cut to what exists at its own size - a partial tile is a prefix of the
    full one - and never writes them (:meth:`Backfill.apply` drops those)."""

    def __init__(self, store: KeyValueStore, top_size: int, size: int) -> None:
        self._store = store
        self.top_size = top_size
        self.size = size

    def owned_by_live_log(self, stratum: int, index: int) -> bool:
        return index >= tail_index(self.top_size, stratum)

    def get(self, key: bytes) -> bytes | None:
        if key == schema.META_LOG_SIZE:
            return schema.pack_u64(self.size)
        if key[:1] == schema.TILE and len(key) == 10:
            stratum, index = schema.unpack_tile_key(key)
            if self.owned_by_live_log(stratum, index):
                value = self._store.get(key)
                last = tail_index(self.size, stratum)
                if value is None or index > last:
                    return None
                return value[:TILE_BYTES if index < last else tail_length(self.size, stratum)]
        return self._store.get(key)

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        raise TypeError("the back-fill view is read-only")

    def iterate(self, prefix: bytes, reverse: bool = False,
                start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self._store.iterate(prefix, reverse, start)

    def close(self) -> None:
        pass


def history_log(store: KeyValueStore, top_size: int, size: int) -> MerkleLog:
    """The log of the ``size`` leaves back-filled so far below a snapshot of
    ``top_size`` leaves, read-only (what :class:`Backfill` appends to; fsck
    reads back-filled leaves through it)."""
    return MerkleLog(_HistoryView(store, top_size, size))


Block = tuple[Header, Sequence[Envelope], Certificate]


class Backfill:
    """Writes the blocks below a snapshot into the store, oldest first,
    each verified as the module doc says.  One writer (the node's back-fill
    task); it touches no key the live chain writes."""

    def __init__(self, store: KeyValueStore, chain: ChainStore) -> None:
        self._store = store
        self._chain = chain
        gap = chain.history_gap
        self.top = gap.stop - 1  # the snapshot height: its header is stored
        top_header = chain.header(self.top) if gap else None
        self._top_header = top_header
        below = gap.start - 1
        prev = chain.header(below) if below >= 1 else None
        self._prev_hash = ZERO_HASH if prev is None else prev.hash
        size = 0 if prev is None else prev.log_size
        top_size = 0 if top_header is None else top_header.log_size
        self._view = _HistoryView(store, top_size, size)
        self._log = MerkleLog(self._view)
        # The validator sets in force below the snapshot, walked from genesis
        # over the blocks back-filled so far (as block sync does): each
        # block's certificate is checked against the set of its height.
        self._membership = chain.membership_through(below)
        # Governance records written so far: the caller reloads the chain's
        # membership when this grows (it was derived without them).
        self.governance_found = 0

    @property
    def next_height(self) -> int:
        return self._chain.history_gap.start

    @property
    def done(self) -> bool:
        return not self._chain.history_gap

    def apply(self, fetched: Sequence[Block]) -> int:
        """Verify and write consecutive blocks from :attr:`next_height` (those
        past the gap are ignored); returns how many were written.  All or
        nothing: a block that fails a check writes none of the batch."""
        size, found, membership = self._view.size, self.governance_found, self._membership
        try:
            return self._apply(fetched)
        except BaseException:
            self._view.size = size  # the log ran ahead in memory: back to the store
            self._log.reload()
            self.governance_found = found
            self._membership = membership
            raise

    def _apply(self, fetched: Sequence[Block]) -> int:
        batch = WriteBatch()
        height, prev_hash, written = self.next_height, self._prev_hash, 0
        for header, envelopes, cert in fetched:
            if height > self.top:
                break
            prev_hash = self._check(header, envelopes, cert, height, prev_hash)
            tiles = WriteBatch()
            size, log_root = self._log.stage([e.leaf_hash for e in envelopes], tiles)
            if size != header.log_size or not digest_equal(log_root, header.log_root):
                raise SnapshotError(f"block {height}'s envelopes do not extend the log to "
                                    "its header's log_size/log_root")
            self._keep_history_tiles(tiles, batch)
            first = size - len(envelopes)
            batch.put_many(schema.record_entries(height, first, envelopes))
            # The governance index, as commit writes it: membership is
            # rebuilt from it (ChainStore.reload_membership, and on open).
            governance = []
            for leaf_index, env in enumerate(envelopes, start=first):
                if is_governance(env):
                    batch.put(schema.governance_key(height, leaf_index), b"")
                    self.governance_found += 1
                    governance.append(env)
            if governance:  # certified: the signatures were checked by its validators
                self._membership = self._membership.apply(height, governance,
                                                          signatures=False)
            if height < self.top:  # the snapshot's own header and certificate are stored
                batch.put(schema.header_key(height), header.header_bytes)
                batch.put(schema.certificate_key(height), cert.to_bytes())
            self._view.size = size
            self._log.applied(size)  # in memory only: the view answers the size
            height, written = height + 1, written + 1
        if written:
            self._chain.write_history(batch, height - 1)
            self._prev_hash = prev_hash
        return written

    def _check(self, header: Header, envelopes: Sequence[Envelope], cert: Certificate,
               height: int, prev_hash: bytes) -> bytes:
        if header.height != height:
            raise SnapshotError(f"back-fill got block {header.height}, expected {height}")
        if not digest_equal(header.prev, prev_hash):
            raise SnapshotError(f"block {height}'s prev is not the hash of block {height - 1}")
        epoch = self._membership.validator_genesis(height)
        if not digest_equal(header.validators, epoch.validators_hash):
            raise SnapshotError(f"block {height} names another validator set than the one in "
                                "force at its height")
        try:
            blocks.verify_certificate(cert, header, epoch)
        except VerificationError as exc:
            raise SnapshotError(f"certificate of block {height} does not verify: {exc}") from None
        leaves = [e.leaf_hash for e in envelopes]
        if header.tx_count != len(leaves) or not digest_equal(header.tx_root, root(leaves)):
            raise HeaderError(f"block {height}'s envelopes do not match its tx_root")
        if height == self.top:
            assert self._top_header is not None
            if not digest_equal(header.header_bytes, self._top_header.header_bytes):
                raise SnapshotError(f"block {height} is not the snapshot's header")
        return header.hash

    def _keep_history_tiles(self, tiles: WriteBatch, batch: WriteBatch) -> None:
        for key, value in tiles.ops:
            if key == schema.META_LOG_SIZE or value is None:
                continue
            if not self._view.owned_by_live_log(*schema.unpack_tile_key(key)):
                batch.put(key, value)
