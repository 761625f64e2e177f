"""The mempool: admitted records waiting for a block.

Admission checks each envelope once: canonical form, chain, submitter and
role, signature, nonce unused (in the chain and here), every parent known
(pending here or committed).  Records are kept in admission order, and since
a parent must be known before its child is admitted, that order already puts
parents first; :meth:`Mempool.select` only has to stop a child whose parent
did not make it into the same block.

Signatures are expensive, so the envelopes whose signatures this node has
checked are remembered by leaf hash (everything pending, plus a bounded set
of envelopes checked in block validation that were not pending, kept by
:mod:`node.signature_checks` with admission's stateless checks):
:meth:`Mempool.signature_verified` is what block validation consults so that
no node verifies one record's signature twice.

With a :class:`~node.durable.PendingWriter`, every record a client is told
is held here (``accepted``, or ``duplicate`` for one pending here) is on disk
before :meth:`Mempool.admit` returns, and :meth:`Mempool.restore` admits them
again after a restart.  Peers' records are not written: nobody was promised
anything by this node, and their sender holds them durably.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Protocol

from ledger.breakers import Breakers
from ledger.breakers import rules as breaker_rules
from ledger.crypto import verify_many
from ledger.errors import (
    AlertFlood,
    BadTimestamp,
    ConflictingProposal,
    LedgerError,
    NonceReused,
    Paused,
    RateLimited,
    UnknownParent,
)
from ledger.genesis import Genesis, RecordTimeWindow, record_time_window
from ledger.membership import Membership, check_envelope, is_governance
from ledger.records import Envelope, decode_envelope
from ledger.risk import ALERT

from .durable import PendingWriter
from .mempool_links import AdmittedLeaves, PeerBacklog
from .metrics import Metrics
from .signature_checks import SignatureChecks

log = logging.getLogger("node.mempool")

# Signature checks run in chunks of this many envelopes, yielding to the
# loop in between, so a 5000-envelope request does not stall consensus.
# 64, not 256 as with the retired key tables: libsodium takes several times
# longer per signature, and a chunk must stay short for consensus messages
# to get in between (docs/performance.md, 2026-12-06).
VERIFY_CHUNK = 64
# Decoding and state checks yield to the event loop this often: admission is
# the bulk of a node's work under load and must not delay consensus messages.
YIELD_EVERY = 128
# Client batches whose submit-to-commit time is being measured at once; more
# wait unmeasured (a stalled chain must not grow this without bound).
MAX_TIMED = 4096


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class ChainView(Protocol):
    """What admission needs from the chain store."""

    def record_location(self, record_id: bytes) -> tuple[int, int] | None: ...

    def id_for_nonce(self, submitter: bytes, nonce: int) -> bytes | None: ...

    def committed_leaf_hash(self, record_id: bytes) -> bytes | None: ...

    @property
    def height(self) -> int: ...

    @property
    def membership(self) -> Membership:
        """Genesis plus the committed governance records (PROTOCOL §9)."""

    @property
    def breakers(self) -> Breakers:
        """The circuit breakers after the tip (PROTOCOL §12.3)."""


class Admission(NamedTuple):
    """The outcome for one submitted envelope: a status or an error.

    A named tuple, not a frozen dataclass: one is built per record admitted,
    and the dataclass's ``__init__`` sets each field through
    ``object.__setattr__``."""

    id: bytes | None
    status: str | None = None  # "accepted" | "duplicate" | "committed"
    error: LedgerError | None = None


class _ChainNonce(NamedTuple):
    """The chain's nonce index entry for one record, read at ``height``."""

    height: int
    record_id: bytes | None


@dataclass
class _Orphan:
    envelope: Envelope
    missing: set[bytes]
    source: str  # "gossip", or "restore": acknowledged by this node before a restart


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
        # Record ts window (PROTOCOL §2): a client's record is judged against
        # this node's clock; a peer's record with the validators' allowed
        # clock skew added, so that one a peer admitted, or a proposer put in
        # a block, is not refused here for a few ms of clock difference
        # (block validation decides against the header's time).
        self.clock = clock
        self._peer_slack_ms = peer_clock_slack_ms
        self.chain = chain
        # The window is a chain param: governance may change it (gov.params.set).
        self._windows_params: Mapping[str, Any] | None = None
        self._refresh_windows()
        self.metrics = metrics
        self.max_size = max_size
        self.max_orphans = max_orphans
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
        self._orphans: OrderedDict[bytes, _Orphan] = OrderedDict()
        self._waiting: dict[bytes, set[bytes]] = {}  # parent id -> orphan ids
        self._gossip: list[bytes] = []  # envelopes admitted from clients, not yet sent
        self.changed = asyncio.Event()
        # Admissions counted per record here, published per batch (labels()
        # costs microseconds; no per-record Python work that can be per-batch).
        self._admitted: dict[str, int] = {}
        self.durable = durable
        # Record id -> number of its entry in the pending keyspace, for the
        # records (pending or orphans) a client was told are held here.
        self._seq: dict[bytes, int] = {}
        # Submit-to-commit latency, sampled: the first record a client batch
        # added, with the batch's admission time (one clock read and one
        # entry per batch; a dict lookup per committed record while any wait).
        self.latency_clock = latency_clock
        self._timed: dict[bytes, float] = {}

    # -- queries -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, record_id: bytes) -> bool:
        return record_id in self._pending

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

    def _refresh_windows(self) -> None:
        """The record ts windows of the params in force at the next block."""
        params = self.chain.membership.at(self.chain.height + 1).params
        if params is self._windows_params:
            return
        self._windows_params = params
        self.time_window = record_time_window(params)
        self._peer_window = RecordTimeWindow(self.time_window.past_ms + self._peer_slack_ms,
                                             self.time_window.future_ms + self._peer_slack_ms)

    # -- admission ---------------------------------------------------------

    async def admit(self, items: Sequence[bytes], source: str = "api",
                    seqs: Sequence[int] = ()) -> list[Admission]:
        """Admit envelopes in order; one :class:`Admission` per item.

        From a client (``source`` "api"), returns once every record answered
        ``accepted`` or ``duplicate`` is durable (see the module doc).
        ``seqs``: for "restore", each item's number in the pending keyspace."""
        decoded: list[Envelope | LedgerError] = []
        for i, raw in enumerate(items):
            try:
                # Multi-signed envelopes (PROTOCOL §9.2): every signature
                # is verified below before anything is admitted.
                decoded.append(decode_envelope(raw, cosigs=True))
            except LedgerError as exc:
                decoded.append(exc.as_value())
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let consensus messages in between
        # Stateless checks (chain, submitter, role, signature) off the loop,
        # only for envelopes whose id is new to this node: resubmissions are
        # answered from state without touching a signature again.
        # What the chain's nonce index said is kept with the height it was
        # read at: if no block committed before the admission step, that
        # step reuses it instead of reading LevelDB again.
        # A new record's ts must be in the window around this node's clock.
        # A known record id sent with other envelope bytes (another
        # signature) has that signature checked too: answering "duplicate"
        # or "committed" unchecked would vouch for a forged envelope.
        seen: dict[int, _ChainNonce | None] = {}
        todo = []
        self._refresh_windows()
        now = self.clock()
        window = self.time_window if source == "api" else self._peer_window
        for i, d in enumerate(decoded):
            if isinstance(d, Envelope):
                status, _, seen[i] = self._lookup(d)
                if status is None and not window.contains(d.record.ts, now):
                    decoded[i] = BadTimestamp(window.explain(d.record.ts, now)).as_value()
                    continue
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
        need = self._keep_durably(source, decoded, results, seqs)
        if need >= 0 and self.durable is not None:
            await self.durable.wait(need)
        return results

    def _keep_durably(self, source: str, decoded: Sequence[Envelope | LedgerError],
                      results: Sequence[Admission], seqs: Sequence[int]) -> int:
        """Number in the pending keyspace what admit() tells a client is held
        here (or, restoring, keep or drop each stored entry); the highest
        number the answer must wait for (-1: none)."""
        durable = self.durable
        if durable is None or source == "gossip":
            return -1
        kept, need = self._seq, -1
        for i, (d, r) in enumerate(zip(decoded, results)):
            # Still held: admit() yields between admitting and this pass, and
            # a block may have committed the record meanwhile.
            rid = d.id if isinstance(d, Envelope) else None
            held = rid is not None and (rid in self._pending or rid in self._orphans)
            if source == "restore":
                if rid is not None and held and r.status == "accepted" and rid not in kept:
                    kept[rid] = seqs[i]
                else:  # committed meanwhile, refused now, or stored twice
                    durable.discard([seqs[i]])
            elif held and r.status in ("accepted", "duplicate"):
                assert isinstance(d, Envelope) and rid is not None
                seq = kept.get(rid)
                if seq is None:
                    # New here, or a peer's record this client is now told we hold.
                    seq = kept[rid] = durable.add(d.envelope_bytes)
                need = max(need, seq)
        return need

    async def restore(self) -> tuple[int, int]:
        """Admit the pending keyspace's envelopes again, in their order (on
        start, before the API serves); ``(restored, dropped)``: held again,
        and dropped from the keyspace (committed meanwhile or refused now)."""
        if self.durable is None:
            return 0, 0
        entries = self.durable.records.load()
        for seq, _ in entries:
            self.durable.restored(seq)
        results = await self.admit([raw for _, raw in entries], "restore",
                                   [seq for seq, _ in entries])
        restored = sum(1 for r in results if r.status == "accepted")
        return restored, len(results) - restored

    def take_durable(self, envelopes: Sequence[Envelope]) -> list[int]:
        """Before a block with ``envelopes`` commits: the pending-keyspace
        entries it commits that its write batch must delete."""
        if self.durable is None or not self._seq:
            return []
        kept = self._seq
        seqs = [seq for env in envelopes if (seq := kept.pop(env.id, None)) is not None]
        return self.durable.forget(seqs) if seqs else []

    def _discard_durable(self, record_id: bytes) -> None:
        """``record_id`` left the mempool for good: drop its entry, if any."""
        seq = self._seq.pop(record_id, None)
        if seq is not None and self.durable is not None:
            self.durable.discard([seq])

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

    def _lookup(self, env: Envelope, seen: _ChainNonce | None = None
                ) -> tuple[str | None, bytes | None, _ChainNonce | None]:
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
            seen = _ChainNonce(height, self.chain.id_for_nonce(rec.submitter, rec.nonce))
        if seen.record_id == rid:
            return "committed", None, seen
        return None, seen.record_id, seen

    def _check_alert_flood(self, monitor: bytes) -> None:
        """Refuse a client's alert when its monitor's alerts counted in the
        breaker window at the tip reach ``breaker_monitor_alerts`` (PROTOCOL
        §12.3): it would not count.  From committed alerts only."""
        r = breaker_rules(self.chain.membership.at(self.chain.height + 1).params)
        limit = r["breaker_monitor_alerts"]
        if not limit or not r["breaker_alerts"]:
            return
        b = self.chain.breakers
        counted = b.monitor_alerts(monitor, b.time, r["breaker_window_ms"])
        if counted >= limit:
            raise AlertFlood(f"this monitor's alerts counted in the last "
                             f"{r['breaker_window_ms']} ms are at the limit ({limit})")

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

    def _admit_one(self, env: Envelope, source: str, seen: _ChainNonce | None = None) -> str:
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
            self._check_alert_flood(rec.submitter)
        # Clients are pushed back at max_size.  A peer's records get twice
        # the room: they are already in its mempool and will be proposed, and
        # refusing them here only means fetching them again later (node/assembly.py).
        # Restored records were acknowledged already: no limit.
        limit = self.max_size if source == "api" else 2 * self.max_size
        if len(self._pending) >= limit and source != "restore":
            raise RateLimited(f"mempool holds {len(self._pending)} records; retry later")
        self._pending[rid] = env
        self._by_leaf[env.leaf_hash] = env
        if is_governance(env):
            self._governance.add(rid)
        self._leaves.add(env.leaf_hash)
        self._nonces[key] = rid
        self._admitted[source] = self._admitted.get(source, 0) + 1
        if source != "gossip":  # a client's, or a client's restored after a restart
            self._gossip.append(env.envelope_bytes)
        self._release_orphans(rid)
        return "accepted"

    # -- orphans (gossip only: a peer's child may overtake its parent) --------

    def _hold_orphan(self, env: Envelope, source: str) -> bool:
        if self.max_orphans == 0:
            return False
        missing = {p for p in env.record.parents
                   if p not in self._pending and self.chain.record_location(p) is None}
        while len(self._orphans) >= self.max_orphans:
            old_id, old = self._orphans.popitem(last=False)
            self._unwait(old_id, old)
            self._discard_durable(old_id)
        self._orphans[env.id] = _Orphan(env, missing, source)
        for p in missing:
            self._waiting.setdefault(p, set()).add(env.id)
        self.metrics.orphans.set(len(self._orphans))
        return True

    def _unwait(self, orphan_id: bytes, orphan: _Orphan) -> None:
        for p in orphan.missing:
            ids = self._waiting.get(p)
            if ids is not None:
                ids.discard(orphan_id)
                if not ids:
                    del self._waiting[p]

    def _release_orphans(self, parent: bytes) -> None:
        ready: list[bytes] = []
        for oid in self._waiting.pop(parent, ()):
            orphan = self._orphans.get(oid)
            if orphan is not None:
                orphan.missing.discard(parent)
                if not orphan.missing:
                    ready.append(oid)
        for oid in ready:
            orphan = self._orphans.pop(oid)
            try:
                # One a client was told is held here (restored) is gossiped.
                source = "restore" if orphan.source == "restore" or oid in self._seq \
                    else "gossip"
                if self._admit_one(orphan.envelope, source) != "accepted":
                    self._discard_durable(oid)  # committed meanwhile
            except LedgerError as exc:
                self.metrics.rejected.labels(code=exc.code).inc()
                self._discard_durable(oid)
        if ready:
            self.metrics.orphans.set(len(self._orphans))

    # -- gossip ------------------------------------------------------------

    def take_gossip(self, limit: int) -> list[bytes]:
        """Envelopes admitted from clients that peers have not been sent yet."""
        batch, self._gossip = self._gossip[:limit], self._gossip[limit:]
        return batch

    # -- blocks ------------------------------------------------------------

    def select(self, max_records: int, max_bytes: int | None = None, *,
               time_ms: int | None = None) -> list[Envelope]:
        """Records for the next block, in admission order, parents first.

        With ``time_ms`` (the block's time) only records whose ts is in the
        window around it: those too old are dropped (block times only grow,
        so they can never commit), those ahead of it wait."""
        chosen: list[Envelope] = []
        chosen_ids: set[bytes] = set()
        expired: list[bytes] = []
        self._refresh_windows()
        window = self.time_window
        size = 0
        # Once governance changed anything, a record admitted earlier may be
        # out of scope for the next block (paused, key rotated): it is left
        # out rather than make the block invalid.  Governance records are
        # applied in turn, so two conflicting ones never share a block.
        trial = self.chain.membership
        judge = bool(trial.changes) or bool(self._governance)
        height = self.chain.height + 1
        for rid, env in self._pending.items():
            if len(chosen) >= max_records:
                break
            if max_bytes is not None and size + len(env.envelope_bytes) > max_bytes:
                break
            if time_ms is not None and not window.contains(env.record.ts, time_ms):
                if window.expired(env.record.ts, time_ms):
                    expired.append(rid)
                continue
            if all(p in chosen_ids or self.chain.record_location(p) is not None
                   for p in env.record.parents):
                if judge:
                    try:
                        check_envelope(trial, env, height, signatures=False)
                        if is_governance(env):
                            trial = trial.apply(height, [env], signatures=False)
                    except LedgerError:
                        continue
                chosen.append(env)
                chosen_ids.add(rid)
                size += len(env.envelope_bytes)
        if expired:
            self._drop_expired(expired, time_ms)
        return chosen

    def _drop_expired(self, record_ids: list[bytes], time_ms: int | None) -> None:
        """Drop pending records too old for any later block, and their descendants."""
        for rid in record_ids:
            env = self._drop(rid)
            if env is not None:
                self._nonces.pop((env.record.submitter, env.record.nonce), None)
        self._drop_unreachable()
        log.info("dropped %d pending records whose ts is more than %d ms before block time %s",
                 len(record_ids), self.time_window.past_ms, time_ms)
        self.metrics.mempool_size.set(len(self._pending))

    def committed(self, envelopes: Sequence[Envelope]) -> None:
        """Drop what a block committed, and whatever it made invalid."""
        conflicts = False
        timed = self._timed
        for env in envelopes:
            rid = env.id
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
            self._release_orphans(rid)
        if any(is_governance(env) for env in envelopes):
            conflicts |= self._drop_out_of_scope(list(self._pending))
        elif self._governance:
            conflicts |= self._drop_out_of_scope(list(self._governance))
        if conflicts:
            self._drop_unreachable()
        self._publish_admitted()
        self.metrics.mempool_size.set(len(self._pending))

    def _drop_out_of_scope(self, record_ids: list[bytes]) -> bool:
        """After a block: drop the pending records among ``record_ids`` that
        the membership now refuses for good (submitter removed, key rotated
        out, proposal expired or unsound); a record of a paused scope, or a
        proposal in conflict with another pending one, waits.  True if any
        was dropped."""
        membership, height = self.chain.membership, self.chain.height + 1
        dropped = 0
        for rid in record_ids:
            env = self._pending.get(rid)
            if env is None:
                continue
            try:
                check_envelope(membership, env, height, signatures=False)
            except (Paused, ConflictingProposal):
                continue
            except LedgerError as exc:
                self.metrics.rejected.labels(code=exc.code).inc()
                self._drop(rid)
                self._nonces.pop((env.record.submitter, env.record.nonce), None)
                dropped += 1
        if dropped:
            log.info("dropped %d pending records the membership at height %d refuses",
                     dropped, height)
        return dropped > 0

    def _drop_unreachable(self) -> None:
        """Remove pending records whose parent was dropped (they can never commit)."""
        for rid, env in list(self._pending.items()):
            if any(p not in self._pending and self.chain.record_location(p) is None
                   for p in env.record.parents):
                self._drop(rid)
                self._nonces.pop((env.record.submitter, env.record.nonce), None)

    def _drop(self, record_id: bytes) -> Envelope | None:
        env = self._pending.pop(record_id, None)
        if env is not None:
            self._governance.discard(record_id)
            self._by_leaf.pop(env.leaf_hash, None)
            self._discard_durable(record_id)
            if self._timed:
                self._timed.pop(record_id, None)
        return env

