"""A simulated validator: the reference driver of :class:`ConsensusMachine`.

It executes effects strictly in order (Persist is "durable" the moment it
runs: it writes the node's surviving storage), applies commits to its
in-memory chain and acknowledges them with ``BlockApplied``, runs timers on
the virtual clock, and speaks a small driver protocol: record gossip (client records are
forwarded once to peers, as the node's mempool does), periodic height
status, block sync and block fetch.  A crash drops everything except
``storage`` and the chain; it can strike between any two effects, which is
how the simulator exercises "persisted but not yet sent".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from consensus.events import (
    BlockApplied,
    Broadcast,
    Commit,
    Effect,
    Event,
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
    received,
)
from consensus.machine import ConsensusMachine
from consensus.messages import Decision, Message
from consensus.params import Timer
from consensus.state import PersistedState, decode_state
from ledger.approvals import VerdictMismatch
from ledger.errors import VerificationError
from ledger.genesis import Genesis
from ledger.records import Envelope

from .app import SimApp, SimChain
from .crypto_cache import CachedSigner, cached_verify
from .trace import describe, short
from .wire import FetchRequest, Frame, Gossip, Status, SyncRequest, decode_frame, encode_frame
from .workload import MAX_CLOCK_SKEW_MS, MAX_ROTATIONS, slot_key, validator_keys

if TYPE_CHECKING:
    from .world import World

MachineFactory = Callable[..., ConsensusMachine]
SYNC_BATCH = 8


class SimNode:
    honest = True

    def __init__(self, world: "World", endpoint: int, validator: int, clock_offset: int,
                 machine_factory: MachineFactory = ConsensusMachine) -> None:
        self.world = world
        self.endpoint = endpoint
        self.validator = validator
        self.name = f"n{endpoint}" if endpoint == validator else f"n{validator}'"
        self.key = validator_keys(world.genesis.n)[validator] if validator < world.genesis.n \
            else slot_key(validator, 0)
        self.signer = CachedSigner(self.key)
        # Every key of this validator slot (epoch runs: its rotations too), by public key.
        rotations = MAX_ROTATIONS + 1 if world.epochs else 1
        self.signers = {slot_key(validator, r).public_key: CachedSigner(slot_key(validator, r))
                        for r in range(rotations)}
        self.signers[self.key.public_key] = self.signer
        self.clock_offset = clock_offset
        self.machine_factory = machine_factory
        self.chain = SimChain(world.genesis, world.policy_for(validator))
        # Survives crashes.  Holds the immutable PersistedState itself: encoding
        # it on every Persist would dominate run time; restarts decode
        # ``to_bytes()`` so the codec is exercised on every restart.
        self.storage: dict[str, PersistedState] = {}
        self.submitted: list[Envelope] = []
        self.up = True
        self.epoch = 0
        self.crash_due = False
        self._synced: dict[int, Decision] = {}
        self._fetches: dict[bytes, int] = {}
        self._last_sync = -(10**9)
        self.app = SimApp(world.genesis, self.chain, MAX_CLOCK_SKEW_MS)
        self.machine = self._new_machine()

    # ------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.world.sched.now + self.clock_offset

    def _new_machine(self) -> ConsensusMachine:
        stored = self.storage.get("state")
        persisted = decode_state(stored.to_bytes()) if stored is not None else None
        return self.machine_factory(
            self.world.genesis, None, None, self.app, tip=self.chain.tip,
            persisted=persisted, config=self.world.consensus_config, check=cached_verify,
            epochs=self.epoch_genesis, signers=self.signers,
        )

    def epoch_genesis(self, height: int) -> Genesis:
        """The validator set in force at ``height``, from this node's chain."""
        return self.chain.membership.validator_genesis(height)

    def index_at(self, height: int) -> int | None:
        """This slot's index in the set in force at ``height`` (None: not in it)."""
        for v in self.epoch_genesis(height).validators:
            if v.pubkey in self.signers:
                return v.index
        return None

    def signer_at(self, height: int) -> tuple[int, CachedSigner] | None:
        for v in self.epoch_genesis(height).validators:
            signer = self.signers.get(v.pubkey)
            if signer is not None:
                return v.index, signer
        return None

    def start(self) -> None:
        self._feed(Start(self.now))
        self.world.sched.after(self.world.rng.randint(1, self.world.status_interval), self._status_tick, self.epoch)

    def crash(self) -> None:
        if not self.up:
            return
        self.up = False
        self.crash_due = False
        self.epoch += 1
        self.world.trace.note(self.world.sched.now, self.name, "CRASH")

    def restart(self) -> None:
        if self.up:
            self.crash_due = False
            return
        self.up = True
        self._synced, self._fetches = {}, {}
        self.chain.rebuild_verdicts(self.world.policy_for(self.validator))
        self.app = SimApp(self.world.genesis, self.chain, MAX_CLOCK_SKEW_MS)
        retried = tuple(env for env in self.submitted if self.app.admit(env))  # clients retry
        if retried:
            self.gossip(retried)
        self.machine = self._new_machine()
        self.world.trace.note(self.world.sched.now, self.name,
                              f"RESTART at h{self.machine.height} r{self.machine.round} {self.machine.step.label}")
        self.start()

    # ------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------

    def submit(self, env: Envelope) -> None:
        self.submitted.append(env)  # a client retries a down node once it is back
        if self.up and self.app.admit(env):
            self.gossip((env,))
            self._feed(RecordsAvailable(self.now))

    def gossip(self, envelopes: tuple[Envelope, ...]) -> None:
        """Forward client records to peers once, as the node's mempool does
        (over the lossy network: before GST a record may stay with its node)."""
        self._send_frame_all(Gossip(envelopes))

    def _on_gossip(self, msg: Gossip) -> None:
        if any([self.app.admit(env) for env in msg.envelopes]):
            self._feed(RecordsAvailable(self.now))

    def deliver(self, src: int, data: bytes) -> None:
        try:
            msg = decode_frame(data)
        except VerificationError as exc:
            self.world.trace.note(self.world.sched.now, self.name, f"undecodable frame: {exc}")
            return
        if isinstance(msg, Gossip):
            self._on_gossip(msg)
        elif isinstance(msg, (Status, SyncRequest, FetchRequest)):
            self._on_driver_message(src, msg)
        elif isinstance(msg, Decision):
            self._on_decision(msg)
        else:
            self._feed(received(msg, self.now))

    def _timer_fired(self, epoch: int, timer: Timer) -> None:
        if epoch == self.epoch and self.up:
            self._feed(TimerFired(timer, self.now))

    def _feed(self, event: Event) -> None:
        self._run(self.machine.handle(event))

    # ------------------------------------------------------------------
    # Effects, strictly in order
    # ------------------------------------------------------------------

    def _run(self, effects: Sequence[Effect]) -> None:
        stop_at = self._crash_point(effects) if self.crash_due else None
        for i, effect in enumerate(effects):
            if not self.up:
                return
            if i == stop_at:
                self.crash()
                return
            self._execute(effect)
        if stop_at is not None and stop_at >= len(effects):
            self.crash()

    def _crash_point(self, effects: Sequence[Effect]) -> int:
        """Where to die: often right after a Persist (signed and stored, not sent)."""
        persists = [i + 1 for i, e in enumerate(effects) if isinstance(e, Persist)]
        if persists and self.world.rng.random() < 0.7:
            return self.world.rng.choice(persists)
        return self.world.rng.randint(0, len(effects))

    def _execute(self, effect: Effect) -> None:
        if isinstance(effect, Persist):
            self.storage["state"] = effect.state
            self.world.on_persist(self, effect.state)
        elif isinstance(effect, Broadcast):
            self.broadcast(effect.message)
        elif isinstance(effect, SendTo):
            self.send_to_validator(effect.key, effect.message)
        elif isinstance(effect, SetTimer):
            self.world.sched.after(effect.delay_ms, self._timer_fired, self.epoch, effect.timer)
        elif isinstance(effect, Commit):
            self._commit(effect)
        elif isinstance(effect, EvidenceFound):
            self.world.on_evidence(self, effect.evidence)
        elif isinstance(effect, NeedCatchUp):
            self._request_sync(force=True)
        elif isinstance(effect, FetchBlock):
            self._fetches[effect.block_hash] = effect.height
            self._send_frame_all(FetchRequest(effect.height, effect.block_hash))
        elif isinstance(effect, Rejected):
            self.world.trace.add(self.world.sched.now, self.name, _rejected, effect)

    def _commit(self, effect: Commit) -> None:
        try:
            self.chain.apply(effect.header, effect.envelopes, effect.certificate)
        except VerdictMismatch as exc:
            # A certified block whose verdicts this node does not derive: the
            # node refuses to apply it (and stalls there); the checker fails.
            self.world.on_refused_commit(self, effect, exc)
            return
        self.app.applied()
        self._fetches = {h: ht for h, ht in self._fetches.items() if ht > effect.height}
        self.world.on_commit(self, effect)
        self._feed(BlockApplied(effect.height, self.now))
        self._feed_synced()

    # ------------------------------------------------------------------
    # Outgoing (Byzantine subclasses override these)
    # ------------------------------------------------------------------

    def broadcast(self, msg: Message) -> None:
        self.world.on_send(self, msg)
        self.world.net.broadcast(self.endpoint, encode_frame(msg))

    def send_to_validator(self, key: bytes, msg: Message) -> None:
        self.world.on_send(self, msg)
        data = encode_frame(msg)
        for dst in self.world.net.links[self.endpoint]:
            if key in self.world.nodes[dst].signers:
                self.world.net.send(self.endpoint, dst, data)

    def _send_frame(self, dst: int, msg: Frame) -> None:
        self.world.net.send(self.endpoint, dst, encode_frame(msg))

    def _send_frame_all(self, msg: Frame) -> None:
        self.world.net.broadcast(self.endpoint, encode_frame(msg))

    # ------------------------------------------------------------------
    # Driver protocol: status, sync, fetch
    # ------------------------------------------------------------------

    def _status_tick(self, epoch: int) -> None:
        if epoch != self.epoch or not self.up:
            return
        self._send_frame_all(Status(self.chain.height))
        if self.world.epochs and self.app.mempool.pending \
                and self.index_at(self.chain.height + 1) is None:
            # Outside the validator set nothing we hold gets proposed by us:
            # forward it again (the first gossip may have been lost), so a
            # follower or a removed validator never sits on a record alone.
            self.gossip(tuple(self.app.mempool.pending.values()))
        for block, height in self._fetches.items():
            if height == self.machine.height:
                self._send_frame_all(FetchRequest(height, block))
        self.world.sched.after(self.world.status_interval, self._status_tick, epoch)

    def _on_driver_message(self, src: int, msg: Status | SyncRequest | FetchRequest) -> None:
        if isinstance(msg, Status):
            if msg.height > self.chain.height:
                self._request_sync(dst=src)
        elif isinstance(msg, SyncRequest):
            last = min(self.chain.height, msg.from_height + SYNC_BATCH - 1)
            for h in range(max(1, msg.from_height), last + 1):
                self._send_frame(src, self._decision_at(h))
        else:
            self._answer_fetch(src, msg)

    def _answer_fetch(self, src: int, msg: FetchRequest) -> None:
        if 1 <= msg.height <= self.chain.height:
            if self.chain.headers[msg.height - 1].hash == msg.block:
                self._send_frame(src, self._decision_at(msg.height))
            return
        proposal = self.machine.proposal_for_block(msg.height, msg.block)
        if proposal is not None:
            self._send_frame(src, proposal)

    def _decision_at(self, height: int) -> Decision:
        i = height - 1
        return Decision(self.chain.headers[i], self.chain.blocks[i], self.chain.certificates[i])

    def _request_sync(self, dst: int | None = None, force: bool = False) -> None:
        # One request per mean delay at most: answers carry whole blocks.
        if not force and self.world.sched.now - self._last_sync < 2 * self.world.mean_delay:
            return
        self._last_sync = self.world.sched.now
        request = SyncRequest(self.chain.height + 1)
        if dst is None:
            self._send_frame_all(request)
        else:
            self._send_frame(dst, request)

    def _on_decision(self, msg: Decision) -> None:
        if msg.height < self.machine.height:
            return
        if msg.height > self.machine.height:
            if len(self._synced) < 64:
                self._synced[msg.height] = msg
            return
        self._feed(received(msg, self.now))

    def _feed_synced(self) -> None:
        if not self.up:
            return
        msg = self._synced.pop(self.machine.height, None)
        self._synced = {h: d for h, d in self._synced.items() if h > self.machine.height}
        if msg is not None:
            self._feed(received(msg, self.now))


def _rejected(effect: Rejected) -> str:
    who = f" from v{effect.validator}" if effect.validator is not None else ""
    return f"rejected {effect.what}{who}: {type(effect.error).__name__}: {effect.error}"


def describe_effect(effect: Any) -> str:
    if isinstance(effect, (Broadcast, SendTo)):
        return describe(effect.message)
    if isinstance(effect, Commit):
        return f"COMMIT h{effect.height} {short(effect.header.hash)} txs={effect.header.tx_count}"
    return type(effect).__name__
