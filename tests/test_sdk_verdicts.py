"""SDK verdict calls (client/verdicts.py) against an in-process node whose
policy holds large payments for two treasury approvals: submit_for_verdict,
evaluate, approve and wait_final."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from helpers import make_keys
from policy_fakes import LimitPolicy
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode

from client.sdk import LedgerClient
from ledger.chain import ChainStore
from ledger.genesis import parse_genesis
from ledger.storage import MemoryStore
from node.api import build_app
from node.mempool import Mempool


class PolicyNode(StubNode):
    def __init__(self) -> None:
        super().__init__()
        self.approvers = make_keys(2, 4_000_000)
        doc = dict(self.genesis.raw)
        doc["submitters"] = list(doc["submitters"]) + [
            {"name": f"treasurer{i}", "pubkey": k.public_key.hex(),
             "roles": ["submit", "treasury"]} for i, k in enumerate(self.approvers)]
        self.genesis = parse_genesis(doc)
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.chain.set_policy_engine(LimitPolicy())
        self.clock = int(time.time() * 1000)  # the SDK stamps records with its clock
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=1000,
                               clock=lambda: self.clock)


def _key_file(tmp: Path, name: str, key: Any) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({"name": name, "pubkey": key.public_key.hex(),
                                "seed": key.seed.hex()}))
    path.chmod(0o600)
    return path


@pytest.fixture
async def served() -> AsyncIterator[tuple[PolicyNode, str]]:
    node = PolicyNode()
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    server = TestServer(app)
    await server.start_server()
    try:
        yield node, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_submit_evaluate_approve_and_wait_final(served: tuple[PolicyNode, str],
                                                      tmp_path: Path) -> None:
    node, url = served

    async def commit_then_wait(delay: float) -> None:  # the node's consensus, on demand
        if len(node.mempool):
            node.commit()
        await asyncio.sleep(0)

    def client(name: str, key: Any) -> LedgerClient:
        return LedgerClient([url], _key_file(tmp_path, name, key), chain="test",
                            sleep=commit_then_wait, long_poll=0, nonce_file=tmp_path / f"{name}.nonce")

    async with client("payer", node.submitter) as payer, \
            client("t0", node.approvers[0]) as t0, client("t1", node.approvers[1]) as t1:
        ahead = await payer.evaluate(kind="payment", body={"amount": 50_000})
        assert (ahead["outcome"], ahead["status"]) == ("approve", "held")
        small, verdict = await payer.submit_for_verdict(kind="payment", body={"amount": 5})
        assert verdict["status"] == "allowed" and verdict["policy_version"] == 1
        _, denied = await payer.submit_for_verdict(kind="blocked", body={})
        assert (denied["status"], denied["rule"]) == ("denied", "no_blocked")
        big, held = await payer.submit_for_verdict(kind="payment", body={"amount": 50_000})
        assert held["status"] == "held" and held["approvals"] == 2
        assert (await payer.wait_final(small))["status"] == "allowed"
        own = await payer.approve(big)  # the submitter cannot approve its own record
        assert (await payer.verdict(own))["reason"] == "self_approval"
        await t0.approve(big)
        assert (await payer.verdict(big))["status"] == "held"
        await t1.approve(big)
        final = await payer.wait_final(big)
        assert final["status"] == "approved" and final["final_height"] >= 1
