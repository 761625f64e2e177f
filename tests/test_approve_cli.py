"""``ledger-admin approve ID`` against an in-process node (in its own thread,
committing what is pending every few milliseconds) whose policy holds large
payments for two treasury approvals."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner
from helpers import make_envelope
from test_node_api import MAX_BODY, MAX_ENVELOPES
from test_sdk_verdicts import PolicyNode, _key_file

from client.admin.cli import main
from node.api import build_app


@pytest.fixture
def served() -> Iterator[tuple[PolicyNode, str]]:
    node = PolicyNode()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    url: list[str] = []
    stop = asyncio.Event()

    async def serve() -> None:
        app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64,
                        max_envelopes=MAX_ENVELOPES, max_trace_depth=64, max_trace_nodes=1000)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url.append(f"http://127.0.0.1:{port}")
        ready.set()
        while not stop.is_set():
            if len(node.mempool):
                node.commit()
            await asyncio.sleep(0.01)
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield node, url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def test_approvers_approve_a_held_record(served: tuple[PolicyNode, str], tmp_path: Path) -> None:
    node, url = served
    big = make_envelope(node.submitter, "test", 1, body={"amount": 50_000}, ts=node.clock)
    asyncio.run(_submit(url, big, _key_file(tmp_path, "payer", node.submitter)))
    keys = [_key_file(tmp_path, f"t{i}", k) for i, k in enumerate(node.approvers)]
    runner = CliRunner()

    def approve(key: Path) -> Any:
        out = runner.invoke(main, ["approve", big.id.hex(), "--key", str(key), "--node", url,
                                   "--json"])
        return out.exit_code, json.loads(out.output.strip().splitlines()[-1])

    code, doc = approve(keys[0])
    assert code == 0 and doc["counted"] and doc["status"] == "held"
    code, doc = approve(keys[0])
    assert code == 1 and doc["reason"] == "repeat_approval"
    code, doc = approve(keys[1])
    assert code == 0 and doc["status"] == "approved"
    payer = _key_file(tmp_path, "payer2", node.submitter)
    code, doc = approve(payer)
    assert code == 1 and doc["reason"] == "not_held"


async def _submit(url: str, envelope: Any, key: Path) -> None:
    from client.sdk import LedgerClient

    async with LedgerClient([url], key) as client:
        (result,) = await client.submit_envelopes([envelope.envelope_bytes])
        assert "error" not in result, result
