"""Review decisions on a real 4-node cluster with request authentication
(PROTOCOL §10.10): a monitor's alert trips an account's breaker, the
account's next payments go to review, one reviewer approves one through
``ledger-review`` and another rejects the other; every validator derives the
same final statuses, and the approved case - decision, alert, record - is
one ``ledger-audit trace`` that verifies offline, the breaker's trip included."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from client.audit.cli import main as audit_main
from client.review.cli import main as review_main
from client.sdk import LedgerClient
from harness.localnet import LocalCluster

pytestmark = pytest.mark.cluster

RULE = {"breaker_alerts": 1, "breaker_monitors": 1, "breaker_window_ms": 3_600_000,
        "breaker_cooldown_ms": 3_600_000, "breaker_min_score": 500_000}
ROLES = {"shop": ["read_own", "submit"], "mon": ["monitor", "read_own", "submit"],
         "ra": ["review", "submit"], "rb": ["review", "submit"]}
ORIGIN = {"account": "acct-7", "system": "shop", "country": "DE"}


def _alert(parent: str) -> dict[str, Any]:
    return {"kind": "risk.alert", "parents": [parent], "origin": {"system": "monitor"},
            "body": {"score": 900_000, "reasons": [{"feature": "amount", "points": 900_000}],
                     "detector": "test", "version": "1"}}


async def _cli(command: Any, args: list[str]) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, command, args)


async def test_reviewers_decide_breaker_reviews_on_every_node(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster", 4, auth=True, params=RULE, submitters=ROLES)
    keys = {name: cluster.dir / "keys" / f"{name}.json" for name in ROLES}
    try:
        everyone = await cluster.start_all()
        async with LedgerClient([cluster.url(0)], key_file=keys["shop"]) as shop, \
                LedgerClient([cluster.url(1)], key_file=keys["mon"]) as mon:
            first = await shop.submit(kind="payment", origin=ORIGIN,
                                      body={"amount": 90_000, "currency": "EUR"})
            await shop.wait_committed(first)
            trip = await mon.submit(**_alert(first))
            await mon.wait_committed(trip)
            # The breaker is open from the block after the alert's: both go to review.
            one, v1 = await shop.submit_for_verdict(kind="payment", origin=ORIGIN,
                                                    body={"amount": 5, "currency": "EUR"})
            two, v2 = await shop.submit_for_verdict(kind="payment", origin=ORIGIN,
                                                    body={"amount": 6, "currency": "EUR"})
            assert v1["status"] == v2["status"] == "review", (v1, v2)
            assert v1["rule"].startswith("breaker:")
            alert = await mon.submit(**_alert(one))
            await mon.wait_committed(alert)

        def opts(who: str, node: int) -> list[str]:
            return ["--key", str(keys[who]), "--node", cluster.url(node)]

        listed = await _cli(review_main, ["list", *opts("ra", 2), "--json"])
        assert listed.exit_code == 0, listed.output
        queue = json.loads(listed.output)
        assert [r["record"] for r in queue["reviews"]] == [one, two]
        assert [a["record"] for a in queue["reviews"][0]["alerts"]] == [alert]
        refused = await _cli(review_main, ["approve", one, *opts("shop", 2)])
        assert refused.exit_code == 2 and "forbidden_role" in refused.output
        approved = await _cli(review_main, ["approve", one, "--note", "known customer",
                                            *opts("ra", 2), "--json"])
        assert approved.exit_code == 0, approved.output
        decision = json.loads(approved.output)
        assert decision["status"] == "approved" and decision["rests_on"] == [alert]
        rejected = await _cli(review_main, ["reject", two, *opts("rb", 3), "--json"])
        assert rejected.exit_code == 0, rejected.output
        reject_id = json.loads(rejected.output)["decision"]
        await cluster.wait_committed(everyone, reject_id)
        finals = []
        for i in everyone:
            for _ in range(300):
                s1, r1 = await cluster.get(i, f"/v1/records/{one}")
                s2, r2 = await cluster.get(i, f"/v1/records/{two}")
                if s1 == s2 == 200 and r2["verdict"]["status"] == "rejected":
                    break
                await asyncio.sleep(0.1)
            finals.append((r1["verdict"]["status"], r1["verdict"]["final_height"],
                           r2["verdict"]["status"], r2["verdict"]["final_height"]))
        assert finals[0][0::2] == ("approved", "rejected") and len(set(finals)) == 1
        status, queue = await cluster.get(0, "/v1/reviews")
        assert status == 200 and queue["open"] == 0

        genesis = cluster.dir / "genesis.json"
        traced = await _cli(audit_main, ["trace", decision["decision"], "--genesis",
                                         str(genesis), "--node", cluster.url(1), "--key",
                                         str(cluster.harness_key), "--json"])
        assert traced.exit_code == 0, traced.output
        doc = json.loads(traced.output)
        hops = {h["id"]: h for h in doc["hops"]}
        # The whole case: the decision, the record, the alert on it, and the
        # breaker that sent it to review - its trip proven, with the alert
        # that tripped it and the record that alert flags.
        assert doc["valid"] and set(hops) == {decision["decision"], one, alert, trip, first}
        assert hops[decision["decision"]]["parents"] == [one, alert]
        (proven,) = doc["breakers"]
        assert (proven["record"], proven["scope"], proven["to"], proven["records"]) == \
            (one, "account", "open", [trip])
        assert proven["height"] == hops[trip]["height"] < hops[one]["height"]
    finally:
        await cluster.stop_all()
