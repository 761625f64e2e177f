"""Genesis, deterministic keys and client records for simulations."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from ledger.crypto import SigningKey
from ledger.encoding import H, to_hex
from ledger.genesis import Genesis, parse_genesis
from ledger.records import Envelope, make_record, sign_record

SIM_CHAIN = "sim"
HONEST_SUBMITTERS = ("alice", "bob")
# In genesis with the submit role but its key is handed to Byzantine validators:
# a colluding client lets them forge nonce reuse and dangling parents.
ROGUE_SUBMITTER = "mallory"
READ_ONLY_SUBMITTER = "auditor"
MAX_CLOCK_SKEW_MS = 5_000


def _key(label: str) -> SigningKey:
    return SigningKey(H(b"auditledger-sim/" + label.encode()))


@lru_cache(maxsize=None)
def validator_keys(n: int) -> tuple[SigningKey, ...]:
    return tuple(_key(f"validator/{i}") for i in range(n))


@lru_cache(maxsize=None)
def submitter_key(name: str) -> SigningKey:
    return _key(f"submitter/{name}")


# Epoch runs (consensus/simulation/epochs.py): up to this many validator
# slots, each endpoint one slot; a slot's key after its r-th rotation.
EPOCH_SLOTS = 7
MAX_ROTATIONS = 3
MEMBERS = 3


@lru_cache(maxsize=None)
def slot_key(slot: int, rotation: int) -> SigningKey:
    """Validator slot ``slot``'s key; rotation 0 is ``validator_keys(n)[slot]``."""
    return _key(f"validator/{slot}") if rotation == 0 else _key(f"validator/{slot}/r{rotation}")


@lru_cache(maxsize=None)
def member_keys() -> tuple[SigningKey, ...]:
    return tuple(_key(f"member/{i}") for i in range(MEMBERS))


@lru_cache(maxsize=None)
def sim_genesis(n: int, members: bool = False) -> Genesis:
    """The simulation's genesis; with ``members`` it also names three members
    (threshold 2) so governance records can change the validator set."""
    submitters = [
        {"name": name, "pubkey": to_hex(submitter_key(name).public_key), "roles": ["submit"]}
        for name in HONEST_SUBMITTERS + (ROGUE_SUBMITTER,)
    ]
    submitters.append({"name": READ_ONLY_SUBMITTER,
                       "pubkey": to_hex(submitter_key(READ_ONLY_SUBMITTER).public_key),
                       "roles": ["read"]})
    doc = {
        "chain": SIM_CHAIN,
        "validators": [
            {"name": f"v{i}", "pubkey": to_hex(k.public_key), "address": f"sim:{i}"}
            for i, k in enumerate(validator_keys(n))
        ],
        "submitters": submitters,
        "params": {"max_clock_skew_ms": MAX_CLOCK_SKEW_MS},
    }
    if members:
        doc["members"] = [{"name": f"m{i}", "pubkey": to_hex(k.public_key)}
                          for i, k in enumerate(member_keys())]
    return parse_genesis(doc)


@dataclass(frozen=True)
class Submission:
    """One client record and where/when it is submitted."""

    envelope: Envelope
    time: int
    targets: tuple[int, ...]  # endpoint ids


class Client:
    """Creates signed records with unique nonces and (sometimes) parents."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.nonces = {name: 0 for name in HONEST_SUBMITTERS}
        self.made: list[Envelope] = []

    def record(self, ts: int, chain: str = SIM_CHAIN, submitter: str | None = None) -> Envelope:
        name = submitter or self.rng.choice(HONEST_SUBMITTERS)
        self.nonces[name] = self.nonces.get(name, 0) + 1
        parents: list[bytes] = []
        if self.made and self.rng.random() < 0.3:
            pool = [e.id for e in self.made[-6:]]
            parents = self.rng.sample(pool, min(len(pool), self.rng.randint(1, 2)))
        key = submitter_key(name)
        rec = make_record(
            chain=chain, submitter=key.public_key, nonce=self.nonces[name], ts=ts,
            kind=self.rng.choice(("payment", "refund", "settlement")),
            origin={"system": "sim"}, body={"amount": self.rng.randint(1, 10_000)}, parents=parents,
        )
        env = sign_record(rec, key)
        self.made.append(env)
        return env


def rogue_record(nonce: int, ts: int, parents: tuple[bytes, ...] = (), name: str = ROGUE_SUBMITTER,
                 chain: str = SIM_CHAIN) -> Envelope:
    """A record by a colluding (or read-only) submitter, for invalid blocks."""
    key = submitter_key(name)
    rec = make_record(chain=chain, submitter=key.public_key, nonce=nonce, ts=ts, kind="forged",
                      origin={}, body={}, parents=list(parents))
    return sign_record(rec, key)
