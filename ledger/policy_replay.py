"""Re-deriving a chain's verdicts from its blocks (PROTOCOL §10.9).

:class:`PolicyReplay` walks committed blocks from height 1 in order with a
fresh policy engine, recomputes each block's verdicts and transitions
exactly as validators do (ledger/approvals.py) and compares them with what
the block commits.  ``ledger-audit replay-policy`` runs it over blocks a
node serves; the simulator runs it to rebuild a crashed node's state.
The circuit breakers (PROTOCOL §12.3) are replayed with the verdicts: they
need the record each alert flags, which ``lookup`` returns (the auditor's
fetches it from the node and checks its id); without one the replay keeps
every replayed record in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .approvals import BlockVerdicts, VerdictMismatch, VerdictState
from .blocks import Header
from .crypto import digest_equal
from .encoding import to_hex
from .genesis import Genesis
from .membership import Membership
from .policy import PolicyEngine
from .records import Envelope, Record
from .verdicts import VerdictError, verdict_root


@dataclass(frozen=True)
class Disagreement:
    """The first place a committed verdict differs from the recomputed one."""

    height: int
    index: int           # entry index in the block (verdicts first, then transitions)
    record: bytes | None  # the record the entry is about, when known
    committed: bytes | None
    computed: bytes | None

    def describe(self) -> str:
        what = "header version" if self.index < 0 else f"entry {self.index}"
        rec = f" (record {to_hex(self.record)})" if self.record else ""
        return f"block {self.height}, {what}{rec}: committed and recomputed verdicts differ"


class PolicyDisagreement(VerdictMismatch):
    """A committed verdict is not what the policy in force gives."""

    def __init__(self, disagreement: Disagreement) -> None:
        super().__init__(disagreement.describe())
        self.disagreement = disagreement


class PolicyReplay:
    """Blocks 1, 2, ... in order; :meth:`block` raises at the first disagreement."""

    def __init__(self, genesis: Genesis, engine: PolicyEngine,
                 lookup: Callable[[bytes], Record | None] | None = None) -> None:
        self.membership = Membership.from_genesis(genesis)
        self.state = VerdictState(engine, lookup=lookup)
        self.height = 0
        self.records = 0
        self.verdicts = 0

    def block(self, header: Header, envelopes: Sequence[Envelope],
              entries: Sequence[bytes] | None, *, compare: bool = True) -> BlockVerdicts:
        """Recompute block ``header``'s verdicts; with ``compare``, raise
        :class:`PolicyDisagreement` unless ``entries`` (the block's committed
        entry bytes, None for a version 1 block) are exactly them.  ``entries``
        are checked against the header's verdict root first (step ``verdicts``)."""
        if header.height != self.height + 1:
            raise VerdictError(f"replay expects block {self.height + 1}, got {header.height}",
                               step="verdicts")
        first = header.log_size - header.tx_count
        computed = self.state.compute(self.membership.at(header.height), header.height,
                                      header.time, envelopes, first)
        if compare:
            _compare(header, computed, entries)
        self.state.commit(header.height, header.time, computed)
        self.membership = self.membership.apply(header.height, envelopes, signatures=False)
        self.height = header.height
        self.records += len(envelopes)
        self.verdicts += len(computed.verdicts)
        return computed


def _compare(header: Header, computed: BlockVerdicts, entries: Sequence[bytes] | None) -> None:
    if entries is not None:
        if header.verdicts is None or not digest_equal(
                verdict_root(entries, header.tx_count), header.verdicts):
            raise VerdictError(f"block {header.height}'s verdict entries do not hash to its "
                               "header's verdict root", step="verdicts")
    if header.version != computed.version or (entries is None) != (computed.root is None):
        raise PolicyDisagreement(Disagreement(header.height, -1, None, None, None))
    if entries is None:
        return
    mine = computed.entries
    for index in range(max(len(mine), len(entries))):
        ours = mine[index] if index < len(mine) else None
        theirs = entries[index] if index < len(entries) else None
        if ours != theirs:
            t = index - len(computed.verdicts)  # past the transitions: a breaker entry
            record = (computed.verdicts[index].record if t < 0
                      else computed.transitions[t].record
                      if t < len(computed.transitions) else None)
            raise PolicyDisagreement(Disagreement(header.height, index, record, theirs, ours))
