"""A small policy engine for tests of the verdict machinery (PROTOCOL §10.5),
written against the seam of ledger/policy/engine.py only.

:class:`LimitPolicy` (version 1 unless told): kind ``blocked`` is denied;
``body.amount`` above ``limit`` needs ``approvals`` approvers of role
``treasury``; kind ``flagged`` goes to review; everything else is allowed.
A velocity rule makes the engine stateful, as the real evaluator is: a
submitter's ``burst``-th record of kind ``payment`` and later ones are
denied ``velocity`` (a count over committed blocks, advanced only by
``commit_block``), so nodes agree only if they derive the same state."""

from __future__ import annotations

from collections.abc import Sequence

from ledger.policy import Decision, Outcome, PolicyEngine, RecordInput


class LimitPolicy(PolicyEngine):
    def __init__(self, *, version: int = 1, limit: int = 10_000, approvals: int = 2,
                 burst: int = 1_000_000, deny_kind: str = "blocked") -> None:
        self._version = version
        self.limit = limit
        self.approvals = approvals
        self.burst = burst
        self.deny_kind = deny_kind
        self.payments: dict[bytes, int] = {}  # committed payments per submitter

    @property
    def version(self) -> int:
        return self._version

    def evaluate_block(self, height: int, time_ms: int,
                       records: Sequence[RecordInput]) -> list[Decision]:
        if not self._version:
            return super().evaluate_block(height, time_ms, records)
        seen = dict(self.payments)
        out = []
        for item in records:
            record = item.record
            amount = record.body.get("amount")
            if record.kind == "payment":
                seen[record.submitter] = seen.get(record.submitter, 0) + 1
            if record.kind == self.deny_kind:
                out.append(Decision(Outcome.DENY, "no_blocked", "blocked_kind",
                                    policy_version=self._version))
            elif record.kind == "payment" and seen[record.submitter] > self.burst:
                out.append(Decision(Outcome.DENY, "velocity", "velocity",
                                    policy_version=self._version))
            elif isinstance(amount, int) and amount > self.limit:
                out.append(Decision(Outcome.APPROVE, "large", "", self.approvals, "treasury",
                                    self._version))
            elif record.kind == "flagged":
                out.append(Decision(Outcome.REVIEW, "flag", "flagged",
                                    policy_version=self._version))
            else:
                out.append(Decision(Outcome.ALLOW, "default", policy_version=self._version))
        return out

    def commit_block(self, height: int, time_ms: int, records: Sequence[RecordInput],
                     decisions: Sequence[Decision]) -> None:
        for item in records:
            if item.record.kind == "payment":
                key = item.record.submitter
                self.payments[key] = self.payments.get(key, 0) + 1
