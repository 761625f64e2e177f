"""What a policy reads besides the record, derived from committed blocks only
(PROTOCOL §10.3, §10.4): the installed policy, the governance lists, the
risk tiers set by monitors, and the velocity windows.

:class:`PolicyState` changes only in :meth:`PolicyState.commit` (one
committed block, in log order); :meth:`to_bytes` / :func:`state_from_bytes`
persist it (``ledger.schema.META_POLICY_STATE``) so a node need not replay
its chain.  Integers only, no clock: every validator derives the same state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any

from ..encoding import decode, packb_plain
from ..errors import LedgerError, StorageCorruption
from ..records import Record
from .rules import Policy, Window, decode_policy

STATE_DOMAIN = b"auditledger/policy-state/v1\n"
RISK_TIER_KIND = "risk.tier"
MONITOR_ROLE = "monitor"
# PROTOCOL §12.2 names the tiers; rules read their rank (0: none set).
TIERS = {"low": 1, "medium": 2, "high": 3}
GOV_POLICY_SET = "gov.policy.set"
GOV_LIST_ADD = "gov.list.add"
GOV_LIST_REMOVE = "gov.list.remove"
# The only records that change the state while no policy is installed (no
# windows to count in): PolicyState.commit passes over every other one.
STATE_KINDS = frozenset({GOV_POLICY_SET, GOV_LIST_ADD, GOV_LIST_REMOVE, RISK_TIER_KIND})


def field_value(record: Record, name: str) -> Any:
    """The value of a policy field name (``kind``, ``submitter``,
    ``origin.X``, ``body.X``) in ``record``; None when absent."""
    if name == "kind":
        return record.kind
    if name == "submitter":
        return record.submitter.hex()
    if name.startswith("origin."):
        return record.origin.get(name[7:])
    return record.body.get(name[5:])


def window_key(record: Record, window: Window) -> str | None:
    """The window entry a record counts in, or None (field absent, or not a
    str/int, or a kind the window does not count)."""
    if record.kind.startswith("gov.") or (window.kinds is not None
                                          and record.kind not in window.kinds):
        return None
    value = field_value(record, window.by)
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    return None


def amount_of(record: Record) -> int:
    """What a record adds to a window's sum: ``body.amount`` when it is a
    non-negative integer, else 0."""
    amount = record.body.get("amount")
    return amount if type(amount) is int and amount >= 0 else 0


Group = tuple[int, list[str], list[int]]  # (time, keys, amounts): entries of one time
# One key's count and sum in a window: ``[count, sum]``, changed in place.
KeyCount = list[int]
COUNT, SUM = 0, 1


@dataclass
class WindowSet:
    """A window's entries, grouped by time in time order (``order``: one
    group per committed block, the block's keys and amounts in log order),
    and each key's ``[count, sum]`` over them (``keys``).

    Entries expire a group at a time (:meth:`prune`, at commit); those a
    later block's time has passed but no commit has pruned yet are what
    :meth:`stale` gives, once per block, so a key's entry times are never
    read per record.  One small list per key, changed in place: a record
    reads its key once per window in the block's pass and once at commit,
    and in a window of 100,000s of keys each lookup is a few cache misses
    (two dicts of ints, one for counts and one for sums, took as long:
    docs/performance.md).  ``total`` is the sum of every entry's amount (a
    bound the fast pass reads: no key's sum is beyond it); ``entries`` how
    many entries it holds."""

    keys: dict[str, KeyCount] = field(default_factory=dict)
    order: deque[Group] = field(default_factory=deque)
    total: int = 0
    entries: int = 0

    def add(self, key: str, time: int, amount: int) -> None:
        """One entry; ``time`` at or after every entry's."""
        self.add_all(time, [key], [amount])

    def add_all(self, time: int, keys: list[str], amounts: list[int]) -> None:
        """Each ``keys[i]`` with ``amounts[i]`` in order, all at ``time``
        (at or after every entry's).  Keeps both lists (the caller's, not
        changed after)."""
        if not keys:
            return
        windows = self.keys
        get = windows.get
        for key, amount in zip(keys, amounts):
            w = get(key)
            if w is None:
                windows[key] = [1, amount]
            else:
                w[COUNT] += 1
                w[SUM] += amount
        self.total += sum(amounts)
        self.entries += len(keys)
        order = self.order
        if order and order[-1][0] == time:
            order[-1][1].extend(keys)
            order[-1][2].extend(amounts)
        else:
            order.append((time, keys, amounts))

    def prune(self, now: int, ms: int) -> None:
        """Drop the entries with ``time <= now - ms``."""
        cutoff = now - ms
        order = self.order
        windows = self.keys
        while order and order[0][0] <= cutoff:
            _, keys, amounts = order.popleft()
            self.entries -= len(keys)
            self.total -= sum(amounts)
            for key, amount in zip(keys, amounts):
                w = windows[key]
                if w[COUNT] == 1:
                    del windows[key]
                else:
                    w[COUNT] -= 1
                    w[SUM] -= amount

    def stale(self, cutoff: int) -> tuple[dict[str, int], dict[str, int]]:
        """Minus the count and the sum, by key, of the entries with ``time
        <= cutoff``: what a block whose window starts after ``cutoff`` adds
        to each key's ``[count, sum]`` in :attr:`keys` (the entries a commit
        has not pruned yet).  Fresh dicts each call, for the caller to add to."""
        counts: dict[str, int] = {}
        sums: dict[str, int] = {}
        for time, keys, amounts in self.order:
            if time > cutoff:
                break
            for key, amount in zip(keys, amounts):
                counts[key] = counts.get(key, 0) - 1
                sums[key] = sums.get(key, 0) - amount
        return counts, sums

    def at(self, key: str, stale: tuple[dict[str, int], dict[str, int]]) -> tuple[int, int]:
        """Count and sum of ``key``'s entries inside a window whose
        :meth:`stale` is ``stale``."""
        w = self.keys.get(key)
        count, total = (w[COUNT], w[SUM]) if w is not None else (0, 0)
        return count + stale[0].get(key, 0), total + stale[1].get(key, 0)

    def by_key(self) -> dict[str, list[tuple[int, int]]]:
        """Each key's ``(time, amount)`` entries in time order (ties in
        the order they were added), keys sorted: what the state's bytes hold."""
        out: dict[str, list[tuple[int, int]]] = {key: [] for key in sorted(self.keys)}
        for time, keys, amounts in self.order:
            for key, amount in zip(keys, amounts):
                out[key].append((time, amount))
        return out


@dataclass
class PolicyState:
    """The policy inputs derived from the blocks committed up to ``height``."""

    height: int = 0
    time_ms: int = 0
    policy: Policy | None = None
    lists: dict[str, set[str]] = field(default_factory=dict)
    tiers: dict[str, int] = field(default_factory=dict)
    windows: dict[str, WindowSet] = field(default_factory=dict)
    # Each list's entries sorted, as :meth:`to_bytes` writes them: lists
    # change only by governance, and sorting 100,000s of entries at each
    # save was most of its cost.  :meth:`commit` drops a list's when it
    # changes the list.
    _sorted_lists: dict[str, list[str]] = field(default_factory=dict, repr=False,
                                                compare=False)

    def commit(self, height: int, time_ms: int, records: Sequence[tuple[Record, frozenset[str]]],
               block_entries: Sequence[tuple[list[str], list[int]]] | None = None) -> bool:
        """Advance past the committed block ``height``: windows count its
        records; governance and risk-tier records take effect for the next
        block.  Returns True when the installed policy changed.  ``block_entries``:
        for each window of the policy in order, the window keys and the
        amounts of the records that count in it, in log order, when the
        caller computed them already (the evaluator's fast pass); with them,
        ``records`` need only hold the block's governance and ``risk.tier``
        records (no other record changes anything else)."""
        policy = self.policy
        changed = False
        if policy is not None:
            for i, (wname, window) in enumerate(policy.windows.items()):
                wset = self.windows.get(wname)
                if wset is None:
                    wset = self.windows[wname] = WindowSet()
                if block_entries is not None:
                    wset.add_all(time_ms, *block_entries[i])
                else:
                    keys, amounts = [], []
                    for record, _ in records:
                        key = window_key(record, window)
                        if key is not None:
                            keys.append(key)
                            amounts.append(amount_of(record))
                    wset.add_all(time_ms, keys, amounts)
                wset.prune(time_ms, window.ms)
        for record, roles in records:
            kind = record.kind
            if kind == GOV_POLICY_SET:
                self._install(decode_policy(record.body["policy"]))
                changed = True
            elif kind in (GOV_LIST_ADD, GOV_LIST_REMOVE):
                entries = self.lists.setdefault(record.body["list"], set())
                self._sorted_lists.pop(record.body["list"], None)
                if kind == GOV_LIST_ADD:
                    entries.update(record.body["entries"])
                else:
                    entries.difference_update(record.body["entries"])
            elif kind == RISK_TIER_KIND and MONITOR_ROLE in roles:
                tier = risk_tier(record)
                if tier is not None:
                    account, value = tier
                    if value:
                        self.tiers[account] = value
                    else:
                        self.tiers.pop(account, None)
        self.height, self.time_ms = height, time_ms
        return changed

    def entries(self) -> int:
        """The windows' entries: what :meth:`to_bytes` grows with (each
        list is kept sorted between saves)."""
        return sum(wset.entries for wset in self.windows.values())

    def _install(self, policy: Policy) -> None:
        """A new policy keeps the history of each window it declares the
        same way (name, field, length and kinds); other windows start empty."""
        old = self.policy.windows if self.policy is not None else {}
        self.windows = {name: self.windows[name] for name, w in policy.windows.items()
                        if name in self.windows and old.get(name) == w}
        self.policy = policy

    # -- persistence ---------------------------------------------------------

    def to_bytes(self) -> bytes:
        """``STATE_DOMAIN + canonical(map)``: equal states give equal bytes.

        Packed as it stands (``packb_plain``), not through the canonical
        walk: every map is built with its keys in canonical order (``str``
        sorts by code point, the order of its UTF-8 bytes) and every value
        is already normal (strings and integers from canonical records, an
        entry's ``(time, amount)`` tuple packs as the array it stands for).
        The walk over a 100,000-entry list and the windows' entries took
        most of a second at each save (tests/test_policy_state_bytes.py
        compares the two)."""
        done = self._sorted_lists
        for name, entries in self.lists.items():
            if name not in done:
                done[name] = sorted(entries)
        return STATE_DOMAIN + packb_plain({
            "height": self.height,
            "lists": {name: done[name] for name in sorted(self.lists)},
            "policy": self.policy.policy_bytes if self.policy is not None else None,
            "tiers": {account: self.tiers[account] for account in sorted(self.tiers)},
            "time_ms": self.time_ms,
            "windows": {name: self.windows[name].by_key() for name in sorted(self.windows)},
        })


def risk_tier(record: Record) -> tuple[str, int] | None:
    """``(account, rank)`` of a well-formed ``risk.tier`` record (PROTOCOL
    §12.2: ``origin.account``, body ``tier`` low/medium/high), else None."""
    account, tier = record.origin.get("account"), record.body.get("tier")
    if not account or type(tier) is not str or tier not in TIERS:
        return None
    return account, TIERS[tier]


def state_from_bytes(data: bytes) -> PolicyState:
    """The state :meth:`PolicyState.to_bytes` wrote; raises
    :class:`StorageCorruption` for anything else."""
    try:
        if not data.startswith(STATE_DOMAIN):
            raise StorageCorruption("policy state: wrong domain")
        doc = decode(data[len(STATE_DOMAIN):])
        policy = decode_policy(doc["policy"]) if doc["policy"] is not None else None
        state = PolicyState(height=doc["height"], time_ms=doc["time_ms"], policy=policy,
                            lists={n: set(e) for n, e in doc["lists"].items()},
                            tiers=dict(doc["tiers"]))
        for name, per_key in doc["windows"].items():
            wset = state.windows[name] = WindowSet()
            # Entries of one time expire together, so the order among keys
            # at equal times does not matter.
            for t, group in groupby(sorted(((t, key, a) for key, entries in per_key.items()
                                            for t, a in entries), key=itemgetter(0)),
                                    key=itemgetter(0)):
                items = list(group)
                wset.add_all(t, [key for _, key, _ in items], [a for _, _, a in items])
    except StorageCorruption:
        raise
    except (LedgerError, KeyError, TypeError, ValueError) as exc:
        raise StorageCorruption(f"policy state: {exc}") from None
    if state.to_bytes() != data:
        raise StorageCorruption("policy state: not in canonical form")
    return state
