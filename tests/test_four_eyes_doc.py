"""docs/policy.md "Four eyes": its policy block, installed by governance on
a chain with the real policy engine, holds a payment above the amount until
two distinct reviewers approved it (PROTOCOL §10.7, §10.10)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from govhelpers import gov_genesis, gov_record
from helpers import block_time, certify, make_envelope, make_keys

from ledger.chain import ChainStore
from ledger.genesis import parse_genesis
from ledger.policy import policy_from_json
from ledger.records import Envelope
from ledger.storage import MemoryStore
from ledger.verdicts import Status
from node.policy_runtime import install_policy_engine

DOC = (Path(__file__).resolve().parent.parent / "docs" / "policy.md").read_text()
SECTION = DOC[DOC.index("## Four eyes"):]
POLICY = yaml.safe_load(re.search(r"```yaml\n(.*?)```", SECTION, re.S).group(1))  # type: ignore[union-attr]


def test_two_distinct_reviewers_above_the_amount() -> None:
    base, validators, members, payer = gov_genesis()
    reviewers = make_keys(2, 6_000_000)
    doc = dict(base.raw)
    doc["submitters"] = list(doc["submitters"]) + [
        {"name": f"reviewer{i}", "pubkey": k.public_key.hex(), "roles": ["submit", "review"]}
        for i, k in enumerate(reviewers)]
    genesis = parse_genesis(doc)
    chain = ChainStore(MemoryStore(), genesis)
    install_policy_engine(chain)

    def commit(envelopes: list[Envelope]) -> None:
        height = chain.height + 1
        header = chain.next_header(envelopes, block_time(height), (height - 1) % 4)
        chain.commit_block(header, envelopes, certify(header, validators, genesis))

    def decide(key: object, nonce: int, target: bytes) -> Envelope:
        return make_envelope(key, genesis.chain, nonce, parents=[target],  # type: ignore[arg-type]
                             kind="risk.decision", body={"decision": "approve", "note": ""})

    commit([gov_record(genesis.chain, members[:2], 1, "gov.policy.set",
                       {"policy": policy_from_json(POLICY).policy_bytes})])
    big = make_envelope(payer, genesis.chain, 2, body={"amount": 100_001, "currency": "EUR"})
    edge = make_envelope(payer, genesis.chain, 3, body={"amount": 100_000, "currency": "EUR"})
    commit([big, edge])
    held = chain.record_verdict(big.id)
    assert held is not None and held.status == Status.HELD
    assert (held.verdict.rule, held.verdict.approvals, held.verdict.role) == \
        ("two_reviewers", 2, "review")
    assert chain.record_verdict(edge.id).status == Status.ALLOWED  # type: ignore[union-attr]
    first, same = decide(reviewers[0], 4, big.id), decide(reviewers[0], 5, big.id)
    commit([first, same])
    assert chain.record_verdict(same.id).verdict.reason == "repeat_approval"  # type: ignore[union-attr]
    assert chain.record_verdict(big.id).status == Status.HELD  # type: ignore[union-attr]
    second = decide(reviewers[1], 6, big.id)
    commit([second])
    final = chain.record_verdict(big.id)
    assert final is not None and final.status == Status.APPROVED
    assert final.transition is not None and final.transition.approvals == (first.id, second.id)
