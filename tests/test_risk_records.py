"""Alerts and risk tiers as records (PROTOCOL §12.2): the body and parent
rules of each kind, the role ``monitor``, judged at admission and by the
auditor's walk of committed blocks; the monitor's alert record passes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers import FIXED_TS, certify, make_envelope, make_keys
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode, call, submit

from ledger.audit import ChainAuditor
from ledger.chain import ChainStore
from ledger.errors import BadRiskRecord, ForbiddenRole, VerificationError
from ledger.genesis import parse_genesis
from ledger.records import make_record
from ledger.risk import check_body
from ledger.storage import MemoryStore
from monitor.alerts import alert_spec
from monitor.follow import Alert
from node.api import build_app
from node.breakers import BreakerTracker
from node.mempool import Mempool

GOOD_ALERT = {"score": 730_000, "reasons": [{"feature": "velocity", "points": 40}],
              "detector": "builtin", "version": "1"}
GOOD_TIER = {"tier": "high", "detector": "builtin", "version": "1"}
PARENT = b"\x11" * 32


def _record(kind: str, body: dict[str, Any], parents: tuple[bytes, ...] = (PARENT,),
            origin: dict[str, str] | None = None) -> Any:
    return make_record(chain="test", submitter=b"\x01" * 32, nonce=1, ts=FIXED_TS, kind=kind,
                       origin=origin if origin is not None else {"account": "a1"}, body=body,
                       parents=list(parents))


def test_good_alert_and_tier() -> None:
    check_body(_record("risk.alert", GOOD_ALERT))
    check_body(_record("risk.tier", GOOD_TIER, parents=()))


@pytest.mark.parametrize("kind, body, parents, origin", [
    ("risk.alert", dict(GOOD_ALERT, score=1_000_001), (PARENT,), None),
    ("risk.alert", dict(GOOD_ALERT, score=-1), (PARENT,), None),
    ("risk.alert", dict(GOOD_ALERT, reasons=[]), (PARENT,), None),
    ("risk.alert", dict(GOOD_ALERT, reasons=[{"feature": "x"}]), (PARENT,), None),
    ("risk.alert", dict(GOOD_ALERT, reasons=[{"feature": "", "points": 1}]), (PARENT,), None),
    ("risk.alert", dict(GOOD_ALERT, extra=1), (PARENT,), None),
    ("risk.alert", {k: v for k, v in GOOD_ALERT.items() if k != "detector"}, (PARENT,), None),
    ("risk.alert", dict(GOOD_ALERT, version=""), (PARENT,), None),
    ("risk.alert", GOOD_ALERT, (), None),
    ("risk.alert", GOOD_ALERT, (PARENT, b"\x22" * 32), None),
    ("risk.tier", dict(GOOD_TIER, tier="extreme"), (), None),
    ("risk.tier", GOOD_TIER, (), {"system": "x"}),
    ("risk.tier", GOOD_TIER, (PARENT, b"\x22" * 32), None),
    ("risk.other", GOOD_TIER, (), None),
])
def test_bad_risk_records(kind: str, body: dict[str, Any], parents: tuple[bytes, ...],
                          origin: dict[str, str] | None) -> None:
    with pytest.raises(BadRiskRecord):
        check_body(_record(kind, body, parents, origin))


def test_the_monitors_alert_record_passes() -> None:
    reasons = [{"feature": f"f{i}", "points": i, "value": 1.5, "baseline": None}
               for i in range(20)]
    spec = alert_spec(Alert(PARENT, 3, 0.61234567, reasons), "builtin")
    record = make_record(chain="test", submitter=b"\x01" * 32, nonce=1, ts=FIXED_TS, **spec)
    check_body(record)
    assert record.body["score"] == 612_346 and len(record.body["reasons"]) == 16
    assert record.body["reasons"][0] == {"feature": "f19", "points": 19}


class RiskNode(StubNode):
    """The API stub over a genesis with a monitor (roles monitor, submit)."""

    def __init__(self) -> None:
        super().__init__()
        self.monitor = make_keys(1, 4_000_000)[0]
        doc = dict(self.genesis.raw)
        doc["submitters"] = list(doc["submitters"]) + [
            {"name": "monitor", "pubkey": self.monitor.public_key.hex(),
             "roles": ["monitor", "submit"]}]
        self.genesis = parse_genesis(doc)
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=1000,
                               clock=lambda: self.clock)


@pytest.fixture
def node() -> RiskNode:
    return RiskNode()


@pytest.fixture
async def client(node: RiskNode) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_admission_of_alerts(client: TestClient[Any, Any], node: RiskNode) -> None:
    pay = make_envelope(node.submitter, "test", 1)
    assert (await submit(client, [pay]))[0]["status"] == "accepted"
    node.commit()
    alert = make_envelope(node.monitor, "test", 1, parents=[pay.id], kind="risk.alert",
                          body=GOOD_ALERT)
    not_a_monitor = make_envelope(node.submitter, "test", 2, parents=[pay.id],
                                  kind="risk.alert", body=GOOD_ALERT)
    unknown = make_envelope(node.monitor, "test", 2, parents=[b"\x33" * 32], kind="risk.alert",
                            body=GOOD_ALERT)
    malformed = make_envelope(node.monitor, "test", 3, parents=[pay.id], kind="risk.alert",
                              body=dict(GOOD_ALERT, score="high"))
    tier = make_envelope(node.monitor, "test", 4, kind="risk.tier", body=GOOD_TIER,
                         origin={"account": "a1"})
    results = await submit(client, [alert, not_a_monitor, unknown, malformed, tier])
    assert [r.get("status", r.get("error")) for r in results] == \
        ["accepted", "forbidden_role", "unknown_parent", "bad_risk_record", "accepted"]
    node.commit()
    assert node.chain.record_location(alert.id) is not None


def test_the_auditor_refuses_a_block_with_an_alert_by_a_non_monitor() -> None:
    node = RiskNode()
    pay = make_envelope(node.submitter, "test", 1)
    forged = make_envelope(node.submitter, "test", 2, parents=[pay.id], kind="risk.alert",
                           body=GOOD_ALERT)
    store = ChainStore(MemoryStore(), node.genesis)
    header = store.next_header([pay, forged], FIXED_TS + 1, 0)
    cert = certify(header, node.validator_keys, node.genesis)
    auditor = ChainAuditor(node.genesis)
    with pytest.raises(ForbiddenRole):
        auditor.check_block(header.header_bytes, cert, [pay.envelope_bytes, forged.envelope_bytes])
    assert isinstance(ForbiddenRole(""), VerificationError)


class BreakerNode(RiskNode):
    """Three monitors; breakers trip at 2 alerts from 2 monitors."""

    PARAMS = {"breaker_alerts": 2, "breaker_monitors": 2, "breaker_window_ms": 60_000,
              "breaker_cooldown_ms": 600_000}

    def __init__(self) -> None:
        super().__init__()
        self.monitors = [self.monitor] + make_keys(2, 4_100_000)
        self.reviewer = make_keys(1, 4_200_000)[0]
        doc = dict(self.genesis.raw)
        doc["submitters"] = list(doc["submitters"]) + [
            {"name": f"monitor{i}", "pubkey": k.public_key.hex(), "roles": ["monitor", "submit"]}
            for i, k in enumerate(self.monitors[1:], 1)] + [
            {"name": "reviewer", "pubkey": self.reviewer.public_key.hex(),
             "roles": ["review", "submit"]}]
        doc["params"] = dict(self.PARAMS)
        self.genesis = parse_genesis(doc)
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=1000,
                               clock=lambda: self.clock)
        self.notified: list[dict[str, Any]] = []
        self.breakers = BreakerTracker(self.chain, notify=self.notified.append)

    def breakers_doc(self) -> dict[str, Any]:
        return self.breakers.to_json()

    def commit(self) -> None:
        super().commit()
        self.breakers.committed(self.chain.height)


async def test_breakers_route_trip_and_close() -> None:
    node = BreakerNode()
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app)) as client:
        pay = make_envelope(node.submitter, "test", 1, origin={"account": "mule", "system": "shop"})
        await submit(client, [pay])
        node.commit()
        alerts = [make_envelope(m, "test", 1, parents=[pay.id], kind="risk.alert",
                                body=GOOD_ALERT) for m in node.monitors[:2]]
        assert [r["status"] for r in await submit(client, alerts)] == ["accepted"] * 2
        node.commit()
        # The breakers advance with the commit itself (consensus state).
        doc = await call(client, "GET", "/v1/breakers", "/v1/breakers", 200)
        assert doc["height"] == 2 and doc["behind"] == 0
        states = {(b["scope"], b["value"]): b["state"] for b in doc["breakers"]}
        assert states[("account", "mule")] == "open" and states[("system", "shop")] == "open"
        opened = [t for t in doc["transitions"] if t["scope"] == "account"]
        assert opened[0]["to"] == "open" and sorted(opened[0]["records"]) \
            == sorted(a.id.hex() for a in alerts)
        assert node.chain.breakers.is_open("account", "mule")
        # The next block's record in the scope gets review, naming the breaker.
        held = make_envelope(node.monitors[2], "test", 2, kind="transfer",
                             origin={"account": "mule"})
        free = make_envelope(node.monitors[2], "test", 3, kind="transfer",
                             origin={"account": "other"})
        assert [r["status"] for r in await submit(client, [held, free])] == ["accepted"] * 2
        node.commit()
        for env, outcome, rule in ((held, "review", "breaker:account:mule"), (free, "allow", "")):
            doc = await call(client, "GET", f"/v1/records/{env.id.hex()}", "/v1/records/{id}",
                             200)
            assert (doc["verdict"]["outcome"], doc["verdict"]["rule"]) == (outcome, rule)
        assert {"event": "breaker_open", "scope": "account", "value": "mule"}.items() \
            <= [n for n in node.notified if n["scope"] == "account"][0].items()
        shut = make_envelope(node.reviewer, "test", 1, kind="risk.breaker.close",
                             body={"scope": "account", "value": "mule"})
        by_monitor = make_envelope(node.monitors[2], "test", 1, kind="risk.breaker.close",
                                   body={"scope": "account", "value": "mule"})
        results = await submit(client, [shut, by_monitor])
        assert [r.get("status", r.get("error")) for r in results] == ["accepted", "forbidden_role"]
        node.commit()
        assert not node.chain.breakers.is_open("account", "mule")
        assert node.chain.breakers.is_open("system", "shop")
        doc = await call(client, "GET", "/v1/breakers", "/v1/breakers", 200)
        assert doc["transitions"][-1]["to"] == "closed" \
            and doc["transitions"][-1]["records"] == [shut.id.hex()]


class FloodNode(BreakerNode):
    """At most one alert per monitor counts in the 60 s window."""

    PARAMS = dict(BreakerNode.PARAMS, breaker_monitor_alerts=1)


async def test_a_flooding_monitors_alerts_are_refused_at_admission() -> None:
    node = FloodNode()
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app)) as client:
        pay = make_envelope(node.submitter, "test", 1, origin={"account": "a1"})
        await submit(client, [pay])
        node.commit()

        def alert(monitor: int, nonce: int) -> Any:
            return make_envelope(node.monitors[monitor], "test", nonce, parents=[pay.id],
                                 kind="risk.alert", body=GOOD_ALERT, ts=node.clock)
        # Counted from committed alerts: both pass admission, one counts.
        results = await submit(client, [alert(0, 1), alert(0, 2)])
        assert [r["status"] for r in results] == ["accepted"] * 2
        node.commit()
        assert node.chain.breakers.flooded == 1
        results = await submit(client, [alert(0, 3), alert(1, 1)])
        assert [r.get("status", r.get("error")) for r in results] == ["alert_flood", "accepted"]
        node.commit()
        doc = await call(client, "GET", "/v1/breakers", "/v1/breakers", 200)
        assert doc["flooded_alerts"] == 1
        assert any(b["scope"] == "account" and b["value"] == "a1" for b in doc["breakers"])
        # The window moves on with the tip's block time: the monitor may alert again.
        node.clock += 60_001
        await submit(client, [make_envelope(node.submitter, "test", 2, ts=node.clock)])
        node.commit()
        results = await submit(client, [alert(0, 4)])
        assert results[0].get("status", results[0].get("error")) == "accepted"
