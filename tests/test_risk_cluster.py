"""The live half of issue 26 on a real 4-node cluster with request
authentication: two monitors of different identities follow a node's block
stream (verifying every block), score with the built-in detector, submit
``risk.alert`` records for what they flag; the validators commit the alerts
and every node derives the same breakers: the account of the injected
anomaly (refunds without a parent) trips (2 alerts from 2 monitors), and a
reviewer's ``risk.breaker.close`` closes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from client.sdk import LedgerClient
from harness.localnet import LocalCluster
from ledger.keys import load_key_file
from ledger.reqsig import RequestSigner
from monitor.alerts import AlertSubmitter
from monitor.builtin import BuiltinDetector
from monitor.follow import Follower, follow

pytestmark = pytest.mark.cluster

RULE = {"breaker_alerts": 2, "breaker_monitors": 2, "breaker_window_ms": 3_600_000,
        "breaker_cooldown_ms": 3_600_000, "breaker_min_score": 500_000}


async def _monitor(cluster: LocalCluster, name: str, node: int, stop_at: int) -> Follower:
    key = cluster.dir / "keys" / f"{name}.json"
    follower = Follower(cluster.genesis, BuiltinDetector())
    async with LedgerClient([cluster.url(node)], key_file=key) as lc, \
            aiohttp.ClientSession() as session:
        submitter = AlertSubmitter(lc, "builtin", follower.metrics)
        await asyncio.wait_for(
            follow(follower, cluster.url(node), submitter, session=session,
                   signer=RequestSigner(load_key_file(key).key), stop_at=stop_at), 60)
    return follower


async def test_monitors_alert_and_the_breaker_trips_on_every_node(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster", 4, auth=True, params=RULE,
                           submitters={"shop": ["read_own", "submit"], "mon_a": ["monitor", "submit"],
                                       "mon_b": ["monitor", "submit"],
                                       "reviewer": ["read_own", "review", "submit"]})
    try:
        everyone = await cluster.start_all()
        shop = cluster.dir / "keys" / "shop.json"
        async with LedgerClient([cluster.url(0)], key_file=shop) as lc:
            normal = [{"kind": "payment", "origin": {"account": f"acct{i % 5}", "system": "shop",
                                                     "country": "DE"},
                       "body": {"amount": 1_000 + i, "currency": "EUR",
                                "counterparty": f"m{i % 3}"}} for i in range(40)]
            await lc.submit_many(normal)
            # The injected anomaly: refunds that name no payment (80 points each).
            anomaly = await lc.submit(kind="refund", origin={"account": "mule", "system": "shop",
                                                             "country": "DE"},
                                      body={"amount": 90_000, "currency": "EUR"})
            await lc.wait_committed(anomaly)
            tip = (await lc.status())["height"]
        a, b = await asyncio.gather(_monitor(cluster, "mon_a", 1, tip),
                                    _monitor(cluster, "mon_b", 2, tip))
        assert a.height == b.height == tip and a.records >= 41
        assert a.metrics.alerts.labels(outcome="submitted")._value.get() >= 1
        assert b.metrics.alerts.labels(outcome="submitted")._value.get() >= 1

        async def breakers(i: int) -> dict[str, object]:
            status, doc = await cluster.get(i, "/v1/breakers")
            assert status == 200, doc
            return doc  # type: ignore[no-any-return]

        for _ in range(300):
            docs = [await breakers(i) for i in everyone]
            if all(any(x["scope"] == "account" and x["value"] == "mule"  # type: ignore[index]
                       for x in d["breakers"]) and d["behind"] == 0 for d in docs):  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.1)
        opened = [t for t in docs[0]["transitions"]  # type: ignore[attr-defined]
                  if t["scope"] == "account" and t["value"] == "mule"]
        assert opened and opened[0]["to"] == "open" and len(opened[0]["records"]) >= 2
        # Every node derived the same transitions from the same blocks.
        heights = {d["height"] for d in docs}
        if len(heights) == 1:
            assert all(d["transitions"] == docs[0]["transitions"] for d in docs)
        # Breakers are consensus state: the mule's next record is held for
        # review on every node, naming the breaker (verdict roots agree, or
        # the block would not have been certified).
        async with LedgerClient([cluster.url(0)], key_file=shop) as lc:
            held = await lc.submit(kind="payment", origin={"account": "mule"},
                                   body={"amount": 5, "currency": "EUR"})
            await lc.wait_committed(held)
        for i in everyone:
            for _ in range(300):
                status, rec = await cluster.get(i, f"/v1/records/{held}")
                if status == 200 and rec["status"] == "committed":
                    break
                await asyncio.sleep(0.1)
            verdict = rec["verdict"]
            assert verdict["outcome"] == "review" and verdict["status"] == "review"
            assert verdict["rule"].startswith("breaker:")
        # A validator killed and started again derives the breakers from its
        # blocks at start, so it keeps agreeing on verdicts (it commits the
        # blocks below; it would refuse them if it derived other breakers).
        cluster.kill(2)
        cluster.start(2)
        await cluster.wait_connected(everyone)
        async with LedgerClient([cluster.url(3)],
                                key_file=cluster.dir / "keys" / "reviewer.json") as lc:
            shut = await lc.submit(kind="risk.breaker.close",
                                   body={"scope": "account", "value": "mule"})
            await lc.wait_committed(shut)
        for _ in range(300):
            doc = await breakers(0)
            if not any(x["value"] == "mule" for x in doc["breakers"]):  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.1)
        assert doc["transitions"][-1]["records"] == [shut]  # type: ignore[index]
        await cluster.wait_committed([2], shut)
        for _ in range(300):
            restarted = await breakers(2)
            if restarted["height"] == doc["height"]:
                break
            await asyncio.sleep(0.1)
        assert restarted["transitions"] == doc["transitions"]
    finally:
        await cluster.stop_all()
