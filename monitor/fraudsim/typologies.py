"""Injected typologies: each function adds one labelled incident to the
world and returns its records (docs/monitor.md, "Typologies")."""

from __future__ import annotations

import random
from collections.abc import Callable

from .world import BANK_SYSTEM, CATEGORIES, CHANNEL_SYSTEM, DAY, FAR_COUNTRIES, HOUR, MIN, Account, Tx, World, hex_id, price


def _active(world: World, t: int) -> Account:
    rng = world.rng
    while True:
        acct = rng.choice(world.accounts)
        if acct.active_to >= world.end and len(acct.payments) >= 8 and acct.payments[0].t < t:
            return acct


def _usual(acct: Account) -> int:
    amounts = sorted(p.amount for p in acct.payments)
    return amounts[len(amounts) // 2] if amounts else 2000


def velocity_burst(world: World, t: int, n: int) -> list[Tx]:
    """A card used at many merchants within minutes (card testing, a stolen
    card emptied)."""
    rng, acct = world.rng, _active(world, t)
    out = []
    device = acct.devices[0] if rng.random() < 0.5 else f"dev-{hex_id(rng)}"
    for _ in range(rng.randint(12, 28)):
        t += rng.randint(10_000, 50_000)
        m = rng.choice(world.merchants)
        out.append(world.tx(t=t, kind="payment", account=acct.id, country=acct.home, system="web-shop",
                            channel="web", device=device, amount=price(rng, CATEGORIES[m.mcc]),
                            counterparty=m.id, mcc=m.mcc))
    return out


def account_takeover(world: World, t: int, n: int) -> list[Tx]:
    """Someone else logs in from a new country on a new device and pays out."""
    rng, acct = world.rng, _active(world, t)
    country, device = rng.choice(FAR_COUNTRIES), f"dev-{hex_id(rng)}"
    out = []
    if rng.random() < 0.6:
        m = rng.choice(world.merchants)
        out.append(world.tx(t=t, kind="payment", account=acct.id, country=country, system="mobile-app",
                            channel="app", device=device, amount=price(rng, 500), counterparty=m.id, mcc=m.mcc))
    mule = f"bank-x{hex_id(rng)}"
    for _ in range(rng.randint(2, 4)):
        t += rng.randint(2 * MIN, 30 * MIN)
        out.append(world.tx(t=t, kind="payout", account=acct.id, country=country, system=BANK_SYSTEM,
                            channel="app", device=device, amount=rng.randint(20_000, 90_000), counterparty=mule))
    return out


def mule_fan_in(world: World, t: int, n: int) -> list[Tx]:
    """Many accounts (scam victims) send money to one mule, who pays it out
    naming the incoming transfers as parents."""
    rng = world.rng
    mule = f"acct-m{hex_id(rng)}"
    out: list[Tx] = []
    for _ in range(rng.randint(9, 15)):
        t += rng.randint(2 * MIN, 15 * MIN)
        victim = _active(world, t)
        out.append(world.tx(t=t, kind="transfer", account=victim.id, country=victim.home, system=BANK_SYSTEM,
                            channel="app", device=victim.devices[0],
                            amount=_usual(victim) * rng.randint(3, 12), counterparty=mule))
    device = f"dev-{hex_id(rng)}"
    incoming = list(out)
    for i in range(0, len(incoming), 8):
        t += rng.randint(5 * MIN, 30 * MIN)
        batch = incoming[i:i + 8]
        out.append(world.tx(t=t, kind="payout", account=mule, country=rng.choice(FAR_COUNTRIES),
                            system=BANK_SYSTEM, channel="web", device=device,
                            amount=sum(x.amount for x in batch), counterparty=f"bank-x{hex_id(rng)}",
                            parents=list(batch)))
    return out


def mule_fan_out(world: World, t: int, n: int) -> list[Tx]:
    """One large transfer into an account that splits it at once into many
    transfers to fresh accounts, each naming the source as parent."""
    rng = world.rng
    source, mule = _active(world, t), _active(world, t)
    total = rng.randint(50_000, 200_000)
    first = world.tx(t=t, kind="transfer", account=source.id, country=source.home, system=BANK_SYSTEM,
                     channel="app", device=source.devices[0], amount=total, counterparty=mule.id)
    out = [first]
    k = rng.randint(8, 14)
    for _ in range(k):
        t += rng.randint(1 * MIN, 8 * MIN)
        out.append(world.tx(t=t, kind="transfer", account=mule.id, country=mule.home, system=BANK_SYSTEM,
                            channel="app", device=mule.devices[0], amount=total // k - rng.randint(0, 500),
                            counterparty=f"acct-r{hex_id(rng)}", parents=[first]))
    return out


def refund_abuse(world: World, t: int, n: int) -> list[Tx]:
    """Refunds of more than was paid, refunds of nothing, refunds naming
    records that do not exist."""
    rng, acct = world.rng, _active(world, t)
    out: list[Tx] = []
    paid = [p for p in acct.payments if p.t < t]
    for _ in range(rng.randint(3, 6)):
        t += rng.randint(5 * MIN, 3 * HOUR)
        variant = rng.choice(("exceeds", "nothing", "unknown", "twice"))
        base = rng.choice(paid) if paid else None
        parents: list[Tx | str] = []
        amount = rng.randint(2_000, 20_000)
        if variant in ("exceeds", "twice") and base is not None:
            parents = [base]
            amount = base.amount * rng.randint(2, 6) if variant == "exceeds" else base.amount
            if variant == "twice":
                out.append(world.tx(t=t, kind="refund", account=acct.id, country=acct.home,
                                    system=base.system, channel=base.channel, device=base.device,
                                    amount=amount, counterparty=base.counterparty, mcc=base.mcc, parents=[base]))
                t += rng.randint(MIN, HOUR)
        elif variant == "unknown":
            parents = [hex_id(rng, 64)]
        m = base.counterparty if base is not None else rng.choice(world.merchants).id
        out.append(world.tx(t=t, kind="refund", account=acct.id, country=acct.home,
                            system=CHANNEL_SYSTEM["web"], channel="web", device=acct.devices[0],
                            amount=amount, counterparty=m, parents=parents))
    return out


def structuring(world: World, t: int, n: int) -> list[Tx]:
    """Several payments or transfers kept just under an approval threshold."""
    rng, acct = world.rng, _active(world, t)
    threshold = 10_000 if _usual(acct) < 2_500 or rng.random() < 0.5 else 100_000
    counterparty = f"acct-s{hex_id(rng)}" if rng.random() < 0.5 else rng.choice(acct.friends)
    out = []
    for _ in range(rng.randint(3, 6)):
        t += rng.randint(20 * MIN, 3 * HOUR)
        amount = threshold - rng.randint(1, threshold * 4 // 100)
        out.append(world.tx(t=t, kind="transfer", account=acct.id, country=acct.home, system=BANK_SYSTEM,
                            channel="app", device=acct.devices[0], amount=amount, counterparty=counterparty))
    return out


def dormant_reactivation(world: World, t: int, n: int) -> list[Tx]:
    """An account silent for a week or more wakes up and spends or pays out."""
    rng = world.rng
    dormant = [a for a in world.accounts if a.active_to <= world.end - 9 * DAY and a.payments]
    if not dormant:
        raise ValueError("no dormant accounts: the stream is too short (days >= 13) or too small")
    acct = rng.choice(dormant)
    t = max(t, acct.active_to + rng.randint(8 * DAY, world.end - acct.active_to - DAY))
    device = acct.devices[0] if rng.random() < 0.5 else f"dev-{hex_id(rng)}"
    out = []
    for i in range(rng.randint(3, 6)):
        t += rng.randint(5 * MIN, 90 * MIN)
        if i % 2:
            out.append(world.tx(t=t, kind="payout", account=acct.id, country=acct.home, system=BANK_SYSTEM,
                                channel="web", device=device, amount=rng.randint(10_000, 60_000),
                                counterparty=f"bank-x{hex_id(rng)}"))
        else:
            m = rng.choice(world.merchants)
            out.append(world.tx(t=t, kind="payment", account=acct.id, country=acct.home, system="web-shop",
                                channel="web", device=device, amount=price(rng, CATEGORIES[m.mcc] * 2),
                                counterparty=m.id, mcc=m.mcc))
    return out


def adaptive_attacker(world: World, t: int, n: int) -> list[Tx]:
    """Spreads across many accounts, one or two payments each, amounts in the
    account's usual range, home country, spaced out: nothing a per-account
    limit would catch.  Left behind: a few devices shared by many accounts
    and one counterparty that suddenly has many new payers."""
    rng = world.rng
    devices = [f"dev-{hex_id(rng)}" for _ in range(rng.randint(2, 3))]
    collector = f"m-x{hex_id(rng)}"
    out = []
    for _ in range(rng.randint(15, 28)):
        t += rng.randint(3 * MIN, 25 * MIN)
        acct = _active(world, t)
        when = t
        for _ in range(1 if rng.random() < 0.7 else 2):
            out.append(world.tx(t=when, kind="payment", account=acct.id, country=acct.home, system="web-shop",
                                channel="web", device=rng.choice(devices),
                                amount=min(4_500, price(rng, _usual(acct))), counterparty=collector, mcc="digital"))
            when += rng.randint(HOUR, 2 * HOUR)
    return out


TYPOLOGIES: dict[str, Callable[[World, int, int], list[Tx]]] = {
    "velocity_burst": velocity_burst,
    "account_takeover": account_takeover,
    "mule_fan_in": mule_fan_in,
    "mule_fan_out": mule_fan_out,
    "refund_abuse": refund_abuse,
    "structuring": structuring,
    "dormant_reactivation": dormant_reactivation,
    "adaptive_attacker": adaptive_attacker,
}
