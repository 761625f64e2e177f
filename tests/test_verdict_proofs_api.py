"""Verdict proofs through the HTTP API (PROTOCOL §6, §10.11): an in-process
node with a policy serves, at GET /v1/records/{id}/proof and in each bundle
of GET /v1/records/{id}/trace, bundles whose verdict proof the SDK's offline
verifier accepts - a held record's approval transition among them - and
bundles against a later block (?height=) without one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_sdk_verdicts import _key_file, served  # noqa: F401 (fixture)

from client.sdk import LedgerClient


async def test_the_proof_and_trace_routes_carry_verified_verdicts(
        served: Any, tmp_path: Path) -> None:  # noqa: F811
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
        denied, _ = await payer.submit_for_verdict(kind="blocked", body={})
        big, _ = await payer.submit_for_verdict(kind="payment", body={"amount": 50_000})
        found = payer.verify_bundle(await payer.proof(denied), node.genesis).verdict
        assert found is not None and (found.verdict.outcome.value, found.status.value,
                                      found.verdict.rule) == ("deny", "denied", "no_blocked")
        held = payer.verify_bundle(await payer.proof(big), node.genesis).verdict
        assert held is not None and held.status.value == "held" and held.transition is None
        await t0.approve(big)
        await t1.approve(big)
        assert (await payer.wait_final(big))["status"] == "approved"
        bundle = await payer.proof(big)
        assert "transition" in bundle["verdict"]
        final = payer.verify_bundle(bundle, node.genesis).verdict
        assert final is not None and final.status.value == "approved"
        assert final.transition is not None and len(final.transition.approvals) == 2
        later = await payer.proof(big, height=node.chain.height)
        assert "verdict" not in later
        assert payer.verify_bundle(later, node.genesis).verdict is None
        trace = await payer.trace(big)
        assert all("verdict" in b for b in trace["bundles"])
        assert payer.verify_bundle(trace["bundles"][0], node.genesis).verdict == final


async def test_ledger_audit_trace_shows_each_hops_verified_verdict(
        served: Any, tmp_path: Path) -> None:  # noqa: F811
    import json

    from click.testing import CliRunner

    from client.audit.cli import main

    node, url = served

    async def commit_then_wait(delay: float) -> None:
        if len(node.mempool):
            node.commit()
        await asyncio.sleep(0)

    async with LedgerClient([url], _key_file(tmp_path, "payer", node.submitter), chain="test",
                            sleep=commit_then_wait, long_poll=0, nonce_file=tmp_path / "n") as payer:
        denied, _ = await payer.submit_for_verdict(kind="blocked", body={})
        child, _ = await payer.submit_for_verdict(kind="payment", body={"amount": 5},
                                                  parents=[denied])
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(node.genesis.raw))
    args = ["trace", child, "--node", url, "--genesis", str(genesis)]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 0, result.output
    assert "; verdict deny (rule no_blocked, blocked_kind, policy version 1), denied" \
        in result.output
    assert "; verdict allow (rule default, policy version 1), allowed" in result.output
    result = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--json"])
    hops = {h["id"]: h["verdict"] for h in json.loads(result.output)["hops"]}
    assert (hops[denied]["outcome"], hops[denied]["status"], hops[denied]["proven_by"]) == (
        "deny", "denied", "verdict_root")
