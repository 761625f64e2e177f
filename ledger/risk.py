"""The reserved ``risk.*`` record kinds: alerts and risk tiers (PROTOCOL §12.2).

A risk record is an ordinary record (§2) whose kind begins ``risk.``; its
submitter must hold the role ``monitor`` in the membership in force at its
height, besides ``submit``, and its body and parents must have the shape of
its kind.  :func:`check_risk_record` is judged wherever a record is (block
validation, admission, the auditor's whole-chain walk), through
:func:`ledger.membership.check_record_in`; pure, integers only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .access import MONITOR_ROLE, REVIEW_ROLE
from .encoding import to_hex
from .errors import BadRiskRecord, ForbiddenRole
from .genesis import Submitter
from .records import Record

RISK_PREFIX = "risk."
ALERT = "risk.alert"
TIER = "risk.tier"
BREAKER_CLOSE = "risk.breaker.close"
DECISION = "risk.decision"   # a reviewer's decision on a held record (PROTOCOL §10.10)
KINDS = (ALERT, TIER, BREAKER_CLOSE, DECISION)
# Kinds a reviewer submits (role review instead of monitor).
REVIEW_KINDS = (BREAKER_CLOSE, DECISION)
DECISIONS = ("approve", "reject", "escalate")
MAX_NOTE = 256
MAX_DECISION_PARENTS = 16   # the decided record and at most 15 records it rests on
BREAKER_SCOPES = ("account", "submitter", "system", "kind", "country")
SCORE_MAX = 1_000_000        # scores are parts per million: no floats in records (§1)
MAX_REASONS = 16
MAX_POINTS = 1_000_000
TIERS = ("low", "medium", "high")


def is_risk(record: Record) -> bool:
    return record.kind.startswith(RISK_PREFIX)


def _text(value: Any, what: str, longest: int = 64) -> None:
    if type(value) is not str or not 1 <= len(value) <= longest:
        raise BadRiskRecord(f"{what} must be a string of 1..{longest} characters")


def _uint(value: Any, what: str, top: int) -> None:
    if type(value) is not int or not 0 <= value <= top:
        raise BadRiskRecord(f"{what} must be an integer in 0..{top}")


def _exact(body: Mapping[str, Any], keys: set[str], kind: str) -> None:
    if set(body) != keys:
        raise BadRiskRecord(f"{kind} body needs exactly {sorted(keys)}, has {sorted(body)}")


def _check_reasons(reasons: Any) -> None:
    if type(reasons) is not list or not 1 <= len(reasons) <= MAX_REASONS:
        raise BadRiskRecord(f"reasons must be a list of 1..{MAX_REASONS} entries")
    for entry in reasons:
        if type(entry) is not dict or set(entry) != {"feature", "points"}:
            raise BadRiskRecord("each reason is exactly {feature, points}")
        _text(entry["feature"], "a reason's feature")
        _uint(entry["points"], "a reason's points", MAX_POINTS)


def check_body(record: Record) -> None:
    """The kind, body and parents of a risk record (raises :class:`BadRiskRecord`)."""
    body = record.body
    if record.kind == ALERT:
        _exact(body, {"score", "reasons", "detector", "version"}, ALERT)
        _uint(body["score"], "score", SCORE_MAX)
        _check_reasons(body["reasons"])
        _text(body["detector"], "detector")
        _text(body["version"], "version")
        if len(record.parents) != 1:
            raise BadRiskRecord("an alert names exactly one parent: the flagged record")
    elif record.kind == TIER:
        _exact(body, {"tier", "detector", "version"}, TIER)
        if body["tier"] not in TIERS:
            raise BadRiskRecord(f"tier must be one of {list(TIERS)}")
        _text(body["detector"], "detector")
        _text(body["version"], "version")
        if not record.origin.get("account"):
            raise BadRiskRecord("a risk tier names its account in origin.account")
        if len(record.parents) > 1:
            raise BadRiskRecord("a risk tier names at most one parent")
    elif record.kind == BREAKER_CLOSE:
        _exact(body, {"scope", "value"}, BREAKER_CLOSE)
        if body["scope"] not in BREAKER_SCOPES:
            raise BadRiskRecord(f"scope must be one of {list(BREAKER_SCOPES)}")
        _text(body["value"], "value", 255)
        if len(record.parents) > 1:
            raise BadRiskRecord("a breaker close names at most one parent")
    elif record.kind == DECISION:
        _exact(body, {"decision", "note"}, DECISION)
        if body["decision"] not in DECISIONS:
            raise BadRiskRecord(f"decision must be one of {list(DECISIONS)}")
        if type(body["note"]) is not str or len(body["note"]) > MAX_NOTE:
            raise BadRiskRecord(f"note must be a string of at most {MAX_NOTE} characters")
        if not 1 <= len(record.parents) <= MAX_DECISION_PARENTS:
            raise BadRiskRecord("a decision names the decided record first, then at most "
                                f"{MAX_DECISION_PARENTS - 1} records it rests on")
    else:
        raise BadRiskRecord(f"unknown risk kind {record.kind!r}")


def check_risk_record(record: Record, submitter: Submitter) -> None:
    """PROTOCOL §12.2 for a record of a ``risk.*`` kind by ``submitter``
    (as in force at the record's height)."""
    check_body(record)
    role = REVIEW_ROLE if record.kind in REVIEW_KINDS else MONITOR_ROLE
    if role not in submitter.roles:
        raise ForbiddenRole(f"submitter {submitter.name!r} ({to_hex(record.submitter)[:16]}) "
                            f"lacks the {role!r} role a {record.kind} needs")
