"""Review decisions (PROTOCOL §10.10): a reviewer's approve, reject or
escalate of a record held for approvals or open for review.

A decision is a record of kind ``risk.decision`` (its shape and its
submitter's role ``review`` are record rules, ledger/risk.py) naming the
decided record as its first parent.  Whether it counts depends on the open
records, so it is judged here, block by block, as approvals are
(ledger/approvals.py calls :func:`judge_decision` for each one, in log
order): pure, integers only, the same on every validator and replay.

- ``approve`` counts as one approval, under the rules of an ``approval``
  record (§10.7), with one more: a reviewer who escalated the record does
  not approve it afterwards;
- ``reject`` makes the record ``rejected`` at the end of the block (the
  block's transition names the decision);
- ``escalate`` makes the record need one approval more (at most 64), from
  someone else: the escalating reviewer may not approve it afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from .held import Held
from .membership import State
from .policy import Outcome
from .records import Envelope
from .verdicts import MAX_APPROVALS, Verdict

RULE_REVIEW = "review"
REVIEW_ROLE = "review"
# Chain param: a record in review whose body.amount is an integer at or
# above it needs two distinct reviewers' approve decisions (0: off).
FOUR_EYES_PARAM = "review_four_eyes_amount"

# Reasons a decision does not count (the approval reasons of §10.7, and one more).
REASON_NOT_HELD = "not_held"              # nothing open under its first parent
REASON_EXPIRED = "approval_expired"       # after a held record's deadline
REASON_SELF = "self_approval"             # the decided record's own submitter
REASON_NOT_APPROVER = "not_an_approver"   # approve without the held record's role
REASON_REPEAT = "repeat_approval"         # approve or escalate by one who counted or escalated
REASON_ESCALATION_LIMIT = "escalation_limit"  # already needs 64 approvals


def four_eyes_amount(params: Mapping[str, Any]) -> int:
    value = params.get(FOUR_EYES_PARAM, 0)
    return value if type(value) is int and value > 0 else 0


def review_entry(env: Envelope, leaf: int, time_ms: int, params: Mapping[str, Any]) -> Held:
    """The open entry of a record with verdict ``review`` in a block of time ``time_ms``."""
    record = env.record
    threshold = four_eyes_amount(params)
    amount = record.body.get("amount")
    two = threshold > 0 and type(amount) is int and amount >= threshold
    return Held(env.id, record.submitter, leaf, 2 if two else 1, REVIEW_ROLE, 0, review=True,
                since=time_ms)


def judge_decision(held: MutableMapping[bytes, Held], state: State, time_ms: int,
                   env: Envelope, policy: int) -> Verdict:
    """The verdict of decision ``env`` in a block of time ``time_ms``, and
    its effect on ``held`` (the block's open records so far)."""
    record = env.record

    def deny(reason: str) -> Verdict:
        return Verdict(env.id, Outcome.DENY, RULE_REVIEW, reason, policy=policy)

    entry = held.get(record.parents[0]) if record.parents else None
    if entry is None or entry.rejected_by:
        return deny(REASON_NOT_HELD)
    if not entry.review and time_ms > entry.deadline:
        return deny(REASON_EXPIRED)
    if record.submitter == entry.submitter:
        return deny(REASON_SELF)
    decision = record.body.get("decision")
    mine = (record.submitter, env.id)
    if decision == "reject":
        held[entry.record] = _with(entry, rejected_by=env.id)
    elif decision == "approve":
        sub = state.submitters.get(record.submitter)
        if sub is None or entry.role not in sub.roles:
            return deny(REASON_NOT_APPROVER)
        if entry.acted(record.submitter):
            return deny(REASON_REPEAT)
        held[entry.record] = _with(entry, approvers=entry.approvers + (mine,))
    elif decision == "escalate":
        if entry.acted(record.submitter):
            return deny(REASON_REPEAT)
        if entry.needed >= MAX_APPROVALS:
            return deny(REASON_ESCALATION_LIMIT)
        held[entry.record] = _with(entry, escalations=entry.escalations + (mine,))
    else:  # a valid block holds none (ledger/risk.py checks the body)
        return deny(REASON_NOT_HELD)
    return Verdict(env.id, Outcome.ALLOW, RULE_REVIEW, policy=policy)


def _with(entry: Held, **changes: Any) -> Held:
    from dataclasses import replace

    return replace(entry, **changes)
