"""A record waiting for people: held for approvals (verdict ``approve``,
PROTOCOL §10.7) or open for review (verdict ``review``, §10.10).

What a node keeps per open record between blocks (stored under the ``a``
prefix, ledger/schema.py; never hashed into a block): who has counted for
it so far, who escalated it, and the block time it was held at (the start
of its time in the queue).  :class:`ledger.approvals.VerdictState` derives
these from committed blocks only.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from .encoding import decode, packb_plain, to_hex
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
        """``canonical`` of the entry's map, packed as it stands: its keys
        are written in canonical order and every value is already normal
        (bytes, ints, a str, a bool, pairs of bytes), so the canonical
        walk, a fifth of what a held record cost its block's commit,
        changes nothing (tests/test_held_bytes.py compares the two)."""
        return packb_plain({"approvals": self.approvals, "approvers": self.approvers,
                            "deadline": self.deadline, "escalations": self.escalations,
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


class HeldOverlay(MutableMapping[bytes, Held]):
    """The open records as one block changes them: the committed ones
    (``base``, never written) under the block's own changes (``changes``;
    None: ended in the block).  A block's pass reads and writes a few of
    them: copying thousands open for review per block would cost more than
    the block's verdicts."""

    def __init__(self, base: Mapping[bytes, Held]) -> None:
        self.base = base
        self.changes: dict[bytes, Held | None] = {}

    def get(self, key: bytes, default: Any = None) -> Any:
        if key in self.changes:
            value = self.changes[key]
            return default if value is None else value
        return self.base.get(key, default)

    def __getitem__(self, key: bytes) -> Held:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) is not None

    def __setitem__(self, key: bytes, value: Held) -> None:
        self.changes[key] = value

    def __delitem__(self, key: bytes) -> None:
        if key not in self:
            raise KeyError(key)
        self.changes[key] = None

    def __iter__(self) -> Iterator[bytes]:
        for key in self.base:
            if key not in self.changes:
                yield key
        for key, value in self.changes.items():
            if value is not None:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Deadlines:
    """The approve entries among the open records, by deadline (a heap of
    ``(deadline, record)``): the ones a block of time t can expire are those
    of deadline below t, found without a pass over every open record.  An
    entry stays until a block's time passes its deadline, whether or not its
    record is still open (:meth:`due` callers look the record up)."""

    def __init__(self, held: Mapping[bytes, Held] = {}) -> None:  # noqa: B006 - never written
        self._heap = [(h.deadline, h.record) for h in held.values() if not h.review]
        heapq.heapify(self._heap)

    def add(self, entry: Held) -> None:
        if not entry.review:
            heapq.heappush(self._heap, (entry.deadline, entry.record))

    def due(self, time_ms: int) -> list[bytes]:
        """Every record of deadline below ``time_ms`` (open or not), unordered."""
        heap, out, todo = self._heap, [], [0]
        while todo:
            i = todo.pop()
            if i < len(heap) and heap[i][0] < time_ms:
                out.append(heap[i][1])
                todo += (2 * i + 1, 2 * i + 2)
        return out

    def advance(self, time_ms: int, held: Mapping[bytes, Held]) -> None:
        """Drop the entries of deadline below ``time_ms`` whose record is no
        longer open (after a block of that time: every one of them)."""
        heap = self._heap
        while heap and heap[0][0] < time_ms:
            entry = held.get(heap[0][1])
            if entry is not None and not entry.review and entry.deadline == heap[0][0]:
                break  # still open: a later block expires it
            heapq.heappop(heap)

    def __len__(self) -> int:
        return len(self._heap)
