"""The seam between policy evaluation and the chain (issue 25).

Every validator derives the verdict of every record from committed blocks
only; this module is the one interface the runtime and the chain code use:

- :class:`Decision` is what a policy says about one record;
- :class:`RecordInput` is what it is said about (the record and the
  submitter's roles in force at the record's height);
- :class:`PolicyEngine` evaluates a block's records in log order
  (:meth:`PolicyEngine.evaluate_block`, pure: it does not change the engine)
  and advances its state when that block commits
  (:meth:`PolicyEngine.commit_block`).

With no policy installed every record is allowed: that is the behaviour of a
chain that never installed one, and of every chain before policies existed.
The evaluator behind this interface (CEL rules, velocity windows, lists kept
by governance) lives in the other modules of this package.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, overload

from ..records import Record


class Outcome(StrEnum):
    """The four verdicts (issue 25 item 2).  A member equals its string."""

    ALLOW = "allow"
    DENY = "deny"
    APPROVE = "approve"   # needs ``approvals`` distinct approvers holding ``role``
    REVIEW = "review"     # held for a person


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one record and what produced it.

    ``rule`` names the deciding rule ("" when no rule matched and the default
    applied); ``reason`` is the deny reason (or a rule's note); ``approvals``
    and ``role`` are set for :attr:`Outcome.APPROVE` only.
    ``policy_version`` is 0 when no policy is installed."""

    outcome: Outcome
    rule: str = ""
    reason: str = ""
    approvals: int = 0
    role: str = ""
    policy_version: int = 0


ALLOW_NO_POLICY = Decision(Outcome.ALLOW)


class RecordInput(NamedTuple):
    """One record of a block as the policy sees it.  A named tuple: a node
    makes one per record of every block it judges (a frozen dataclass cost
    three times as much to create)."""

    record: Record
    submitter_roles: frozenset[str]


_new_tuple = tuple.__new__


class BlockInputs(Sequence[RecordInput]):
    """A block's records as the policy sees them, without an object per
    record: the records, and their submitters' roles in the same order.
    Reads as the sequence of :class:`RecordInput` it stands for (each made
    when read); the evaluator's fast pass reads the two lists.  A node
    judges every record of every block, and a :class:`RecordInput` per
    record lived from a block's verdicts to its commit, scanned by the
    cyclic collector on the way (docs/performance.md)."""

    __slots__ = ("records", "roles")

    def __init__(self, records: list[Record], roles: list[frozenset[str]]) -> None:
        if len(records) != len(roles):
            raise ValueError("one set of roles per record")
        self.records, self.roles = records, roles

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> RecordInput: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[RecordInput]: ...

    def __getitem__(self, index: int | slice) -> RecordInput | Sequence[RecordInput]:
        if isinstance(index, slice):
            return BlockInputs(self.records[index], self.roles[index])
        return RecordInput(self.records[index], self.roles[index])

    def __iter__(self) -> Iterator[RecordInput]:
        for pair in zip(self.records, self.roles):
            yield _new_tuple(RecordInput, pair)


class PolicyEngine:
    """Verdicts for the records of each block, in log order.

    This base engine has no policy installed: every record is allowed and
    committing a block changes nothing.  The evaluator of this package keeps
    the same three methods."""

    @property
    def version(self) -> int:
        """The installed policy's version (0: none)."""
        return 0

    def evaluate_block(self, height: int, time_ms: int,
                       records: Sequence[RecordInput]) -> list[Decision]:
        """The verdict of each record of the block at ``height`` with block
        time ``time_ms``, in order; a record's inputs include the records
        before it in the same block.  Pure: the engine is unchanged."""
        return [ALLOW_NO_POLICY] * len(records)

    def evaluate_one(self, height: int, time_ms: int, record: RecordInput) -> Decision:
        """The verdict ``record`` would get as the only record of the next
        block (pre-flight, ``POST /v1/evaluate``)."""
        return self.evaluate_block(height, time_ms, [record])[0]

    def state_bytes(self) -> bytes | None:
        """The state to persist (``ledger.schema.META_POLICY_STATE``) so a
        restart replays only the blocks after it; None: nothing to persist."""
        return None

    def state_entries(self) -> int:
        """About how many entries :meth:`state_bytes` writes (the windows'):
        the node saves the state less often than every
        ``ledger.chain.POLICY_STATE_EVERY`` blocks while it holds more
        entries than the records committed since the last save."""
        return 0

    def commit_block(self, height: int, time_ms: int, records: Sequence[RecordInput],
                     decisions: Sequence[Decision]) -> None:
        """Advance the state (velocity windows, installed policy, lists) past
        the committed block at ``height``.  While no policy is installed
        (``version`` 0) ``records`` may hold only the block's records of
        ``state.STATE_KINDS``, in order: no other one changes the state then."""
