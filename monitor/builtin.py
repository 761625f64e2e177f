"""The built-in detector: per-entity baselines turned into integer points
with reasons (docs/monitor.md lists every feature and its weight).

Entities: the account (``origin.account``), its counterparties, devices,
and for surges the submitter, origin system, channel and country.  Every
feature compares the event with a baseline learned from earlier events only
and adds points when it is far from it; the reasons say which feature, the
observed value and the baseline.  Weights were set on fraudsim seeds 1-5
(the takeover-session and near-threshold weights on seeds 1-5 and 301-305).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .detector import Reason, points_to_score, reason
from .events import Event
from .robust import count_since, median, median_mad, prune, robust_z10

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
SPENDING = frozenset({"payment", "transfer", "payout"})
MONEY_OUT = frozenset({"transfer", "payout"})
# weights of the takeover and structuring features (docs/monitor.md)
SESSION_POINTS = 40  # money out from a country and a device both new within 24 h
YOUNG = 2  # records from which a new country and a new device at once count
UNKNOWN_PAYEE = 20  # a transfer to an account the ledger has never seen
NEAR_OUT_EACH, NEAR_OUT_MAX = 40, 80  # per other near-threshold transfer or payout within 24 h
NEAR_NEW_PAYEE = 40  # a near-threshold transfer to an account the ledger has never seen
LATE_REFUND = 7 * DAY  # a refund later than this after its payment is unusual
DEFAULT_THRESHOLDS = (5_000, 10_000, 100_000)  # approval thresholds, minor units


class _Account:
    __slots__ = ("count", "first", "last", "gaps", "recent", "near", "refunds", "countries", "devices",
                 "channels", "counterparties", "amounts", "all_amounts", "hours", "reactivated_at",
                 "novelty_at", "novel", "since_reactivation", "near_out", "new_country", "new_device")

    def __init__(self, t: int) -> None:
        self.count = 0
        self.first = t
        self.last = t
        self.gaps: deque[int] = deque(maxlen=16)
        self.recent: deque[int] = deque()  # event times in the last hour
        self.near: deque[int] = deque()  # times of payments just under a threshold, last day
        # transfers and payouts just under a threshold, last day: (time, payee)
        self.near_out: deque[tuple[int, str | None]] = deque()
        self.refunds: deque[int] = deque()  # refund times, last day
        self.countries: set[str] = set()
        self.devices: set[str] = set()
        self.channels: set[str] = set()
        self.counterparties: dict[str, int] = {}  # counterparty -> when first paid
        self.amounts: dict[str, deque[int]] = {}  # per merchant category (or kind)
        self.all_amounts: deque[int] = deque(maxlen=32)
        self.hours = [0] * 24
        self.reactivated_at = -1
        self.novelty_at = -1
        self.since_reactivation = 0  # records since the last reactivation
        self.novel: deque[int] = deque()  # times of payments to new counterparties, last 30 min
        # the last country and device new to the account, and when (from its 6th record;
        # from its 3rd when both are new at once)
        self.new_country: tuple[str, int] | None = None
        self.new_device: tuple[str, int] | None = None


class _Counterparty:
    __slots__ = ("first", "payers", "new_payers")

    def __init__(self, t: int) -> None:
        self.first = t
        self.payers: set[str] = set()
        self.new_payers: deque[int] = deque()  # times of first payments from a new payer, last 6 h


@dataclass(slots=True)
class _Rec:
    kind: str
    amount: int
    time: int
    counterparty: str | None = None
    refunded: int = 0
    children: int = 0  # transfers and payouts naming it as parent


@dataclass(slots=True)
class _Rate:
    """Events per 10 minutes of one entity (system, channel, country,
    submitter) against its long-run average."""
    first: int
    count: int = 0
    peak: int = 0  # the most events seen in ten minutes
    recent: deque[int] = field(default_factory=deque)


class BuiltinDetector:
    name = "builtin"
    # Alerts carry it: a reviewer or auditor must know which scoring made an
    # alert, so it changes whenever the same input would score differently.
    version = "2"

    def __init__(self, thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS, horizon_ms: int = 90 * DAY) -> None:
        self.thresholds = tuple(sorted(thresholds))
        # "just under" a threshold: from 95% of it up to it; amounts outside
        # [_near_low, _near_high) are under none
        self._bands = tuple((th * 95 // 100, th) for th in self.thresholds)
        self._near_low = min((lo for lo, _ in self._bands), default=0)
        self._near_high = max(self.thresholds, default=0)
        self.horizon = horizon_ms
        self.accounts: dict[str, _Account] = {}
        self.counterparties: dict[str, _Counterparty] = {}
        self.devices: dict[str, dict[str, int]] = {}  # device -> account -> last time
        self.records: dict[str, _Rec] = {}  # insertion order is (roughly) time order
        self.country_counts: dict[str, int] = {}
        self.total = 0
        # events per ten minutes of each system, channel, country and submitter
        self.system_rates: dict[str, _Rate] = {}
        self.channel_rates: dict[str, _Rate] = {}
        self.country_rates: dict[str, _Rate] = {}
        self.submitter_rates: dict[str, _Rate] = {}
        # per merchant category: the last amounts paid by anyone, and their
        # median and MAD (refreshed every 64 amounts: sorting is the cost)
        self.category_amounts: dict[str, deque[int]] = {}
        self.category_stats: dict[str, tuple[int, int]] = {}
        self.category_seen: dict[str, int] = {}
        self._learned = 0
        self.start = -1  # the first event's time: features that need a warm stream wait a while

    # -- scoring -------------------------------------------------------------

    def score(self, ev: Event) -> tuple[float, list[Reason]]:
        reasons: list[Reason] = []
        t = ev.time
        acct = self.accounts.get(ev.account) if ev.account else None
        if acct is not None:
            self._velocity(ev, acct, reasons)
            self._amount(ev, acct, reasons)
            self._novelty(ev, acct, reasons)
            self._dormancy(ev, acct, reasons)
            if acct.count >= 30 and ev.kind in SPENDING:
                h = (t // HOUR) % 24
                if acct.hours[h] == 0 and acct.hours[(h - 1) % 24] == 0 and acct.hours[(h + 1) % 24] == 0:
                    reasons.append(reason("unusual_hour", 8, int(h)))
        if ev.kind == "refund":
            self._refund(ev, acct, reasons)
        if ev.kind in MONEY_OUT:
            self._lineage(ev, reasons)
            if self._unknown_payee(ev):
                reasons.append(reason("unknown_payee", UNKNOWN_PAYEE, ev.counterparty))
            if acct is None and ev.account and self.start >= 0 and t - self.start >= DAY:
                reasons.append(reason("first_seen_money_out", 25, ev.kind))
            received = self.counterparties.get(ev.account) if ev.account else None
            if (received is not None and len(received.payers) >= 3 and t - received.first < 2 * DAY
                    and t - self.start >= DAY):
                # money in from many payers lately, now money out: a pass-through account
                reasons.append(reason("pass_through", min(60, 15 * (len(received.payers) - 1)),
                                      len(received.payers)))
        if ev.amount is not None and ev.kind in SPENDING:
            self._near_threshold(ev, acct, reasons)
        if ev.device and ev.account:
            self._device(ev, reasons)
        if ev.counterparty and ev.account and ev.kind in SPENDING:
            self._counterparty(ev, reasons)
        if ev.country and self.total >= 5000:
            seen = self.country_counts.get(ev.country, 0)
            if seen * 2000 < self.total:
                reasons.append(reason("rare_country", 20, ev.country, seen))
        self._surges(ev, reasons)
        points = sum(r["points"] for r in reasons)
        return points_to_score(points), reasons

    def _velocity(self, ev: Event, acct: _Account, reasons: list[Reason]) -> None:
        t = ev.time
        n10 = 1 + count_since(acct.recent, t - 10 * MIN)
        n60 = 1 + count_since(acct.recent, t - HOUR)
        # the account's own long-run rate, per hour, in thousandths
        span = max(t - acct.first, DAY)
        rate_milli = acct.count * HOUR * 1000 // span
        best = 0
        if n10 >= 3:
            excess10 = (n10 - 2) * 1000 - 3 * rate_milli // 6
            best = max(best, min(90, 18 * excess10 // 1000))
        if n60 >= 6:
            excess60 = (n60 - 5) * 1000 - 2 * rate_milli
            best = max(best, min(60, 8 * excess60 // 1000))
        if best > 0:
            reasons.append(reason("velocity", best, {"10m": n10, "1h": n60},
                                  {"per_hour": rate_milli / 1000}))

    def _amount(self, ev: Event, acct: _Account, reasons: list[Reason]) -> None:
        if ev.amount is None or ev.kind not in SPENDING:
            return
        key = ev.merchant_category or ev.kind
        samples = acct.amounts.get(key)
        start = 40  # robust z, in tenths, from which an amount earns points
        if samples is not None and len(samples) >= 5:
            med, mad = median_mad(samples)
        elif ev.merchant_category and key in self.category_stats:
            # a category new to the account: compared with everyone's prices there
            med, mad = self.category_stats[key]
        elif len(acct.all_amounts) >= 8:
            # a first payout or transfer is compared with the account's payments: less sure
            med, mad = median_mad(acct.all_amounts)
            start = 60
        else:
            return
        z10 = robust_z10(ev.amount, med, mad)
        if z10 > start:
            reasons.append(reason("amount", min(40, 6 * (z10 - start + 10) // 10), ev.amount,
                                  {"median": med, "mad": mad, "robust_z": z10 / 10}))

    def _novelty(self, ev: Event, acct: _Account, reasons: list[Reason]) -> None:
        if ev.kind in MONEY_OUT and acct.novelty_at >= 0 and ev.time - acct.novelty_at < DAY:
            reasons.append(reason("money_out_after_novelty", 35, ev.kind, (ev.time - acct.novelty_at) // MIN))
            since = ev.time - DAY
            nc, nd = acct.new_country, acct.new_device
            if (nc is not None and nd is not None and nc[0] == ev.country and nd[0] == ev.device
                    and nc[1] > since and nd[1] > since):
                # still on the country and the device that were both new today: a takeover's session
                reasons.append(reason("money_out_from_new_session", SESSION_POINTS, ev.country, ev.device))
        if acct.count < YOUNG:
            return
        new_country = ev.country is not None and ev.country not in acct.countries
        new_device = ev.device is not None and ev.device not in acct.devices
        if acct.count < 5 and not (new_country and new_device):
            return  # a young account: only a new country and a new device at once
        if new_country:
            reasons.append(reason("new_country", 25, ev.country, sorted(acct.countries)))
        if new_device:
            reasons.append(reason("new_device", 20, ev.device, len(acct.devices)))
        if new_country and new_device:
            reasons.append(reason("new_country_and_device", 15, True))
        if ev.channel is not None and ev.channel not in acct.channels:
            reasons.append(reason("new_channel", 5, ev.channel, sorted(acct.channels)))
        if ev.counterparty is not None and ev.kind in SPENDING and ev.counterparty not in acct.counterparties:
            reasons.append(reason("new_counterparty", 14 if ev.kind in MONEY_OUT else 6, ev.counterparty,
                                  len(acct.counterparties)))
            k = 1 + count_since(acct.novel, ev.time - 30 * MIN)
            if k >= 2:
                reasons.append(reason("new_counterparties_burst", min(60, 20 * (k - 1)), k))

    def _dormancy(self, ev: Event, acct: _Account, reasons: list[Reason]) -> None:
        t = ev.time
        gap = t - acct.last
        money_out = 15 if ev.kind in MONEY_OUT else 0  # a woken account paying out is worse
        if gap >= 7 * DAY and gap >= 8 * median(acct.gaps):
            reasons.append(reason("dormant_reactivation", 65 + money_out, gap // DAY, median(acct.gaps) // HOUR))
        elif acct.reactivated_at >= 0 and t - acct.reactivated_at < 2 * DAY:
            # each further record in the two days after waking adds to it
            points = min(95, 65 + 10 * acct.since_reactivation) + money_out
            reasons.append(reason("after_dormancy", points, (t - acct.reactivated_at) // HOUR,
                                  acct.since_reactivation))

    def _refund(self, ev: Event, acct: _Account | None, reasons: list[Reason]) -> None:
        if not ev.parents:
            reasons.append(reason("refund_without_parent", 80, ev.amount))
        amount = ev.amount or 0
        for parent in ev.parents:
            rec = self.records.get(parent)
            if rec is None:
                reasons.append(reason("refund_of_unknown", 60, parent))
            elif rec.kind != "payment":
                reasons.append(reason("refund_of_non_payment", 40, rec.kind))
            elif rec.refunded + amount > rec.amount:
                reasons.append(reason("refund_exceeds_payment", 80, rec.refunded + amount, rec.amount))
            elif ev.time - rec.time > LATE_REFUND:
                # merchants refund within days of the sale; a refund of an old
                # payment is how a refund of something long consumed looks
                reasons.append(reason("late_refund", 30, (ev.time - rec.time) // DAY, LATE_REFUND // DAY))
        if acct is not None:
            n = 1 + count_since(acct.refunds, ev.time - DAY)
            if n >= 2:
                reasons.append(reason("refund_velocity", min(90, 35 * (n - 1)), n))

    def _lineage(self, ev: Event, reasons: list[Reason]) -> None:
        if len(ev.parents) >= 3:
            reasons.append(reason("lineage_fan_in", min(60, 12 * (len(ev.parents) - 2)), len(ev.parents)))
        fan_out = max((rec.children for p in ev.parents if (rec := self.records.get(p)) is not None),
                      default=0)
        if fan_out >= 1:
            reasons.append(reason("lineage_fan_out", min(60, 20 * fan_out), fan_out + 1))
        # money paid to this account in the last day, sent on naming it: a pass-through
        forwarded = sum(1 for p in ev.parents
                        if (rec := self.records.get(p)) is not None and rec.kind in MONEY_OUT
                        and rec.counterparty == ev.account and ev.time - rec.time < DAY)
        if forwarded:
            reasons.append(reason("forwards_received", 50, forwarded))

    def _near_threshold(self, ev: Event, acct: _Account | None, reasons: list[Reason]) -> None:
        amount = ev.amount or 0
        if not self._near_low <= amount < self._near_high:
            return
        for low, th in self._bands:
            if low <= amount < th:
                points = 8
                if acct is not None:
                    t = ev.time
                    if len(acct.all_amounts) >= 5 and median(acct.all_amounts) * 4 < th:
                        points += 10
                    if ev.kind in MONEY_OUT:
                        # the account's other transfers and payouts just under a threshold
                        # today: one sum sent in parts (shops' 4,999 prices do not count)
                        since = t - DAY
                        recent = same = 0
                        for when, payee in reversed(acct.near_out):
                            if when <= since:
                                break
                            recent += 1
                            same += payee == ev.counterparty
                        points += min(NEAR_OUT_MAX, NEAR_OUT_EACH * recent)
                        first_paid = (acct.counterparties.get(ev.counterparty, -1)
                                      if ev.counterparty is not None else -1)
                        if same or (recent and t - first_paid < DAY):
                            points += 35  # another one to the same payee, or to a payee first paid today
                        elif self._unknown_payee(ev):
                            points += NEAR_NEW_PAYEE  # to an account the ledger has never seen
                    else:
                        # merchants price just under round numbers all the time (4,999)
                        points += min(45, 15 * count_since(acct.near, t - DAY))
                reasons.append(reason("just_under_threshold", points, amount, th))
                return

    def _unknown_payee(self, ev: Event) -> bool:
        """A transfer, on a warm stream, to an account the ledger has never seen as
        origin or counterparty: transfers go to other accounts on the ledger, which
        normally have records (payouts leave it and do not count)."""
        cp = ev.counterparty
        return (ev.kind == "transfer" and cp is not None and self.start >= 0 and ev.time - self.start >= DAY
                and cp not in self.accounts and cp not in self.counterparties)

    def _device(self, ev: Event, reasons: list[Reason]) -> None:
        assert ev.device is not None and ev.account is not None
        users = self.devices.get(ev.device)
        if users is None or len(users) - (ev.account in users) < 2:
            return  # fewer than two other accounts ever used it
        since = ev.time - DAY
        k = sum(1 for a, last in users.items() if last > since and a != ev.account) + 1
        if k >= 3:
            reasons.append(reason("device_shared", min(60, 25 * (k - 2)), k))

    def _counterparty(self, ev: Event, reasons: list[Reason]) -> None:
        assert ev.counterparty is not None and ev.account is not None
        cp = self.counterparties.get(ev.counterparty)
        if cp is None or ev.account in cp.payers:
            return
        if ev.time - self.start < DAY or ev.time - cp.first > 12 * HOUR:
            return  # only a counterparty first seen lately, on a warm stream
        c = 1 + count_since(cp.new_payers, ev.time - 6 * HOUR)
        before = len(cp.payers) - (c - 1)
        if c >= 3 and 2 * before <= c:
            reasons.append(reason("counterparty_new_payers", min(80, 20 * (c - 1)), c, before))

    def _surges(self, ev: Event, reasons: list[Reason]) -> None:
        for entity, value, rates in (("system", ev.system, self.system_rates),
                                     ("channel", ev.channel, self.channel_rates),
                                     ("country", ev.country, self.country_rates),
                                     ("submitter", ev.submitter, self.submitter_rates)):
            if not value:
                continue
            rate = rates.get(value)
            if rate is None or ev.time - rate.first < DAY:
                continue
            recent = rate.recent
            # pruned to ten minutes at the last event: usually all still inside
            n10 = 1 + (len(recent) if recent and recent[0] > ev.time - 10 * MIN
                       else count_since(recent, ev.time - 10 * MIN))
            if n10 > 2 * rate.peak + 30:  # above twice its busiest ten minutes so far
                reasons.append(reason(f"{entity}_surge", 10, n10, rate.peak))

    # -- learning ------------------------------------------------------------

    def learn(self, ev: Event) -> None:
        t = ev.time
        if self.start < 0:
            self.start = t
        self.total += 1
        if ev.country:
            self.country_counts[ev.country] = self.country_counts.get(ev.country, 0) + 1
        since = t - 10 * MIN
        for value, rates in ((ev.system, self.system_rates), (ev.channel, self.channel_rates),
                             (ev.country, self.country_rates), (ev.submitter, self.submitter_rates)):
            if value:
                rate = rates.get(value)
                if rate is None:
                    rate = rates[value] = _Rate(t)
                rate.count += 1
                recent = rate.recent
                recent.append(t)
                while recent[0] <= since:
                    recent.popleft()
                if len(recent) > rate.peak:
                    rate.peak = len(recent)
        self._learn_lineage(ev)
        if ev.account:
            self._learn_account(ev)
        self._learned += 1
        if self._learned % 4096 == 0:
            self._forget(t - self.horizon)

    def _learn_lineage(self, ev: Event) -> None:
        if ev.kind == "refund" and ev.amount is not None:
            for parent in ev.parents:
                rec = self.records.get(parent)
                if rec is not None:
                    rec.refunded += ev.amount
        if ev.kind in MONEY_OUT:
            for parent in ev.parents:
                rec = self.records.get(parent)
                if rec is not None:
                    rec.children += 1
        self.records[ev.id] = _Rec(ev.kind, ev.amount or 0, ev.time, ev.counterparty)

    def _learn_account(self, ev: Event) -> None:
        assert ev.account is not None
        t = ev.time
        acct = self.accounts.get(ev.account)
        if acct is None:
            acct = self.accounts[ev.account] = _Account(t)
        else:
            gap = t - acct.last
            if gap >= 7 * DAY and gap >= 8 * median(acct.gaps):
                acct.reactivated_at = t
                acct.since_reactivation = 0
            acct.since_reactivation += 1
            acct.gaps.append(max(gap, 0))
        if acct.count >= YOUNG:
            country = ev.country if ev.country and ev.country not in acct.countries else None
            device = ev.device if ev.device and ev.device not in acct.devices else None
            if acct.count >= 5 or (country and device):
                if country:
                    acct.novelty_at = t
                    acct.new_country = (country, t)
                if device:
                    acct.novelty_at = t
                    acct.new_device = (device, t)
        acct.count += 1
        acct.last = max(acct.last, t)
        if ev.kind in SPENDING:
            acct.recent.append(t)
            prune(acct.recent, t - HOUR)
            if ev.counterparty and ev.counterparty not in acct.counterparties and acct.count >= 5:
                acct.novel.append(t)
                prune(acct.novel, t - 30 * MIN)
        acct.hours[(t // HOUR) % 24] += 1
        if ev.country:
            acct.countries.add(ev.country)
        if ev.device:
            acct.devices.add(ev.device)
            users = self.devices.setdefault(ev.device, {})
            users[ev.account] = t
            if len(users) > 64:  # keep the most recent users of a shared device
                del users[min(users, key=users.__getitem__)]
        if ev.channel:
            acct.channels.add(ev.channel)
        if ev.kind == "refund":
            acct.refunds.append(t)
            prune(acct.refunds, t - DAY)
        if ev.amount is not None and ev.kind in SPENDING:
            key = ev.merchant_category or ev.kind
            samples = acct.amounts.get(key)
            if samples is None:
                samples = acct.amounts[key] = deque(maxlen=32)
            samples.append(ev.amount)
            acct.all_amounts.append(ev.amount)
            if ev.merchant_category:
                ring = self.category_amounts.get(key)
                if ring is None:
                    ring = self.category_amounts[key] = deque(maxlen=512)
                ring.append(ev.amount)
                self.category_seen[key] = seen = self.category_seen.get(key, 0) + 1
                if seen % 64 == 0:
                    self.category_stats[key] = median_mad(ring)
            if self._near_low <= ev.amount < self._near_high and any(
                    low <= ev.amount < th for low, th in self._bands):
                if ev.kind in MONEY_OUT:
                    acct.near_out.append((t, ev.counterparty))
                    while acct.near_out[0][0] <= t - DAY:
                        acct.near_out.popleft()
                else:
                    acct.near.append(t)
                    prune(acct.near, t - DAY)
        if ev.counterparty and ev.kind in SPENDING:
            acct.counterparties.setdefault(ev.counterparty, t)
            cp = self.counterparties.get(ev.counterparty)
            if cp is None:
                cp = self.counterparties[ev.counterparty] = _Counterparty(t)
            if ev.account not in cp.payers:
                cp.payers.add(ev.account)
                cp.new_payers.append(t)
                prune(cp.new_payers, t - 6 * HOUR)

    def _forget(self, before: int) -> None:
        """Drop lineage entries older than the horizon (a refund of a
        payment older than that reads as a refund of an unknown record)."""
        stale = []
        for rid, rec in self.records.items():
            if rec.time > before:
                break
            stale.append(rid)
        for rid in stale:
            del self.records[rid]
