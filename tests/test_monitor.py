"""The risk monitor's offline half (docs/monitor.md): fraudsim, the scoring
interface and its online property, malformed input, the built-in detector
on crafted cases, a small evaluation floor, and fraudsim's live feed
through the SDK against fake nodes."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from ledger.records import decode_envelope
from monitor.baselines import ZScoreDetector
from monitor.builtin import DAY, HOUR, MIN, BuiltinDetector
from monitor.cli import main as monitor_main
from monitor.evaluate import evaluate_stream
from monitor.events import Event, parse_line
from monitor.fraudsim import generate, simulate
from monitor.fraudsim.feed import feed
from monitor.fraudsim.typologies import TYPOLOGIES
from monitor.fraudsim.world import Tx
from monitor.score import Summary, score_lines
from sdk_fakes import FakeNode, key_file, serve

SMALL: dict[str, Any] = {"accounts": 150, "days": 14}


@pytest.fixture(scope="module")
def small_stream() -> Any:
    return generate(7, anomaly_rate=0.05, **SMALL)


def _raw(lines: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(line) for line in lines]


# -- fraudsim ----------------------------------------------------------------


def test_fraudsim_is_deterministic_per_seed(small_stream: Any) -> None:
    again = generate(7, anomaly_rate=0.05, **SMALL)
    assert again.lines == small_stream.lines
    assert again.labels == small_stream.labels
    other = generate(8, anomaly_rate=0.05, **SMALL)
    assert [line["id"] for line in other.lines] != [line["id"] for line in small_stream.lines]


def test_fraudsim_labels_every_typology_and_keeps_lineage(small_stream: Any) -> None:
    counts = Counter(small_stream.labels.values())
    assert set(TYPOLOGIES) <= set(counts), counts
    assert 0.04 <= 1 - counts["normal"] / len(small_stream.lines) <= 0.08
    seen: set[str] = set()
    kinds = Counter()
    for line in small_stream.lines:
        record = line["record"]
        kinds[record["kind"]] += 1
        assert isinstance(record["body"]["amount"], int)
        for parent in record["parents"]:  # parents come first, except a refund of nothing
            assert parent in seen or small_stream.labels[line["id"]] == "refund_abuse"
        seen.add(line["id"])
    assert set(kinds) == {"payment", "refund", "settlement", "transfer", "payout"}


def test_fraudsim_default_anomaly_rate_is_one_percent() -> None:
    txs = simulate(3, **SMALL)
    share = sum(tx.label != "normal" for tx in txs) / len(txs)
    assert 0.008 <= share <= 0.03


# -- the scoring interface ---------------------------------------------------


def test_a_records_score_does_not_change_when_lines_are_appended(small_stream: Any) -> None:
    raw = _raw(small_stream.lines)
    head = list(score_lines(raw[:3000], BuiltinDetector()))
    full = list(score_lines(raw, BuiltinDetector()))
    assert full[:3000] == head
    assert any(r["flag"] for r in head)


def test_malformed_lines_are_named_skipped_and_counted(tmp_path: Path, small_stream: Any) -> None:
    good = _raw(small_stream.lines[:50])
    bad = [b"not json", b"[1, 2]", b'{"id": "x", "height": 1, "time": 5}',
           b'{"id": "y", "height": -1, "time": 5, "record": {"kind": "payment"}}',
           b'{"id": "z", "height": 1, "time": 5, "record": {"kind": "payment", "parents": "ab"}}', b""]
    lines = good[:10] + bad + good[10:]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(monitor_main, ["score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    scores = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [s["id"] for s in scores] == [line["id"] for line in small_stream.lines[:50]]
    assert set(scores[0]) == {"id", "score", "flag", "reasons"}
    for number in range(11, 17):
        assert f"line {number}: malformed, skipped" in result.stderr
    assert "50 scored" in result.stderr and "6 malformed (skipped)" in result.stderr


def test_malformed_lines_counted_by_the_loop() -> None:
    summary = Summary()
    out = list(score_lines([b"{", b'{"id": 1}'], BuiltinDetector(), summary=summary))
    assert out == [] and summary.malformed == 2 and [n for n, _ in summary.malformed_lines] == [1, 2]


# -- the built-in detector on crafted cases ----------------------------------

T0 = 1_767_571_200_000


def _ev(n: int, t: int, kind: str = "payment", *, account: str = "alice", country: str = "DE",
        device: str = "phone-1", channel: str = "app", amount: int = 1000, counterparty: str = "cafe",
        parents: tuple[str, ...] = (), mcc: str | None = "coffee") -> Event:
    return Event(id=f"r{n}", height=n, time=T0 + t, kind=kind, submitter="s", account=account, country=country,
                 system="pos", channel=channel, device=device, amount=amount, currency="EUR",
                 counterparty=counterparty, merchant_category=mcc, parents=parents)


def _habit(det: BuiltinDetector) -> int:
    """Alice's habit: coffee and groceries, twice a day for 20 days, at home."""
    n = 0
    for day in range(20):
        for hour, shop, amount in ((9, "cafe", 450 + day % 3 * 10), (18, "grocer", 2500 + day % 5 * 40)):
            n += 1
            ev = _ev(n, day * DAY + hour * HOUR, counterparty=shop, amount=amount,
                     mcc="coffee" if shop == "cafe" else "grocery")
            det.score(ev)
            det.learn(ev)
    return n


def test_a_normal_habit_is_not_flagged() -> None:
    det = BuiltinDetector()
    n = _habit(det)
    score, reasons = det.score(_ev(n + 1, 20 * DAY + 9 * HOUR, amount=460))
    assert score < 0.2, reasons


def test_a_velocity_burst_is_flagged() -> None:
    det = BuiltinDetector()
    n = _habit(det)
    scores = []
    for i in range(10):
        ev = _ev(n + 1 + i, 20 * DAY + 14 * HOUR + i * 30_000, counterparty=f"shop-{i}", amount=900, mcc="digital")
        score, reasons = det.score(ev)
        det.learn(ev)
        scores.append((score, {r["feature"] for r in reasons}))
    assert all(s >= 0.5 for s, _ in scores[3:]), scores
    assert "velocity" in scores[-1][1]


def test_an_account_takeover_is_flagged() -> None:
    det = BuiltinDetector()
    n = _habit(det)
    login = _ev(n + 1, 20 * DAY + 3 * HOUR, country="BR", device="dev-x", amount=300)
    score, reasons = det.score(login)
    det.learn(login)
    assert score >= 0.5 and {"new_country", "new_device"} <= {r["feature"] for r in reasons}
    payouts = []
    for i in range(3):
        payout = _ev(n + 2 + i, 20 * DAY + 3 * HOUR + (5 + 10 * i) * MIN, "payout", country="BR", device="dev-x",
                     amount=60_000 - 20_000 * i, counterparty="bank-x", mcc=None)
        score, reasons = det.score(payout)
        det.learn(payout)
        payouts.append((score, {r["feature"]: r["points"] for r in reasons}))
    # each payout from the country and device that were both new today, whatever its amount
    assert all(score >= 0.5 for score, _ in payouts), payouts
    assert all(p["money_out_after_novelty"] == 35 and p["money_out_from_new_session"] == 40
               for _, p in payouts), payouts
    assert not any("unknown_payee" in p for _, p in payouts)  # payouts leave the ledger: not counted


def test_a_payout_after_travel_is_not_a_new_session() -> None:
    det = BuiltinDetector()
    n = _habit(det)
    abroad = _ev(n + 1, 20 * DAY + 9 * HOUR, country="PT", amount=460)  # the usual phone, another country
    det.score(abroad)
    det.learn(abroad)
    payout = _ev(n + 2, 20 * DAY + 12 * HOUR, "payout", country="PT", amount=2_000, counterparty="bank-alice",
                 mcc=None)
    features = {r["feature"] for r in det.score(payout)[1]}
    assert "money_out_after_novelty" in features and "money_out_from_new_session" not in features


def test_a_takeover_of_a_young_account_is_flagged() -> None:
    det = BuiltinDetector()
    for i in range(2):  # two records so far: too few for a lone new country or device
        ev = _ev(i + 1, (5 + i) * DAY + 9 * HOUR, amount=450)
        det.score(ev)
        det.learn(ev)
    travel = _ev(3, 7 * DAY + 9 * HOUR, country="PT", amount=450)
    assert not det.score(travel)[1]
    login = _ev(4, 7 * DAY + 9 * HOUR, "payout", country="BR", device="dev-x", amount=40_000,
                counterparty="bank-x", mcc=None)
    score, reasons = det.score(login)
    det.learn(login)
    assert score >= 0.5 and "new_country_and_device" in {r["feature"] for r in reasons}, reasons
    again = _ev(5, 7 * DAY + 9 * HOUR + 20 * MIN, "payout", country="BR", device="dev-x", amount=30_000,
                counterparty="bank-x", mcc=None)
    score, reasons = det.score(again)
    assert score >= 0.5 and "money_out_from_new_session" in {r["feature"] for r in reasons}, reasons


def test_refund_abuse_is_flagged_and_a_fair_refund_is_not() -> None:
    det = BuiltinDetector()
    n = _habit(det)
    fair = _ev(n + 1, 20 * DAY + 10 * HOUR, "refund", amount=2500, counterparty="grocer", parents=("r2",))
    assert det.score(fair)[0] < 0.5
    det.learn(fair)
    paid = det.records["r4"].amount
    over = _ev(n + 2, 20 * DAY + 12 * HOUR, "refund", amount=paid * 3, counterparty="grocer", parents=("r4",))
    score, reasons = det.score(over)
    assert score >= 0.5 and reasons[0]["feature"] == "refund_exceeds_payment", reasons
    nothing = _ev(n + 3, 20 * DAY + 13 * HOUR, "refund", amount=5000, counterparty="grocer")
    score, reasons = det.score(nothing)
    assert score >= 0.5 and "refund_without_parent" in {r["feature"] for r in reasons}


def test_a_late_refund_and_a_second_refund_in_a_day_add_up() -> None:
    det = BuiltinDetector()
    n = _habit(det)  # r{2k} is day k-1's grocery payment at 18:00
    recent = _ev(n + 1, 20 * DAY + 10 * HOUR, "refund", amount=2500, counterparty="grocer", parents=(f"r{n}",))
    score, reasons = det.score(recent)
    assert score < 0.2 and not reasons, reasons  # a refund of yesterday's payment, the day's first
    det.learn(recent)
    old = _ev(n + 2, 20 * DAY + 11 * HOUR, "refund", amount=2500, counterparty="grocer", parents=("r4",))
    score, reasons = det.score(old)
    points = {r["feature"]: r["points"] for r in reasons}
    # a refund of a payment 18 days old, and the account's second refund today
    assert points == {"late_refund": 30, "refund_velocity": 35}, reasons
    assert score >= 0.5


def test_money_received_and_sent_on_naming_it_is_flagged() -> None:
    det = BuiltinDetector()
    n = _habit(det)
    incoming = _ev(n + 1, 20 * DAY + 10 * HOUR, "transfer", account="bob", amount=90_000,
                   counterparty="alice", mcc=None)
    det.score(incoming)
    det.learn(incoming)
    onward = _ev(n + 2, 20 * DAY + 10 * HOUR + 3 * MIN, "transfer", amount=9_000, counterparty="acct-r1",
                 parents=(f"r{n + 1}",), mcc=None)
    points = {r["feature"]: r["points"] for r in det.score(onward)[1]}
    assert points["forwards_received"] == 50, points
    # a day later it is no longer money just received
    later = _ev(n + 3, 21 * DAY + 11 * HOUR, "transfer", amount=9_000, counterparty="acct-r2",
                parents=(f"r{n + 1}",), mcc=None)
    assert "forwards_received" not in {r["feature"] for r in det.score(later)[1]}


def test_transfers_just_under_a_threshold_to_a_payee_first_paid_today() -> None:
    det = BuiltinDetector()
    n = _habit(det)
    parts = []
    for i in range(3):
        ev = _ev(n + 1 + i, 20 * DAY + (10 + 2 * i) * HOUR, "transfer", amount=9_700 + 50 * i,
                 counterparty="acct-s1", mcc=None)
        score, reasons = det.score(ev)
        det.learn(ev)
        parts.append((score, {r["feature"]: r["points"] for r in reasons}))
    # the first: 8, +10 (far above the median, which the 9,700 then lifts to
    # 2,5xx), +40 (to an account the ledger has never seen); then +40 per
    # earlier one today (up to 80) and +35 (the same payee)
    assert parts[0][1]["just_under_threshold"] == 8 + 10 + 40, parts
    assert parts[0][1]["unknown_payee"] == 20, parts
    assert parts[1][1]["just_under_threshold"] == 8 + 40 + 35, parts
    assert parts[2][1]["just_under_threshold"] == 8 + 80 + 35, parts
    assert all(score >= 0.5 for score, _ in parts), parts


def test_near_threshold_repeats_to_a_known_payee_and_shop_prices() -> None:
    det = BuiltinDetector()
    n = _habit(det)
    bob = _ev(n + 1, 15 * DAY, account="bob", amount=500)  # bob has records: not an unknown payee
    det.learn(bob)
    old = _ev(n + 2, 18 * DAY, "transfer", amount=1_000, counterparty="bob", mcc=None)  # paid before
    det.learn(old)
    for i in range(3):  # shops' 4,999 prices: payments, not counted for transfers
        shop = _ev(n + 3 + i, 20 * DAY + 8 * HOUR + i * MIN, amount=4_999, counterparty="tv", mcc="electronics")
        det.learn(shop)
    first = _ev(n + 6, 20 * DAY + 10 * HOUR, "transfer", amount=9_800, counterparty="bob", mcc=None)
    points = {r["feature"]: r["points"] for r in det.score(first)[1]}
    assert points["just_under_threshold"] == 8 and "unknown_payee" not in points, points
    det.learn(first)
    second = _ev(n + 7, 20 * DAY + 12 * HOUR, "transfer", amount=9_650, counterparty="bob", mcc=None)
    score, reasons = det.score(second)
    points = {r["feature"]: r["points"] for r in reasons}
    assert points["just_under_threshold"] == 8 + 40 + 35 and score >= 0.5, points
    # a day later the first one no longer counts
    later = _ev(n + 8, 21 * DAY + 11 * HOUR, "transfer", amount=9_650, counterparty="bob", mcc=None)
    assert {r["feature"]: r["points"] for r in det.score(later)[1]}["just_under_threshold"] == 8


def test_parse_line_reads_the_api_record_shape(small_stream: Any) -> None:
    line = small_stream.lines[0]
    ev = parse_line(orjson.dumps(line))
    assert ev.id == line["id"] and ev.time == line["time"]
    assert ev.account == line["record"]["origin"]["account"]
    assert ev.amount == line["record"]["body"]["amount"]


# -- evaluation floor --------------------------------------------------------


def test_small_evaluation_stays_above_a_floor() -> None:
    """One seed, a few thousand records: a regression of the detector (or of
    fraudsim's labels) shows here, well below the benchmark's figures."""
    stream = generate(11, anomaly_rate=0.02, **SMALL)
    built = evaluate_stream(stream.lines, stream.labels, BuiltinDetector())
    zscore = evaluate_stream(stream.lines, stream.labels, ZScoreDetector())
    assert built["pr_auc"] >= 0.8, built
    assert built["pr_auc"] > zscore["pr_auc"] + 0.3


@pytest.mark.skipif(importlib.util.find_spec("river") is None,
                    reason="river is not installed (the optional 'monitor' extra: pip install '.[monitor]')")
def test_river_half_space_trees_adapter(small_stream: Any) -> None:
    from monitor.baselines import HalfSpaceTreesDetector

    raw = _raw(small_stream.lines[:1500])
    head = list(score_lines(raw[:500], HalfSpaceTreesDetector()))
    full = list(score_lines(raw, HalfSpaceTreesDetector()))
    assert full[:500] == head
    assert all(0.0 <= r["score"] <= 1.0 for r in full)
    assert len({r["score"] for r in full}) > 10


# -- the live feed through the SDK -------------------------------------------


async def test_fraudsim_feeds_a_cluster_through_the_sdk(tmp_path: Path) -> None:
    txs = simulate(5, anomaly_rate=0.05, **SMALL)[:600]
    node = FakeNode()
    async with serve(node) as urls:
        ids = await feed(txs, urls, key_file(tmp_path), rate=1e9, batch=64)
    assert len(ids) == len(txs) == len(node.received)
    # Batches go out several at a time: the node sees them in any order,
    # but every parent before its child (nodes refuse a client's orphan).
    arrived = [decode_envelope(raw).record for raw in node.received]
    by_id = {r.id.hex(): r for r in arrived}
    assert sorted(by_id) == sorted(ids)
    position = {r.id.hex(): i for i, r in enumerate(arrived)}
    linked = 0
    for tx, rid in zip(txs, ids):
        rec = by_id[rid]
        assert rec.kind == tx.kind and rec.body["amount"] == tx.amount
        assert rec.origin["account"] == tx.account and rec.origin["system"] == tx.system
        assert len(rec.parents) == sum(isinstance(p, Tx) for p in tx.parents)
        for parent in rec.parents:
            assert position[parent.hex()] < position[rid]
            linked += 1
    assert linked > 0
