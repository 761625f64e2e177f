"""Fixtures for governance tests: a genesis with members, governance records
signed by several members, and in-memory chains whose validator set changes.
Deterministic, as tests/helpers.py."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from helpers import FIXED_TS, genesis_doc, make_keys

from ledger.crypto import SigningKey
from ledger.genesis import Genesis, parse_genesis
from ledger.records import Envelope, cosign, make_record, sign_record

MEMBER_SEED_BASE = 2_000_000
EXTRA_SEED_BASE = 3_000_000  # keys that governance adds later (validators, submitters)
NO_EXPIRY = 2**63


def gov_genesis(
    n_validators: int = 4, n_members: int = 3, chain: str = "test",
    threshold: int | None = None,
) -> tuple[Genesis, list[SigningKey], list[SigningKey], SigningKey]:
    """``(genesis, validator_keys, member_keys, submitter_key)``."""
    validators = make_keys(n_validators)
    submitter = make_keys(1, 1_000_000)[0]
    members = make_keys(n_members, MEMBER_SEED_BASE)
    doc = genesis_doc(validators, [submitter], chain)
    doc["members"] = [{"name": f"org{i}", "pubkey": k.public_key.hex()}
                      for i, k in enumerate(members)]
    if threshold is not None:
        doc["governance_threshold"] = threshold
    return parse_genesis(doc), validators, members, submitter


def gov_record(
    chain: str, signers: Sequence[SigningKey], nonce: int, kind: str,
    body: Mapping[str, Any], *, expires_height: int = NO_EXPIRY, ts: int = FIXED_TS,
) -> Envelope:
    """A governance record proposed by ``signers[0]`` and co-signed by the rest
    (``ts``: a live cluster's nodes want the clock's)."""
    record = make_record(
        chain=chain, submitter=signers[0].public_key, nonce=nonce, ts=ts, kind=kind,
        origin={"system": "ledger-admin"}, body=dict(body, expires_height=expires_height),
    )
    return cosign(sign_record(record, signers[0]), list(signers[1:]))
