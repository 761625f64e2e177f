"""An in-process chain for store benchmarks (scripts/bench_store.py,
scripts/bench_pending.py): four deterministic validator keys and one
submitter in a genesis, and certificates by a quorum of them - blocks
committed with ``ChainStore.commit_block`` exactly as a node does, with no
consensus or network in the measurement."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consensus import proposer_for
from ledger.blocks import Certificate, Header, Vote, VoteType
from ledger.crypto import SigningKey
from ledger.chain import ChainStore
from ledger.genesis import Genesis, parse_genesis
from ledger.records import Record, make_record, sign_record
from ledger.storage import LevelDBStore

FIXED_TS = 1_700_000_000_000
CHAIN = "bench"


def bench_key(label: str, i: int) -> SigningKey:
    """Key ``i`` of a benchmark (``label`` keeps benchmarks' keys apart)."""
    return SigningKey(hashlib.sha256(label.encode() + b"/" + i.to_bytes(8, "big")).digest())


def bench_genesis(label: str, members: Sequence[SigningKey] = ()
                  ) -> tuple[Genesis, list[SigningKey], SigningKey]:
    """A 4-validator genesis with one submitter (role ``submit``), and
    ``members`` (governance) if any: the genesis, the validators' keys and
    the submitter's key."""
    validators = [bench_key(label, i) for i in range(4)]
    submitter = bench_key(label, 100)
    doc: dict[str, Any] = {
        "chain": CHAIN,
        "validators": [{"name": f"node{i}", "pubkey": k.public_key.hex(),
                        "address": f"127.0.0.1:{7700 + i}"} for i, k in enumerate(validators)],
        "submitters": [{"name": "bench", "pubkey": submitter.public_key.hex(),
                        "roles": ["submit"]}],
        "params": {},
    }
    if members:
        doc["members"] = [{"name": f"org{i}", "pubkey": k.public_key.hex()}
                          for i, k in enumerate(members)]
    return parse_genesis(doc), validators, submitter


def certify(genesis: Genesis, validators: list[SigningKey], header: Header) -> Certificate:
    """A round-0 certificate of ``header`` by the first quorum of validators."""
    vote = Vote(VoteType.PRECOMMIT, genesis.chain, header.height, 0, header.hash)
    return Certificate(height=header.height, round=0, block=header.hash,
                       signatures=tuple((i, vote.sign(validators[i]))
                                        for i in range(genesis.quorum)))


def bench_record(submitter: SigningKey, n: int) -> Record:
    """Payment record ``n`` of the benchmark stores (fixed time: the store is
    built once and reused, so the same ``n`` must give the same record)."""
    return make_record(chain=CHAIN, submitter=submitter.public_key, nonce=n, ts=FIXED_TS,
                       kind="payment", origin={"system": "bench", "country": "DE"},
                       body={"amount": n % 10_000, "currency": "EUR"})


def build_store(path: Path, records: int, block: int, label: str) -> None:
    """Extend (or create) the chain store at ``path`` to ``records`` signed
    records in blocks of ``block``, each certified by a quorum, with the
    round-0 proposer of each height in its header as consensus rotates it (a
    node replaying the blocks checks that).  Resumes where a previous build
    stopped; prints progress every tenth of the way."""
    genesis, validators, submitter = bench_genesis(label)
    chain = ChainStore(LevelDBStore(str(path)), genesis)
    started = time.perf_counter()
    try:
        for b in range(chain.height, records // block):
            envelopes = [sign_record(bench_record(submitter, n), submitter)
                         for n in range(b * block, (b + 1) * block)]
            height = b + 1
            header = chain.next_header(envelopes, time=FIXED_TS + 1000 * height,
                                       proposer=proposer_for(genesis.n, height, 0))
            chain.commit_block(header, envelopes, certify(genesis, validators, header))
            if height % max(1, records // block // 10) == 0:
                print(f"  built {height * block:,} records in "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        chain.close()
