"""Small shared vocabulary of the consensus core: steps, timers, configuration,
proposer rotation and thresholds.

The quorum itself is never redefined here: it comes from
:func:`ledger.genesis.quorum`, the one place the threshold lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ledger.genesis import max_faulty, quorum

__all__ = [
    "Step",
    "Timer",
    "ConsensusConfig",
    "proposer_for",
    "quorum",
    "weak_quorum",
    "NIL_ROUND",
]

# The "no round" marker of the paper's lockedRound/validRound/POL round (-1).
NIL_ROUND = -1


class Step(IntEnum):
    """The step of a round.  Ordered: the paper's rules compare ``step >= prevote``."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, order=True)
class Timer:
    """A timeout the driver must fire back as :class:`TimerFired` after its delay.

    Timers are never cancelled: a timer for a height/round/step the machine has
    left is simply ignored when it fires, which keeps the driver trivial.
    ``resend`` timers re-broadcast what we signed in the current round (see
    ``ConsensusConfig.resend_ms``); ``step`` is then just PROPOSE.
    """

    height: int
    round: int
    step: Step
    resend: bool = False


@dataclass(frozen=True)
class ConsensusConfig:
    """Timeouts in ms.  A round's timeout is ``base + round * delta``: growing
    timeouts are what make honest validators eventually overlap in one round
    after the network stabilises (partial synchrony)."""

    timeout_propose_ms: int = 3000
    timeout_prevote_ms: int = 1000
    timeout_precommit_ms: int = 1000
    timeout_delta_ms: int = 500
    # While a round is stuck, re-broadcast our votes (and proposal) this
    # often: the paper assumes every message is eventually delivered, and a
    # message lost before the network stabilised would otherwise stay lost.
    resend_ms: int = 5000
    # Messages further ahead than this many rounds are dropped so that a
    # Byzantine validator cannot make us store votes for unbounded rounds.
    max_rounds_ahead: int = 1000
    # Events queued while the driver applies a commit (see BlockApplied).
    max_queued_events: int = 10_000
    # Signed messages kept per validator for the next height (they arrive
    # early from faster peers and save a round of timeouts when replayed).
    next_height_buffer_per_validator: int = 16

    def timeout_ms(self, step: Step, round_: int) -> int:
        base = {
            Step.PROPOSE: self.timeout_propose_ms,
            Step.PREVOTE: self.timeout_prevote_ms,
            Step.PRECOMMIT: self.timeout_precommit_ms,
        }[step]
        return base + round_ * self.timeout_delta_ms


def proposer_for(n: int, height: int, round_: int) -> int:
    """Round-robin rotation by (height, round): every validator proposes in turn,
    and a dead proposer costs one round, never a height."""
    return (height + round_) % n


def weak_quorum(n: int) -> int:
    """f + 1: enough signers that at least one of them is honest."""
    return max_faulty(n) + 1
