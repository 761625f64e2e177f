"""A run's plan, drawn from its seed: faults, network weather, workload.

Endpoints 0..n-1 are validators 0..n-1; with Twins, endpoint n is the second
instance of the twinned validator.  Before ``gst`` the network loses,
delays, duplicates and partitions messages and honest validators may crash
(they all restart before ``gst``); from ``gst`` on it is stable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ledger.genesis import max_faulty

from .byzantine import BEHAVIOURS
from .epochs import PlannedChange, plan_changes
from .network import NetConfig, Partition
from .workload import EPOCH_SLOTS, Client, Submission

MEAN_DELAY_MS = 100
# After the network is stable and every record submitted, all honest
# validators must have committed everything within this much virtual time.
LIVENESS_BOUND_MS = 300 * MEAN_DELAY_MS


@dataclass(frozen=True)
class Crash:
    endpoint: int
    at: int
    restart: int
    mid_effects: bool  # die between two effects of one step (vs between steps)


@dataclass
class Scenario:
    seed: int
    n: int
    byzantine: dict[int, frozenset[str]]
    net: NetConfig
    offsets: list[int]
    crashes: list[Crash]
    submissions: list[Submission]
    twin_of: int | None = None
    twin_groups: tuple[frozenset[int], frozenset[int]] | None = None
    links: dict[int, list[int]] = field(default_factory=dict)
    # Epoch runs (epochs.py): the validator-set changes, in order; None for
    # a run with the genesis set throughout.
    changes: list[PlannedChange] | None = None

    @property
    def gst(self) -> int:
        return self.net.gst

    @property
    def endpoints(self) -> int:
        if self.changes is not None:
            return EPOCH_SLOTS
        return self.n + (1 if self.twin_of is not None else 0)

    def honest_endpoints(self) -> list[int]:
        return [e for e in range(self.endpoints if self.changes is not None else self.n)
                if e not in self.byzantine]

    @property
    def settle_time(self) -> int:
        """When the run becomes "stable": network healed, nodes back, all submitted."""
        last = max([s.time for s in self.submissions] + [c.restart for c in self.crashes] + [self.gst]
                   + [c.earliest for c in self.changes or ()])
        return last

    @property
    def deadline(self) -> int:
        return self.settle_time + LIVENESS_BOUND_MS


def _behaviours(rng: random.Random, count: int, behaviour: str,
                twins: bool = True) -> list[frozenset[str]]:
    if behaviour == "twins":
        # One twinned validator; further faulty ones forget their locks the
        # way a twin does (amnesia), which keeps f of them adversarial.
        return [frozenset({"twins"})] + [frozenset({"amnesia"})] * (count - 1)
    if behaviour != "mixed":
        return [frozenset({behaviour})] * count
    out: list[frozenset[str]] = []
    for i in range(count):
        pool = [b for b in BEHAVIOURS if b != "twins" or (i == 0 and twins)]
        picked = {rng.choice(pool)}
        if "twins" not in picked and rng.random() < 0.3:
            picked.add(rng.choice([b for b in BEHAVIOURS if b != "twins"]))
        out.append(frozenset(picked))
    return out


def _network(rng: random.Random, n_endpoints: int) -> NetConfig:
    if rng.random() < 0.3:
        return NetConfig(mean_delay=MEAN_DELAY_MS, gst=0, duplicate=rng.choice((0.0, 0.02)))
    gst = rng.randint(5, 60) * MEAN_DELAY_MS
    partitions = []
    for _ in range(rng.randint(0, 3)):
        start = rng.randint(0, gst)
        end = min(gst, start + rng.randint(2, 30) * MEAN_DELAY_MS)
        members = list(range(n_endpoints))
        rng.shuffle(members)
        cut = rng.randint(1, n_endpoints - 1)
        partitions.append(Partition(start, end, (frozenset(members[:cut]), frozenset(members[cut:]))))
    return NetConfig(
        mean_delay=MEAN_DELAY_MS, gst=gst, loss=rng.uniform(0.0, 0.3), duplicate=rng.uniform(0.0, 0.1),
        spike=rng.uniform(0.0, 0.3), max_spike=rng.randint(3, 30) * MEAN_DELAY_MS, partitions=partitions,
    )


def _crashes(rng: random.Random, honest: list[int], gst: int) -> list[Crash]:
    if gst <= 2 * MEAN_DELAY_MS or rng.random() < 0.4:
        return []
    out = []
    for endpoint in rng.sample(honest, min(len(honest), rng.randint(1, 2))):
        at = rng.randint(0, gst - MEAN_DELAY_MS)
        out.append(Crash(endpoint, at, rng.randint(at + 1, gst), rng.random() < 0.7))
    return out


def _workload(rng: random.Random, honest: list[int], byzantine: list[int], gst: int) -> list[Submission]:
    client = Client(rng)
    subs = []
    horizon = max(gst, 10 * MEAN_DELAY_MS) + 20 * MEAN_DELAY_MS
    # Bursts in time order, so a record's parents were always submitted before it.
    for at in sorted(rng.randint(0, horizon) for _ in range(rng.randint(3, 6))):
        full = rng.random() < 0.7
        for _ in range(rng.randint(1, 4)):
            targets = list(honest) if full else rng.sample(honest, rng.randint(1, len(honest)))
            targets += [b for b in byzantine if rng.random() < 0.5]
            subs.append(Submission(client.record(ts=at), at + rng.randint(0, MEAN_DELAY_MS), tuple(sorted(targets))))
    return subs


def _twin_links(n: int, twin: int, byzantine: list[int], rng: random.Random
                ) -> tuple[dict[int, list[int]], tuple[frozenset[int], frozenset[int]]]:
    honest = [e for e in range(n) if e not in byzantine]
    rng.shuffle(honest)
    cut = rng.randint(1, len(honest) - 1)
    group_a, group_b = frozenset(honest[:cut]), frozenset(honest[cut:])
    others = [b for b in byzantine if b != twin]
    everyone = list(range(n + 1))
    links: dict[int, list[int]] = {}
    for e in everyone:
        if e == twin:
            links[e] = sorted(group_a | set(others))
        elif e == n:
            links[e] = sorted(group_b | set(others))
        elif e in group_a:
            links[e] = [x for x in everyone if x not in (e, n)]
        elif e in group_b:
            links[e] = [x for x in everyone if x not in (e, twin)]
        else:
            links[e] = [x for x in everyone if x != e]
    return links, (group_a, group_b)


def make_scenario(seed: int, n: int, byzantine: int, behaviour: str = "mixed",
                  epochs: bool = False) -> Scenario:
    if byzantine > max_faulty(n):
        raise ValueError(f"at most {max_faulty(n)} Byzantine validators among {n}")
    if epochs:
        return _epoch_scenario(seed, n, byzantine, behaviour)
    rng = random.Random(seed)
    byz = sorted(rng.sample(range(n), byzantine))
    kinds = _behaviours(rng, byzantine, behaviour)
    byz_map = dict(zip(byz, kinds, strict=True))
    twin = next((v for v in byz if "twins" in byz_map[v]), None)
    honest = [e for e in range(n) if e not in byz_map]
    endpoints = n + (1 if twin is not None else 0)
    net = _network(rng, endpoints)
    scenario = Scenario(
        seed=seed, n=n, byzantine=byz_map, net=net,
        offsets=[rng.randint(-500, 500) for _ in range(endpoints)],
        crashes=_crashes(rng, honest, net.gst),
        submissions=_workload(rng, honest, byz, net.gst),
        twin_of=twin,
    )
    if twin is not None:
        scenario.links, scenario.twin_groups = _twin_links(n, twin, byz, rng)
    else:
        scenario.links = {e: [x for x in range(n) if x != e] for e in range(n)}
    return scenario


def _epoch_scenario(seed: int, n: int, byzantine: int, behaviour: str) -> Scenario:
    """A run over ``EPOCH_SLOTS`` endpoints whose validator set changes
    (epochs.py): genesis validators ``0..n-1``, Byzantine ones among them."""
    if behaviour == "twins":
        raise ValueError("epoch runs have no twins (every endpoint is one validator slot)")
    rng = random.Random(seed * 2 + 1)
    byz = sorted(rng.sample(range(n), byzantine))
    byz_map = dict(zip(byz, _behaviours(rng, byzantine, behaviour, twins=False), strict=True))
    honest = [e for e in range(EPOCH_SLOTS) if e not in byz_map]
    net = _network(rng, EPOCH_SLOTS)
    workload = _workload(rng, honest, byz, net.gst)
    horizon = max([s.time for s in workload] + [net.gst])
    return Scenario(
        seed=seed, n=n, byzantine=byz_map, net=net,
        offsets=[rng.randint(-500, 500) for _ in range(EPOCH_SLOTS)],
        crashes=_crashes(rng, honest, net.gst),
        submissions=workload,
        links={e: [x for x in range(EPOCH_SLOTS) if x != e] for e in range(EPOCH_SLOTS)},
        changes=plan_changes(rng, n, byz, horizon),
    )
