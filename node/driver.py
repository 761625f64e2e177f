"""The consensus driver: owns the clock, the timers and the effects.

The sans-I/O :class:`ConsensusMachine` turns events into effects; this
module is the only place that feeds it and carries its effects out, one
event at a time and each effect list strictly in order:

* ``Persist`` is written with a synced LevelDB batch *before* the next effect
  runs, so nothing the machine signed leaves the node unless the state that
  remembers signing it is on disk (a restarted validator never signs twice);
* ``Commit`` is one atomic ``ChainStore.commit_block`` and is acknowledged
  with ``BlockApplied`` only after the remaining effects of the same list;
* sends only enqueue onto per-peer bounded queues, so a slow peer never
  stalls consensus;
* once the machine has returned its effects it has moved on, trusting they
  happen: an effect that fails (a commit or persist that raises) stops the
  node through :class:`~node.failstop.FailStop` - never a validator that
  keeps running without committing.

Catch-up (``NeedCatchUp``/``FetchBlock``, or peers reporting greater heights)
runs as a separate task that fetches certified blocks over HTTP and feeds them
back as ``CommittedBlock`` events; the machine verifies and applies them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import aiohttp

from consensus import (
    BlockApplied,
    Broadcast,
    Commit,
    CommittedBlock,
    ConsensusConfig,
    ConsensusMachine,
    Effect,
    Event,
    Evidence,
    EvidenceFound,
    FetchBlock,
    NeedCatchUp,
    Persist,
    RecordsAvailable,
    Rejected,
    SendTo,
    SetTimer,
    Start,
    TimerFired,
    decode_state,
    encode_message,
)
from ledger.blocks import Header
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.encoding import canonical
from ledger.errors import LedgerError
from ledger.genesis import Genesis, max_faulty
from ledger.records import Envelope

from .aio import cancel_all, wait_event
from .chainapp import NodeApplication
from .failstop import FailStop
from .gctune import catching_up
from .logs import LogContext
from .mempool import Mempool
from .metrics import Metrics
from .sync import BlockSync, FetchedBlock
from .sigcache import SignatureCache

log = logging.getLogger("node.driver")

Send = Callable[[bytes | None, bytes], None]  # a peer's validator key, or None for everyone
Committed = Callable[[Header, Sequence[Envelope], str], None]

# Peer events beyond this many waiting are dropped (timers and our own
# acknowledgements are never dropped): a flood cannot grow memory.
MAX_PEER_EVENTS = 20_000
# Yield to the event loop after this many events, or after a slice this
# long (applying one large committed block is a long step), so the API, peer frames and
# catch-up's prefetch of the next blocks get their turn.
EVENTS_PER_SLICE = 64
SLICE_SECONDS = 0.01


def now_ms() -> int:
    return int(time.time() * 1000)


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Where the driver reads the time and sets its timers (tests: virtual time)."""

    def now_ms(self) -> int: ...

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle: ...


class LoopClock:
    """Wall-clock milliseconds and the running event loop's timers."""

    def now_ms(self) -> int:
        return now_ms()

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay_s, callback)


class Driver:
    def __init__(
        self,
        *,
        genesis: Genesis,
        keys: Sequence[SigningKey],
        chain: ChainStore,
        mempool: Mempool,
        app: NodeApplication,
        sync: BlockSync,
        metrics: Metrics,
        log_ctx: LogContext,
        config: ConsensusConfig,
        send: Send,
        on_committed: Committed,
        fail: FailStop,
        clock: Clock | None = None,
        stall_ms: int = 3000,
        config_at: Callable[[int], ConsensusConfig] | None = None,
    ) -> None:
        self.genesis = genesis
        self.chain = chain
        self.mempool = mempool
        self.sync = sync
        self.metrics = metrics
        self.log_ctx = log_ctx
        self.send = send
        self.on_committed = on_committed
        self.fail = fail
        self.clock: Clock = clock or LoopClock()
        self.stall_ms = stall_ms
        stored = chain.get_consensus_state()
        persisted = decode_state(stored) if stored is not None else None
        # The set in force at each height, from the committed governance
        # records (PROTOCOL §9.9); we sign with whichever of our keys is in
        # it, and follow without signing when none is.
        self.machine = ConsensusMachine(genesis, None, None, app, tip=chain.tip(),
                                        persisted=persisted, config=config,
                                        check=SignatureCache(),
                                        epochs=lambda h: chain.membership.validator_genesis(h),
                                        signers={k.public_key: k for k in keys},
                                        configs=config_at)
        if persisted is not None and persisted.height == self.machine.height:
            log.info("restored consensus state at height %d round %d", persisted.height,
                     persisted.round)
        self._events: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._timers: set[TimerHandle] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_hr = (0, -1)
        self._sync_target = 0
        self._sync_wanted = asyncio.Event()
        self._height_changed = asyncio.Event()
        self._last_commit_ms = self.clock.now_ms()
        self.syncing = False
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.feed(Start(self.clock.now_ms()))
        self._tasks = [
            asyncio.create_task(self._run(), name="consensus"),
            asyncio.create_task(self._watch_mempool(), name="records-available"),
            asyncio.create_task(self._catch_up_loop(), name="catch-up"),
            asyncio.create_task(self.probe_peers(), name="probe-peers"),
        ]

    async def probe_peers(self) -> None:
        """On start, learn the peers' heights now rather than from the next
        status gossip, so a node that was down starts catching up at once."""
        assert self._session is not None
        await self.sync.probe_heights(self._session)
        reached = self._height_peers_reached()
        if reached > self.chain.height:
            log.info("peers are at height %d, we are at %d: catching up", reached,
                     self.chain.height)
            self.want_sync(reached)

    async def stop(self) -> None:
        self._stopping = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if await cancel_all(self._tasks):
            log.error("consensus tasks did not stop")
        if self._session is not None:
            await self._session.close()

    # -- input -------------------------------------------------------------

    def feed(self, event: Event) -> None:
        self._events.append(event)
        self._wake.set()

    def feed_peer(self, event: Event) -> None:
        if len(self._events) >= MAX_PEER_EVENTS:
            self.metrics.frames_dropped.labels(reason="consensus_backlog").inc()
            return
        self.feed(event)

    def _height_peers_reached(self) -> int:
        """The height f+1 peers report, so at least one honest node has it."""
        return self.sync.height_of_at_least(max_faulty(self.machine.n) + 1)

    def peer_height(self, peer: int, height: int) -> None:
        """A peer's committed height (status gossip): catch up if we fell behind."""
        self.sync.note_height(peer, height)
        reached = self._height_peers_reached()
        gap = reached - self.chain.height
        stalled = self.clock.now_ms() - self._last_commit_ms > self.stall_ms
        if gap >= 2 or (gap >= 1 and stalled):
            self.want_sync(reached)

    def want_sync(self, height: int) -> None:
        self._sync_target = max(self._sync_target, height)
        self._sync_wanted.set()

    async def _watch_mempool(self) -> None:
        while True:
            await self.mempool.changed.wait()
            self.mempool.changed.clear()
            self.feed(RecordsAvailable(self.clock.now_ms()))
            await asyncio.sleep(0.005)  # coalesce bursts of admissions

    # -- the loop ----------------------------------------------------------

    @property
    def last_commit_ms(self) -> int:
        """When this node last committed a block (its start, before the first)."""
        return self._last_commit_ms

    def peers_height(self) -> int:
        """The height f+1 peers report (0 before any has reported)."""
        return self._height_peers_reached()

    async def _run(self) -> None:
        while self.fail.stopped is None:
            await self._wake.wait()
            self._wake.clear()
            handled = 0
            slice_started = time.perf_counter()
            while self._events and self.fail.stopped is None:
                event = self._events.popleft()
                try:
                    self._handle(event)
                except EffectFailed as failed:
                    # The machine moved on expecting this effect: going on
                    # would leave a validator that never commits again.
                    self.fail.internal(failed.what, failed.error)
                    return
                except Exception:
                    # The machine raised before returning effects: its state
                    # is unchanged, and a bad peer message must not stop a
                    # node, so log and go on with the next event.
                    log.exception("consensus event %s failed", type(event).__name__)
                handled += 1
                if handled % EVENTS_PER_SLICE == 0 \
                        or time.perf_counter() - slice_started > SLICE_SECONDS:
                    await asyncio.sleep(0)
                    slice_started = time.perf_counter()

    def _handle(self, first: Event) -> None:
        todo: deque[Event] = deque([first])
        while todo:
            effects = self.machine.handle(todo.popleft())
            for effect in effects:
                try:
                    applied = self._execute(effect)
                except Exception as exc:
                    raise EffectFailed(effect, exc) from exc
                if applied is not None:
                    todo.append(BlockApplied(applied, self.clock.now_ms()))
        self._observe()

    def _execute(self, effect: Effect) -> int | None:
        """Carry out one effect; returns the height of an applied Commit."""
        if isinstance(effect, Persist):
            self.chain.put_consensus_state(effect.state.to_bytes())
        elif isinstance(effect, Broadcast):
            self.send(None, encode_message(effect.message))
        elif isinstance(effect, SendTo):
            key = effect.key or self.machine.epoch(self.machine.height).validators[
                effect.validator].pubkey
            self.send(key, encode_message(effect.message))
        elif isinstance(effect, SetTimer):
            self._set_timer(effect)
        elif isinstance(effect, Commit):
            return self._commit(effect)
        elif isinstance(effect, EvidenceFound):
            ev = effect.evidence
            store_evidence(self.chain, ev)
            self.metrics.evidence.inc()
            log.warning("equivocation by validator %d at height %d round %d (%s)",
                        ev.validator, ev.first.height, ev.first.round, ev.first.type)
        elif isinstance(effect, NeedCatchUp):
            log.info("behind: blocks up to %d are committed elsewhere", effect.height)
            self.want_sync(effect.height)
        elif isinstance(effect, FetchBlock):
            log.info("a quorum precommitted a block at height %d we lack; fetching",
                     effect.height)
            self.want_sync(effect.height)
        elif isinstance(effect, Rejected):
            self.metrics.rejected.labels(code=effect.error.code).inc()
            log.info("rejected %s from %s: %s", effect.what, effect.validator, effect.error)
        return None

    def _set_timer(self, effect: SetTimer) -> None:
        timer = effect.timer

        def fire() -> None:
            self._timers.discard(handle)
            self.feed(TimerFired(timer, self.clock.now_ms()))

        handle = self.clock.call_later(effect.delay_ms / 1000, fire)
        self._timers.add(handle)

    def _commit(self, effect: Commit) -> int:
        start = time.perf_counter()
        # The machine verified the certificate (its own quorum or a fetched
        # one) through the signature cache, and validated the block on this
        # tip before deciding it (nothing commits in between: one writer);
        # commit_block still re-checks the header against the tip and the
        # log before its one synced batch.
        # The entries this node keeps for the block's records it acknowledged
        # go in the same batch as the block: never both gone and uncommitted.
        done = self.mempool.take_durable(effect.envelopes)
        self.chain.commit_block(effect.header, effect.envelopes, effect.certificate,
                                verify_certificate=False, validated=True, pending_done=done)
        self.metrics.commit_latency.observe(time.perf_counter() - start)
        self._last_commit_ms = self.clock.now_ms()
        self.on_committed(effect.header, effect.envelopes,
                          "sync" if self.syncing else "consensus")
        self._height_changed.set()
        return effect.height

    def _observe(self) -> None:
        m = self.machine
        hr = (m.height, m.round)
        self.log_ctx.height = m.height
        self.log_ctx.round = m.round
        if hr != self._last_hr:
            self.metrics.rounds.inc()
            if hr[0] == self._last_hr[0]:
                self.metrics.round_changes.inc()
                log.info("round change to %d at height %d", m.round, m.height)
            self._last_hr = hr
            self.metrics.consensus_round.set(m.round)

    # -- catch-up ----------------------------------------------------------

    async def _catch_up_loop(self) -> None:
        while not self._stopping:
            await self._sync_wanted.wait()
            self._sync_wanted.clear()
            try:
                with catching_up():  # the collector's young generation widened
                    await self._catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("catch-up failed")
            finally:
                self.syncing = False

    async def _catch_up(self) -> None:
        assert self._session is not None
        started = time.perf_counter()
        first_height, blocks, records = self.chain.height, 0, 0
        idle_rounds = 0
        # The next batch is fetched (a peer reads it, we decode it) while the
        # machine validates and applies this one: one batch in flight ahead.
        # Batches start at one block and double up to sync.batch_blocks, so
        # applying starts after one block's fetch, not a whole batch's.
        ahead: asyncio.Task[list[FetchedBlock]] | None = None
        try:
            while self.chain.height < self._sync_target and idle_rounds < 20 \
                    and not self._stopping:
                self.syncing = self._sync_target - self.chain.height >= 2
                if ahead is not None:
                    fetched = await ahead
                    ahead = None
                    if fetched and fetched[0][0].height != self.chain.height + 1:
                        fetched = []  # the chain moved meanwhile: fetch afresh
                else:
                    limit = 1
                    fetched = await self.sync.fetch(self.chain.height + 1, limit)
                if not fetched:
                    idle_rounds += 1  # nobody has it yet (FetchBlock races the peers' commit)
                    await asyncio.sleep(min(0.05 * idle_rounds, 0.5))
                    continue
                idle_rounds = 0
                for header, envelopes, cert in fetched:
                    self.feed(CommittedBlock(header, tuple(envelopes), cert,
                                             self.clock.now_ms()))
                target = fetched[-1][0].height
                if target < self._sync_target:
                    limit = min(2 * limit, self.sync.batch_blocks)
                    ahead = asyncio.create_task(self.sync.fetch(target + 1, limit),
                                                name="catch-up-prefetch")
                deadline = time.monotonic() + 10
                while self.chain.height < target and time.monotonic() < deadline:
                    self._height_changed.clear()
                    await wait_event(self._height_changed, 1.0)
                if self.chain.height < target:
                    log.warning("fetched blocks up to %d were not applied (at %d)", target,
                                self.chain.height)
                    break
                blocks += len(fetched)
                records += sum(len(e) for _, e, _ in fetched)
        finally:
            if ahead is not None:
                await cancel_all([ahead])
        if blocks:
            secs = time.perf_counter() - started
            log.info("caught up from height %d to %d: %d records in %.2fs (%.0f records/s)",
                     first_height, self.chain.height, records, secs, records / max(secs, 1e-9),
                     extra={"sync_blocks": blocks, "sync_records": records,
                            "sync_seconds": round(secs, 3),
                            "sync_rate": round(records / max(secs, 1e-9), 1)})
            self.sync.record(blocks, records)

    # -- status ------------------------------------------------------------

    def status(self) -> dict[str, int | bool]:
        return {"round": self.machine.round, "syncing": self.syncing}


class EffectFailed(Exception):
    """Carrying out one of the machine's effects raised ``error``."""

    def __init__(self, effect: Effect, error: Exception) -> None:
        super().__init__(f"{type(effect).__name__}: {error}")
        self.error = error
        self.what = _effect_name(effect)


def _effect_name(effect: Effect) -> str:
    if isinstance(effect, Commit):
        return f"committing block {effect.height}"
    if isinstance(effect, Persist):
        return "persisting the consensus state"
    return f"carrying out {type(effect).__name__}"


def store_evidence(chain: ChainStore, ev: Evidence) -> None:
    """Durably keep equivocation evidence, once per (validator, height, round, type)."""
    chain.add_evidence(canonical(list(ev.key)), ev.to_bytes())


def evidence_json(blob: bytes) -> dict[str, object]:
    """One stored evidence blob as JSON for ``GET /v1/evidence``."""
    from consensus import decode_evidence
    from ledger.encoding import to_b64, to_hex

    try:
        ev = decode_evidence(blob)
    except LedgerError as exc:
        return {"error": f"undecodable evidence: {exc}"}
    return {
        "validator": ev.validator,
        "height": ev.first.height,
        "round": ev.first.round,
        "type": ev.first.type.value,  # the protocol string, as in the vote bytes
        "votes": [
            {"block": to_hex(sv.block) if sv.block is not None else None,
             "vote": to_b64(sv.vote_bytes), "sig": to_hex(sv.sig)}
            for sv in (ev.first, ev.second)
        ],
    }
