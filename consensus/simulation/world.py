"""One simulated run: builds the nodes of a :class:`Scenario`, drives the
virtual clock, feeds the invariant checker and measures commit latency."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, TextIO

from consensus.events import Commit
from consensus.messages import Message, Proposal, SignedVote
from consensus.params import ConsensusConfig
from consensus.state import PersistedState
from consensus.votes import Evidence
from ledger.encoding import to_hex
from ledger.policy import PolicyEngine
from ledger.records import Envelope, sign_record

from .byzantine import ByzantineNode, TwinNode
from .clock import Scheduler
from .invariants import Checker
from .network import Network
from .node import MachineFactory, SimNode
from .scenario import MEAN_DELAY_MS, Scenario
from .trace import Trace, describe, short
from .epochs import PlannedChange, describe_plan
from .workload import member_keys, sim_genesis

SIM_CONFIG = ConsensusConfig(
    timeout_propose_ms=3 * MEAN_DELAY_MS,
    timeout_prevote_ms=2 * MEAN_DELAY_MS,
    timeout_precommit_ms=2 * MEAN_DELAY_MS,
    timeout_delta_ms=MEAN_DELAY_MS,
    resend_ms=10 * MEAN_DELAY_MS,
)
STATUS_INTERVAL_MS = 10 * MEAN_DELAY_MS


@dataclass
class RunResult:
    seed: int
    violations: list[str]
    latencies: list[float] = field(default_factory=list)  # in mean message delays
    stable_latencies: list[float] = field(default_factory=list)
    heights: int = 0
    records: int = 0
    end_time: int = 0
    settle_time: int = 0
    messages: int = 0
    trace: list[str] = field(default_factory=list)
    summary: str = ""
    # Epoch runs: the sizes of the validator sets the longest honest chain went through.
    set_sizes: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


class World:
    def __init__(self, scenario: Scenario, honest_factory: MachineFactory | None = None,
                 echo: TextIO | None = None, keep: int = 200,
                 policy_for: Callable[[int], PolicyEngine | None] | None = None) -> None:
        from consensus.machine import ConsensusMachine

        # Each validator's policy engine (PROTOCOL §10.5); None: no policy.
        self.policy_for: Callable[[int], PolicyEngine | None] = policy_for or _no_policy
        self.scenario = scenario
        self.epochs = scenario.changes is not None
        self.genesis = sim_genesis(scenario.n, members=self.epochs)
        self.sched = Scheduler()
        self.rng = random.Random(scenario.seed * 7919 + 1)
        self.net = self._make_network(scenario)
        self.trace = Trace(keep, echo)
        self.consensus_config = SIM_CONFIG
        self.status_interval = STATUS_INTERVAL_MS
        self.mean_delay = MEAN_DELAY_MS
        honest = frozenset(v for v in range(scenario.n) if v not in scenario.byzantine)
        self.checker = Checker(self.genesis, honest)
        self.nodes = self._build_nodes(honest_factory or ConsensusMachine)
        self.checker.honest_keys = frozenset(k for node in self.nodes if node.honest
                                             for k in node.signers)
        self.governance = GovernancePlan(scenario.changes or [])
        self.net.connect(scenario.links)
        self.honest_nodes = [node for node in self.nodes if node.honest]
        self.required = self._required()
        self._submitted_at: dict[bytes, int] = {}
        self._commit_count = 0
        self._committed: set[tuple[int, bytes]] = set()
        self.latencies: list[tuple[int, int]] = []  # (submitted, committed)
        self._settle = scenario.settle_time

    # ------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------

    def _make_network(self, scenario: Scenario) -> Network:
        """The random network of a seeded run; the enumerator substitutes its own."""
        return Network(self.sched, random.Random(scenario.seed * 104729 + 2), scenario.net)

    def _build_nodes(self, honest_factory: MachineFactory) -> list[SimNode]:
        sc = self.scenario
        nodes: list[SimNode] = []
        for e in range(sc.endpoints):
            validator = e if e < sc.n or sc.changes is not None else sc.twin_of
            assert validator is not None
            kinds = sc.byzantine.get(validator)
            node: SimNode
            if kinds is None:
                node = SimNode(self, e, validator, sc.offsets[e], honest_factory)
            elif "twins" in kinds:
                node = TwinNode(self, e, validator, sc.offsets[e])
            else:
                node = ByzantineNode(self, e, validator, sc.offsets[e], kinds,
                                     random.Random(sc.seed * 31 + e))
            self.net.attach(e, node)
            nodes.append(node)
        return nodes

    def _required(self) -> list[bytes]:
        honest = {n.endpoint for n in self.honest_nodes}
        ids = [s.envelope.id for s in self.scenario.submissions if honest & set(s.targets)]
        return ids + [env.id for env in GovernancePlan(self.scenario.changes or []).chained]

    def _schedule(self) -> None:
        sc = self.scenario
        for node in self.nodes:
            self.sched.at(0, node.start)
        for sub in sc.submissions:
            for target in sub.targets:
                self.sched.at(sub.time, self._submit, target, sub)
        for node in self.honest_nodes:
            self._release_governance(node, 0)
        for at, env in self.governance.refused:
            for node in self.honest_nodes:
                self.sched.at(at, self._submit_governance, node.endpoint, env)
        for crash in sc.crashes:
            self.sched.at(crash.at, self._crash, crash.endpoint, crash.mid_effects)
            self.sched.at(crash.restart, self.nodes[crash.endpoint].restart)
        for p in sc.net.partitions:
            groups = " | ".join(",".join(str(x) for x in sorted(g)) for g in p.groups)
            self.sched.at(p.start, self.trace.note, p.start, "net", f"PARTITION {groups} until {p.end}ms")
        if sc.gst:
            self.sched.at(sc.gst, self.trace.note, sc.gst, "net", "NETWORK STABLE (GST)")

    def _submit(self, endpoint: int, sub: object) -> None:
        env = sub.envelope  # type: ignore[attr-defined]
        self._submitted_at.setdefault(env.id, self.sched.now)
        self.trace.add(self.sched.now, self.nodes[endpoint].name, _fmt_submit, env.id)
        self.nodes[endpoint].submit(env)

    def _release_governance(self, node: SimNode, index: int) -> None:
        """Submit the plan's ``index``-th validator-set change to ``node``, not
        before its planned time nor before ``node`` committed the previous
        one (admission judges it against the membership after that one)."""
        if index >= len(self.governance.chained):
            return
        at = max(self.sched.now + self.mean_delay, self.governance.earliest[index])
        self.sched.at(at, self._submit_governance, node.endpoint, self.governance.chained[index])

    def _submit_governance(self, endpoint: int, env: Envelope) -> None:
        self._submitted_at.setdefault(env.id, self.sched.now)
        self.trace.add(self.sched.now, self.nodes[endpoint].name, _fmt_governance, env)
        self.nodes[endpoint].submit(env)

    def _crash(self, endpoint: int, mid_effects: bool) -> None:
        node = self.nodes[endpoint]
        if not mid_effects:
            node.crash()
            return
        # Die inside the next effect list (often right after a Persist);
        # if the node stays quiet, die anyway one mean delay later.
        node.crash_due = True
        self.sched.after(MEAN_DELAY_MS, lambda: node.crash() if node.crash_due else None)

    # ------------------------------------------------------------------
    # Hooks called by nodes
    # ------------------------------------------------------------------

    def on_send(self, node: SimNode, msg: Message) -> None:
        self.trace.add(self.sched.now, node.name, describe, msg)
        if node.honest and isinstance(msg, (SignedVote, Proposal)):
            index = node.index_at(msg.height)
            self.checker.on_signed(node.name, index, msg)
            self.checker.on_sent_after_persist(node.name, index, msg, node.storage.get("state"))

    def on_persist(self, node: SimNode, state: PersistedState) -> None:
        if node.honest:
            index = node.index_at(state.height)
            for sv in state.votes:
                self.checker.on_signed(node.name, index, sv)

    def on_commit(self, node: SimNode, effect: Commit) -> None:
        self.trace.add(self.sched.now, node.name, _fmt_commit, effect)
        if not node.honest:
            return
        self.checker.on_commit(node.name, effect.header)
        for env in effect.envelopes:
            step = self.governance.position.get(env.id)
            if step is not None:
                self._release_governance(node, step + 1)
            key = (node.endpoint, env.id)
            if key in self._committed:
                continue
            self._committed.add(key)
            submitted = self._submitted_at.get(env.id)
            if submitted is not None:
                self._commit_count += 1
                self.latencies.append((submitted, self.sched.now))

    def on_refused_commit(self, node: SimNode, effect: Commit, error: Exception) -> None:
        self.trace.note(self.sched.now, node.name, f"CANNOT APPLY h{effect.height}: {error}")
        if node.honest:
            self.checker.fail(f"verdicts: {node.name} h{effect.height} was certified with verdicts "
                              f"it does not derive: {error}")

    def on_evidence(self, node: SimNode, ev: Evidence) -> None:
        self.trace.note(self.sched.now, node.name, f"EVIDENCE against v{ev.validator} "
                        f"({ev.first.type} h{ev.first.height} r{ev.first.round})")
        if node.honest:
            accused = node.epoch_genesis(ev.first.height).validators[ev.validator].pubkey
            self.checker.on_evidence(node.name, ev, accused)

    # ------------------------------------------------------------------
    # Running
    # ------------------------------------------------------------------

    def _done(self) -> bool:
        if self.checker.violations:
            return True
        want = len(self.required) * len(self.honest_nodes)
        return self._commit_count >= want and self.sched.now >= self._settle

    def run(self) -> RunResult:
        sc = self.scenario
        self._schedule()
        self.sched.run(sc.deadline, self._done)
        if not self.checker.violations:
            self._final_checks()
        return self._result()

    def _final_checks(self) -> None:
        for node in self.honest_nodes:
            self.checker.check_chain(node.name, node.chain)
        if self.sched.now >= self.scenario.deadline:
            for node in self.honest_nodes:
                self.checker.check_liveness(node.name, node.chain, self.required, self.scenario.deadline)

    def _result(self) -> RunResult:
        d = float(MEAN_DELAY_MS)
        gst = self.scenario.gst
        lat = [(c - s) / d for s, c in self.latencies]
        stable = [(c - s) / d for s, c in self.latencies if s >= gst and not self.scenario.crashes]
        return RunResult(
            seed=self.scenario.seed, violations=list(self.checker.violations), latencies=lat,
            stable_latencies=stable, heights=max((n.chain.height for n in self.honest_nodes), default=0),
            records=len(self.required), end_time=self.sched.now, settle_time=self._settle,
            messages=self.net.sent, trace=self.trace.lines(), summary=self.describe(),
            set_sizes=self._set_sizes(),
        )

    def _set_sizes(self) -> list[int]:
        if not self.epochs or not self.honest_nodes:
            return []
        chain = max((n.chain for n in self.honest_nodes), key=lambda c: c.height)
        return [len(chain.membership.at(first).validators)
                for first, _ in chain.membership.epochs()]

    def _behaviour(self, validator: int) -> str:
        node = self.nodes[validator]
        if isinstance(node, ByzantineNode):
            return node.describe()
        return "+".join(sorted(self.scenario.byzantine[validator]))

    def describe(self) -> str:
        sc = self.scenario
        byz = ", ".join(f"v{v}:{self._behaviour(v)}" for v in sc.byzantine) or "none"
        net = sc.net
        return (
            f"seed={sc.seed} n={sc.n} byzantine=[{byz}] gst={net.gst}ms loss={net.loss:.2f} "
            f"dup={net.duplicate:.2f} spike={net.spike:.2f} partitions={len(net.partitions)} "
            f"crashes={[(c.endpoint, c.at, c.restart) for c in sc.crashes]} records={len(self.required)}"
            + (f" twins={[sorted(g) for g in sc.twin_groups]}" if sc.twin_groups else "")
            + (f" changes=[{describe_plan(sc.changes)}]" if sc.changes is not None else "")
        )


def _no_policy(validator: int) -> PolicyEngine | None:
    return None


class GovernancePlan:
    """A run's validator-set changes as records: ``chained`` ones commit one
    after another; ``refused`` ones (signed by one member of a threshold of
    two) must never commit."""

    def __init__(self, changes: list[PlannedChange]) -> None:
        self.chained: list[Envelope] = []
        self.earliest: list[int] = []
        self.refused: list[tuple[int, Envelope]] = []
        for nonce, change in enumerate(changes, start=1):
            env = change.envelope(nonce)
            if change.kind == "refused":
                self.refused.append((change.earliest, sign_record(env.record, member_keys()[0])))
            else:
                self.chained.append(env)
                self.earliest.append(change.earliest)
        self.position = {env.id: i for i, env in enumerate(self.chained)}


def _fmt_governance(env: Envelope) -> str:
    return (f"client submits governance {env.record.kind} {to_hex(env.id)[:8]} "
            f"({len(env.signatures())} member signatures)")


def _fmt_submit(record_id: bytes) -> str:
    return f"client submits record {to_hex(record_id)[:8]}"


def _fmt_commit(effect: Commit) -> str:
    return (f"COMMIT h{effect.height} {short(effect.header.hash)} txs={effect.header.tx_count} "
            f"cert r{effect.certificate.round}")
