"""Verdict and transition bytes, the verdict root and its proofs (PROTOCOL §10.5-10.7).

A block built while a policy is in force commits, besides its envelopes, one
**verdict** per record (what the policy decided and what produced it) and
one **transition** per held record that became approved or expired in it.
Each is a canonical map; each Merkle leaf is its bytes behind a domain line
of its own, so a verdict is never taken for a transition, an envelope or a
signed message.  The version 2 header commits the root of those leaves.

This module is pure bytes: the approval state machine that decides the
transitions is :mod:`ledger.approvals`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, overload

from .breaker_entries import BREAKER_DOMAIN, is_breaker_entry
from .encoding import H, canonical, decode, decode_exact_map, packb_plain, to_hex
from .errors import BadEncoding, DecodeError, VerificationError
from .merkle import LEAF_PREFIX, inclusion_path, leaf_hash, root, verify_inclusion
from .policy import Decision, Outcome
from .verdict_pack import PackedEntries

VERDICT_DOMAIN = b"auditledger/verdict/v1\n"
TRANSITION_DOMAIN = b"auditledger/transition/v1\n"
VERDICT_KEYS = frozenset(
    {"approvals", "deadline", "outcome", "policy", "reason", "record", "role", "rule"})
TRANSITION_KEYS = frozenset({"approvals", "record", "status"})
# Rule, reason and role come from policy text: bounded so that no policy can
# make a block's verdicts unboundedly large (longer text is cut, the same
# way on every node, at this many characters).
MAX_TEXT = 256
# A held record needs at most this many approvers (and a transition names
# at most this many approval records).
MAX_APPROVALS = 64
ID_LEN = 32
UINT64_MAX = 2**64 - 1


class VerdictError(VerificationError):
    """A verdict, a transition or their proof does not verify."""

    step = "verdict"


class Status(StrEnum):
    """Where a record stands (PROTOCOL §10.8).  A member equals its string."""

    ALLOWED = "allowed"
    DENIED = "denied"
    HELD = "held"          # approve(k, role): waiting for approvals
    APPROVED = "approved"  # k approvals committed before the deadline
    EXPIRED = "expired"    # the deadline passed first
    REVIEW = "review"      # held for a person (the risk review): open until decided
    REJECTED = "rejected"  # a reviewer's reject decision (PROTOCOL §10.10)


INITIAL_STATUS = {Outcome.ALLOW: Status.ALLOWED, Outcome.DENY: Status.DENIED,
                  Outcome.APPROVE: Status.HELD, Outcome.REVIEW: Status.REVIEW}
FINAL_STATUSES = (Status.APPROVED, Status.EXPIRED, Status.REJECTED)


def _text(value: str) -> str:
    return value[:MAX_TEXT]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One record's committed verdict."""

    record: bytes
    outcome: Outcome
    rule: str = ""
    reason: str = ""
    approvals: int = 0
    role: str = ""
    policy: int = 0
    deadline: int = 0  # block time (ms) by which approvals must be committed

    @classmethod
    def of(cls, record: bytes, decision: Decision, deadline: int = 0) -> "Verdict":
        approve = decision.outcome == Outcome.APPROVE
        return cls(record, Outcome(decision.outcome), _text(decision.rule),
                   _text(decision.reason),
                   min(decision.approvals, MAX_APPROVALS) if approve else 0,
                   _text(decision.role) if approve else "", decision.policy_version,
                   deadline if approve else 0)

    def to_bytes(self) -> bytes:
        record = self.record
        if type(record) is bytes and len(record) == ID_LEN and type(self.approvals) is int \
                and type(self.deadline) is int and type(self.policy) is int:
            key = (self.approvals, self.deadline, self.outcome.value, self.policy,
                   self.reason, self.role, self.rule)
            around = _AROUND.get(key)
            if around is None:
                around = _around(key)
            return around[0] + record + around[1]
        return canonical(self._map())

    def _map(self) -> dict[str, Any]:
        return {"approvals": self.approvals, "deadline": self.deadline,
                "outcome": self.outcome.value, "policy": self.policy, "reason": self.reason,
                "record": self.record, "role": self.role, "rule": self.rule}

    @property
    def status(self) -> Status:
        """The status this verdict gives its record when committed."""
        return INITIAL_STATUS[self.outcome]

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "rule": self.rule, "reason": self.reason,
                "approvals": self.approvals, "role": self.role, "policy_version": self.policy,
                "deadline": self.deadline}


# Verdict bytes around the record id, by the verdict's other fields: the
# canonical map is the fixmap header, then each key and value in key order
# (approvals, deadline, outcome, policy, reason, record, role, rule), so
# everything but the id is the same for every record a rule decides.
_AROUND: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
_AROUND_SIZE = 4096


def _around(key: tuple[Any, ...]) -> tuple[bytes, bytes]:
    approvals, deadline, outcome, policy, reason, role, rule = key
    before = b"\x88" + b"".join(canonical(k) + canonical(v) for k, v in (
        ("approvals", approvals), ("deadline", deadline), ("outcome", outcome),
        ("policy", policy), ("reason", reason))) + canonical("record") + b"\xc4\x20"
    after = canonical("role") + canonical(role) + canonical("rule") + canonical(rule)
    if len(_AROUND) >= _AROUND_SIZE:
        _AROUND.clear()
    _AROUND[key] = (before, after)
    return before, after


_VERDICT_FIELDS = ("outcome", "rule", "reason", "approvals", "role", "policy", "deadline")
(_set_record, _set_outcome, _set_rule, _set_reason, _set_approvals, _set_role, _set_policy,
 _set_deadline) = (getattr(Verdict, name).__set__ for name in ("record", *_VERDICT_FIELDS))
_new = object.__new__


class VerdictTemplate:
    """The verdicts that differ only in their record: one decision of the
    policy in one block.  :meth:`verdict` is ``Verdict(record, ...)`` with
    this template's other fields, set through the slots (the frozen
    dataclass's ``__init__`` costs several times as much, once per record of
    every block); :meth:`entry` is its :meth:`Verdict.to_bytes`."""

    __slots__ = ("outcome", "rule", "reason", "approvals", "role", "policy", "deadline",
                 "before", "after")

    def __init__(self, like: Verdict) -> None:
        self.outcome, self.rule, self.reason = like.outcome, like.rule, like.reason
        self.approvals, self.role = like.approvals, like.role
        self.policy, self.deadline = like.policy, like.deadline
        key = (like.approvals, like.deadline, like.outcome.value, like.policy, like.reason,
               like.role, like.rule)
        fast = (type(like.approvals) is int and type(like.deadline) is int
                and type(like.policy) is int)
        self.before, self.after = (_AROUND.get(key) or _around(key)) if fast else (b"", b"")

    def verdict(self, record: bytes) -> Verdict:
        v: Verdict = _new(Verdict)
        _set_record(v, record)
        _set_outcome(v, self.outcome)
        _set_rule(v, self.rule)
        _set_reason(v, self.reason)
        _set_approvals(v, self.approvals)
        _set_role(v, self.role)
        _set_policy(v, self.policy)
        _set_deadline(v, self.deadline)
        return v

    def entry(self, record: bytes) -> bytes:
        """``self.verdict(record).to_bytes()``, without the verdict."""
        if self.before and type(record) is bytes and len(record) == ID_LEN:
            return self.before + record + self.after
        return self.verdict(record).to_bytes()


class BlockVerdictList(Sequence[Verdict]):
    """A block's verdicts in log order, each made when it is read.  The
    verdict pass (ledger/approvals.py) keeps per record its id and either
    its verdict or the :class:`VerdictTemplate` of the policy decision it
    shares with other records: a :class:`Verdict` object per record of every
    block cost as much as the rest of the pass (docs/performance.md), and a
    block commits its entry bytes, which the pass makes without one."""

    __slots__ = ("_ids", "_items")

    def __init__(self, ids: list[bytes], items: list[Verdict | VerdictTemplate]) -> None:
        if len(ids) != len(items):
            raise ValueError("one record id per verdict")
        self._ids, self._items = ids, items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def ids(self) -> list[bytes]:
        """The verdicts' record ids, in order."""
        return self._ids

    @overload
    def __getitem__(self, index: int) -> Verdict: ...

    @overload
    def __getitem__(self, index: slice) -> list[Verdict]: ...

    def __getitem__(self, index: int | slice) -> Verdict | list[Verdict]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        item = self._items[index]
        return item.verdict(self._ids[index]) if isinstance(item, VerdictTemplate) else item

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BlockVerdictList({list(self)!r})"


def no_policy_verdict(record: bytes) -> Verdict:
    """The verdict of every record of a version 1 block: allow, no policy."""
    return Verdict(record, Outcome.ALLOW)


@dataclass(frozen=True, slots=True)
class Transition:
    """A held record became approved, expired or rejected (PROTOCOL §10.7, §10.10)."""

    record: bytes
    status: Status
    # approved, expired: the approval records that counted, in log order;
    # rejected: the one reject decision
    approvals: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        return canonical({"approvals": list(self.approvals), "record": self.record,
                          "status": self.status.value})

    def to_json(self) -> dict[str, Any]:
        return {"record": to_hex(self.record), "status": self.status.value,
                "approvals": [to_hex(a) for a in self.approvals]}


def _uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT64_MAX


def _id(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == ID_LEN


def decode_verdict(data: bytes) -> Verdict:
    """Canonical verdict bytes (decoders refuse anything else)."""
    v = decode_exact_map(data, VERDICT_KEYS, "verdict", VerdictError)
    if v["outcome"] not in tuple(Outcome):
        raise VerdictError(f"verdict outcome {v['outcome']!r} is not one of the four")
    if not _id(v["record"]):
        raise VerdictError("verdict record must be 32 bytes")
    for key in ("rule", "reason", "role"):
        if not isinstance(v[key], str) or len(v[key]) > MAX_TEXT:
            raise VerdictError(f"verdict {key} must be a string of at most {MAX_TEXT} characters")
    for key in ("approvals", "deadline", "policy"):
        if not _uint(v[key]):
            raise VerdictError(f"verdict {key} must be a non-negative integer")
    outcome = Outcome(v["outcome"])
    if outcome != Outcome.APPROVE and (v["approvals"] or v["role"] or v["deadline"]):
        raise VerdictError("only an approve verdict has approvals, role and deadline")
    if v["approvals"] > MAX_APPROVALS:
        raise VerdictError(f"verdict approvals above {MAX_APPROVALS}")
    return Verdict(v["record"], outcome, v["rule"], v["reason"], v["approvals"], v["role"],
                   v["policy"], v["deadline"])


def decode_transition(data: bytes) -> Transition:
    t = decode_exact_map(data, TRANSITION_KEYS, "transition", VerdictError)
    if t["status"] not in FINAL_STATUSES:
        raise VerdictError(f"transition status {t['status']!r} is not approved, expired or "
                           "rejected")
    if not _id(t["record"]):
        raise VerdictError("transition record must be 32 bytes")
    approvals = t["approvals"]
    if not isinstance(approvals, list) or len(approvals) > MAX_APPROVALS \
            or not all(_id(a) for a in approvals):
        raise VerdictError(f"transition approvals must be at most {MAX_APPROVALS} ids")
    if t["status"] == Status.REJECTED and len(approvals) != 1:
        raise VerdictError("a rejected transition names exactly its reject decision")
    return Transition(t["record"], Status(t["status"]), tuple(approvals))


# RFC 9162's leaf prefix and the verdict domain: a verdict's leaf is
# H(_VERDICT_LEAF + bytes), here and in entry_leaves (one per record).
_VERDICT_LEAF = LEAF_PREFIX + VERDICT_DOMAIN


def verdict_leaf(verdict_bytes: bytes) -> bytes:
    return H(_VERDICT_LEAF + verdict_bytes)


def transition_leaf(transition_bytes: bytes) -> bytes:
    return leaf_hash(TRANSITION_DOMAIN + transition_bytes)


def breaker_leaf(entry_bytes: bytes) -> bytes:
    return leaf_hash(BREAKER_DOMAIN + entry_bytes)


def entry_leaves(entries: Sequence[bytes], tx_count: int) -> list[bytes]:
    """The leaf hashes of a block's entries: ``tx_count`` verdicts, then
    transitions of held records and breaker entries (told apart by their
    keys, ledger/breaker_entries.py)."""
    # The verdicts (one per record of the block): :func:`verdict_leaf` inline.
    leaves = [H(_VERDICT_LEAF + e) for e in entries[:tx_count]]
    leaves += _tail_leaves(entries[tx_count:])
    return leaves


def _tail_leaves(entries: Sequence[bytes]) -> list[bytes]:
    """The leaves of the entries after the verdicts."""
    return [breaker_leaf(e) if is_breaker_entry(e) else transition_leaf(e) for e in entries]


def verdict_root(entries: Sequence[bytes], tx_count: int) -> bytes:
    """The header's ``verdicts``: RFC 9162 MTH over the block's entry leaves."""
    return root(entry_leaves(entries, tx_count))


def packed_root(packed: PackedEntries) -> bytes:
    """:func:`verdict_root` of ``packed.entries()``, without making the verdicts' bytes."""
    return root(packed.verdict_leaves(_VERDICT_LEAF) + _tail_leaves(packed.rest))


def entry_path(entries: Sequence[bytes], tx_count: int, index: int) -> list[bytes]:
    """The RFC 9162 inclusion path of entry ``index`` in its block's tree."""
    return inclusion_path(index, entry_leaves(entries, tx_count))


def encode_entries(entries: Sequence[bytes]) -> bytes:
    """Storage and block-route form of a block's entries: a canonical array
    of bin (each entry is ``bytes``: packed as it stands, no canonical walk)."""
    return packb_plain(list(entries))


def decode_entries(data: bytes) -> list[bytes]:
    try:
        value = decode(data)
    except DecodeError as exc:
        raise BadEncoding(f"verdict entries: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(e, bytes) for e in value):
        raise BadEncoding("verdict entries must be an array of bin")
    return value


def check_entry(index: int, size: int, leaf: bytes, path: Sequence[bytes], verdicts: bytes,
                step: str) -> None:
    """RFC 9162 inclusion of an entry's leaf in a header's verdict tree."""
    try:
        verify_inclusion(index, size, leaf, path, verdicts)
    except VerificationError as exc:
        raise VerdictError(f"{exc}", step=step) from None


def verdict_lines(verdict: Verdict) -> str:
    """One line for people: ``allow``, ``deny (rule r: reason)``, ``approve 2 of treasury``."""
    text = verdict.outcome.value
    if verdict.outcome == Outcome.APPROVE:
        text += f" {verdict.approvals} of role {verdict.role}"
    detail = ", ".join(part for part in (
        f"rule {verdict.rule}" if verdict.rule else "",
        verdict.reason,
        f"policy version {verdict.policy}" if verdict.policy else "no policy") if part)
    return f"{text} ({detail})"
