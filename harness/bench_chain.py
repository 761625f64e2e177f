"""An in-process chain for store benchmarks (scripts/bench_store.py,
scripts/bench_pending.py): four deterministic validator keys and one
submitter in a genesis, and certificates by a quorum of them - blocks
committed with ``ChainStore.commit_block`` exactly as a node does, with no
consensus or network in the measurement."""

from __future__ import annotations

import hashlib

from ledger.blocks import Certificate, Header, Vote, VoteType
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, parse_genesis

FIXED_TS = 1_700_000_000_000
CHAIN = "bench"


def bench_key(label: str, i: int) -> SigningKey:
    """Key ``i`` of a benchmark (``label`` keeps benchmarks' keys apart)."""
    return SigningKey(hashlib.sha256(label.encode() + b"/" + i.to_bytes(8, "big")).digest())


def bench_genesis(label: str) -> tuple[Genesis, list[SigningKey], SigningKey]:
    """A 4-validator genesis with one submitter (role ``submit``): the
    genesis, the validators' keys and the submitter's key."""
    validators = [bench_key(label, i) for i in range(4)]
    submitter = bench_key(label, 100)
    genesis = parse_genesis({
        "chain": CHAIN,
        "validators": [{"name": f"node{i}", "pubkey": k.public_key.hex(),
                        "address": f"127.0.0.1:{7700 + i}"} for i, k in enumerate(validators)],
        "submitters": [{"name": "bench", "pubkey": submitter.public_key.hex(),
                        "roles": ["submit"]}],
        "params": {},
    })
    return genesis, validators, submitter


def certify(genesis: Genesis, validators: list[SigningKey], header: Header) -> Certificate:
    """A round-0 certificate of ``header`` by the first quorum of validators."""
    vote = Vote(VoteType.PRECOMMIT, genesis.chain, header.height, 0, header.hash)
    return Certificate(height=header.height, round=0, block=header.hash,
                       signatures=tuple((i, vote.sign(validators[i]))
                                        for i in range(genesis.quorum)))
