"""The pure whole-chain auditor and the Merkle frontier it relies on."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from helpers import build_certified_chain as _build_chain, certify, make_envelope
from ledger.audit import ChainAuditor
from ledger.blocks import Header
from ledger.errors import (
    BadSignature,
    CertificateError,
    HeaderError,
    QuorumNotReached,
    RecordIdMismatch,
    ValidatorSetMismatch,
)
from ledger.frontier import MerkleFrontier
from ledger.merkle import leaf_hash, root


@given(st.integers(min_value=0, max_value=300))
@settings(max_examples=60, deadline=None)
def test_frontier_root_equals_rfc_root_at_every_size(n: int) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    f = MerkleFrontier()
    assert f.root() == root([])
    for i, h in enumerate(hashes):
        f.append(h)
        assert f.size == i + 1
    assert f.root() == root(hashes)


def test_valid_chain_audits_and_counts() -> None:
    genesis, _, _, chain = _build_chain(5, 3)
    auditor = ChainAuditor(genesis)
    for header, cert, envs in chain:
        auditor.check_block(header.header_bytes, cert, [e.envelope_bytes for e in envs],
                            record_ids=[e.id for e in envs])
    assert auditor.height == 5
    assert auditor.counts.records == 15 and auditor.counts.signatures_checked == 15
    assert auditor.counts.submitters == {"demo": 15}


def _replace(header: Header, **changes: object) -> Header:
    return dataclasses.replace(header, header_bytes=b"", **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda h: _replace(h, prev=b"\x01" * 32), HeaderError),
        (lambda h: _replace(h, height=h.height + 1), HeaderError),
        (lambda h: _replace(h, tx_root=b"\x02" * 32), HeaderError),
        (lambda h: _replace(h, log_root=b"\x03" * 32), HeaderError),
        (lambda h: _replace(h, log_size=h.log_size + 1), HeaderError),
        (lambda h: _replace(h, tx_count=h.tx_count - 1), HeaderError),
        (lambda h: _replace(h, validators=b"\x04" * 32), ValidatorSetMismatch),
        (lambda h: _replace(h, time=0), HeaderError),
    ],
)
def test_tampered_header_is_caught(mutate, error) -> None:  # type: ignore[no-untyped-def]
    genesis, vkeys, _, chain = _build_chain(3, 2)
    auditor = ChainAuditor(genesis)
    for header, cert, envs in chain[:2]:
        auditor.check_block(header.header_bytes, cert, [e.envelope_bytes for e in envs])
    header, _, envs = chain[2]
    bad = mutate(header)
    # Re-certified by the validators: only the recomputation can catch it.
    with pytest.raises(error):
        auditor.check_block(bad.header_bytes, certify(bad, vkeys, genesis), [e.envelope_bytes for e in envs])
    assert auditor.height == 2  # nothing advanced


def test_swapped_envelope_and_bad_signature_and_weak_certificate() -> None:
    genesis, vkeys, skey, chain = _build_chain(2, 2)
    header, cert, envs = chain[0]
    auditor = ChainAuditor(genesis)
    other = make_envelope(skey, "audit", 999)
    with pytest.raises(HeaderError):
        auditor.check_block(header.header_bytes, cert, [envs[0].envelope_bytes, other.envelope_bytes])
    forged = bytearray(envs[1].envelope_bytes)
    forged[-1] ^= 1  # last byte is inside the signature
    with pytest.raises(BadSignature):
        auditor.check_block(header.header_bytes, cert, [envs[0].envelope_bytes, bytes(forged)])
    with pytest.raises(RecordIdMismatch):
        auditor.check_block(header.header_bytes, cert, [e.envelope_bytes for e in envs],
                            record_ids=[envs[1].id, envs[0].id])
    with pytest.raises(QuorumNotReached):
        auditor.check_block(header.header_bytes, certify(header, vkeys, genesis, signers=[0, 1]),
                            [e.envelope_bytes for e in envs])
    with pytest.raises(CertificateError):
        auditor.check_block(header.header_bytes, chain[1][1], [e.envelope_bytes for e in envs])
    auditor.check_block(header.header_bytes, cert, [e.envelope_bytes for e in envs])
    assert auditor.height == 1


def test_signature_checks_can_be_skipped_but_roots_cannot() -> None:
    genesis, _, _, chain = _build_chain(1, 2)
    header, cert, envs = chain[0]
    forged = bytearray(envs[1].envelope_bytes)
    forged[-1] ^= 1
    auditor = ChainAuditor(genesis, verify_signatures=False)
    # The signature byte is part of the envelope, hence of the leaf: roots catch it.
    with pytest.raises(HeaderError):
        auditor.check_block(header.header_bytes, cert, [envs[0].envelope_bytes, bytes(forged)])
