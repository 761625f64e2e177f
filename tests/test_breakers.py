"""Circuit breakers (PROTOCOL §12.3, ledger/breakers.py): k alerts from at
least m distinct monitors within a window of block time trip a scope's
breaker; it is open for the cooldown, then half-open (the next alert opens
it again); a close record closes it.  Property: the state is a function of
the committed blocks alone - replaying them, at once or resumed after any
block, gives the same breakers and transitions."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.breakers import Breakers, breakers_from_bytes
from ledger.records import Record, make_record

CHAIN = "test"
MONITORS = [bytes([0xA0 + i]) * 32 for i in range(3)]
SHOP = b"\x01" * 32
REVIEWER = b"\x02" * 32
PARAMS = {"breaker_alerts": 3, "breaker_monitors": 2, "breaker_window_ms": 10_000,
          "breaker_cooldown_ms": 60_000, "breaker_min_score": 500_000}

_nonce = [0]


def _rec(submitter: bytes, kind: str, body: dict[str, Any], parents: tuple[bytes, ...] = (),
         origin: dict[str, str] | None = None) -> Record:
    _nonce[0] += 1
    return make_record(chain=CHAIN, submitter=submitter, nonce=_nonce[0], ts=0, kind=kind,
                       origin=origin or {}, body=body, parents=list(parents))


def payment(account: str, country: str = "DE") -> Record:
    return _rec(SHOP, "payment", {"amount": 1}, origin={"account": account, "system": "shop",
                                                        "country": country})


def alert(monitor: int, flagged: Record, score: int = 900_000) -> Record:
    return _rec(MONITORS[monitor], "risk.alert",
                {"score": score, "reasons": [{"feature": "x", "points": 1}],
                 "detector": "builtin", "version": "1"}, parents=(flagged.id,))


def close(scope: str, value: str) -> Record:
    return _rec(REVIEWER, "risk.breaker.close", {"scope": scope, "value": value})


class Chain:
    def __init__(self, params: dict[str, int] = PARAMS) -> None:
        self.records: dict[bytes, Record] = {}
        self.blocks: list[tuple[int, list[Record]]] = []
        self.params = params

    def block(self, time_ms: int, *records: Record) -> None:
        for r in records:
            self.records[r.id] = r
        self.blocks.append((time_ms, list(records)))

    def replay(self, upto: int | None = None, into: Breakers | None = None) -> Breakers:
        b = into or Breakers()
        for height in range(b.height + 1, (upto or len(self.blocks)) + 1):
            time_ms, records = self.blocks[height - 1]
            b.apply_block(height, time_ms, records, self.params, self.records.get)
        return b


def test_k_alerts_from_m_monitors_trip_then_half_open_then_close() -> None:
    c = Chain()
    p = payment("a1")
    c.block(1_000, p, alert(0, p), alert(0, p))
    b = c.replay()
    assert not b.is_open("account", "a1")  # 2 alerts, one monitor
    a3 = alert(1, p)
    c.block(2_000, a3)
    b = c.replay()
    assert b.is_open("account", "a1") and b.is_open("country", "DE")
    assert b.open_for(payment("a1", "FR"), 2_000) == [
        ("submitter", SHOP.hex()), ("kind", "payment"), ("account", "a1"), ("system", "shop")]
    opened = [t for t in b.transitions if t.scope == "account"]
    assert len(opened) == 1 and opened[0].to == "open" and a3.id in opened[0].records
    assert len(opened[0].records) == 3
    # Half-open after the cooldown: not open, a further alert re-opens it.
    assert b.breakers[("account", "a1")].state(62_000) == "half_open"
    assert not b.is_open("account", "a1", 62_000)
    c.block(62_000, payment("b2"))
    assert not c.replay().is_open("account", "a1")
    again = alert(2, p)
    c.block(63_000, again)
    b = c.replay()
    assert b.is_open("account", "a1")
    retrip = [t for t in b.transitions if t.scope == "account"][-1]
    assert retrip.to == "open" and retrip.records == (again.id,) and retrip.height == 4
    # A review closes it; closing a closed breaker changes nothing.
    shut = close("account", "a1")
    c.block(64_000, shut, close("account", "zz"))
    b = c.replay()
    assert not b.is_open("account", "a1")
    assert b.transitions[-1].to == "closed" and b.transitions[-1].records == (shut.id,)
    doc = b.to_json()
    assert all(x["scope"] != "account" for x in doc["breakers"])


def test_one_rogue_monitor_cannot_trip_when_m_is_two() -> None:
    c = Chain()
    p = payment("victim")
    c.block(1_000, p, *[alert(0, p) for _ in range(10)])
    assert not c.replay().is_open("account", "victim")


def test_window_low_scores_and_no_rule() -> None:
    c = Chain()
    p = payment("a1")
    c.block(1_000, p, alert(0, p), alert(1, p))
    c.block(20_000, alert(1, p))  # the first two left the 10 s window
    assert not c.replay().is_open("account", "a1")
    c.block(21_000, alert(0, p, score=100_000))  # below breaker_min_score
    assert not c.replay().is_open("account", "a1")
    off = Chain({})
    q = payment("a1")
    off.block(1_000, q, *[alert(i % 3, q) for i in range(9)])
    assert off.replay().to_json()["breakers"] == []


def test_a_monitor_flood_is_not_counted() -> None:
    flood = dict(PARAMS, breaker_monitors=1, breaker_alerts=3, breaker_monitor_alerts=2)
    c = Chain(flood)
    p = payment("a1")
    c.block(1_000, p, *[alert(0, p) for _ in range(5)])
    b = c.replay()
    assert not b.is_open("account", "a1") and b.flooded == 3
    assert b.monitor_alerts(MONITORS[0], 1_000, 10_000) == 2
    assert b.to_json()["flooded_alerts"] == 3
    c.block(2_000, alert(1, p))  # a second monitor's alert is the third counted
    assert c.replay().is_open("account", "a1")
    # Once the window has passed, the first monitor's alerts count again.
    q = payment("a2")
    c.block(20_000, q, alert(0, q), alert(0, q), alert(0, q))
    b = c.replay()
    assert b.flooded == 4 and not b.is_open("account", "a2")
    assert [len(x.recent) for k, x in b.breakers.items() if k == ("account", "a2")] == [2]
    # 0 (the default) is no limit.
    c = Chain(dict(flood, breaker_monitor_alerts=0))
    c.block(1_000, p, *[alert(0, p) for _ in range(3)])
    assert c.replay().is_open("account", "a1") and c.replay().flooded == 0
    # A limit set later (gov.params.set) counts the alerts of the window before it.
    b = Breakers()
    records = {p.id: p}
    no_limit = dict(flood, breaker_alerts=9, breaker_monitor_alerts=0)
    b.apply_block(1, 1_000, [p, alert(0, p), alert(0, p)], no_limit, records.get)
    b.apply_block(2, 2_000, [alert(0, p), alert(1, p)],
                  dict(no_limit, breaker_monitor_alerts=2), records.get)
    assert b.flooded == 1 and b.monitor_alerts(MONITORS[1], 2_000, 10_000) == 1


def test_breaker_scopes_chooses_what_trips() -> None:
    c = Chain(dict(PARAMS, breaker_scopes=1))  # accounts only
    p = payment("a1")
    c.block(1_000, p, alert(0, p), alert(1, p), alert(2, p))
    b = c.replay()
    assert b.open_for(payment("a1"), 1_000) == [("account", "a1")]
    assert b.open_for(payment("a2"), 1_000) == []  # same submitter, kind, system, country
    c = Chain(dict(PARAMS, breaker_scopes=8 | 16))  # kind and country
    c.block(1_000, p, alert(0, p), alert(1, p), alert(2, p))
    assert sorted(k for k, x in c.replay().breakers.items() if x.opened_at >= 0) == [
        ("country", "DE"), ("kind", "payment")]


def _events() -> Any:
    accounts = st.sampled_from(["a1", "a2", "a3"])
    step = st.one_of(
        st.tuples(st.just("pay"), accounts, st.integers(0, 2)),
        st.tuples(st.just("alert"), st.integers(0, 2), st.integers(0, 1_000_000)),
        st.tuples(st.just("close"), accounts, st.just(0)),
    )
    return st.lists(st.tuples(st.integers(0, 30_000), st.lists(step, min_size=1, max_size=6)),
                    min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(_events(), st.data(), st.integers(0, 3))
def test_state_is_a_function_of_the_committed_blocks(events: Any, data: Any,
                                                     flood_limit: int) -> None:
    c = Chain(dict(PARAMS, breaker_monitor_alerts=flood_limit))
    payments: list[Record] = [payment("a0")]
    c.block(0, payments[0])
    now = 0
    for gap, steps in events:
        now += gap
        block: list[Record] = []
        for what, x, y in steps:
            if what == "pay":
                payments.append(payment(x, ["DE", "FR", "NL"][y]))
                block.append(payments[-1])
            elif what == "alert":
                block.append(alert(x, payments[y * len(payments) // 1_000_001], score=y))
            else:
                block.append(close("account", x))
        c.block(now, *block)
    whole = c.replay()
    # Another node, replaying the same blocks, and one restarted after any block.
    assert c.replay().to_json() == whole.to_json()
    cut = data.draw(st.integers(1, len(c.blocks)))
    resumed = c.replay(into=c.replay(cut))
    assert resumed.to_json() == whole.to_json()
    # ...or restarted from the state it persisted after that block.
    persisted = breakers_from_bytes(c.replay(cut).to_bytes())
    assert persisted.to_bytes() == c.replay(cut).to_bytes()
    assert c.replay(into=persisted).to_bytes() == whole.to_bytes()
    # Every transition names records of the chain committed at or before it.
    heights = {r.id: h + 1 for h, (_, rs) in enumerate(c.blocks) for r in rs}
    for t in whole.transitions:
        assert all(heights[r] <= t.height for r in t.records)


def test_a_damaged_persisted_state_is_refused() -> None:
    import pytest

    from ledger.errors import StorageCorruption
    for junk in (b"", b"nonsense", Breakers().to_bytes()[:-1]):
        with pytest.raises(StorageCorruption):
            breakers_from_bytes(junk)
