"""Twins scenarios: one run of the real machines under a partition schedule.

A :class:`TwinsPlan` names a Twins scenario (Bano et al., "Twins: BFT Systems
Made Robust"): ``f`` validators are *twinned* - each runs as two instances
with the same key and the unmodified :class:`ConsensusMachine`, so the pair
equivocates without any Byzantine code - and the first steps of height 1
each get a partition of the endpoints.  Step ``3r + k`` is round ``r``'s
proposals (k = 0), prevotes (1) or precommits (2): a proposal or vote of
height 1 crosses from one endpoint to another before ``gst`` only if its
step's partition puts them in one block, or the step is a one-way cut
(``S>T``: T hears S, S does not hear T) from the sender's side.  Frames
without a step of their own (decisions, block sync, status, record gossip)
are judged by the step the receiver is in.  Leaders follow the protocol's
own rotation (``(height + round) % n``, checked by every validator), so the
leader of a round is chosen by choosing which validators are twinned.

Everything else is fixed, so a plan is a pure function of its text form
(:meth:`TwinsPlan.spec`): two records submitted at time 0 to every endpoint,
a fixed one-way delay, the second instance of a twin one millisecond ahead
(so its proposals differ from its sibling's), and the network whole from
``gst`` on (the end of the last partitioned round; messages cut before it
come back through the machines' resend timers).  Optionally the second
instance of the first twin *forges*: its fresh proposals carry one named
defect from ``mutations.py`` (validity, which honest code cannot break).

An *epoch* plan (``change=add|rotate|remove``) also changes the validator
set (PROTOCOL §9.9): the governance record goes in with the first records,
commits at height 1 and is in force from height ``EPOCH_HEIGHT`` = 3, and
the partitioned steps are those of height 3 - the first height of the new
set - instead of height 1 (the change makes block 1, the two first records
block 2; two more records, at ``EPOCH_RECORD_MS``, make heights 3 and 4).  ``add`` adds validator ``n`` (an extra endpoint, a
follower until then, label ``n``), ``rotate`` gives the first proposer of
height 3 a new key, ``remove`` removes the highest twinned validator (n = 7:
the set left keeps its tolerance).

The run is an ordinary :class:`World` with the random simulator's invariant
checker: agreement, validity, integrity, certificates, double-signing,
persist-before-send, evidence against honest validators, and liveness by
``gst + LIVENESS_BOUND_MS``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TextIO

from consensus.messages import Message, Proposal, SignedVote
from consensus.params import NIL_ROUND
from ledger.blocks import VoteType
from ledger.genesis import max_faulty
from ledger.records import Envelope

from .broken import GenesisSetMachine
from .byzantine import ByzantineNode, TwinNode
from .epochs import PlannedChange
from .clock import Scheduler
from .mutations import FORGE_KINDS, mutate
from .network import NetConfig, Network
from .node import MachineFactory, SimNode
from .scenario import MEAN_DELAY_MS, Scenario
from .wire import decode_frame
from .workload import Client, Submission
from .world import RunResult, World

Partition = tuple[frozenset[int], ...]  # blocks of endpoint ids
RECORDS = 2
STEPS = 3  # a round's proposals, prevotes, precommits: each step is one Twins "round" here
CHANGES = ("add", "rotate", "remove")
EPOCH_HEIGHT = 3  # a validator-set change committed at height 1 is in force from here
EPOCH_RECORD_MS = (30 * MEAN_DELAY_MS, 60 * MEAN_DELAY_MS)  # the records of heights 2 and 3


def round_span_ms(round_: int) -> int:
    """Virtual time a round of height 1 takes when it times out: its three
    timeouts (base + round * delta, see SIM_CONFIG) plus four message delays.
    ``gst`` is the sum over the partitioned rounds: a round that is cut is
    over (or stuck) by then."""
    return (3 + 2 + 2 + 3 * round_) * MEAN_DELAY_MS + 4 * MEAN_DELAY_MS


@dataclass(frozen=True)
class TwinsPlan:
    n: int
    twins: tuple[int, ...]  # twinned validators, sorted
    rounds: tuple[Partition, ...] = ()  # per step of height 1: 3 * round + (proposal, prevote, precommit)
    forge: str | None = None  # mutation kind of the forging instance, if any
    # per step: True if the first of its two blocks is heard by the second, not back
    oneway: tuple[bool, ...] = ()
    change: str | None = None  # epoch plans: the validator-set change committed at height 1

    @property
    def height(self) -> int:
        """The height whose steps ``rounds`` partition."""
        return EPOCH_HEIGHT if self.change else 1

    def planned_change(self) -> PlannedChange | None:
        if self.change is None:
            return None
        slot = {"add": self.n, "rotate": EPOCH_HEIGHT % self.n,
                "remove": max(self.twins, default=self.n - 1)}[self.change]
        return PlannedChange(self.change, slot, 0, 0)

    def is_oneway(self, r: int) -> bool:
        return r < len(self.oneway) and self.oneway[r]

    # -- endpoints ---------------------------------------------------------

    @property
    def endpoints(self) -> int:
        return self.n + len(self.twins) + (self.change == "add")

    def validator_of(self, endpoint: int) -> int:
        if endpoint < self.n:
            return endpoint
        if endpoint < self.n + len(self.twins):
            return self.twins[endpoint - self.n]
        return self.n  # the validator an "add" plan adds

    def sibling(self, endpoint: int) -> int | None:
        if endpoint >= self.n + len(self.twins):
            return None
        if endpoint >= self.n:
            return self.twins[endpoint - self.n]
        if endpoint in self.twins:
            return self.n + self.twins.index(endpoint)
        return None

    def label(self, endpoint: int) -> str:
        if endpoint < self.n or endpoint >= self.n + len(self.twins):
            return str(self.validator_of(endpoint))
        return f"{self.validator_of(endpoint)}'"

    def endpoint_of(self, label: str) -> int:
        if label.endswith("'"):
            return self.n + self.twins.index(int(label[:-1]))
        if int(label) >= self.n:
            if self.change != "add" or int(label) != self.n:
                raise ValueError(f"no endpoint {label!r}")
            return self.n + len(self.twins)
        return int(label)

    @property
    def gst(self) -> int:
        spans = sum(round_span_ms(r) for r in range(-(-len(self.rounds) // STEPS)))
        return spans + (EPOCH_RECORD_MS[0] if self.change else 0)

    # -- text form -----------------------------------------------------------

    def spec(self) -> str:
        """``n=4;twins=3;rounds=0,1,3|2,3'/0,1,2,3,3'/0,3>1,2,3';forge=KIND``: steps
        split by ``/``, blocks by ``|`` (or ``>`` for a one-way cut), ``3'`` the
        second instance of validator 3."""
        rounds = "/".join(("|", ">")[self.is_oneway(r)].join(",".join(self.label(e) for e in sorted(b)) for b in p)
                          for r, p in enumerate(self.rounds))
        parts = [f"n={self.n}", "twins=" + ",".join(map(str, self.twins)), f"rounds={rounds}"]
        if self.forge:
            parts.append(f"forge={self.forge}")
        if self.change:
            parts.append(f"change={self.change}")
        return ";".join(parts)

    @classmethod
    def parse(cls, text: str) -> "TwinsPlan":
        fields = dict(item.split("=", 1) for item in text.strip().split(";") if item)
        n = int(fields["n"])
        twins = tuple(sorted(int(v) for v in fields.get("twins", "").split(",") if v))
        forge = fields.get("forge") or None
        if forge is not None and forge not in FORGE_KINDS:
            raise ValueError(f"unknown forge kind {forge!r}")
        if len(twins) != len(set(twins)) or not all(0 <= v < n for v in twins):
            raise ValueError("twins must be distinct validators")
        if len(twins) > max_faulty(n):
            raise ValueError(f"at most {max_faulty(n)} twinned validators among {n}")
        change = fields.get("change") or None
        if change is not None and (change not in CHANGES or change == "remove" and (n < 5 or not twins)):
            raise ValueError(f"unknown or impossible change {change!r} (remove: n > 4, a twin)")
        shell = cls(n, twins, change=change)
        rounds, oneway = [], []
        for text_round in filter(None, fields.get("rounds", "").split("/")):
            directed = ">" in text_round
            if directed and text_round.count(">") != 1 or directed and "|" in text_round:
                raise ValueError(f"a one-way round has exactly two blocks: {text_round!r}")
            oneway.append(directed)
            split = text_round.split(">") if directed else text_round.split("|")
            blocks = tuple(frozenset(shell.endpoint_of(x) for x in b.split(",") if x) for b in split)
            if sorted(e for b in blocks for e in b) != list(range(shell.endpoints)):
                raise ValueError(f"round {text_round!r} is not a partition of the {shell.endpoints} endpoints")
            rounds.append(blocks)
        return cls(n, twins, tuple(rounds), forge, tuple(oneway) if any(oneway) else (), change)

    # -- the run's plan ---------------------------------------------------------

    def scenario(self) -> "TwinsScenario":
        everyone = range(self.endpoints)
        links = {e: [x for x in everyone if x != e and x != self.sibling(e)] for e in everyone}
        submissions = [Submission(env, 0, tuple(everyone)) for env in _records()]
        change = self.planned_change()
        if change is not None:  # first: height 1's proposer proposes what it holds at once
            submissions.insert(0, Submission(change.envelope(1), 0, tuple(everyone)))
            submissions += [Submission(env, env.record.ts, tuple(everyone)) for env in _epoch_records()]
        return TwinsScenario(
            seed=0, n=self.n, byzantine={v: frozenset({"twins"}) for v in self.twins},
            net=NetConfig(mean_delay=MEAN_DELAY_MS, gst=self.gst),
            offsets=[1 if self.sibling(e) is not None and e >= self.n else 0 for e in everyone],
            crashes=[], submissions=submissions, links=links, plan=self,
            changes=[] if change is not None else None,
        )


@dataclass
class TwinsScenario(Scenario):
    plan: TwinsPlan = field(default_factory=lambda: TwinsPlan(4, ()))

    @property
    def endpoints(self) -> int:
        return self.plan.endpoints


@lru_cache(maxsize=1)
def _client_records() -> tuple[tuple[Envelope, ...], tuple[Envelope, ...]]:
    """The records of every plan (time 0), and the later ones of epoch plans
    (one client: nonces never repeat)."""
    client = Client(random.Random(20220101))
    first = tuple(client.record(ts=0) for _ in range(RECORDS))
    return first, tuple(client.record(ts=at) for at in EPOCH_RECORD_MS)


def _records() -> tuple[Envelope, ...]:
    return _client_records()[0]


def _epoch_records() -> tuple[Envelope, ...]:
    return _client_records()[1]


class RoundPartitionNetwork(Network):
    """Fixed delay; before ``gst`` a delivery happens only where the
    partition of its step lets it (see the module docstring)."""

    def __init__(self, sched: Scheduler, config: NetConfig, plan: TwinsPlan) -> None:
        super().__init__(sched, random.Random(0), config)
        self.nodes: dict[int, SimNode] = {}
        # block id of every endpoint, per round
        self.block_of = [{e: i for i, b in enumerate(p) for e in b} for p in plan.rounds]
        self.oneway = [plan.is_oneway(r) for r in range(len(plan.rounds))]
        self.height = plan.height

    def attach(self, endpoint_id: int, endpoint: object) -> None:
        assert isinstance(endpoint, SimNode)
        super().attach(endpoint_id, endpoint)
        self.nodes[endpoint_id] = endpoint

    def send(self, src: int, dst: int, data: bytes) -> None:
        self.sent += 1
        self.sched.at(self.sched.now + self.config.mean_delay, self._deliver, src, dst, data)

    def _deliver(self, src: int, dst: int, data: bytes) -> None:
        node = self.nodes[dst]
        if not node.up:
            return
        if self.sched.now < self.config.gst:
            r = self._slot(node, data)
            if r < len(self.block_of):
                block = self.block_of[r]
                if block[src] != block[dst] and not (self.oneway[r] and block[src] == 0):
                    return
        node.deliver(src, data)


    def _slot(self, receiver: SimNode, data: bytes) -> int:
        """Which step's partition judges this frame: a proposal or vote of
        the plan's height by its own round and type; anything else by the
        step the receiver is in (at another height: none, everything passes)."""
        frame = decode_frame(data)
        if isinstance(frame, (Proposal, SignedVote)):
            if frame.height != self.height:
                return len(self.block_of)
            kind = 0 if isinstance(frame, Proposal) else 1 if frame.type == "prevote" else 2
            return STEPS * frame.round + kind
        machine = receiver.machine
        return STEPS * machine.round + int(machine.step) if machine.height == self.height \
            else len(self.block_of)


class ForgerNode(ByzantineNode):
    """A twin instance whose fresh proposals carry one named defect."""

    def __init__(self, world: World, endpoint: int, validator: int, clock_offset: int, kind: str) -> None:
        super().__init__(world, endpoint, validator, clock_offset, frozenset({"invalid"}),
                         random.Random(endpoint))
        self.kind = kind

    def broadcast(self, msg: Message) -> None:
        if not (isinstance(msg, Proposal) and msg.pol_round == NIL_ROUND):
            SimNode.broadcast(self, msg)
            return
        from consensus.messages import sign_proposal

        header, envelopes = mutate(self.kind, msg.header, msg.envelopes, self.chain, self.rng,
                                   self.world.genesis.n)
        bad = sign_proposal(header, envelopes, msg.round, NIL_ROUND, self.signer)
        self.world.trace.note(self.world.sched.now, self.name, f"FORGED proposal ({self.kind})")
        SimNode.broadcast(self, bad)
        for type_ in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            SimNode.broadcast(self, self._vote_for(type_, msg.height, msg.round, bad.block_hash))

    def describe(self) -> str:
        return f"forge({self.kind})"


class TwinsWorld(World):
    def __init__(self, plan: TwinsPlan, honest_factory: MachineFactory | None = None,
                 echo: TextIO | None = None, keep: int = 200) -> None:
        self.plan = plan
        super().__init__(plan.scenario(), honest_factory, echo=echo, keep=keep)

    def _make_network(self, scenario: Scenario) -> Network:
        return RoundPartitionNetwork(self.sched, scenario.net, self.plan)

    def _build_nodes(self, honest_factory: MachineFactory) -> list[SimNode]:
        plan, sc = self.plan, self.scenario
        change = plan.planned_change()
        removed = change.slot if change is not None and change.kind == "remove" else None
        nodes: list[SimNode] = []
        for e in range(plan.endpoints):
            v = plan.validator_of(e)
            node: SimNode
            if v not in plan.twins:
                node = SimNode(self, e, v, sc.offsets[e], honest_factory)
            elif e >= plan.n and plan.forge and v == plan.twins[0]:
                node = ForgerNode(self, e, v, sc.offsets[e], plan.forge)
            elif e >= plan.n and v == removed:
                # The removed validator's second instance still believes it is
                # one (GenesisSetMachine): it keeps signing at the new heights.
                node = TwinNode(self, e, v, sc.offsets[e], GenesisSetMachine)
            else:
                node = TwinNode(self, e, v, sc.offsets[e])
            if e >= plan.n + len(plan.twins):
                node.name = f"n{v}"  # the validator an "add" plan adds
            self.net.attach(e, node)
            nodes.append(node)
        return nodes

    def describe(self) -> str:
        return f"twins scenario {self.plan.spec()}"


def run_plan(plan: TwinsPlan, broken: MachineFactory | None = None, echo: TextIO | None = None,
             keep: int = 200) -> RunResult:
    """Run one Twins scenario to completion; identical plans give identical results."""
    return TwinsWorld(plan, broken, echo=echo, keep=keep).run()
