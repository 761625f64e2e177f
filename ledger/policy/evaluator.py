"""The CEL policy engine behind :class:`ledger.policy.PolicyEngine` (PROTOCOL §10).

:func:`load_policy_engine` gives the engine of a node or an auditor: fed
every committed block (:meth:`CelPolicyEngine.commit_block`), it judges the
records of the next one (:meth:`CelPolicyEngine.evaluate_block`, pure).

Speed (docs/performance.md, "Policy evaluation"): each rule is compiled
once; a record's inputs are what its rules read and nothing more; and the
verdict of a record whose inputs equal an earlier record's is taken from a
memo instead of calling CEL again.  The memo is exact: CEL is a pure
function of its inputs, the key holds the value of every input path a rule
of the policy reads, and an integer input that rules only compare with
integer literals enters the key as its position among those literals
(every value between two neighbouring literals gives every comparison the
same answer).  The memo only saves time; what it answers is what CEL
would.

Each policy's per-record pass is specialised once (:mod:`.fastpath`): one
generated function per policy judges a block, and keeps each record's window
keys so that committing the block does not compute them again.  The path
below (``fast=False``) is its reference: the differential test runs both.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..records import Record
from .cel import analyse, compile_list, compile_rule
from .engine import Decision, Outcome, PolicyEngine, RecordInput
from .fastpath import BlockEntries, FastPass, build
from .rules import Policy, Rule
from .state import PolicyState, WindowSet, amount_of, field_value, state_from_bytes, window_key

MEMO_SIZE = 65_536
MISSING_FIELD = "missing_field"
POLICY_ERROR = "policy_error"
_MISSING = object()
_BOOL = object()
_COMPOSITE = object()
_LIST = object()
_OTHER = object()
_INTERVAL = object()
_NOT_MAP = object()
_RANK = {Outcome.DENY: 0, Outcome.REVIEW: 1, Outcome.APPROVE: 2, Outcome.ALLOW: 3}


def _part(value: Any) -> Any:
    """A hashable stand-in for ``value`` that equals another's only when CEL
    cannot tell the two apart (``True == 1`` in Python, not in CEL).  Maps
    and lists part by part (never by encoding them: a window's sum can be
    beyond what canonical bytes hold)."""
    t = type(value)
    if t is str or t is int or t is bytes or value is None or value is _MISSING:
        return value
    if t is bool:
        return (_BOOL, value)
    if t is tuple:  # a record's parents (bytes): the key view's own tuple, never CEL's
        return value
    if t is dict:  # keys are str (canonical maps, the derived inputs)
        return (_COMPOSITE, tuple(sorted((k, _part(v)) for k, v in value.items())))
    if t is list:
        return (_LIST, tuple(_part(v) for v in value))
    return (_OTHER, repr(value))  # nothing else is in a record or the inputs


def _walk(value: Any, names: Sequence[str]) -> Any:
    for name in names:
        if type(value) is not dict:
            return (_NOT_MAP, _part(value))
        value = value.get(name, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _beyond_int64(act: dict[str, Any]) -> bool:
    """Whether an int of the derived inputs is beyond int64 (a window's sum
    can be): CEL then refuses the whole input, so every rule fails, also
    one that reads none of them, and the memo key must say so."""
    block = act.get("block")
    if block is not None and any(v >= 2**63 for v in block.values()):
        return True
    return any(v >= 2**63 for w in act.get("velocity", {}).values() for v in w.values())


_RECORD_ATTRS = {"kind": "kind", "ts": "ts", "nonce": "nonce", "id": "id",
                  "submitter": "submitter", "parents": "parents"}


def _getter(names: tuple[str, ...]) -> Callable[[Record, tuple[str, ...], dict[str, Any]], Any]:
    """The raw value of a path for the memo key: the record's own values
    (bytes where CEL sees hex: one to one), the derived inputs as CEL sees them."""
    root, rest = names[0], names[1:]
    if root == "record":
        if not rest:
            return lambda r, roles, act: r.id  # the whole record: its id names its content
        head, tail = rest[0], rest[1:]
        if head in ("body", "origin"):
            if len(tail) == 1:
                name = tail[0]
                if head == "body":
                    return lambda r, roles, act: r.body.get(name, _MISSING)
                return lambda r, roles, act: r.origin.get(name, _MISSING)
            return lambda r, roles, act: _walk(getattr(r, head), tail)
        if head in _RECORD_ATTRS and not tail:
            attr = _RECORD_ATTRS[head]
            return lambda r, roles, act: getattr(r, attr)
        return lambda r, roles, act: _MISSING if not tail else (_NOT_MAP, head, tail)
    if root == "submitter":
        if rest == ("key",):
            return lambda r, roles, act: r.submitter
        if rest == ("roles",):
            return lambda r, roles, act: roles
        if not rest:
            return lambda r, roles, act: (r.submitter, roles)
        return lambda r, roles, act: (_NOT_MAP, rest)
    return lambda r, roles, act: _walk(act, names)


@dataclass(frozen=True)
class _Path:
    names: tuple[str, ...]
    literals: tuple[int, ...] | None  # sorted; None: the value itself keys the memo
    get: Callable[[Record, tuple[str, ...], dict[str, Any]], Any]

    def part(self, record: Record, roles: tuple[str, ...], act: dict[str, Any]) -> Any:
        value = self.get(record, roles, act)
        lits = self.literals
        if lits is not None and type(value) is int and -(2**63) <= value < 2**63:
            i = bisect_left(lits, value)
            return (_INTERVAL, i, i < len(lits) and lits[i] == value)
        return _part(value)


class CompiledPolicy:
    """A policy's rules compiled, the paths they read, and the memo."""

    def __init__(self, policy: Policy, fast: bool = True) -> None:
        self.policy = policy
        self.rules = policy.rules
        self.programs = [compile_rule(r.when) for r in policy.rules]
        reads = [analyse(r.when) for r in policy.rules]
        self.rule_paths = [r.paths for r in reads]  # what each rule reads
        paths: set[tuple[str, ...]] = set().union(*(r.paths for r in reads))
        literals: dict[tuple[str, ...], set[int]] = {}
        for path in paths:
            lits: set[int] = set()
            for r in reads:
                if path in r.paths:
                    if path not in r.compared:
                        break
                    lits |= r.compared[path]
            else:
                literals[path] = lits
        self.paths = tuple(_Path(p, tuple(sorted(literals[p])) if p in literals else None,
                                 _getter(p)) for p in sorted(paths))
        self.roots = frozenset(p[0] for p in paths)
        self.windows = sorted({p[1] for p in paths if p[0] == "velocity" and len(p) > 1}
                              if not ("velocity",) in paths else policy.windows)
        self.lookups = sorted({p[1] for p in paths if p[0] == "listed" and len(p) > 1}
                              if not ("listed",) in paths else policy.lookups)
        self._by_kind: dict[str, tuple[int, ...]] = {}
        self._combined: dict[tuple[int, ...], Any] = {}
        self.memo: dict[tuple[Any, ...], Decision] = {}
        self.memo_size = MEMO_SIZE  # 0: every record goes to CEL (scripts/bench-policy --no-memo)
        self.misses = 0
        self.errors = 0  # rule evaluations that raised (deny policy_error / missing_field)
        self.fast: FastPass | None = build(self, _part, _MISSING) if fast else None

    def applicable(self, kind: str) -> tuple[int, ...]:
        rules = self._by_kind.get(kind)
        if rules is None:
            rules = tuple(i for i, r in enumerate(self.rules)
                          if r.kinds is None or kind in r.kinds)
            if len(self._by_kind) < 4096:
                self._by_kind[kind] = rules
        return rules

    def decide(self, record: Record, roles: tuple[str, ...], act: dict[str, Any],
               activation: Callable[[], dict[str, Any]]) -> Decision:
        """The verdict for ``record`` with the derived inputs ``act``;
        ``activation`` builds CEL's input when the memo does not know it."""
        kind = record.kind
        rules = self.applicable(kind)
        key = (kind, _beyond_int64(act), *[p.part(record, roles, act) for p in self.paths])
        decision = self.memo.get(key)
        if decision is None:
            self.misses += 1
            decision = self._evaluate(rules, activation())
            if len(self.memo) >= self.memo_size:
                self.memo.clear()
            if self.memo_size:
                self.memo[key] = decision
        return decision

    def miss(self, record: Record, roles: frozenset[str], key: tuple[Any, ...],
             inputs: dict[str, Any]) -> Decision:
        """The fast pass's memo miss: CEL decides, the memo keeps it under ``key``."""
        self.misses += 1
        decision = self._evaluate(self.applicable(record.kind),
                                  cel_input(record, roles, inputs))
        if len(self.memo) >= self.memo_size:
            self.memo.clear()
        if self.memo_size:
            self.memo[key] = decision
        return decision

    def _evaluate(self, rules: tuple[int, ...], activation: dict[str, Any]) -> Decision:
        results: list[Any]
        if not rules:
            results = []
        else:
            program = self._combined.get(rules)
            if program is None:
                program = self._combined[rules] = compile_list([self.rules[i].when for i in rules])
            value = program.eval(data=activation)
            plain = value.plain_value() if value.type().name().lower() != "error" else None
            if isinstance(plain, list) and all(type(v) is bool for v in plain):
                results = plain
            else:  # one rule failed: ask each for its own answer
                results = []
                for i in rules:
                    v = self.programs[i].eval(data=activation)
                    results.append(v.value() if v.type().name().lower() == "bool" else
                                   str(v.value()) if v.type().name().lower() == "error" else
                                   f"not a boolean: {v.type().name()}")
        return self._combine([self.rules[i] for i in rules], results)

    def _combine(self, rules: Sequence[Rule], results: Sequence[Any]) -> Decision:
        version = self.policy.version
        best: tuple[int, int, Rule] | None = None  # (rank, -approvals, rule)
        for rule, result in zip(rules, results):
            if result is True:
                then = rule.then
                cand = (_RANK[then.outcome], -then.approvals, rule)
            elif result is False:
                continue
            else:
                self.errors += 1
                reason = MISSING_FIELD if str(result).startswith("NOT_FOUND") else POLICY_ERROR
                return Decision(Outcome.DENY, rule=rule.name, reason=reason,
                                policy_version=version)
            if best is None or cand[:2] < best[:2]:
                best = cand
        if best is None:
            d = self.policy.default
            return Decision(d.outcome, "", d.reason, d.approvals, d.role, version)
        then = best[2].then
        return Decision(then.outcome, best[2].name, then.reason, then.approvals, then.role,
                        version)


class CelPolicyEngine(PolicyEngine):
    """The policy in force and its inputs, derived from committed blocks."""

    def __init__(self, state: PolicyState | None = None, fast: bool = True) -> None:
        self.state = state if state is not None else PolicyState()
        self._fast = fast
        self._compiled: CompiledPolicy | None = None
        # The last block the fast pass judged, for commit_block: its height,
        # time, records, the policy, each window's entries and the block's
        # governance and risk-tier records.
        self._last: tuple[int, int, Sequence[RecordInput], Policy, BlockEntries,
                          list[RecordInput]] | None = None
        self._recompile()

    def _recompile(self) -> None:
        policy = self.state.policy
        self._compiled = CompiledPolicy(policy, self._fast) if policy is not None else None
        self._last = None

    @property
    def version(self) -> int:
        return self.state.policy.version if self.state.policy is not None else 0

    def state_bytes(self) -> bytes | None:
        return self.state.to_bytes()

    def state_entries(self) -> int:
        return self.state.entries()

    @property
    def errors(self) -> int:
        """Rule evaluations that failed since this engine started (a metric)."""
        return self._compiled.errors if self._compiled is not None else 0

    def evaluate_block(self, height: int, time_ms: int,
                       records: Sequence[RecordInput]) -> list[Decision]:
        compiled = self._compiled
        if compiled is None:
            return super().evaluate_block(height, time_ms, records)
        policy = compiled.policy
        if compiled.fast is not None:
            decisions, entries, special = compiled.fast(self.state, height, time_ms, records,
                                                        compiled.miss, compiled.memo)
            self._last = (height, time_ms, records, policy, entries, special)
            return decisions
        allow = Decision(Outcome.ALLOW, policy_version=policy.version)
        block = {"height": height, "time_ms": time_ms}
        in_block: dict[tuple[str, str], tuple[int, int]] = {}
        out: list[Decision] = []
        windows = [(w, policy.windows[w], self.state.windows.get(w) or WindowSet())
                   for w in compiled.windows]
        # Each window's entries the block's time has passed but no commit pruned.
        stale = {wname: wset.stale(time_ms - window.ms) for wname, window, wset in windows}
        zero = {"count": 0, "sum": 0}
        for item in records:
            record = item.record
            amount = amount_of(record)
            # Each window's key once: this record's velocity, then the next records'.
            counts: dict[str, dict[str, int]] = {}
            for wname, window, wset in windows:
                key = window_key(record, window)
                if key is None:
                    counts[wname] = zero
                    continue
                count, total = wset.at(key, stale[wname])
                c, t = in_block.get((wname, key), (0, 0))
                in_block[(wname, key)] = (c + 1, t + amount)
                counts[wname] = {"count": count + c + 1, "sum": total + t + amount}
            if record.kind.startswith("gov."):
                out.append(allow)  # governance is never held by the policy it governs
                continue
            act = self._inputs(compiled, record, item.submitter_roles, block, counts)
            roles = tuple(sorted(item.submitter_roles)) if "submitter" in compiled.roots else ()
            out.append(compiled.decide(record, roles, act, lambda: cel_input(
                record, item.submitter_roles, act)))
        return out

    def _inputs(self, compiled: CompiledPolicy, record: Record, roles: frozenset[str],
                block: dict[str, int], velocity: dict[str, dict[str, int]]
                ) -> dict[str, Any]:
        """The derived inputs the policy reads: block, velocity, listed, risk."""
        roots = compiled.roots
        act: dict[str, Any] = {}
        if "block" in roots:
            act["block"] = block
        if "velocity" in roots:
            act["velocity"] = velocity
        if "listed" in roots:
            listed: dict[str, bool] = {}
            for lname in compiled.lookups:
                lookup = compiled.policy.lookups[lname]
                values = [field_value(record, f) for f in lookup.key]
                entries = self.state.lists.get(lookup.list)
                listed[lname] = (entries is not None
                                 and all(type(v) is str for v in values)
                                 and ":".join(values) in entries)
            act["listed"] = listed
        if "risk" in roots:
            account = record.origin.get("account")
            act["risk"] = {"tier": self.state.tiers.get(account, 0) if account else 0}
        return act

    def commit_block(self, height: int, time_ms: int, records: Sequence[RecordInput],
                     decisions: Sequence[Decision]) -> None:
        last = self._last
        self._last = None
        if last is not None and last[:2] == (height, time_ms) and last[3] is self.state.policy \
                and (last[2] is records or (len(last[2]) == len(records) and all(
                    a is b for a, b in zip(last[2], records)))):
            # The fast pass judged these very records: its window keys and
            # entries, and the only records that change anything else.
            changed = self.state.commit(height, time_ms, [(r.record, r.submitter_roles)
                                                          for r in last[5]], last[4])
        else:
            changed = self.state.commit(height, time_ms, [(r.record, r.submitter_roles)
                                                          for r in records])
        if changed:
            self._recompile()

    def to_bytes(self) -> bytes:
        return self.state.to_bytes()


def cel_input(record: Record, roles: frozenset[str], inputs: dict[str, Any]) -> dict[str, Any]:
    """CEL's input: ``inputs`` with the record and submitter, bytes as hex."""
    act = dict(inputs)
    act["record"] = {"kind": record.kind, "origin": dict(record.origin),
                     "body": dict(record.body), "ts": record.ts,
                     "nonce": record.nonce, "id": record.id.hex(),
                     "submitter": record.submitter.hex(),
                     "parents": [p.hex() for p in record.parents]}
    act["submitter"] = {"key": record.submitter.hex(), "roles": sorted(roles)}
    return act


def load_policy_engine(state: bytes | PolicyState | None = None,
                       blocks: Iterable[tuple[int, int, Sequence[RecordInput]]] = ()
                       ) -> CelPolicyEngine:
    """The engine of a node: from persisted state bytes (or a state, or
    nothing: no policy, height 0), then every committed block after it in
    order, as ``(height, time_ms, records)``."""
    if isinstance(state, bytes):
        state = state_from_bytes(state)
    engine = CelPolicyEngine(state)
    for height, time_ms, records in blocks:
        if height <= engine.state.height:
            continue  # already in the persisted state
        engine.commit_block(height, time_ms, records, ())
    return engine


__all__ = ["CelPolicyEngine", "CompiledPolicy", "load_policy_engine"]
