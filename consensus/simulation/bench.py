"""A hand-driven cluster for unit tests: no clock, no randomness.

Messages go to an outbox; tests decide what is delivered, to whom and when,
and which timers fire.  Every message crosses ``encode_message`` /
``decode_message``.  The bench asserts the Persist-before-send contract on
every effect list: a vote or proposal may only be broadcast once a
persisted state already remembers having signed it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

from consensus.events import (
    BlockApplied,
    Broadcast,
    Commit,
    Effect,
    Event,
    EvidenceFound,
    Persist,
    RecordsAvailable,
    SendTo,
    SetTimer,
    Start,
    TimerFired,
    received,
)
from consensus.machine import ConsensusMachine
from consensus.messages import Message, Proposal, SignedVote, decode_message, encode_message
from consensus.params import ConsensusConfig, Step, Timer
from consensus.state import PersistedState, decode_state
from ledger.records import Envelope

from .app import SimApp, SimChain
from .workload import MAX_CLOCK_SKEW_MS, Client, sim_genesis, validator_keys

BENCH_CONFIG = ConsensusConfig(timeout_propose_ms=300, timeout_prevote_ms=200,
                               timeout_precommit_ms=200, timeout_delta_ms=100, resend_ms=1000)


@dataclass
class Envelope_:
    src: int
    dst: int | None  # None: broadcast to every other validator
    message: Message


@dataclass
class BenchNode:
    index: int
    chain: SimChain
    app: SimApp
    machine: ConsensusMachine
    stored: bytes | None = None
    timers: list[Timer] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    evidence: list[EvidenceFound] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    last_persisted: PersistedState | None = None


class Bench:
    def __init__(self, n: int = 4, now: int = 1_000_000, config: ConsensusConfig = BENCH_CONFIG,
                 factory: Callable[..., ConsensusMachine] = ConsensusMachine) -> None:
        self.genesis = sim_genesis(n)
        self.keys = validator_keys(n)
        self.now = now
        self.config = config
        self.factory = factory
        self.client = Client(random.Random(7))
        self.outbox: list[Envelope_] = []
        self.nodes = [self._node(i) for i in range(n)]

    def _node(self, i: int) -> BenchNode:
        chain = SimChain(self.genesis)
        app = SimApp(self.genesis, chain, MAX_CLOCK_SKEW_MS)
        return BenchNode(i, chain, app, self._machine(i, chain, app, None))

    def _machine(self, i: int, chain: SimChain, app: SimApp, stored: bytes | None) -> ConsensusMachine:
        persisted = decode_state(stored) if stored is not None else None
        return self.factory(self.genesis, i, self.keys[i], app, tip=chain.tip,
                            persisted=persisted, config=self.config)

    # ------------------------------------------------------------------

    def start(self, nodes: Iterable[int] | None = None) -> None:
        for i in self._all(nodes):
            self.step(i, Start(self.now))

    def records(self, count: int) -> list[Envelope]:
        return [self.client.record(ts=self.now) for _ in range(count)]

    def submit(self, envelopes: list[Envelope], nodes: Iterable[int] | None = None) -> None:
        for i in self._all(nodes):
            for env in envelopes:
                self.nodes[i].app.admit(env)
            self.step(i, RecordsAvailable(self.now))

    def step(self, i: int, event: Event, apply_upto: int | None = None) -> list[Effect]:
        """Feed ``event`` to node ``i``; execute its effects (only the first
        ``apply_upto`` of them, to model a crash in the middle)."""
        node = self.nodes[i]
        effects = node.machine.handle(event)
        node.effects.extend(effects)
        for effect in effects[:apply_upto]:
            self._apply(node, effect)
        return effects

    def _apply(self, node: BenchNode, effect: Effect) -> None:
        if isinstance(effect, Persist):
            node.stored = effect.state.to_bytes()
            node.last_persisted = effect.state
        elif isinstance(effect, (Broadcast, SendTo)):
            self._check_persisted(node, effect.message)
            dst = effect.validator if isinstance(effect, SendTo) else None
            self.outbox.append(Envelope_(node.index, dst, effect.message))
        elif isinstance(effect, SetTimer):
            node.timers.append(effect.timer)
        elif isinstance(effect, Commit):
            node.chain.apply(effect.header, effect.envelopes, effect.certificate)
            node.app.applied()
            node.commits.append(effect)
            self.step(node.index, BlockApplied(effect.height, self.now))
        elif isinstance(effect, EvidenceFound):
            node.evidence.append(effect)

    @staticmethod
    def _check_persisted(node: BenchNode, msg: Message) -> None:
        state = node.last_persisted
        if isinstance(msg, SignedVote) and msg.validator == node.index:
            assert state is not None and msg in state.votes, "vote sent before being persisted"
        if isinstance(msg, Proposal):
            assert state is not None and state.proposed_round >= msg.round, "proposal sent before persisted"

    # ------------------------------------------------------------------

    def deliver(self, keep: Callable[[Envelope_, int], bool] | None = None, rounds: int = 100) -> None:
        """Deliver the outbox (and whatever it causes) until quiet.

        ``keep(envelope, dst)`` returning False drops that copy."""
        for _ in range(rounds):
            if not self.outbox:
                return
            batch, self.outbox = self.outbox, []
            for item in batch:
                data = encode_message(item.message)
                for dst in self._targets(item):
                    if keep is None or keep(item, dst):
                        self.step(dst, received(decode_message(data), self.now))
        raise AssertionError("bench did not quiesce")

    def _targets(self, item: Envelope_) -> list[int]:
        if item.dst is not None:
            return [item.dst]
        return [i for i in range(len(self.nodes)) if i != item.src]

    def drop_outbox(self) -> list[Envelope_]:
        dropped, self.outbox = self.outbox, []
        return dropped

    def fire(self, i: int, step: Step) -> list[Effect]:
        """Fire node i's timer for its current height/round and ``step``."""
        m = self.nodes[i].machine
        timer = Timer(m.height, m.round, step)
        assert timer in self.nodes[i].timers, f"node {i} has no {step.label} timer for {timer}"
        return self.step(i, TimerFired(timer, self.now))

    def resend(self, nodes: Iterable[int] | None = None) -> None:
        """Fire the resend timer of the current round (re-broadcast own messages)."""
        for i in self._all(nodes):
            m = self.nodes[i].machine
            timer = Timer(m.height, m.round, Step.PROPOSE, resend=True)
            if timer in self.nodes[i].timers:
                self.step(i, TimerFired(timer, self.now))

    def fire_all(self, step: Step, nodes: Iterable[int] | None = None) -> None:
        for i in self._all(nodes):
            m = self.nodes[i].machine
            if Timer(m.height, m.round, step) in self.nodes[i].timers:
                self.step(i, TimerFired(Timer(m.height, m.round, step), self.now))

    def restart(self, i: int) -> list[Effect]:
        """Crash node i (only its persisted state and chain survive) and start it."""
        node = self.nodes[i]
        app = SimApp(self.genesis, node.chain, MAX_CLOCK_SKEW_MS)
        node.app = app
        node.timers = []
        node.machine = self._machine(i, node.chain, app, node.stored)
        return self.step(i, Start(self.now))

    def _all(self, nodes: Iterable[int] | None) -> list[int]:
        return list(range(len(self.nodes))) if nodes is None else list(nodes)

    def sent(self, src: int | None = None, kind: type | None = None) -> list[Message]:
        return [e.message for e in self.outbox
                if (src is None or e.src == src) and (kind is None or isinstance(e.message, kind))]
