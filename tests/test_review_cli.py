"""``ledger-review`` (client/review/cli.py) against an in-process node with
a policy: list, show, approve, reject and escalate, and their exit codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner, Result
from test_node_api import MAX_BODY, MAX_ENVELOPES
from test_sdk_reviews import ReviewNode, _key_file

from client.review.cli import main
from client.sdk import LedgerClient
from node.api import build_app


@pytest.fixture
async def served() -> AsyncIterator[tuple[ReviewNode, str]]:
    node = ReviewNode()
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    server = TestServer(app)
    await server.start_server()

    async def consensus() -> None:  # commits whatever the mempool holds
        while True:
            if len(node.mempool):
                node.clock += 1000
                node.commit()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(consensus())
    try:
        yield node, str(server.make_url("")).rstrip("/")
    finally:
        task.cancel()
        await server.close()


async def _cli(args: list[str]) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, args)


async def test_list_show_and_decisions(served: tuple[ReviewNode, str], tmp_path: Path) -> None:
    node, url = served
    keys = {name: _key_file(tmp_path, name, key) for name, key in node.keys.items()}
    payer_key = _key_file(tmp_path, "payer", node.submitter)
    async with LedgerClient([url], payer_key, chain="test") as payer, \
            LedgerClient([url], keys["monitor"], chain="test") as mon:
        flagged, _ = await payer.submit_for_verdict(kind="flagged", body={"amount": 7,
                                                                         "currency": "EUR"})
        big, _ = await payer.submit_for_verdict(kind="payment", body={"amount": 50_000})
        alert = await mon.submit(kind="risk.alert", parents=[flagged], body={
            "score": 800_000, "reasons": [{"feature": "amount", "points": 800_000}],
            "detector": "test", "version": "1"})
        await mon.wait_committed(alert)

    def opts(who: str) -> list[str]:
        return ["--key", str(keys[who]), "--node", url]

    listed = await _cli(["list", *opts("ra"), "--json"])
    assert listed.exit_code == 0, listed.output
    doc: Any = json.loads(listed.output)
    assert [r["record"] for r in doc["reviews"]] == [flagged, big] and doc["open"] == 2
    table = await _cli(["list", *opts("ra"), "--limit", "1"])
    assert table.exit_code == 0 and flagged[:16] in table.output and "more: --after" in table.output
    every = await _cli(["list", *opts("ra"), "--limit", "1", "--all", "--json"])
    assert len(json.loads(every.output)["reviews"]) == 2
    shown = await _cli(["show", flagged, *opts("ra")])
    assert shown.exit_code == 0 and "alert " + alert[:16] in shown.output
    assert "80.0%" in shown.output and "review 0/1" in shown.output

    escalated = await _cli(["escalate", flagged, "--note", "new device", *opts("ra"), "--json"])
    assert escalated.exit_code == 0, escalated.output
    esc = json.loads(escalated.output)
    assert esc["counted"] and esc["status"] == "review" and esc["rests_on"] == [alert]
    again = await _cli(["approve", flagged, *opts("ra")])
    assert again.exit_code == 1 and "NOT COUNTED (repeat_approval)" in again.output
    one = await _cli(["approve", flagged, *opts("rb")])
    assert one.exit_code == 0 and "COUNTED approve" in one.output and "is review" in one.output
    two = await _cli(["approve", flagged, *opts("rc"), "--json"])
    assert two.exit_code == 0 and json.loads(two.output)["status"] == "approved"
    rejected = await _cli(["reject", big, "--note", "mule", *opts("rb"), "--no-alerts"])
    assert rejected.exit_code == 0 and "is rejected" in rejected.output
    late = await _cli(["reject", big, *opts("rc")])
    assert late.exit_code == 1 and "not_held" in late.output

    decided = await _cli(["list", "--state", "decided", *opts("ra"), "--json"])
    assert sorted(r["record"] for r in json.loads(decided.output)["reviews"]) == \
        sorted([flagged, big])
    case = await _cli(["show", flagged, *opts("ra"), "--json"])
    decisions = [(d["decision"], d["counted"]) for d in json.loads(case.output)["decisions"]]
    assert decisions == [("escalate", True), ("approve", False), ("approve", True),
                         ("approve", True)]
    missing = await _cli(["show", "00" * 32, *opts("ra")])
    assert missing.exit_code == 1 and "NOT FOUND" in missing.output
    nobody = await _cli(["list", "--key", str(keys["ra"]), "--node", "http://127.0.0.1:9"])
    assert nobody.exit_code == 2
    long_note = await _cli(["approve", flagged, "--note", "x" * 257, *opts("ra")])
    assert long_note.exit_code == 2
