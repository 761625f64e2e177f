"""Entry points: one run from a seed, and campaign statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TextIO

from ledger.genesis import max_faulty

from .broken import BROKEN, EPOCH_BROKEN
from .scenario import make_scenario
from .world import RunResult, World


def run_scenario(seed: int, n: int = 4, byzantine: int = 1, behaviour: str = "mixed",
                 broken: str | None = None, echo: TextIO | None = None, keep: int = 200,
                 epochs: bool = False) -> RunResult:
    """Run seed ``seed`` to completion; identical inputs give identical results.
    ``epochs``: the validator set changes during the run (epochs.py)."""
    scenario = make_scenario(seed, n, byzantine, behaviour, epochs=epochs)
    factory = {**BROKEN, **EPOCH_BROKEN}[broken] if broken else None
    return World(scenario, factory, echo=echo, keep=keep).run()


def epoch_shape(seed: int, byzantine: int | None = None) -> tuple[int, int]:
    """(genesis validators, Byzantine) of an epoch campaign's seed: n cycles
    through 4..7; Byzantine defaults to f of n (the plan keeps it within f)."""
    n = 4 + seed % 4
    f = max_faulty(n)
    return n, f if byzantine is None else min(byzantine, f)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


@dataclass
class CampaignStats:
    runs: int = 0
    violations: int = 0
    latencies: list[float] = field(default_factory=list)
    stable_latencies: list[float] = field(default_factory=list)
    heights: int = 0
    records: int = 0
    messages: int = 0
    max_settle_to_end: int = 0
    slowest_seed: int = -1
    failed_seeds: list[int] = field(default_factory=list)
    epochs: int = 0            # validator sets entered after genesis, over all runs
    sizes: set[int] = field(default_factory=set)

    def add(self, result: RunResult) -> None:
        self.runs += 1
        self.latencies.extend(result.latencies)
        self.stable_latencies.extend(result.stable_latencies)
        self.heights += result.heights
        self.records += result.records
        self.messages += result.messages
        self.epochs += max(0, len(result.set_sizes) - 1)
        self.sizes.update(result.set_sizes)
        if result.violations:
            self.violations += 1
            self.failed_seeds.append(result.seed)
        elif result.end_time - result.settle_time > self.max_settle_to_end:
            self.max_settle_to_end = result.end_time - result.settle_time
            self.slowest_seed = result.seed

    def summary(self) -> dict[str, float | int | list[int]]:
        return {
            "runs": self.runs,
            "violations": self.violations,
            "failed_seeds": self.failed_seeds[:100],
            "blocks": self.heights,
            "records": self.records,
            "messages": self.messages,
            "latency_p50_delays": percentile(self.latencies, 50),
            "latency_p99_delays": percentile(self.latencies, 99),
            "stable_latency_p50_delays": percentile(self.stable_latencies, 50),
            "stable_latency_p99_delays": percentile(self.stable_latencies, 99),
            "max_settle_to_done_ms": self.max_settle_to_end,
            "slowest_seed": self.slowest_seed,
            "validator_set_changes": self.epochs,
            "validator_set_sizes": sorted(self.sizes),
        }
