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
header so far version 1) a block is version 1 and nothing is computed:
every record is allowed, as before policies existed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .blocks import HEADER_VERSION, HEADER_VERSION_VERDICTS, Header
from .crypto import digest_equal
from .errors import HeaderError
from .held import Held
from .membership import State, is_governance
from .policy import Decision, Outcome, PolicyEngine, RecordInput
from .records import Envelope
from .reviews import judge_decision, review_entry
from .risk import DECISION
from .verdicts import Status, Transition, Verdict, verdict_root

__all__ = ["Held", "VerdictState", "BlockVerdicts", "VerdictMismatch"]

APPROVAL_KIND = "approval"
APPROVAL_WINDOW_PARAM = "approval_window_ms"
DEFAULT_APPROVAL_WINDOW_MS = 24 * 3600 * 1000

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
    verdicts: tuple[Verdict, ...] = ()       # empty in a version 1 block
    transitions: tuple[Transition, ...] = ()
    held: Mapping[bytes, Held] = field(default_factory=dict)  # after the block
    inputs: tuple[RecordInput, ...] = ()      # what the engine saw (for commit_block)
    decisions: tuple[Decision, ...] = ()

    @property
    def entries(self) -> list[bytes]:
        """The block's entry bytes: its verdicts in log order, then its transitions."""
        return [v.to_bytes() for v in self.verdicts] + [t.to_bytes() for t in self.transitions]

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


def record_inputs(state: State, envelopes: Sequence[Envelope]) -> tuple[RecordInput, ...]:
    """What the policy sees of each record: it and its submitter's roles in force."""
    out = []
    for env in envelopes:
        sub = state.submitters.get(env.record.submitter)
        out.append(RecordInput(env.record, sub.roles if sub is not None else frozenset()))
    return tuple(out)


class VerdictState:
    """The policy engine, the held records and the header version of the tip."""

    def __init__(self, engine: PolicyEngine | None = None,
                 held: Mapping[bytes, Held] | None = None,
                 version: int = HEADER_VERSION) -> None:
        self.engine = engine if engine is not None else PolicyEngine()
        self.held: dict[bytes, Held] = dict(held or {})
        self.version = version

    def _plain(self) -> bool:
        """The base engine (no policy can ever be installed): nothing to tell it."""
        return type(self.engine) is PolicyEngine

    def next_version(self) -> int:
        """Version 2 from the first height a policy is in force, for good."""
        if self.version == HEADER_VERSION_VERDICTS or self.engine.version != 0 or self.held:
            return HEADER_VERSION_VERDICTS
        return HEADER_VERSION

    def compute(self, state: State, height: int, time_ms: int, envelopes: Sequence[Envelope],
                first_leaf: int) -> BlockVerdicts:
        """The verdicts of the block at ``height`` (time ``time_ms``) holding
        ``envelopes`` from leaf ``first_leaf`` on, judged with ``state``, the
        membership in force at ``height``.  Pure."""
        version = self.next_version()
        if version == HEADER_VERSION:
            if self._plain():
                return BlockVerdicts(HEADER_VERSION, None)
            # No policy in force yet, but the engine must see the block (a
            # governance record in it may install one); nothing to decide.
            return BlockVerdicts(HEADER_VERSION, None, inputs=record_inputs(state, envelopes))
        inputs = record_inputs(state, envelopes)
        decisions = tuple(self.engine.evaluate_block(height, time_ms, inputs))
        if len(decisions) != len(inputs):
            raise RuntimeError("policy engine returned a verdict count unlike the records'")
        judge = _Judge(self.held, state, time_ms, approval_window(state.params),
                       self.engine.version)
        verdicts = tuple(judge.verdict(env, leaf, decision)
                         for leaf, (env, decision) in enumerate(zip(envelopes, decisions),
                                                                start=first_leaf))
        transitions = judge.transitions()
        entries = [v.to_bytes() for v in verdicts] + [t.to_bytes() for t in transitions]
        return BlockVerdicts(version, verdict_root(entries, len(verdicts)), verdicts,
                             transitions, judge.held, inputs, decisions)

    def commit(self, height: int, time_ms: int, block: BlockVerdicts) -> None:
        """Advance past the committed block whose verdicts are ``block``."""
        if block.inputs or not self._plain():
            self.engine.commit_block(height, time_ms, block.inputs, block.decisions)
        if block.version == HEADER_VERSION_VERDICTS:
            self.held = dict(block.held)
        self.version = block.version


class _Judge:
    """One block's pass over its records: policy verdicts, approvals counted."""

    def __init__(self, held: Mapping[bytes, Held], state: State, time_ms: int,
                 window: int, policy: int) -> None:
        self.held = dict(held)  # copied: compute stays pure
        self.state = state
        self.time_ms = time_ms
        self.window = window
        self.policy = policy

    def verdict(self, env: Envelope, leaf: int, decision: Decision) -> Verdict:
        record = env.record
        if record.kind == APPROVAL_KIND:
            return self._approval(env)
        if record.kind == DECISION:
            return judge_decision(self.held, self.state, self.time_ms, env, self.policy)
        if is_governance(env):
            # Governance is judged by §9 alone: a policy can never stop its own replacement.
            return Verdict(env.id, Outcome.ALLOW, RULE_GOVERNANCE, policy=self.policy)
        deadline = self.time_ms + self.window
        verdict = Verdict.of(env.id, decision, deadline)
        if verdict.outcome == Outcome.APPROVE:
            self.held[env.id] = Held(env.id, record.submitter, leaf, verdict.approvals,
                                     verdict.role, deadline, since=self.time_ms)
        elif verdict.outcome == Outcome.REVIEW:
            self.held[env.id] = review_entry(env, leaf, self.time_ms, self.state.params)
        return verdict

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
        for held in sorted(self.held.values(), key=lambda h: h.leaf_index):
            if held.rejected_by:
                out.append(Transition(held.record, Status.REJECTED, (held.rejected_by,)))
                del self.held[held.record]
                continue
            if len(held.approvers) >= held.needed:
                status = Status.APPROVED
            elif not held.review and held.deadline < self.time_ms:
                status = Status.EXPIRED
            else:
                continue
            out.append(Transition(held.record, status, tuple(r for _, r in held.approvers)))
            del self.held[held.record]
        return tuple(out)
