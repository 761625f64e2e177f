"""Validator-set changes in simulated runs (PROTOCOL §9.9).

An epoch run has ``EPOCH_SLOTS`` endpoints, one validator slot each; the
genesis set is slots ``0..n-1`` and the others start as followers (they run
the same machine, sign nothing, and commit what the set decides).  The run's
plan is a random walk of validator-set changes - add a follower slot, remove
a validator, rotate a validator's key - keeping 4..7 validators and never
more Byzantine validators than the set tolerates.  Each change is a
governance record signed by two of the three genesis members, submitted to
each honest endpoint once that endpoint has committed the previous change
(before that, admission would judge it against a membership it does not
apply to yet).  Every endpoint holds all of its slot's keys, so a rotated
validator signs with its new key from the height the rotation is in force.

Also in the plan, now and then: a change the chain must refuse (a removal
signed by one member where the threshold is two, ``too_few_signatures``),
submitted to every honest endpoint; it counts on no honest chain ever
committing it (the checker's governance walk would fail if one did not
hold the signatures, and liveness does not wait for it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ledger.encoding import to_hex
from ledger.genesis import max_faulty
from ledger.records import Envelope, cosign, make_record, sign_record

from .workload import EPOCH_SLOTS, MAX_ROTATIONS, SIM_CHAIN, member_keys, slot_key

MIN_VALIDATORS = 4
# Governance records never expire within a run.
EXPIRES = 1 << 40


@dataclass(frozen=True)
class PlannedChange:
    """One validator-set change: ``kind`` is add, remove, rotate or refused
    (a removal the world signs with one member only: it must never commit)."""

    kind: str
    slot: int
    rotation: int   # the slot's key index before (remove/rotate) or of the added key
    earliest: int   # virtual ms: not submitted before this

    def envelope(self, nonce: int) -> Envelope:
        key = slot_key(self.slot, self.rotation).public_key
        body: dict[str, Any]
        if self.kind == "add":
            kind, body = "gov.validator.add", {"name": f"v{self.slot}", "pubkey": key,
                                                "address": f"sim:{self.slot}"}
        elif self.kind == "rotate":
            kind, body = "gov.validator.rotate", {
                "pubkey": key, "new_pubkey": slot_key(self.slot, self.rotation + 1).public_key}
        else:
            kind, body = "gov.validator.remove", {"pubkey": key}
        body["expires_height"] = EXPIRES
        proposer, cosigner = member_keys()[0], member_keys()[1]
        record = make_record(chain=SIM_CHAIN, submitter=proposer.public_key, nonce=nonce, ts=0,
                             kind=kind, origin={"system": "sim-governance"}, body=body, parents=[])
        return cosign(sign_record(record, proposer), [cosigner])

    def describe(self) -> str:
        return f"{self.kind} v{self.slot}" + (f"/r{self.rotation}" if self.rotation else "")


def plan_changes(rng: random.Random, n: int, byzantine: list[int], horizon: int
                 ) -> list[PlannedChange]:
    """A random walk of 2..6 changes from the genesis set ``0..n-1``."""
    members = list(range(n))          # slot order as the membership keeps it
    rotation = [0] * EPOCH_SLOTS
    out: list[PlannedChange] = []
    times = sorted(rng.randint(0, horizon) for _ in range(rng.randint(2, 6)))
    for at in times:
        options: list[tuple[str, int]] = []
        outside = [s for s in range(EPOCH_SLOTS) if s not in members]
        if len(members) < EPOCH_SLOTS:
            options += [("add", s) for s in outside]
        if len(members) > MIN_VALIDATORS:
            for s in members:
                rest = [m for m in members if m != s]
                if sum(1 for b in byzantine if b in rest) <= max_faulty(len(rest)):
                    options.append(("remove", s))
        options += [("rotate", s) for s in members if rotation[s] < MAX_ROTATIONS]
        if rng.random() < 0.2:
            slot = rng.choice(members)
            out.append(PlannedChange("refused", slot, rotation[slot], at))
            continue
        kind, slot = rng.choice(options)
        if kind == "add" and sum(1 for b in byzantine if b in members + [slot]) \
                > max_faulty(len(members) + 1):
            continue
        out.append(PlannedChange(kind, slot, rotation[slot], at))
        if kind == "add":
            members.append(slot)
        elif kind == "remove":
            members.remove(slot)
        else:
            rotation[slot] += 1
    return out


def describe_plan(plan: list[PlannedChange]) -> str:
    return ", ".join(f"{c.describe()}@{c.earliest}" for c in plan)


def key_name(key: bytes) -> str:
    for slot in range(EPOCH_SLOTS):
        for r in range(MAX_ROTATIONS + 1):
            if slot_key(slot, r).public_key == key:
                return f"v{slot}" + (f"/r{r}" if r else "")
    return to_hex(key)[:8]
