"""Circuit breakers the validators agree on (PROTOCOL §12.3).

A breaker per scope - ``("account" | "submitter" | "system" | "kind" |
"country", value)`` - is derived from committed blocks only: the
``risk.alert`` records (each counted in every scope of the record it flags),
the ``risk.breaker.close`` records, the block times of their blocks and the
governance params in force at each height.  Integers and strings only, no
clock, no randomness: every node, and an auditor replaying the same blocks,
derives the same breakers (tests/test_breakers.py checks it).

States: ``closed``; ``open`` from the block whose alerts trip it until
``breaker_cooldown_ms`` of block time later; then ``half_open`` (records in
scope pass again, and the next qualifying alert in the scope opens it
again); ``closed`` again by a ``risk.breaker.close`` record naming it.  Each
transition is kept with the ids of the records that caused it, and the
block that makes it commits it as a breaker entry under its verdict root
(:mod:`ledger.breaker_entries`; :meth:`Breakers.preview` gives a candidate
block's transitions without applying it).

:meth:`Breakers.is_open` is the input a policy's verdict reads (open:
``review`` instead of ``allow``).  The caller supplies ``lookup``, which
returns a committed (or earlier in the same block) record by id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .breaker_entries import BreakerEntry
from .encoding import canonical, decode, to_hex
from .errors import LedgerError, StorageCorruption
from .records import Record
from .risk import ALERT, BREAKER_CLOSE, BREAKER_SCOPES as SCOPES
# Governance params (gov.params.set, genesis params) and their defaults.
PARAM_DEFAULTS = {
    "breaker_alerts": 0,              # k: alerts in the window that trip; 0 turns breakers off
    "breaker_monitors": 1,            # m: distinct monitors among them
    "breaker_window_ms": 600_000,     # the window, in block time
    "breaker_cooldown_ms": 3_600_000,  # open for this long, then half-open
    "breaker_min_score": 500_000,     # alerts below this score (ppm) do not count
    # A monitor's alerts counted in one window, over every scope; its further
    # alerts in the window are not counted (a flood moves no breaker).  0: no limit.
    "breaker_monitor_alerts": 0,
    # Which scopes alerts trip: a bit per scope of SCOPE_BITS (31: all five).
    "breaker_scopes": 31,
}
SCOPE_BITS = {"account": 1, "submitter": 2, "system": 4, "kind": 8, "country": 16}
MAX_TRIPPED_BY = 64  # alert ids kept per trip (the last ones in the window)
# Persisted breaker state (schema.META_BREAKERS): a node restarts from it
# rather than from block 1 (node/breakers.py).
STATE_DOMAIN = b"ledger:breakers:v2\x00"
# The rule a verdict names when an open breaker turns ``allow`` into
# ``review`` (PROTOCOL §10.5, §12.3): ``breaker:<scope>:<value>``.
RULE_PREFIX = "breaker:"
REASON_OPEN = "breaker_open"


def scopes_of(record: Record) -> list[tuple[str, str]]:
    """The scopes a record lies in (its origin fields where present)."""
    out = [("submitter", to_hex(record.submitter)), ("kind", record.kind)]
    for scope, key in (("account", "account"), ("system", "system"), ("country", "country")):
        value = record.origin.get(key)
        if value:
            out.append((scope, value))
    return out


def rules(params: Mapping[str, Any]) -> dict[str, int]:
    """The breaker params in force; a genesis value that is not a
    non-negative integer counts as absent (gov.params.set takes integers only)."""
    out = {}
    for name, default in PARAM_DEFAULTS.items():
        value = params.get(name, default)
        out[name] = value if type(value) is int and value >= 0 else default
    return out


@dataclass
class Breaker:
    scope: str
    value: str
    opened_at: int = -1          # block time (ms) of the trip; -1 while closed
    opened_height: int = 0
    tripped_by: list[bytes] = field(default_factory=list)
    cooldown_ms: int = 0
    recent: deque[tuple[int, bytes, bytes]] = field(default_factory=deque)  # (time, monitor, alert)

    def state(self, time_ms: int) -> str:
        if self.opened_at < 0:
            return "closed"
        return "open" if time_ms < self.opened_at + self.cooldown_ms else "half_open"

    def to_json(self, time_ms: int) -> dict[str, Any]:
        doc: dict[str, Any] = {"scope": self.scope, "value": self.value,
                               "state": self.state(time_ms)}
        if self.opened_at >= 0:
            doc.update(opened_height=self.opened_height, opened_time=self.opened_at,
                       half_open_time=self.opened_at + self.cooldown_ms,
                       tripped_by=[to_hex(i) for i in self.tripped_by])
        doc["alerts_in_window"] = len(self.recent)
        return doc


@dataclass(frozen=True)
class Transition:
    height: int
    time: int
    scope: str
    value: str
    to: str               # "open" or "closed"
    records: tuple[bytes, ...]  # the alerts that tripped it, or the close record

    def to_json(self) -> dict[str, Any]:
        return {"height": self.height, "time": self.time, "scope": self.scope,
                "value": self.value, "to": self.to, "records": [to_hex(r) for r in self.records]}

    def entry(self) -> BreakerEntry:
        """What its block commits of it (PROTOCOL §10.5): the header gives height and time."""
        return BreakerEntry(self.scope, self.value, self.to, self.records)


class Breakers:
    """The breakers after the blocks applied so far (one block at a time, in order)."""

    def __init__(self) -> None:
        self.height = 0
        self.time = 0
        self.breakers: dict[tuple[str, str], Breaker] = {}
        self.transitions: list[Transition] = []
        # Per monitor, the block times of its alerts counted in the window
        # (for breaker_monitor_alerts); ``flooded``: alerts that limit left
        # uncounted.
        self.monitors: dict[bytes, deque[int]] = {}
        self.flooded = 0

    def idle(self, params: Mapping[str, Any]) -> bool:
        """Whether no record of a block under ``params`` can change anything
        but the height: alerts are not counted (``breaker_alerts`` 0) and no
        breaker holds state for a close record to change."""
        return not self.breakers and rules(params)["breaker_alerts"] == 0

    def skip_block(self, height: int, time_ms: int) -> None:
        """Advance past block ``height`` when :meth:`idle` (its records unread)."""
        if height != self.height + 1:
            raise ValueError(f"block {height} applied after block {self.height}")
        self.height, self.time = height, time_ms

    def open_at(self, time_ms: int) -> set[tuple[str, str]]:
        """Every ``(scope, value)`` open at block time ``time_ms``."""
        return {k for k, b in self.breakers.items() if b.state(time_ms) == "open"}

    def monitor_alerts(self, monitor: bytes, time_ms: int, window_ms: int) -> int:
        """The monitor's alerts counted in the window ending at ``time_ms``."""
        times = self.monitors.get(monitor)
        return 0 if times is None else sum(1 for t in times if t >= time_ms - window_ms)

    def is_open(self, scope: str, value: str, time_ms: int | None = None) -> bool:
        """Whether the breaker of ``(scope, value)`` is open at block time
        ``time_ms`` (default: the last applied block's)."""
        b = self.breakers.get((scope, value))
        return b is not None and b.state(self.time if time_ms is None else time_ms) == "open"

    def open_for(self, record: Record, time_ms: int) -> list[tuple[str, str]]:
        """The open breakers whose scope holds ``record`` (verdict ``review``)."""
        return [s for s in scopes_of(record) if self.is_open(*s, time_ms)]

    def apply_block(self, height: int, time_ms: int, records: Iterable[Record],
                    params: Mapping[str, Any], lookup: Callable[[bytes], Record | None]) -> None:
        """Advance past the committed block at ``height`` with block time
        ``time_ms`` (its header's); ``params`` are those in force at ``height``."""
        if height != self.height + 1:
            raise ValueError(f"block {height} applied after block {self.height}")
        r = rules(params)
        if self.monitors and r["breaker_alerts"] > 0:
            self._expire_monitors(time_ms - r["breaker_window_ms"])
        for record in records:
            if record.kind == ALERT and r["breaker_alerts"] > 0:
                self._alert(height, time_ms, record, r, lookup)
            elif record.kind == BREAKER_CLOSE:
                self._close(height, time_ms, record)
        self.height, self.time = height, time_ms

    def preview(self, height: int, time_ms: int, records: Sequence[Record],
                params: Mapping[str, Any],
                lookup: Callable[[bytes], Record | None]) -> tuple[Transition, ...]:
        """The transitions :meth:`apply_block` would make for the same block,
        leaving ``self`` as it is (a proposer's and a validator's verdicts of a
        candidate block): the breakers and monitors the block's records can
        touch are copied and the block is applied to the copies."""
        r = rules(params)
        keys: set[tuple[str, str]] = set()
        monitors: set[bytes] = set()
        for record in records:
            if record.kind == ALERT and r["breaker_alerts"] > 0 and len(record.parents) == 1:
                flagged = lookup(record.parents[0])
                if flagged is not None:
                    monitors.add(record.submitter)
                    keys.update(scopes_of(flagged))
            elif record.kind == BREAKER_CLOSE:
                keys.add((record.body["scope"], record.body["value"]))
        if not keys:
            return ()
        fork = Breakers()
        fork.height, fork.time = self.height, self.time
        for key in keys:
            b = self.breakers.get(key)
            if b is not None:
                fork.breakers[key] = replace(b, tripped_by=list(b.tripped_by),
                                             recent=deque(b.recent))
        for monitor in monitors:
            times = self.monitors.get(monitor)
            if times is not None:
                fork.monitors[monitor] = deque(times)
        fork.apply_block(height, time_ms, records, params, lookup)
        return tuple(fork.transitions)

    def _alert(self, height: int, t: int, alert: Record, r: dict[str, int],
               lookup: Callable[[bytes], Record | None]) -> None:
        if alert.body.get("score", 0) < r["breaker_min_score"] or len(alert.parents) != 1:
            return
        flagged = lookup(alert.parents[0])
        if flagged is None:  # a valid alert's parent is committed: never for valid blocks
            return
        # Every counted alert is kept per monitor (for the window), so a
        # limit set later counts the alerts before it too.
        times = self.monitors.setdefault(alert.submitter, deque())
        limit = r["breaker_monitor_alerts"]
        if limit and len(times) >= limit:
            self.flooded += 1
            return
        times.append(t)
        mask = r["breaker_scopes"]
        for scope, value in scopes_of(flagged):
            if not mask & SCOPE_BITS[scope]:
                continue
            b = self.breakers.get((scope, value))
            if b is None:
                b = self.breakers[(scope, value)] = Breaker(scope, value)
            while b.recent and b.recent[0][0] < t - r["breaker_window_ms"]:
                b.recent.popleft()
            b.recent.append((t, alert.submitter, alert.id))
            state = b.state(t)
            if state == "open":
                continue
            monitors = {m for _, m, _ in b.recent}
            if state == "half_open" or (len(b.recent) >= r["breaker_alerts"]
                                        and len(monitors) >= r["breaker_monitors"]):
                # The last alerts of the window: the one that tripped it is
                # named last, and is in the block that commits the trip.
                trip = [a for _, _, a in b.recent][-MAX_TRIPPED_BY:] if state == "closed" \
                    else [alert.id]
                b.opened_at, b.opened_height, b.tripped_by = t, height, trip
                b.cooldown_ms = r["breaker_cooldown_ms"]
                self.transitions.append(Transition(height, t, scope, value, "open", tuple(trip)))

    def _expire_monitors(self, cutoff: int) -> None:
        for monitor in list(self.monitors):
            times = self.monitors[monitor]
            while times and times[0] < cutoff:
                times.popleft()
            if not times:
                del self.monitors[monitor]

    def _close(self, height: int, t: int, record: Record) -> None:
        key = (record.body["scope"], record.body["value"])
        b = self.breakers.get(key)
        if b is None or b.opened_at < 0:
            return  # closing a closed breaker changes nothing
        del self.breakers[key]
        self.transitions.append(Transition(height, t, key[0], key[1], "closed", (record.id,)))

    def to_bytes(self) -> bytes:
        """``STATE_DOMAIN + canonical(map)``: equal states give equal bytes."""
        return STATE_DOMAIN + canonical({
            "height": self.height, "time": self.time,
            "breakers": [[b.scope, b.value, b.opened_at, b.opened_height, b.tripped_by,
                          b.cooldown_ms, [list(x) for x in b.recent]]
                         for _, b in sorted(self.breakers.items())],
            "transitions": [[t.height, t.time, t.scope, t.value, t.to, list(t.records)]
                            for t in self.transitions],
            "monitors": [[m, list(times)] for m, times in sorted(self.monitors.items())],
            "flooded": self.flooded,
        })

    def to_json(self) -> dict[str, Any]:
        """``GET /v1/breakers`` (PROTOCOL §12.3): every breaker not closed, and
        every transition so far."""
        return {"height": self.height, "time": self.time,
                "breakers": [b.to_json(self.time) for _, b in sorted(self.breakers.items())
                             if b.opened_at >= 0],
                "transitions": [t.to_json() for t in self.transitions],
                "flooded_alerts": self.flooded}


def breakers_from_bytes(data: bytes) -> Breakers:
    """The breakers :meth:`Breakers.to_bytes` wrote; raises
    :class:`StorageCorruption` for anything else."""
    try:
        if not data.startswith(STATE_DOMAIN):
            raise StorageCorruption("breaker state: wrong domain")
        doc = decode(data[len(STATE_DOMAIN):])
        out = Breakers()
        out.height, out.time = doc["height"], doc["time"]
        for scope, value, opened_at, opened_height, tripped_by, cooldown, recent in doc["breakers"]:
            out.breakers[(scope, value)] = Breaker(
                scope, value, opened_at, opened_height, list(tripped_by), cooldown,
                deque((t, m, a) for t, m, a in recent))
        out.transitions = [Transition(h, t, scope, value, to, tuple(records))
                           for h, t, scope, value, to, records in doc["transitions"]]
        out.monitors = {m: deque(times) for m, times in doc["monitors"]}
        out.flooded = doc["flooded"]
        if type(out.height) is not int or out.height < 0:
            raise StorageCorruption("breaker state: bad height")
        if out.to_bytes() != data:
            raise StorageCorruption("breaker state: not in canonical form")
        return out
    except StorageCorruption:
        raise
    except (LedgerError, KeyError, TypeError, ValueError) as exc:
        raise StorageCorruption(f"breaker state does not decode: {exc}") from None
