"""Inputs (events) and outputs (effects) of :class:`consensus.machine.ConsensusMachine`.

Every event carries ``now_ms``, the caller's clock: the machine never reads a
clock.  ``machine.handle(event)`` returns a list of effects that the driver must
execute **in order**; the ordering contract is:

* :class:`Persist` must be durable (fsync'd) before the driver executes any
  effect after it in the same list.  The machine always emits a ``Persist``
  before a ``Broadcast``/``SendTo`` of anything it signed, so a crash can lose
  a message but never leave a signature that the restarted machine forgot.
* :class:`Commit` must be applied to the chain (one durable write) before the
  driver feeds ``BlockApplied(height)`` back; the machine waits for it before
  starting the next height (events in between are queued, not lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ledger.blocks import Certificate, Header
from ledger.errors import VerificationError
from ledger.records import Envelope

from .messages import Decision, Message, Proposal, SignedVote
from .params import Timer
from .state import PersistedState
from .votes import Evidence

# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """First event after construction (fresh or from persisted state)."""

    now_ms: int


@dataclass(frozen=True)
class ProposalReceived:
    proposal: Proposal
    now_ms: int


@dataclass(frozen=True)
class VoteReceived:
    vote: SignedVote
    now_ms: int


@dataclass(frozen=True)
class RecordsAvailable:
    """The mempool has records to commit: round timers may start."""

    now_ms: int


@dataclass(frozen=True)
class TimerFired:
    timer: Timer
    now_ms: int


@dataclass(frozen=True)
class CommittedBlock:
    """A certified block fetched from a peer (catch-up, or a ``Decision`` message).

    The machine verifies the certificate and validates the block itself; it
    is applied only if ``header.height`` is the machine's current height.
    """

    header: Header
    envelopes: tuple[Envelope, ...]
    certificate: Certificate
    now_ms: int


@dataclass(frozen=True)
class BlockApplied:
    """The driver finished applying the :class:`Commit` for ``height``."""

    height: int
    now_ms: int


Event = Union[Start, ProposalReceived, VoteReceived, RecordsAvailable, TimerFired,
              CommittedBlock, BlockApplied]


def received(message: Message, now_ms: int) -> Event:
    """The event for a decoded peer message."""
    if isinstance(message, Proposal):
        return ProposalReceived(message, now_ms)
    if isinstance(message, SignedVote):
        return VoteReceived(message, now_ms)
    if isinstance(message, Decision):
        return CommittedBlock(message.header, message.envelopes, message.certificate, now_ms)
    raise TypeError(f"not a consensus message: {type(message).__name__}")


# --------------------------------------------------------------------------
# Effects
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Persist:
    """Durably store ``state`` (replacing the previous one) before going on."""

    state: PersistedState


@dataclass(frozen=True)
class Broadcast:
    """Send ``message`` to every other validator."""

    message: Message


@dataclass(frozen=True)
class SendTo:
    """Send ``message`` to validator ``validator`` only: its index in the set
    of the height it spoke at, and its public key (indexes move between
    epochs; the key names the peer, PROTOCOL §9.9)."""

    validator: int
    message: Message
    key: bytes = b""


@dataclass(frozen=True)
class SetTimer:
    """Feed ``TimerFired(timer, now)`` back after ``delay_ms`` (no cancellation)."""

    timer: Timer
    delay_ms: int


@dataclass(frozen=True)
class Commit:
    """Append this block to the chain, then feed back ``BlockApplied(height)``."""

    header: Header
    envelopes: tuple[Envelope, ...]
    certificate: Certificate

    @property
    def height(self) -> int:
        return self.header.height


@dataclass(frozen=True)
class EvidenceFound:
    """Two conflicting signed votes from one validator (also in ``machine.evidence``)."""

    evidence: Evidence


@dataclass(frozen=True)
class NeedCatchUp:
    """At least one honest validator is past ``height``: blocks up to ``height``
    are committed.  Fetch them from peers and feed them as :class:`CommittedBlock`
    events, lowest first, starting at ``machine.height``."""

    height: int


@dataclass(frozen=True)
class FetchBlock:
    """A quorum precommitted ``block_hash`` at ``height`` but this node lacks
    the block: ask peers for it (a ``Decision`` or the ``Proposal`` carrying it,
    see ``machine.proposal_for_block``) and feed the answer back."""

    height: int
    block_hash: bytes


@dataclass(frozen=True)
class Rejected:
    """A peer message or block was refused (for logs/metrics; nothing to do)."""

    what: str
    error: VerificationError
    validator: int | None = None


Effect = Union[Persist, Broadcast, SendTo, SetTimer, Commit, EvidenceFound, NeedCatchUp,
               FetchBlock, Rejected]
