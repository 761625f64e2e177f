"""A tiny in-memory chain for proof tests, built only from ``ledger.merkle``.

It offers the read side of ``ChainStore`` that :mod:`ledger.proofs` needs
(``height``, ``log``, ``record_location``, ``envelope_at``, ``header``,
``certificate``), computed from plain lists, so bundles can be built and
verified without any storage layer.  Deterministic: fixed keys (tests/helpers),
fixed clock, and the same header conventions as ``helpers.commit_envelopes``
(time, proposer), so the same envelopes give byte-identical blocks here and
in a real ``ChainStore``.
"""

from __future__ import annotations

import base64
from typing import Any, Iterable, Sequence

from helpers import block_time, certify, make_envelope, make_genesis

from ledger import merkle
from ledger.blocks import ZERO_HASH, Certificate, Header
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, parse_genesis
from ledger.records import Envelope


class MemLog:
    """RFC 9162 log over a list of leaf hashes."""

    def __init__(self) -> None:
        self.leaf_hashes: list[bytes] = []

    @property
    def size(self) -> int:
        return len(self.leaf_hashes)

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self.leaf_hashes[: self.size if size is None else size])

    def inclusion_path(self, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_path(index, self.leaf_hashes[:size])

    def consistency_path(self, old: int, new: int) -> list[bytes]:
        return merkle.consistency_path(old, self.leaf_hashes[:new])


class MemChain:
    """Blocks of envelopes, each header certified by the given validator keys."""

    def __init__(self, genesis: Genesis, validator_keys: Sequence[SigningKey]) -> None:
        self.genesis = genesis
        self.validator_keys = list(validator_keys)
        self.log = MemLog()
        self.headers: list[Header] = []
        self.certificates: list[Certificate] = []
        self.envelopes: list[bytes] = []
        self.locations: dict[bytes, tuple[int, int]] = {}

    @property
    def height(self) -> int:
        return len(self.headers)

    def commit(
        self,
        envelopes: Sequence[Envelope],
        *,
        time: int | None = None,
        round: int = 0,
        signers: Iterable[int] | None = None,
    ) -> Header:
        height = self.height + 1
        leaves = [e.leaf_hash for e in envelopes]
        for env in envelopes:
            self.locations[env.id] = (height, len(self.envelopes))
            self.envelopes.append(env.envelope_bytes)
        self.log.leaf_hashes.extend(leaves)
        header = Header(
            chain=self.genesis.chain,
            height=height,
            prev=self.headers[-1].hash if self.headers else ZERO_HASH,
            time=block_time(height) if time is None else time,
            proposer=(height - 1) % self.genesis.n,
            tx_count=len(envelopes),
            tx_root=merkle.root(leaves),
            log_size=self.log.size,
            log_root=self.log.root(),
            validators=self.genesis.validators_hash,
        )
        self.headers.append(header)
        self.certificates.append(
            certify(header, self.validator_keys, self.genesis, round=round, signers=signers)
        )
        return header

    def raw_bundle(self, record_id: bytes, leaf_index: int, height: int) -> dict[str, Any]:
        """The §5 bundle assembled straight from the lists, checking nothing
        (so tests can wrap deliberately broken envelopes in certified blocks)."""
        header = self.headers[height - 1]
        return {
            "format": "auditledger-proof/1",
            "chain": header.chain,
            "record_id": record_id.hex(),
            "leaf_index": leaf_index,
            "envelope": base64.b64encode(self.envelopes[leaf_index]).decode("ascii"),
            "height": height,
            "header": base64.b64encode(header.header_bytes).decode("ascii"),
            "inclusion": [p.hex() for p in self.log.inclusion_path(leaf_index, header.log_size)],
            "certificate": self.certificates[height - 1].to_json(),
        }

    # -- the ProofSource read side ---------------------------------------

    def record_location(self, record_id: bytes) -> tuple[int, int] | None:
        return self.locations.get(record_id)

    def envelope_at(self, leaf_index: int) -> bytes:
        return self.envelopes[leaf_index]

    def header(self, height: int) -> Header | None:
        return self.headers[height - 1] if 1 <= height <= self.height else None

    def certificate(self, height: int) -> Certificate | None:
        return self.certificates[height - 1] if 1 <= height <= self.height else None


def build_chain(
    block_sizes: Sequence[int] = (3, 1, 4, 2), n_validators: int = 4, chain: str = "test"
) -> tuple[MemChain, dict[str, object], list[SigningKey], SigningKey, list[Envelope]]:
    """``(chain, genesis_doc, validator_keys, submitter_key, envelopes)``; the
    records of later blocks name earlier ones as parents."""
    doc, validator_keys, submitter = make_genesis(n_validators, chain)
    genesis = parse_genesis(doc)
    mem = MemChain(genesis, validator_keys)
    envelopes: list[Envelope] = []
    nonce = 0
    for size in block_sizes:
        block = []
        for _ in range(size):
            parents = [envelopes[-1].id] if envelopes else []
            block.append(make_envelope(submitter, chain, nonce, parents=parents))
            nonce += 1
            envelopes.append(block[-1])
        mem.commit(block)
    return mem, doc, validator_keys, submitter, envelopes
