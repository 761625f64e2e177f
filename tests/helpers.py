"""Shared, deterministic test fixtures: keys, genesis, envelopes, certificates.

Other test modules import this (``from helpers import ...``; pytest puts
``tests/`` on ``sys.path``).  Everything here is seeded, so two runs build
byte-identical keys, records and certificates.
"""

from __future__ import annotations

import dataclasses

import hashlib
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ledger.blocks import Certificate, Header, Vote
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, parse_genesis
from ledger.records import Envelope, make_record, sign_record

if TYPE_CHECKING:
    from ledger.chain import ChainStore
    from ledger.storage import MemoryStore

# Seed bases keep validator and submitter keys apart for any n.
VALIDATOR_SEED_BASE = 0
SUBMITTER_SEED_BASE = 1_000_000
FIXED_TS = 1_700_000_000_000  # a fixed record clock: tests never read the wall clock


def seed_for(index: int) -> bytes:
    """A fixed 32-byte Ed25519 seed for key number ``index``."""
    return hashlib.sha256(b"auditledger-test-key/" + index.to_bytes(8, "big")).digest()


def make_keys(n: int, seed_base: int = VALIDATOR_SEED_BASE) -> list[SigningKey]:
    """``n`` deterministic keys numbered from ``seed_base``."""
    return [SigningKey(seed_for(seed_base + i)) for i in range(n)]


def genesis_doc(
    validator_keys: Sequence[SigningKey],
    submitter_keys: Sequence[SigningKey],
    chain: str = "test",
    *,
    roles: Sequence[str] = ("submit",),
    base_port: int = 7700,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A PROTOCOL §7 genesis document for the given keys."""
    return {
        "chain": chain,
        "validators": [
            {"name": f"node{i}", "pubkey": k.public_key.hex(), "address": f"127.0.0.1:{base_port + i}"}
            for i, k in enumerate(validator_keys)
        ],
        "submitters": [
            {"name": "demo" if i == 0 else f"submitter{i}", "pubkey": k.public_key.hex(),
             "roles": list(roles)}
            for i, k in enumerate(submitter_keys)
        ],
        "params": dict(params or {}),
    }


def make_genesis(
    n_validators: int = 4, chain: str = "test"
) -> tuple[dict[str, Any], list[SigningKey], SigningKey]:
    """``(genesis_dict, validator_keys, submitter_key)``; parse with
    :func:`ledger.genesis.parse_genesis` (or use :func:`as_genesis`)."""
    validators = make_keys(n_validators, VALIDATOR_SEED_BASE)
    submitter = make_keys(1, SUBMITTER_SEED_BASE)[0]
    return genesis_doc(validators, [submitter], chain), validators, submitter


def as_genesis(genesis: Genesis | Mapping[str, Any]) -> Genesis:
    """Accept either a parsed :class:`Genesis` or its JSON document."""
    if isinstance(genesis, Genesis):
        return genesis
    return parse_genesis(dict(genesis))


def make_envelope(
    submitter_key: SigningKey,
    chain: str,
    nonce: int,
    parents: Sequence[bytes] = (),
    kind: str = "payment",
    *,
    body: Mapping[str, Any] | None = None,
    origin: Mapping[str, str] | None = None,
    ts: int = FIXED_TS,
) -> Envelope:
    """A signed envelope; the default body depends on ``nonce`` so ids differ."""
    record = make_record(
        chain=chain,
        submitter=submitter_key.public_key,
        nonce=nonce,
        ts=ts,
        kind=kind,
        origin=origin if origin is not None else {"system": "test"},
        body=body if body is not None else {"amount": nonce * 100, "currency": "EUR"},
        parents=parents,
    )
    return sign_record(record, submitter_key)


def make_envelopes(
    submitter_key: SigningKey, chain: str, count: int, first_nonce: int = 0
) -> list[Envelope]:
    """``count`` independent envelopes with consecutive nonces."""
    return [make_envelope(submitter_key, chain, first_nonce + i) for i in range(count)]


def certify(
    header: Header,
    validator_keys: Sequence[SigningKey],
    genesis: Genesis | Mapping[str, Any],
    round: int = 0,
    signers: Iterable[int] | None = None,
) -> Certificate:
    """A certificate of precommits for ``header`` by ``signers`` (validator
    indexes; default: the first quorum of them)."""
    g = as_genesis(genesis)
    chosen = list(range(g.quorum)) if signers is None else sorted(signers)
    vote = Vote("precommit", g.chain, header.height, round, header.hash)
    return Certificate(
        height=header.height,
        round=round,
        block=header.hash,
        signatures=tuple((i, vote.sign(validator_keys[i])) for i in chosen),
    )


def block_time(height: int) -> int:
    """A fixed header time for ``height`` (ms), so rebuilt blocks are identical."""
    return FIXED_TS + 1000 * height


def commit_envelopes(
    chain: "ChainStore",
    envelopes: Sequence[Envelope],
    validator_keys: Sequence[SigningKey],
    *,
    time: int | None = None,
    proposer: int | None = None,
    round: int = 0,
) -> tuple[Header, Certificate]:
    """Build the next header on ``chain``'s tip, certify it with a quorum and
    commit it.  Deterministic: the same chain and envelopes give the same block."""
    height = chain.height + 1
    header = chain.next_header(
        envelopes,
        time=block_time(height) if time is None else time,
        proposer=(height - 1) % chain.genesis.n if proposer is None else proposer,
    )
    certificate = certify(header, validator_keys, chain.genesis, round=round)
    chain.commit_block(header, envelopes, certificate)
    return header, certificate


def commit_sample_blocks(
    chain: "ChainStore", validator_keys: Sequence[SigningKey], submitter_key: SigningKey
) -> list[list[Envelope]]:
    """Three blocks of 3, 1 and 4 records (nonces 0-2, 10, 20-22 and 30); the
    records of blocks 2 and 3 name records of block 1 as parents."""
    chain_id = chain.genesis.chain
    b1 = make_envelopes(submitter_key, chain_id, 3, 0)
    b2 = [make_envelope(submitter_key, chain_id, 10, parents=[b1[0].id, b1[2].id])]
    b3 = make_envelopes(submitter_key, chain_id, 3, 20) + [
        make_envelope(submitter_key, chain_id, 30, parents=[b1[0].id], kind="refund")
    ]
    for block in (b1, b2, b3):
        commit_envelopes(chain, block, validator_keys)
    return [b1, b2, b3]


# ------------------------------------------------------------------ chain worlds


@dataclasses.dataclass
class World:
    genesis: Genesis
    validators: list[SigningKey]
    submitter: SigningKey

    def envelopes(self, first_nonce: int, count: int) -> list[Envelope]:
        return make_envelopes(self.submitter, self.genesis.chain, count, first_nonce)


def make_world(n_validators: int = 4, chain: str = "test") -> World:
    """A genesis with its validator and submitter keys (the ``world`` fixture)."""
    doc, validators, submitter = make_genesis(n_validators, chain)
    return World(as_genesis(doc), validators, submitter)


def snapshot(store: "MemoryStore") -> list[tuple[bytes, bytes]]:
    return list(store.iterate(b""))


def three_blocks(chain: "ChainStore", world: World) -> list[list[Envelope]]:
    return commit_sample_blocks(chain, world.validators, world.submitter)


def built(world: World) -> tuple["MemoryStore", "ChainStore"]:
    from ledger.chain import ChainStore
    from ledger.storage import MemoryStore

    store = MemoryStore()
    chain = ChainStore(store, world.genesis)
    three_blocks(chain, world)
    return store, chain


def build_certified_chain(blocks: int, per_block: int, chain: str = "audit") -> tuple[
    Genesis, list[SigningKey], SigningKey, list[tuple[Header, Certificate, list[Envelope]]]
]:
    """``blocks`` certified blocks of ``per_block`` records, built in memory
    with the RFC functions (no store): ``(genesis, validator keys, submitter
    key, [(header, certificate, envelopes), ...])``."""
    from ledger.blocks import ZERO_HASH
    from ledger.merkle import root

    doc, vkeys, skey = make_genesis(4, chain=chain)
    genesis = as_genesis(doc)
    out: list[tuple[Header, Certificate, list[Envelope]]] = []
    leaves: list[bytes] = []
    prev, nonce = ZERO_HASH, 0
    for height in range(1, blocks + 1):
        envs = [make_envelope(skey, chain, nonce + i) for i in range(per_block)]
        nonce += per_block
        leaves += [e.leaf_hash for e in envs]
        header = Header(
            chain=chain, height=height, prev=prev, time=1000 + height, proposer=height % 4,
            tx_count=len(envs), tx_root=root([e.leaf_hash for e in envs]),
            log_size=len(leaves), log_root=root(leaves), validators=genesis.validators_hash,
        )
        out.append((header, certify(header, vkeys, genesis), envs))
        prev = header.hash
    return genesis, vkeys, skey, out
