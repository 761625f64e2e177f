"""Normal behaviour: accounts with habits, merchants, travel, new phones,
refunds and settlements with lineage (docs/monitor.md, "fraudsim").

Everything is drawn from one ``random.Random(seed)``, in a fixed order, so
a seed gives the same stream on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
EPOCH = 1_767_571_200_000  # 2026-01-05T00:00:00Z: fraudsim's day 0

HOME_COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "PL", "BE", "AT")
HOME_WEIGHTS = (24, 20, 12, 14, 14, 8, 4, 4)
TRAVEL_COUNTRIES = HOME_COUNTRIES + ("GB", "PT", "US", "CH", "GR")
FAR_COUNTRIES = ("BR", "VN", "ID", "PH", "ZA", "MX", "TR", "KE")
# merchant category -> median price in minor units
CATEGORIES = {"grocery": 2500, "coffee": 450, "transport": 300, "fuel": 5200, "restaurant": 3500,
              "digital": 999, "retail": 4000, "electronics": 15000, "pharmacy": 1500, "gaming": 500}
CHANNEL_SYSTEM = {"pos": "pos-gateway", "web": "web-shop", "app": "mobile-app"}
BANK_SYSTEM = "bank-api"
ACQUIRER_SYSTEM = "acquirer"
CURRENCY = "EUR"


@dataclass(slots=True)
class Tx:
    """One record to be: what fraudsim writes, before ids exist."""
    t: int
    kind: str
    account: str
    country: str
    system: str
    channel: str
    device: str
    amount: int
    counterparty: str
    mcc: str = ""
    parents: list["Tx | str"] = field(default_factory=list)  # a Tx, or a raw id (hex) that names nothing
    label: str = "normal"
    incident: int = 0
    seq: int = 0  # tie-break for equal times: generation order


@dataclass
class Merchant:
    id: str
    mcc: str
    country: str
    weight: float


@dataclass
class Account:
    id: str
    home: str
    devices: list[str]
    channels: list[str]
    rate: float  # transactions per active day
    peak: float  # hour of the day around which it is active
    favourites: list[Merchant]
    factor: float  # its price level against the category median
    friends: list[str]
    bank: str
    active_from: int
    active_to: int
    payments: list[Tx] = field(default_factory=list)


def hex_id(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def price(rng: random.Random, median: float, sigma: float = 0.35) -> int:
    """A price around ``median`` minor units; most end in 0, 5, 9 or 99."""
    value = max(50, int(median * rng.lognormvariate(0.0, sigma)))
    if value > 1000 and rng.random() < 0.4:
        value = (value // 100) * 100 + 99 - 100 if value % 100 < 50 else (value // 100) * 100 + 99
    elif rng.random() < 0.5:
        value = value // 5 * 5
    return max(50, value)


class World:
    def __init__(self, rng: random.Random, accounts: int, days: int, merchants: int = 300) -> None:
        self.rng = rng
        self.days = days
        self.end = days * DAY
        self.merchants = [Merchant(f"m-{i:04d}", rng.choice(list(CATEGORIES)),
                                   rng.choices(HOME_COUNTRIES, HOME_WEIGHTS)[0], 1.0 / (1 + i) ** 0.8)
                          for i in range(merchants)]
        self.accounts: list[Account] = []
        ids = [f"acct-{i:06d}" for i in range(accounts)]
        for aid in ids:
            self.accounts.append(self._account(aid, ids))
        self.by_id = {a.id: a for a in self.accounts}
        self.merchant_country = {m.id: m.country for m in self.merchants}
        self.seq = 0

    def _account(self, aid: str, ids: list[str]) -> Account:
        rng = self.rng
        home = rng.choices(HOME_COUNTRIES, HOME_WEIGHTS)[0]
        devices = [f"dev-{hex_id(rng)}" for _ in range(1 if rng.random() < 0.8 else 2)]
        channels = rng.sample(["pos", "web", "app"], rng.choice((1, 2, 2, 3)))
        local = [m for m in self.merchants if m.country == home] or self.merchants
        favourites = []
        for _ in range(rng.randint(3, 8)):
            favourites.append(rng.choices(local, [m.weight for m in local])[0])
        active_from, active_to = 0, self.end
        if rng.random() < 0.04:  # goes quiet after the first days (some come back)
            active_to = rng.randint(2, 4) * DAY
        return Account(aid, home, devices, channels, min(15.0, rng.lognormvariate(0.9, 0.7)),
                       rng.gauss(14.0, 3.0), favourites, rng.lognormvariate(0.0, 0.4),
                       rng.sample(ids, 3)[: rng.randint(1, 3)], f"bank-{aid}", active_from, active_to)

    def tx(self, **kwargs: object) -> Tx:
        self.seq += 1
        return Tx(seq=self.seq, **kwargs)  # type: ignore[arg-type]

    def event_time(self, day: int, acct: Account) -> int:
        """A moment on ``day`` drawn from the account's diurnal rhythm."""
        rng = self.rng
        hour = rng.gauss(acct.peak, 3.5) if rng.random() < 0.85 else rng.uniform(6, 23)
        hour = min(max(hour, 0.0), 23.99)
        return day * DAY + int(hour * HOUR) + rng.randint(0, MIN - 1)

    def normal(self) -> list[Tx]:
        """Every account's ordinary activity, refunds and settlements."""
        rng = self.rng
        out: list[Tx] = []
        for acct in self.accounts:
            trip = None
            if rng.random() < 0.15:
                start = rng.randint(0, max(0, self.days - 3)) * DAY
                trip = (start, start + rng.randint(2, 5) * DAY, rng.choice(TRAVEL_COUNTRIES))
            new_phone = rng.randint(DAY, self.end) if rng.random() < 0.05 else None
            comes_back = acct.active_to < self.end and rng.random() < 0.1
            for day in range(self.days):
                if not acct.active_from <= day * DAY < acct.active_to:
                    if not (comes_back and day == self.days - 2):
                        continue
                n = _poisson(rng, acct.rate if acct.active_to == self.end or day * DAY < acct.active_to else 0.7)
                for _ in range(n):
                    t = self.event_time(day, acct)
                    out.append(self._normal_tx(acct, t, trip, new_phone))
        out.extend(self.refunds(out))
        out.extend(self.settlements(out))
        return out

    def _normal_tx(self, acct: Account, t: int, trip: tuple[int, int, str] | None, new_phone: int | None) -> Tx:
        rng = self.rng
        country = trip[2] if trip and trip[0] <= t < trip[1] else acct.home
        device = acct.devices[0]
        if len(acct.devices) > 1 and rng.random() < 0.3:
            device = acct.devices[1]
        if new_phone is not None and t >= new_phone:
            device = f"dev-new-{acct.id}"
        channel = rng.choice(acct.channels)
        roll = rng.random()
        if roll < 0.05 and acct.friends:
            friend = rng.choice(acct.friends)
            return self.tx(t=t, kind="transfer", account=acct.id, country=country, system=BANK_SYSTEM,
                           channel="app", device=device, amount=price(rng, 2000 * acct.factor, 0.6),
                           counterparty=friend)
        if roll < 0.07:
            return self.tx(t=t, kind="payout", account=acct.id, country=country, system=BANK_SYSTEM,
                           channel="web", device=device, amount=price(rng, 8000 * acct.factor, 0.6),
                           counterparty=acct.bank)
        if rng.random() < 0.08 or country != acct.home:
            pool = [m for m in self.merchants if m.country == country] or self.merchants
            merchant = rng.choices(pool, [m.weight for m in pool])[0]
        else:
            merchant = rng.choice(acct.favourites)
        tx = self.tx(t=t, kind="payment", account=acct.id, country=country,
                     system=CHANNEL_SYSTEM[channel], channel=channel, device=device,
                     amount=price(rng, CATEGORIES[merchant.mcc] * acct.factor), counterparty=merchant.id,
                     mcc=merchant.mcc)
        acct.payments.append(tx)
        return tx

    def refunds(self, txs: list[Tx]) -> list[Tx]:
        rng = self.rng
        out = []
        for tx in txs:
            if tx.kind == "payment" and rng.random() < 0.02:
                amount = tx.amount if rng.random() < 0.7 else rng.randint(1, tx.amount)
                t = tx.t + rng.randint(HOUR, 4 * DAY)
                if t < self.end:
                    out.append(self.tx(t=t, kind="refund", account=tx.account, country=tx.country,
                                       system=tx.system, channel=tx.channel, device=tx.device, amount=amount,
                                       counterparty=tx.counterparty, mcc=tx.mcc, parents=[tx]))
        return out

    def settlements(self, txs: list[Tx]) -> list[Tx]:
        """Each merchant settles its payments every six hours, in batches of
        at most 16 parents (the record limit)."""
        per: dict[tuple[str, int], list[Tx]] = {}
        for tx in txs:
            if tx.kind == "payment":
                per.setdefault((tx.counterparty, tx.t // (6 * HOUR)), []).append(tx)
        out = []
        for (merchant, slot), pays in sorted(per.items()):
            t = (slot + 1) * 6 * HOUR + 5 * MIN
            if t >= self.end:
                continue
            pays.sort(key=lambda x: (x.t, x.seq))
            for i in range(0, len(pays), 16):
                batch = pays[i:i + 16]
                out.append(self.tx(t=t, kind="settlement", account=merchant, country=self.merchant_country[merchant],
                                   system=ACQUIRER_SYSTEM, channel="", device="",
                                   amount=sum(p.amount for p in batch), counterparty=f"bank-{merchant}",
                                   parents=list(batch)))
        return out


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: lam is small (a day's transactions)
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
