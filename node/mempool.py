"""The mempool: admitted records waiting for a block.

Admission checks each envelope once: canonical form, chain, submitter and
role, signature, nonce unused (in the chain and here), every parent known
(pending here or committed).  Records are kept in admission order; blocks
take them in that order (:mod:`node.mempool_blocks`).  A peer's record whose
parent has not arrived yet waits among the orphans (:mod:`node.mempool_orphans`).

Signatures are expensive, so the envelopes whose signatures this node has
checked are remembered by leaf hash (everything pending, plus a bounded set
of envelopes checked in block validation that were not pending, kept by
:mod:`node.signature_checks` with admission's stateless checks):
:meth:`Mempool.signature_verified` is what block validation consults so that
no node verifies one record's signature twice.

With a :class:`~node.durable.PendingWriter`, every record a client is told
is held here (``accepted``, or ``duplicate`` for one pending here) is on disk
before :meth:`Mempool.admit` returns, and :meth:`Mempool.restore` admits them
again after a restart (:mod:`node.mempool_acks`).  Peers' records are not
written: nobody was promised anything by this node, and their sender holds
them durably.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from ledger.crypto import verify_many
from ledger.errors import BadTimestamp, LedgerError, NonceReused, RateLimited, UnknownParent
from ledger.genesis import Genesis, RecordTimeWindow
from ledger.membership import is_governance
from ledger.records import Envelope
from ledger.risk import ALERT

from .commit_waiters import CommitWaiters
from .durable import PendingWriter
from .mempool_acks import AckedRecords
from .mempool_blocks import out_of_scope, select_for_block, unreachable
from .mempool_links import AdmittedLeaves, PeerBacklog
from .mempool_orphans import Orphans
from .mempool_rules import (YIELD_EVERY, RecordWindows, check_alert_flood, decode_batch,
                            read_chain_nonces)
from .mempool_types import Admission, ChainNonce, ChainView, wall_clock_ms
from .metrics import Metrics
from .signature_checks import SignatureChecks

__all__ = ["MAX_TIMED", "Admission", "ChainView", "Mempool", "wall_clock_ms"]

log = logging.getLogger("node.mempool")

# Signature checks run in chunks of this many envelopes, yielding to the
# loop in between, so a 5000-envelope request does not stall consensus.
# 64, not 256 as with the retired key tables: libsodium takes several times
# longer per signature, and a chunk must stay short for consensus messages
# to get in between (docs/performance.md, 2026-12-06).
VERIFY_CHUNK = 64
# Client batches whose submit-to-commit time is being measured at once; more
# wait unmeasured (a stalled chain must not grow this without bound).
MAX_TIMED = 4096


class Mempool:
    def __init__(
        self,
        genesis: Genesis,
        chain: ChainView,
        metrics: Metrics,
        *,
        max_size: int,
        max_orphans: int = 10_000,
        # Leaf hashes of envelopes block validation checked that were not
        # pending: a few blocks' worth covers a block proposed again in a
        # later round.
        verified_cache: int = 20_000,
        max_peer_backlog: int | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        peer_clock_slack_ms: int = 0,
        durable: PendingWriter | None = None,
        latency_clock: Callable[[], float] = time.monotonic,
        leaves: AdmittedLeaves | None = None,
        peer_backlog: PeerBacklog | None = None,
    ) -> None:
        self.genesis = genesis
        self.clock = clock  # for the record ts window (node.mempool_rules)
        self.chain = chain
        self._windows = RecordWindows(chain, peer_clock_slack_ms)
        self.metrics = metrics
        self.max_size = max_size
        self.max_peer_backlog = max_peer_backlog
        # Peers' envelopes queued for admit(); the node counts them.
        self._peer_backlog = PeerBacklog() if peer_backlog is None else peer_backlog
        # While collecting, the leaf hash of every admitted envelope goes here
        # (the node's proposal assembler drains it while proposals wait), and
        # any admit() that added one wakes the assembler, whatever the
        # source: a client's record can be the one a parked proposal waits for.
        self._leaves = AdmittedLeaves() if leaves is None else leaves
        self._pending: OrderedDict[bytes, Envelope] = OrderedDict()
        self._governance: set[bytes] = set()  # ids of pending governance records
        self._nonces: dict[tuple[bytes, int], bytes] = {}
        self._by_leaf: dict[bytes, Envelope] = {}  # pending, by leaf hash
        # Signatures through this module's verify_many, looked up per call
        # (tests count the checks by replacing it).
        self._checks = SignatureChecks(verified_cache,
                                       lambda domain, items: verify_many(domain, items))
        self._orphans = Orphans(max_orphans)
        self._gossip: list[bytes] = []  # envelopes admitted from clients, not yet sent
        self.gossip_ready = asyncio.Event()  # set while _gossip is not empty
        self.waiters = CommitWaiters()  # GET /v1/records/{id}?wait_ms=N
        self.changed = asyncio.Event()
        # Admissions counted per record here, published per batch (labels()
        # costs microseconds; no per-record Python work that can be per-batch).
        self._admitted: dict[str, int] = {}
        self.durable = durable
        self._acks = AckedRecords(durable)
        # Submit-to-commit latency, sampled: the first record a client batch
        # added, with the batch's admission time (one clock read and one
        # entry per batch; a dict lookup per committed record while any wait).
        self.latency_clock = latency_clock
        self._timed: dict[bytes, float] = {}

    # -- queries -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def max_orphans(self) -> int:
        return self._orphans.limit

    def __contains__(self, record_id: bytes) -> bool:
        return record_id in self._pending

    def holds_nonces(self) -> bool:
        """Whether any pending record holds a nonce (none while catching up)."""
        return bool(self._nonces)

    def holds_nonce(self, submitter: bytes, nonce: int) -> bool:
        """Whether a pending record holds this nonce (so the chain has not used it)."""
        return (submitter, nonce) in self._nonces

    def get(self, record_id: bytes) -> Envelope | None:
        return self._pending.get(record_id)

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.max_size

    def pushback(self) -> str | None:
        """Why clients should retry later, or None: no room, or admission is
        behind on what peers sent (their records come first: blocks wait on them)."""
        if self.full:
            return f"the mempool holds {len(self._pending)} records; retry later"
        backlog = self._peer_backlog.count
        if self.max_peer_backlog is not None and backlog > self.max_peer_backlog:
            return (f"{backlog} records from peers are waiting for admission; "
                    "retry later")
        return None

    def signature_verified(self, leaf_hash: bytes) -> bool:
        """True if the envelope with this leaf hash had its signature checked here."""
        return leaf_hash in self._by_leaf or self._checks.verified(leaf_hash)

    def by_leaf(self, leaf_hash: bytes) -> Envelope | None:
        """The pending envelope with this leaf hash (saves re-decoding proposals)."""
        return self._by_leaf.get(leaf_hash)

    def mark_verified(self, leaf_hashes: Iterable[bytes]) -> None:
        """Remember envelopes whose signatures were checked (here or in block validation)."""
        self._checks.mark_verified(leaf_hashes)

    @property
    def time_window(self) -> RecordTimeWindow:
        """The record ts window for clients' records at the next block."""
        self._windows.refresh()
        return self._windows.client

    # -- admission ---------------------------------------------------------

    async def admit(self, items: Sequence[bytes], source: str = "api",
                    seqs: Sequence[int] = ()) -> list[Admission]:
        """Admit envelopes in order; one :class:`Admission` per item.

        From a client (``source`` "api"), returns once every record answered
        ``accepted`` or ``duplicate`` is durable (see the module doc).
        ``seqs``: for "restore", each item's number in the pending keyspace."""
        decoded = await decode_batch(items)
        # Stateless checks (chain, submitter, role, signature) off the loop,
        # only for envelopes whose id is new to this node: resubmissions are
        # answered from state without touching a signature again.
        # The chain's nonce index is read once for the request's new records
        # (read_chain_nonces), what it said kept with its height: if no block
        # committed before the admission step, that step reuses it.
        # A new record's ts must be in the window around this node's clock.
        # A known record id sent with other envelope bytes (another
        # signature) has that signature checked too: answering "duplicate"
        # or "committed" unchecked would vouch for a forged envelope.
        seen: dict[int, ChainNonce | None] = {}
        todo = []
        # New records past the room left are refused before their signatures
        # are checked: under overload a client's resent batch would otherwise
        # have every signature checked again only for most of it to be
        # refused as rate_limited by _admit_one (docs/performance.md).
        limit = self._limit(source)
        room = None if limit is None else limit - len(self._pending)
        full: dict[int, RateLimited] = {}
        self._windows.refresh()
        now = self.clock()
        window = self._windows.client if source == "api" else self._windows.peer
        pending, orphans, nonces = self._pending, self._orphans, self._nonces
        chain_nonces = read_chain_nonces(self.chain, decoded, lambda d: (
            (d.record.submitter, d.record.nonce) not in nonces
            and d.id not in pending and d.id not in orphans))
        for i, d in enumerate(decoded):
            if isinstance(d, Envelope):
                status, _, seen[i] = self._lookup(d, chain_nonces.get(i))
                if status is None and not window.contains(d.record.ts, now):
                    decoded[i] = BadTimestamp(window.explain(d.record.ts, now)).as_value()
                    continue
                if status is None and room is not None:
                    if room <= 0:
                        full[i] = self._full_error()
                        continue
                    room -= 1
                if not self.signature_verified(d.leaf_hash) and (
                        status is None or not self._same_as_known(d, status)):
                    todo.append(i)
        for lo in range(0, len(todo), VERIFY_CHUNK):
            chunk = todo[lo:lo + VERIFY_CHUNK]
            envs = [d for i in chunk if isinstance(d := decoded[i], Envelope)]
            errors = (self._verify_many(envs, paused=False) if source == "restore"
                      else self._verify_many(envs))
            await asyncio.sleep(0)  # let consensus messages in between chunks
            for i, err in zip(chunk, errors):
                if err is not None:
                    decoded[i] = err
            # Not remembered in the verified cache: what is admitted is
            # pending (signature_verified answers from _by_leaf), and the
            # cache would keep every admitted record's leaf hash alive after
            # its commit, pinning memory among short-lived envelopes.
        results = []
        for i, d in enumerate(decoded):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            if isinstance(d, LedgerError):
                results.append(self._refused(None, d))
                continue
            if i in full:
                results.append(self._refused(d.id, full[i]))
                continue
            try:
                status = self._admit_one(d, source, seen.get(i))
            except UnknownParent as exc:
                if source != "api" and self._hold_orphan(d, source):
                    results.append(Admission(d.id, "accepted"))
                    continue
                results.append(self._refused(d.id, exc))
                continue
            except LedgerError as exc:
                results.append(self._refused(d.id, exc))
                continue
            results.append(Admission(d.id, status))
        first = next((r.id for r in results if r.status == "accepted"), None)
        if first is not None:
            if source == "api" and len(self._timed) < MAX_TIMED:
                self._timed[first] = self.latency_clock()
            self.changed.set()
            self._leaves.admitted()
        self._publish_admitted()
        self.metrics.mempool_size.set(len(self._pending))
        await self._acks.wait(self._acks.keep(source, decoded, results, seqs, self._held))
        return results

    def _held(self, record_id: bytes) -> bool:
        return record_id in self._pending or record_id in self._orphans

    async def restore(self) -> tuple[int, int]:
        """Admit the pending keyspace's envelopes again, in their order (on
        start, before the API serves); ``(restored, dropped)``: held again,
        and dropped from the keyspace (committed meanwhile or refused now)."""
        if self.durable is None:
            return 0, 0
        entries = self._acks.load()
        results = await self.admit([raw for _, raw in entries], "restore",
                                   [seq for seq, _ in entries])
        restored = sum(1 for r in results if r.status == "accepted")
        return restored, len(results) - restored

    def take_durable(self, envelopes: Sequence[Envelope]) -> list[int]:
        """Before a block with ``envelopes`` commits: the pending-keyspace
        entries it commits that its write batch must delete."""
        return self._acks.take(envelopes)

    def _publish_admitted(self) -> None:
        for src, n in self._admitted.items():
            self.metrics.admitted.labels(source=src).inc(n)
        self._admitted.clear()

    def _refused(self, record_id: bytes | None, exc: LedgerError) -> Admission:
        """The refusal as a value (``LedgerError.as_value``): with its
        traceback, the error and admit()'s frame, which holds the results,
        form a cycle carrying the whole batch (envelopes, records, results)
        that only a full collection frees, and those are rare here
        (node/gctune.py).  Rate-limited batches during a long outage kept
        tens of MB of them per node."""
        self.metrics.rejected.labels(code=exc.code).inc()
        return Admission(record_id, error=exc.as_value())

    def _verify_many(self, envs: list[Envelope], *, paused: bool = True
                     ) -> list[LedgerError | None]:
        """Admission's stateless checks for the next block
        (:meth:`node.signature_checks.SignatureChecks.check`).
        ``paused=False`` (restoring what this node acknowledged before a
        restart): records of a paused scope are held again, to wait for the
        resume, as they would have without the restart.

        On the event loop, not in an executor thread: with every core busy a
        thread adds no parallelism, and the hand-offs cost more than they
        saved (measured: docs/performance.md)."""
        return self._checks.check(envs, self.chain.membership, self.chain.height + 1,
                                  paused=paused)

    def _lookup(self, env: Envelope, seen: ChainNonce | None = None
                ) -> tuple[str | None, bytes | None, ChainNonce | None]:
        """``(status, other, seen)``: "duplicate"/"committed" for a known
        envelope (None for a new one), for a new one the id of whichever
        record holds its nonce, pending or committed (None: free), and what
        the chain's nonce index said, if it was read.

        "Committed" is read from the chain's nonce index, not its record
        index: the two are written in one batch, a record is committed
        exactly when its (submitter, nonce) entry names its id, and the
        nonce lookup is one admission needs anyway.  No read when a pending
        record holds the nonce (the chain has then not used it:
        Mempool.committed), nor when ``seen`` is an answer from the same
        chain height (the index only changes when a block commits)."""
        rid = env.id
        if rid in self._pending or rid in self._orphans:
            return "duplicate", None, None
        rec = env.record
        other = self._nonces.get((rec.submitter, rec.nonce))
        if other is not None:
            return None, other, None
        height = self.chain.height
        if seen is None or seen.height != height:
            seen = ChainNonce(height, self.chain.id_for_nonce(rec.submitter, rec.nonce))
        if seen.record_id == rid:
            return "committed", None, seen
        return None, seen.record_id, seen

    def _same_as_known(self, env: Envelope, status: str) -> bool:
        """Whether ``env`` is byte for byte the envelope this node holds (or
        committed) for its record id, so its signature was checked already."""
        rid = env.id
        if status == "committed":
            return self.chain.committed_leaf_hash(rid) == env.leaf_hash
        held = self._pending.get(rid)
        if held is None:
            orphan = self._orphans.get(rid)
            held = orphan.envelope if orphan is not None else None
        return held is not None and held.leaf_hash == env.leaf_hash

    def _admit_one(self, env: Envelope, source: str, seen: ChainNonce | None = None) -> str:
        # State is read again here, not carried over from the check before
        # signature verification: records may have been admitted and blocks
        # committed in between (``seen`` is only reused at the same height).
        known, other, _ = self._lookup(env, seen)
        if known is not None:
            return known
        rid = env.id
        rec = env.record
        key = (rec.submitter, rec.nonce)
        if other is not None and other != rid:
            raise NonceReused(f"nonce {rec.nonce} of this submitter names record {other.hex()}")
        missing = [p for p in rec.parents
                   if p not in self._pending and self.chain.record_location(p) is None]
        if missing:
            raise UnknownParent(f"parent {missing[0].hex()} is not known to this node")
        if source == "api" and rec.kind == ALERT:
            check_alert_flood(self.chain, rec.submitter)
        limit = self._limit(source)
        if limit is not None and len(self._pending) >= limit:
            raise self._full_error()
        self._pending[rid] = env
        self._by_leaf[env.leaf_hash] = env
        if is_governance(env):
            self._governance.add(rid)
        self._leaves.add(env.leaf_hash)
        self._nonces[key] = rid
        self._admitted[source] = self._admitted.get(source, 0) + 1
        if source != "gossip":  # a client's, or a client's restored after a restart
            self._gossip.append(env.envelope_bytes)
            self.gossip_ready.set()
        if self._orphans:  # none held (the usual case): none waits for this record
            self._release_orphans(rid)
        return "accepted"

    def _limit(self, source: str) -> int | None:
        """The pending records at which ``source``'s new records are refused.
        Clients are pushed back at max_size.  A peer's records get twice the
        room: they are already in its mempool and will be proposed, and
        refusing them here only means fetching them again later
        (node/assembly.py).  Restored records were acknowledged already: no
        limit (None)."""
        if source == "restore":
            return None
        return self.max_size if source == "api" else 2 * self.max_size

    def _full_error(self) -> RateLimited:
        return RateLimited(f"mempool holds {len(self._pending)} records; retry later")

    # -- orphans (gossip only: a peer's child may overtake its parent) --------

    def _hold_orphan(self, env: Envelope, source: str) -> bool:
        if self._orphans.limit == 0:
            return False
        missing = {p for p in env.record.parents
                   if p not in self._pending and self.chain.record_location(p) is None}
        for old_id in self._orphans.hold(env, missing, source):
            self._acks.discard(old_id)
        self.metrics.orphans.set(len(self._orphans))
        return True

    def _release_orphans(self, parent: bytes) -> None:
        ready = self._orphans.release(parent)
        for oid, orphan in ready:
            try:
                # One a client was told is held here (restored) is gossiped.
                source = "restore" if orphan.source == "restore" or oid in self._acks \
                    else "gossip"
                if self._admit_one(orphan.envelope, source) != "accepted":
                    self._acks.discard(oid)  # committed meanwhile
            except LedgerError as exc:
                self.metrics.rejected.labels(code=exc.code).inc()
                self._acks.discard(oid)
        if ready:
            self.metrics.orphans.set(len(self._orphans))

    # -- gossip ------------------------------------------------------------

    def take_gossip(self, limit: int) -> list[bytes]:
        """Envelopes admitted from clients that peers have not been sent yet."""
        batch, self._gossip = self._gossip[:limit], self._gossip[limit:]
        if not self._gossip:
            self.gossip_ready.clear()
        return batch

    # -- blocks ------------------------------------------------------------

    def select(self, max_records: int, max_bytes: int | None = None, *,
               time_ms: int | None = None) -> list[Envelope]:
        """Records for the next block, in admission order, parents first
        (:func:`node.mempool_blocks.select_for_block`); those too old for
        any later block are dropped, with their descendants."""
        chosen, expired = select_for_block(
            self._pending.items(), self.chain, self.time_window, max_records, max_bytes,
            time_ms, governance_pending=bool(self._governance))
        if expired:
            self._drop_expired(expired, time_ms)
        return chosen

    def _drop_expired(self, record_ids: list[bytes], time_ms: int | None) -> None:
        """Drop pending records too old for any later block, and their descendants."""
        for rid in record_ids:
            self._drop_with_nonce(rid)
        self._drop_unreachable()
        log.info("dropped %d pending records whose ts is more than %d ms before block time %s",
                 len(record_ids), self.time_window.past_ms, time_ms)
        self.metrics.mempool_size.set(len(self._pending))

    def committed(self, envelopes: Sequence[Envelope]) -> None:
        """Drop what a block committed, and whatever it made invalid."""
        if not (self._pending or self._nonces or self._timed or self._orphans):
            # Nothing pending or held (catch-up): nothing to drop, no nonce
            # to free, no orphan to release; only the verified-signature
            # cache may hold these envelopes.
            self._checks.forget_many(env.leaf_hash for env in envelopes)
            if self.waiters:
                self.waiters.committed(env.id for env in envelopes)
            self._publish_admitted()
            self.metrics.mempool_size.set(0)
            return
        conflicts = governance = False
        timed, orphans = self._timed, self._orphans
        for env in envelopes:
            rid = env.id
            governance = governance or is_governance(env)
            if timed and (admitted := timed.pop(rid, None)) is not None:
                self.metrics.submit_to_commit.observe(self.latency_clock() - admitted)
            key = (env.record.submitter, env.record.nonce)
            if self._drop(rid) is None:
                # Committed without passing through here: a pending record
                # holding the same nonce can never commit now.
                other = self._nonces.get(key)
                if other is not None and other != rid:
                    self._drop(other)
                    conflicts = True
            self._nonces.pop(key, None)
            self._checks.forget(env.leaf_hash)
            if orphans:  # none held (the usual case): none waits for this record
                self._release_orphans(rid)
        if self.waiters:
            self.waiters.committed(env.id for env in envelopes)
        if governance:
            conflicts |= self._drop_out_of_scope(list(self._pending))
        elif self._governance:
            conflicts |= self._drop_out_of_scope(list(self._governance))
        if conflicts:
            self._drop_unreachable()
        self._publish_admitted()
        self.metrics.mempool_size.set(len(self._pending))

    def _drop_out_of_scope(self, record_ids: Iterable[bytes]) -> bool:
        """After a block: drop the pending records among ``record_ids`` that
        the membership now refuses for good (:func:`node.mempool_blocks.out_of_scope`).
        True if any was dropped."""
        height = self.chain.height + 1
        refused = out_of_scope(self._pending, record_ids, self.chain.membership, height)
        for rid, exc in refused:
            self.metrics.rejected.labels(code=exc.code).inc()
            self._drop_with_nonce(rid)
        if refused:
            log.info("dropped %d pending records the membership at height %d refuses",
                     len(refused), height)
        return bool(refused)

    def _drop_unreachable(self) -> None:
        """Remove pending records whose parent was dropped (they can never commit)."""
        for rid in unreachable(self._pending, self.chain):
            self._drop_with_nonce(rid)

    def _drop_with_nonce(self, record_id: bytes) -> None:
        """Drop a pending record that will never commit, freeing its nonce."""
        env = self._drop(record_id)
        if env is not None:
            self._nonces.pop((env.record.submitter, env.record.nonce), None)

    def _drop(self, record_id: bytes) -> Envelope | None:
        env = self._pending.pop(record_id, None)
        if env is not None:
            self._governance.discard(record_id)
            self._by_leaf.pop(env.leaf_hash, None)
            self._acks.discard(record_id)
            if self._timed:
                self._timed.pop(record_id, None)
        return env

