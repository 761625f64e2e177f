"""The review queue end to end against an in-process node (PROTOCOL
§10.10): a record flagged by a monitor's alert, reviewers' decisions through
the SDK, ``GET /v1/reviews`` open and decided with its pages, the queue
metrics, and the whole case - record, alert, decision - as one
``ledger-audit trace`` that verifies offline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner
from helpers import make_keys
from policy_fakes import LimitPolicy
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode

from client.audit.cli import main as audit_main
from client.sdk import LedgerClient
from ledger.chain import ChainStore
from ledger.genesis import parse_genesis
from ledger.storage import MemoryStore
from node.api import build_app
from node.mempool import Mempool
from node.reviews import ReviewMetrics

ROLES = {"monitor": ["submit", "monitor"], "ra": ["submit", "review"],
         "rb": ["submit", "review"], "rc": ["submit", "review"]}


class ReviewNode(StubNode):
    def __init__(self) -> None:
        super().__init__()
        keys = make_keys(len(ROLES), 5_000_000)
        self.keys = dict(zip(ROLES, keys))
        doc = dict(self.genesis.raw)
        doc["submitters"] = list(doc["submitters"]) + [
            {"name": name, "pubkey": self.keys[name].public_key.hex(), "roles": roles}
            for name, roles in ROLES.items()]
        self.genesis = parse_genesis(doc)
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.chain.set_policy_engine(LimitPolicy())
        self.clock = int(time.time() * 1000)  # the SDK stamps records with its clock
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=1000,
                               clock=lambda: self.clock)
        self.reviews = ReviewMetrics(self.chain, self.metrics)

    def commit(self) -> None:
        super().commit()
        header = self.chain.tip()
        assert header is not None
        self.reviews.committed(header.height, header.time)


def _key_file(tmp: Path, name: str, key: Any) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({"name": name, "pubkey": key.public_key.hex(),
                                "seed": key.seed.hex()}))
    path.chmod(0o600)
    return path


@pytest.fixture
async def served() -> AsyncIterator[tuple[ReviewNode, str]]:
    node = ReviewNode()
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    server = TestServer(app)
    await server.start_server()
    try:
        yield node, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def _sample(node: ReviewNode, name: str, **labels: str) -> float:
    value = node.metrics.registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


async def test_queue_decisions_metrics_and_the_case_trace(served: tuple[ReviewNode, str],
                                                         tmp_path: Path) -> None:
    node, url = served

    async def commit_then_wait(delay: float) -> None:  # the node's consensus, on demand
        if len(node.mempool):
            node.clock += 60_000  # a minute of block time per block
            node.commit()
        await asyncio.sleep(0)

    def client(name: str, key: Any) -> LedgerClient:
        return LedgerClient([url], _key_file(tmp_path, name, key), chain="test",
                            sleep=commit_then_wait, long_poll=0, nonce_file=tmp_path / f"{name}.nonce")

    k = node.keys
    async with client("payer", node.submitter) as payer, client("mon", k["monitor"]) as mon, \
            client("ra", k["ra"]) as ra, client("rb", k["rb"]) as rb, \
            client("rc", k["rc"]) as rc:
        flagged, verdict = await payer.submit_for_verdict(kind="flagged", body={"amount": 7})
        assert verdict["status"] == "review" and verdict["approvals_needed"] == 1
        big, held = await payer.submit_for_verdict(kind="payment", body={"amount": 50_000})
        assert held["status"] == "held"
        alert = await mon.submit(kind="risk.alert", parents=[flagged], body={
            "score": 900_000, "reasons": [{"feature": "velocity", "points": 900_000}],
            "detector": "test", "version": "1"})
        await mon.wait_committed(alert)
        page = await ra.reviews()
        assert page["state"] == "open" and page["open"] == 2 and page["next"] is None
        assert [r["record"] for r in page["reviews"]] == [flagged, big]
        case = page["reviews"][0]
        assert [a["record"] for a in case["alerts"]] == [alert]
        assert case["alerts"][0]["score"] == 900_000 and case["decisions"] == []
        assert case["amount"] == 7 and case["age_ms"] >= 60_000
        first = await ra.reviews(limit=1)
        assert first["next"] is not None and len(first["reviews"]) == 1
        rest = await ra.reviews(limit=1, after=first["next"])
        assert [r["record"] for r in rest["reviews"]] == [big] and rest["next"] is None

        escalation = await ra.decide(flagged, "escalate", note="new device", rests_on=[alert])
        assert (await ra.verdict(escalation))["outcome"] == "allow"
        again = await ra.decide(flagged, "approve")
        assert (await ra.verdict(again))["reason"] == "repeat_approval"
        assert (await rb.verdict(await rb.decide(flagged, "approve", rests_on=[alert])))[
            "outcome"] == "allow"
        mid = await rb.review_case(flagged)
        assert mid["verdict"]["status"] == "review"
        assert mid["verdict"]["approvals_needed"] == 2
        assert [(d["decision"], d["counted"]) for d in mid["decisions"]] == [
            ("escalate", True), ("approve", False), ("approve", True)]
        last = await rc.decide(flagged, "approve", rests_on=[alert])
        assert (await payer.wait_final(flagged))["status"] == "approved"
        reject = await rc.decide(big, "reject", note="mule pattern")
        final = await payer.wait_final(big)
        assert final["status"] == "rejected"

        assert (await ra.reviews())["reviews"] == []
        decided = await ra.reviews("decided")
        assert sorted(r["record"] for r in decided["reviews"]) == sorted([flagged, big])
        rejected = await ra.review_case(big)
        assert rejected["decisions"][0]["record"] == reject
        assert rejected["age_ms"] == rejected["decided_time"] - rejected["since"] > 0

    assert _sample(node, "ledger_review_time_in_queue_seconds_count", status="approved") == 1
    assert _sample(node, "ledger_review_time_in_queue_seconds_count", status="rejected") == 1
    assert _sample(node, "ledger_review_time_in_queue_seconds_count", status="expired") == 0
    assert _sample(node, "ledger_review_time_in_queue_seconds_sum", status="rejected") >= 60
    node.metrics.render()
    assert _sample(node, "ledger_review_queue_open", status="review") == 0

    # The case is one trace: the approving decision names the record and the
    # alert, whose parent is the record; every hop verifies offline.
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(node.genesis.raw))
    result = await asyncio.to_thread(CliRunner().invoke, audit_main, [
        "trace", last, "--genesis", str(genesis), "--node", url, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["valid"] is True and doc["missing_beyond_depth"] == []
    hops = {h["id"]: h for h in doc["hops"]}
    assert set(hops) == {last, flagged, alert}
    assert hops[last]["kind"] == "risk.decision" and hops[last]["parents"] == [flagged, alert]
    assert hops[alert]["parents"] == [flagged]
    # Their verdict proofs (PROTOCOL §10.11): the decision counted, and the
    # record's transition to approved names it.
    assert (hops[last]["verdict"]["outcome"], hops[last]["verdict"]["rule"]) == \
        ("allow", "review")
    assert hops[flagged]["verdict"]["status"] == "approved"
    assert last in hops[flagged]["verdict"]["approved_by"]


async def test_queue_refusals(served: tuple[ReviewNode, str], tmp_path: Path) -> None:
    node, url = served
    async with LedgerClient([url], _key_file(tmp_path, "ra", node.keys["ra"]),
                            chain="test") as ra:
        from client.errors import LedgerAPIError

        for params in ({"state": "closed"}, {"limit": "0"}, {"limit": "201"},
                       {"state": "open", "after": "ab"}, {"state": "decided", "after": "12"},
                       {"record": "zz"}):
            with pytest.raises(LedgerAPIError) as caught:
                await ra._request("GET", "/v1/reviews", params=params)
            assert caught.value.code == "bad_request", params
        with pytest.raises(LedgerAPIError) as missing:
            await ra.review_case("00" * 32)
        assert missing.value.code == "not_found"
        with pytest.raises(ValueError):
            await ra.decide("00" * 32, "maybe")
