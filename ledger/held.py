"""A record waiting for people: held for approvals (verdict ``approve``,
PROTOCOL §10.7) or open for review (verdict ``review``, §10.10).

What a node keeps per open record between blocks (stored under the ``a``
prefix, ledger/schema.py; never hashed into a block): who has counted for
it so far, who escalated it, and the block time it was held at (the start
of its time in the queue).  :class:`ledger.approvals.VerdictState` derives
these from committed blocks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .encoding import canonical, decode, to_hex
from .errors import DecodeError, StorageCorruption
from .verdicts import MAX_APPROVALS


@dataclass(frozen=True, slots=True)
class Held:
    """A record with verdict approve(k, role) or review, still open."""

    record: bytes
    submitter: bytes
    leaf_index: int
    approvals: int           # k, before escalations
    role: str
    deadline: int            # block time (ms); for a review entry 0: it never expires
    approvers: tuple[tuple[bytes, bytes], ...] = ()    # (approver key, approval record id)
    review: bool = False     # verdict review (else approve)
    since: int = 0           # block time (ms) of the record's block
    escalations: tuple[tuple[bytes, bytes], ...] = ()  # (reviewer key, decision record id)
    rejected_by: bytes = b""  # within the block that rejects it only (never stored)

    @property
    def needed(self) -> int:
        """Approvals it needs now: k, plus one per escalation (at most 64)."""
        return min(self.approvals + len(self.escalations), MAX_APPROVALS)

    def acted(self, key: bytes) -> bool:
        """Whether ``key`` has counted for it or escalated it."""
        return any(k == key for k, _ in self.approvers + self.escalations)

    def to_bytes(self) -> bytes:
        return canonical({"approvals": self.approvals, "approvers": [list(a) for a in
                                                                      self.approvers],
                          "deadline": self.deadline, "escalations": [list(e) for e in
                                                                     self.escalations],
                          "leaf_index": self.leaf_index, "record": self.record,
                          "review": self.review, "role": self.role, "since": self.since,
                          "submitter": self.submitter})

    @classmethod
    def from_bytes(cls, data: bytes) -> "Held":
        """Stored bytes; an entry written before reviews lacks review, since
        and escalations (an approve entry, its queue time unknown: 0)."""
        try:
            v = decode(data)
            review = v.get("review", False)
            if type(review) is not bool:
                raise TypeError("review is not a boolean")
            return cls(v["record"], v["submitter"], v["leaf_index"], v["approvals"], v["role"],
                       v["deadline"], tuple((a[0], a[1]) for a in v["approvers"]), review,
                       v.get("since", 0),
                       tuple((e[0], e[1]) for e in v.get("escalations", [])))
        except (DecodeError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise StorageCorruption(f"held record entry is damaged: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {"approvals_needed": self.needed, "role": self.role,
                "deadline": self.deadline,
                "approved_by": [{"approver": to_hex(k), "record": to_hex(r)}
                                for k, r in self.approvers],
                "escalated_by": [{"reviewer": to_hex(k), "record": to_hex(r)}
                                 for k, r in self.escalations]}
