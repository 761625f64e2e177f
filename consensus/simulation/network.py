"""A seeded, lossy, reordering network between simulated endpoints.

Before ``gst`` (global stabilisation time) messages may be lost, delayed by
spikes, and cut by partitions; from ``gst`` on every message between up
endpoints arrives within ``2 * mean_delay``.  Duplication can happen at any
time (it is harmless to a correct node, so it stays on).  Reordering is a
consequence of independent random delays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from .clock import Scheduler


class Endpoint(Protocol):
    validator: int
    up: bool

    def deliver(self, sender: int, data: bytes) -> None: ...


@dataclass(frozen=True)
class Partition:
    start: int
    end: int
    groups: tuple[frozenset[int], ...]

    def separates(self, a: int, b: int, now: int) -> bool:
        if not self.start <= now < self.end:
            return False
        return not any(a in g and b in g for g in self.groups)


@dataclass
class NetConfig:
    mean_delay: int = 100
    gst: int = 0
    loss: float = 0.0
    duplicate: float = 0.0
    spike: float = 0.0
    max_spike: int = 1000
    partitions: list[Partition] = field(default_factory=list)


class Network:
    def __init__(self, sched: Scheduler, rng: random.Random, config: NetConfig) -> None:
        self.sched = sched
        self.rng = rng
        self.config = config
        self.endpoints: dict[int, Endpoint] = {}
        self.links: dict[int, list[int]] = {}
        self.sent = 0

    def attach(self, endpoint_id: int, endpoint: Endpoint) -> None:
        self.endpoints[endpoint_id] = endpoint

    def connect(self, links: dict[int, list[int]]) -> None:
        self.links = {k: sorted(v) for k, v in links.items()}

    def broadcast(self, src: int, data: bytes, only: list[int] | None = None) -> None:
        for dst in self.links[src] if only is None else only:
            self.send(src, dst, data)

    def peers_of_validator(self, src: int, validator: int) -> list[int]:
        return [d for d in self.links[src] if self.endpoints[d].validator == validator]

    def send(self, src: int, dst: int, data: bytes) -> None:
        now = self.sched.now
        cfg = self.config
        self.sent += 1
        if now < cfg.gst:
            if self.rng.random() < cfg.loss:
                return
            if any(p.separates(src, dst, now) for p in cfg.partitions):
                return
        copies = 2 if self.rng.random() < cfg.duplicate else 1
        for _ in range(copies):
            self.sched.at(now + self._delay(now), self._deliver, src, dst, data)

    def _delay(self, now: int) -> int:
        d = self.config.mean_delay
        if now < self.config.gst and self.rng.random() < self.config.spike:
            return self.rng.randint(d, max(d, self.config.max_spike))
        return self.rng.randint(d // 5, 2 * d - d // 5)

    def _deliver(self, src: int, dst: int, data: bytes) -> None:
        endpoint = self.endpoints[dst]
        if endpoint.up:
            endpoint.deliver(src, data)
