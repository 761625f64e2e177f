"""The application interface of the state machine.

Design choice: a small **synchronous** protocol rather than ABCI-style
request/response effects.  Building and validating a block are local,
deterministic computations over the node's own mempool and chain tip, and
the machine needs their answer in the middle of a transition (the prevote
depends on ``validate``; the proposal on ``build_block``).  Turning them into
effects would force the machine to park half-finished transitions and make
the Persist-before-send ordering much harder to state.  Nothing here does
network I/O or reads a clock, so the machine stays sans-I/O and fully
deterministic under simulation.  Committing, by contrast, *is* durable I/O,
so it is an effect (``Commit``) acknowledged by the ``BlockApplied`` event.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from ledger.blocks import Header
from ledger.records import Envelope


class Application(Protocol):
    def pending_count(self) -> int:
        """Records waiting in the mempool (0 means idle: no timers, no proposals)."""

    def build_block(
        self, height: int, round: int, time_ms: int, proposer: int
    ) -> tuple[Header, tuple[Envelope, ...]] | None:
        """A valid next block on the current tip, or None when nothing is pending.

        ``time_ms`` is already >= the tip's time; ``proposer`` goes in the header.
        """

    def validate(
        self, header: Header, envelopes: Sequence[Envelope], *, now_ms: int, certified: bool
    ) -> None:
        """Raise a ``VerificationError`` unless this is a valid next block on the tip.

        Normally :func:`consensus.validation.validate_block` over the node's
        context, without ``round`` (the machine checks the proposer rule
        itself).  ``certified`` blocks come with a verified quorum certificate:
        skip the clock-skew check for them (a lagging node's clock must not
        stop it from catching up).
        """
