"""Every record's verdict, and multi-party approval, block by block (PROTOCOL §10.5-10.7).

:class:`VerdictState` is what a node (and an auditor replaying a chain)
keeps besides the membership: the policy engine, the held records waiting
for approvals, and whether the chain builds version 2 headers yet.  It is
derived from committed blocks only:

- :meth:`VerdictState.compute` is pure: the verdicts and transitions of a
  candidate block (what a proposer puts in the header, what a validator
  recomputes before it votes);
- :meth:`VerdictState.commit` advances the state past the committed block.

With no policy ever in force (the policy engine's version 0 and every
header so far version 1) and circuit breakers off (the param
``breaker_alerts`` 0) a block is version 1 and nothing is computed: every
record is allowed, as before policies existed.

The circuit breakers (:mod:`ledger.breakers`) are part of this state: the
breakers after block h - 1 turn the ``allow`` (or ``approve``) of a record
of block h that lies in the scope of an open breaker into ``review``, rule
``breaker:<scope>:<value>`` (PROTOCOL §10.5, §12.3); :meth:`commit`
advances them past each block.  ``lookup`` finds a committed record by id
(the record an alert flags); without one the state keeps an index of the
records it has committed (an auditor's replay, the simulator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .blocks import HEADER_VERSION, HEADER_VERSION_VERDICTS, Header
from .breakers import REASON_OPEN, RULE_PREFIX, Breakers
from .breakers import Transition as BreakerTransition
from .breakers import rules as breaker_rules
from .crypto import digest_equal
from .errors import HeaderError
from .governance import GOV_PREFIX
from .held import Deadlines, Held, HeldOverlay
from .membership import State, is_governance
from .policy import BlockInputs, Decision, Outcome, PolicyEngine, RecordInput
from .policy.state import STATE_KINDS
from .records import Envelope, Record
from .reviews import judge_decision, review_entry
from .risk import BREAKER_SCOPES, DECISION, RISK_PREFIX
from .verdict_pack import PackedEntries, Shape, ShapeTable, pack, split
from .verdicts import (
    MAX_TEXT,
    BlockVerdictList,
    Status,
    Transition,
    Verdict,
    VerdictTemplate,
    packed_root,
    verdict_root,
)

__all__ = ["Held", "VerdictState", "BlockVerdicts", "VerdictMismatch"]

APPROVAL_KIND = "approval"
_SPECIAL_KINDS = frozenset({APPROVAL_KIND, DECISION})  # judged by the chain, not the policy
APPROVAL_WINDOW_PARAM = "approval_window_ms"
DEFAULT_APPROVAL_WINDOW_MS = 24 * 3600 * 1000
# Verdict templates kept between blocks (one per distinct policy decision
# seen; all dropped beyond this many).
MAX_TEMPLATES = 4096

# Rules and reasons the chain itself writes into verdicts (PROTOCOL §10.7).
RULE_GOVERNANCE = "governance"
RULE_APPROVAL = "approval"
REASON_BAD_APPROVAL = "bad_approval"      # not exactly one parent
REASON_NOT_HELD = "not_held"              # the parent is not a held record
REASON_EXPIRED = "approval_expired"       # after the held record's deadline
REASON_SELF = "self_approval"             # the held record's own submitter
REASON_NOT_APPROVER = "not_an_approver"   # lacks the role at the approval's height
REASON_REPEAT = "repeat_approval"         # this approver already counted


class VerdictMismatch(HeaderError):
    """A header's version or verdict root differs from the verdicts this
    validator derives for the block from committed state."""

    step = "verdicts"


@dataclass(frozen=True)
class BlockVerdicts:
    """What a block commits about its records' verdicts, and the state after it."""

    version: int
    root: bytes | None
    verdicts: Sequence[Verdict] = ()         # empty in a version 1 block
    transitions: tuple[Transition, ...] = ()
    # The open records the block changes: opened, counted for, escalated
    # (the entry after the block) or ended (None).
    held: Mapping[bytes, Held | None] = field(default_factory=dict)
    inputs: Sequence[RecordInput] = ()        # what the engine saw (for commit_block)
    decisions: tuple[Decision, ...] = ()
    envelopes: Sequence[Envelope] = ()        # the block's (the breakers read its alerts)
    params: Mapping[str, Any] = field(default_factory=dict)  # in force at its height
    breakers: tuple[BreakerTransition, ...] = ()  # the breaker transitions its records make
    # :attr:`entries` by shape (ledger/verdict_pack.py), when compute made them
    packed: PackedEntries | None = None

    @property
    def entries(self) -> list[bytes]:
        """The block's entry bytes: its verdicts in log order, then its
        transitions, then its breaker entries (PROTOCOL §10.5)."""
        if self.packed is not None:
            return self.packed.entries()
        return ([v.to_bytes() for v in self.verdicts] + [t.to_bytes() for t in self.transitions]
                + [b.entry().to_bytes() for b in self.breakers])

    def check(self, header: Header) -> None:
        """Raise :class:`VerdictMismatch` unless ``header`` commits exactly these."""
        if header.version != self.version:
            raise VerdictMismatch(f"header version {header.version}, the verdicts of block "
                                  f"{header.height} need version {self.version}")
        if self.root is not None and header.verdicts is not None \
                and not digest_equal(header.verdicts, self.root):
            raise VerdictMismatch(f"block {header.height}'s verdict root differs from the "
                                  "verdicts this validator derives")


def approval_window(params: Mapping[str, Any]) -> int:
    value = params.get(APPROVAL_WINDOW_PARAM, DEFAULT_APPROVAL_WINDOW_MS)
    return value if isinstance(value, int) and value >= 0 else DEFAULT_APPROVAL_WINDOW_MS


def record_inputs(state: State, envelopes: Sequence[Envelope]) -> BlockInputs:
    """What the policy sees of each record: it and its submitter's roles in force."""
    submitters = state.submitters
    none: frozenset[str] = frozenset()
    records = [env.record for env in envelopes]
    roles: list[frozenset[str]] = []
    append = roles.append
    for record in records:
        sub = submitters.get(record.submitter)
        append(sub.roles if sub is not None else none)
    return BlockInputs(records, roles)


class VerdictState:
    """The policy engine, the held records and the header version of the tip."""

    def __init__(self, engine: PolicyEngine | None = None,
                 held: Mapping[bytes, Held] | None = None,
                 version: int = HEADER_VERSION, breakers: Breakers | None = None,
                 lookup: Callable[[bytes], Record | None] | None = None) -> None:
        self.engine = engine if engine is not None else PolicyEngine()
        self.held: dict[bytes, Held] = dict(held or {})
        self._deadlines = Deadlines(self.held)
        self.version = version
        self.breakers = breakers if breakers is not None else Breakers()
        self._index: dict[bytes, Record] | None = None if lookup is not None else {}
        self.lookup: Callable[[bytes], Record | None] = (
            lookup if lookup is not None else self._index.get)  # type: ignore[union-attr]
        # The verdict templates of the policy's decisions, kept from block to
        # block (the engine's memo keeps its decision objects), not made
        # again in each block (docs/performance.md).
        self._templates: dict[int, tuple[Decision, VerdictTemplate]] = {}

    def _plain(self) -> bool:
        """The base engine (no policy can ever be installed): nothing to tell it."""
        return type(self.engine) is PolicyEngine

    def next_version(self, params: Mapping[str, Any] | None = None) -> int:
        """Version 2 from the first height a policy is in force or the
        breakers are on (``params``, in force at that height, with
        ``breaker_alerts`` above 0), for good (PROTOCOL §10.6)."""
        if self.version == HEADER_VERSION_VERDICTS or self.engine.version != 0 or self.held:
            return HEADER_VERSION_VERDICTS
        if params is not None and breaker_rules(params)["breaker_alerts"] > 0:
            return HEADER_VERSION_VERDICTS
        return HEADER_VERSION

    def compute(self, state: State, height: int, time_ms: int, envelopes: Sequence[Envelope],
                first_leaf: int) -> BlockVerdicts:
        """The verdicts of the block at ``height`` (time ``time_ms``) holding
        ``envelopes`` from leaf ``first_leaf`` on, judged with ``state``, the
        membership in force at ``height``.  Pure."""
        version = self.next_version(state.params)
        if version == HEADER_VERSION:
            if self._plain():
                return BlockVerdicts(HEADER_VERSION, None, envelopes=envelopes,
                                     params=state.params)
            # No policy in force yet, but the engine must see the records that
            # may install one or change its lists and tiers (PolicyState.commit
            # passes over every other); nothing to decide.
            return BlockVerdicts(HEADER_VERSION, None,
                                 inputs=record_inputs(state, [
                                     env for env in envelopes
                                     if env.record.kind in STATE_KINDS]),
                                 envelopes=envelopes, params=state.params)
        inputs = record_inputs(state, envelopes)
        decisions = tuple(self.engine.evaluate_block(height, time_ms, inputs))
        if len(decisions) != len(inputs):
            raise RuntimeError("policy engine returned a verdict count unlike the records'")
        if len(self._templates) > MAX_TEMPLATES:
            self._templates.clear()
        judge = _Judge(self.held, self._deadlines, state, time_ms,
                       approval_window(state.params), self.engine.version,
                       self.breakers.open_at(time_ms), self._templates)
        verdicts = judge.verdicts(envelopes, decisions, first_leaf)
        transitions = judge.transitions()
        breakers: tuple[BreakerTransition, ...] = ()
        if not self.breakers.idle(state.params):
            risk, lookup = self._risk_records(envelopes)
            if risk:
                breakers = self.breakers.preview(height, time_ms, risk, state.params, lookup)
        rest = [t.to_bytes() for t in transitions] + [b.entry().to_bytes() for b in breakers]
        packed = judge.packed(verdicts, rest)
        if packed is not None:
            verdicts_root = packed_root(packed)
        else:  # more shapes than the packed form numbers: the plain entries
            verdicts_root = verdict_root([v.to_bytes() for v in verdicts] + rest, len(verdicts))
        return BlockVerdicts(version, verdicts_root, verdicts, transitions, judge.held.changes,
                             inputs, decisions, envelopes, state.params, breakers, packed)

    def commit(self, height: int, time_ms: int, block: BlockVerdicts) -> None:
        """Advance past the committed block whose verdicts are ``block``."""
        if block.inputs or not self._plain():
            self.engine.commit_block(height, time_ms, block.inputs, block.decisions)
        if block.version == HEADER_VERSION_VERDICTS:
            for record, entry in block.held.items():
                if entry is None:
                    self.held.pop(record, None)
                    continue
                if record not in self.held:
                    self._deadlines.add(entry)
                self.held[record] = entry
            self._deadlines.advance(time_ms, self.held)
        self.version = block.version
        self.commit_breakers(height, time_ms, block.envelopes, block.params)

    def commit_breakers(self, height: int, time_ms: int, envelopes: Sequence[Envelope],
                        params: Mapping[str, Any]) -> None:
        """Advance the breakers (and the record index, if kept) past block ``height``."""
        if self._index is not None:
            for env in envelopes:
                self._index[env.id] = env.record
        elif self.breakers.idle(params):
            self.breakers.skip_block(height, time_ms)  # breakers off: no record read
            return
        risk, lookup = self._risk_records(envelopes)
        self.breakers.apply_block(height, time_ms, risk, params, lookup)

    def _risk_records(self, envelopes: Sequence[Envelope]
                      ) -> tuple[list[Record], Callable[[bytes], Record | None]]:
        """The block's ``risk.*`` records, and a lookup that finds the
        block's records as well as committed ones (an alert may flag a
        record earlier in its block)."""
        risk = [env.record for env in envelopes if env.record.kind.startswith(RISK_PREFIX)]
        if not risk:
            return risk, self.lookup
        block = {env.id: env.record for env in envelopes}
        outer = self.lookup

        def lookup(record_id: bytes) -> Record | None:
            found = block.get(record_id)
            return found if found is not None else outer(record_id)
        return risk, lookup


def _text(value: str) -> str:
    return value[:MAX_TEXT]


class _Judge:
    """One block's pass over its records: policy verdicts, approvals counted."""

    def __init__(self, held: Mapping[bytes, Held], deadlines: Deadlines, state: State,
                 time_ms: int, window: int, policy: int,
                 open_breakers: set[tuple[str, str]],
                 templates: dict[int, tuple[Decision, VerdictTemplate]]) -> None:
        self.held = HeldOverlay(held)  # the committed ones never written: compute stays pure
        self.deadlines = deadlines
        self.state = state
        self.time_ms = time_ms
        self.window = window
        self.policy = policy
        self.open = open_breakers
        # Records an approval or a decision of this block named: with the
        # expired ones, the only held records that can end in the block.
        self.touched: set[bytes] = set()
        # The verdicts' bytes by shape (ledger/verdict_pack.py): the block's
        # shapes, each verdict's shape number, and the templates' numbers.
        self.shapes = ShapeTable()
        self.slots: list[int] = []
        self._slot_of: dict[VerdictTemplate, int] = {}
        self._overflow = False
        # The policy's decisions (the engine shares one object among the
        # records it decides alike): id -> (the decision, its verdicts).
        self._templates = templates

    def verdicts(self, envelopes: Sequence[Envelope], decisions: Sequence[Decision],
                 first_leaf: int) -> BlockVerdictList:
        """The block's verdicts, from leaf ``first_leaf`` on (their bytes
        numbered in :attr:`slots`)."""
        ids: list[bytes] = []
        items: list[Verdict | VerdictTemplate] = []
        add_id, add_item, add_slot = ids.append, items.append, self.slots.append
        templates, slot_of = self._templates, self._slot_of
        expiry = self.time_ms + self.window
        for leaf, (env, decision) in enumerate(zip(envelopes, decisions), start=first_leaf):
            rid = env.id
            add_id(rid)
            kind = env.record.kind
            if kind in _SPECIAL_KINDS or kind.startswith(GOV_PREFIX) or self.open:
                verdict = self._verdict(env, leaf, decision)
                add_item(verdict)
                add_slot(self._split(verdict.to_bytes(), rid))
                continue
            # The common case: a policy's decision on a record, no breaker open.
            found = templates.get(id(decision))
            if found is None or found[0] is not decision or (
                    found[1].deadline != expiry and found[1].outcome == Outcome.APPROVE):
                # (an approve verdict's deadline is the block's time + the window)
                found = (decision, VerdictTemplate(Verdict.of(rid, decision, expiry)))
                templates[id(decision)] = found
            template = found[1]
            add_item(template)
            slot = slot_of.get(template)
            add_slot(slot if slot is not None else self._template_slot(template, rid))
            outcome = template.outcome
            if outcome == Outcome.APPROVE or outcome == Outcome.REVIEW:
                self._hold(env, leaf, template)
        return BlockVerdictList(ids, items)

    def _template_slot(self, template: VerdictTemplate, rid: bytes) -> int:
        """The shape number of ``template``'s verdicts (first seen with ``rid``)."""
        if not template.before:  # no shape of its own: split each of its verdicts
            return self._split(template.entry(rid), rid)
        slot = self._slot_of[template] = self._number((template.before, template.after))
        return slot

    def _split(self, entry: bytes, rid: bytes) -> int:
        """The shape number of one verdict's bytes ``entry`` around ``rid``."""
        return self._number(split(entry, rid))

    def _number(self, shape: Shape | None) -> int:
        """``shape``'s number in the block; past what the packed form
        numbers (or no shape), the block falls back to the plain form."""
        slot = -1 if shape is None else self.shapes.slot(*shape)
        if slot < 0:
            self._overflow = True
            return 0
        return slot

    def packed(self, verdicts: BlockVerdictList, rest: list[bytes]) -> PackedEntries | None:
        """The block's entries by shape, or None if they do not fit that form."""
        if self._overflow:
            return None
        return pack(self.shapes.shapes, verdicts.ids, self.slots, rest)

    def _verdict(self, env: Envelope, leaf: int, decision: Decision) -> Verdict:
        record = env.record
        if record.kind in (APPROVAL_KIND, DECISION) and record.parents:
            self.touched.add(record.parents[0])
        if record.kind == APPROVAL_KIND:
            return self._approval(env)
        if record.kind == DECISION:
            return judge_decision(self.held, self.state, self.time_ms, env, self.policy)
        if is_governance(env):
            # Governance is judged by §9 alone: a policy can never stop its own replacement.
            return Verdict(env.id, Outcome.ALLOW, RULE_GOVERNANCE, policy=self.policy)
        verdict = Verdict.of(env.id, decision, self.time_ms + self.window)
        if self.open and verdict.outcome in (Outcome.ALLOW, Outcome.APPROVE) \
                and not record.kind.startswith(RISK_PREFIX):
            breaker = _open_breaker(record, self.open)
            if breaker is not None:
                # Held for a person like a policy's review (§10.10).
                verdict = Verdict(env.id, Outcome.REVIEW, _text(RULE_PREFIX + ":".join(breaker)),
                                  REASON_OPEN, policy=self.policy)
        self._hold(env, leaf, verdict)
        return verdict

    def _hold(self, env: Envelope, leaf: int, verdict: Verdict | VerdictTemplate) -> None:
        """Open ``env``'s entry if its verdict holds it (approve, review)."""
        record = env.record
        deadline = self.time_ms + self.window
        if verdict.outcome == Outcome.APPROVE:
            self.held[env.id] = Held(env.id, record.submitter, leaf, verdict.approvals,
                                     verdict.role, deadline, since=self.time_ms)
        elif verdict.outcome == Outcome.REVIEW:
            self.held[env.id] = review_entry(env, leaf, self.time_ms, self.state.params)

    def _deny(self, env: Envelope, reason: str) -> Verdict:
        return Verdict(env.id, Outcome.DENY, RULE_APPROVAL, reason, policy=self.policy)

    def _approval(self, env: Envelope) -> Verdict:
        record = env.record
        if len(record.parents) != 1:
            return self._deny(env, REASON_BAD_APPROVAL)
        held = self.held.get(record.parents[0])
        # An approval record counts for approve entries only: review entries
        # are decided by review decisions (§10.10).
        if held is None or held.review or held.rejected_by:
            return self._deny(env, REASON_NOT_HELD)
        if self.time_ms > held.deadline:
            return self._deny(env, REASON_EXPIRED)
        if record.submitter == held.submitter:
            return self._deny(env, REASON_SELF)
        sub = self.state.submitters.get(record.submitter)
        if sub is None or held.role not in sub.roles:
            return self._deny(env, REASON_NOT_APPROVER)
        if held.acted(record.submitter):
            return self._deny(env, REASON_REPEAT)
        self.held[held.record] = replace(held, approvers=held.approvers
                                         + ((record.submitter, env.id),))
        return Verdict(env.id, Outcome.ALLOW, RULE_APPROVAL, policy=self.policy)

    def transitions(self) -> tuple[Transition, ...]:
        """Held records rejected or approved in this block, or whose deadline
        it passed, in the log order of the held records."""
        out = []
        t = self.time_ms
        # Only records an approval or decision named, and expired ones, can
        # end here: a breaker can keep thousands open for review, so the
        # others are neither checked nor sorted (the same transitions, in
        # the same order, as a pass over every held record).  The expired
        # ones: the committed approve entries of deadline below t (the
        # deadline index), and any this block opened.
        ending = {r: self.held[r] for r in self.touched if r in self.held}
        opened = [r for r, h in self.held.changes.items() if h is not None]
        for record in self.deadlines.due(t) + opened:
            held = self.held.get(record)
            if held is not None and not held.review and held.deadline < t:
                ending[record] = held
        for held in sorted(ending.values(), key=lambda h: h.leaf_index):
            if held.rejected_by:
                out.append(Transition(held.record, Status.REJECTED, (held.rejected_by,)))
                del self.held[held.record]
                continue
            if len(held.approvers) >= held.needed:
                status = Status.APPROVED
            elif not held.review and held.deadline < t:
                status = Status.EXPIRED
            else:
                continue
            out.append(Transition(held.record, status, tuple(r for _, r in held.approvers)))
            del self.held[held.record]
        return tuple(out)


def _open_breaker(record: Record, open_breakers: set[tuple[str, str]]) -> tuple[str, str] | None:
    """The first open breaker, in the order of :data:`BREAKER_SCOPES`, whose
    scope holds ``record``."""
    for scope in BREAKER_SCOPES:
        if scope == "submitter":
            value: Any = record.submitter.hex()
        elif scope == "kind":
            value = record.kind
        else:
            value = record.origin.get(scope)
        if value and (scope, value) in open_breakers:
            return scope, value
    return None
