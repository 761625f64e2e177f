"""Deliberately broken replicas (test-only): each removes one safety or
liveness ingredient, so the tests can show the checkers catch it.

* IgnoreLockMachine   - prevotes and proposes as if it were never locked
* DoubleCountMachine  - counts every vote message, not distinct validators
* SmallQuorumMachine  - decides with floor(n/2) votes instead of the quorum
* NoValidationMachine - accepts any proposed block as valid
* NoTimeoutMachine    - ignores its timers (a silent proposer stalls it)
* SendBeforePersistMachine - sends what it signed before persisting it
* ForgetfulMachine    - persists its round but not its votes or lock
* GenesisSetMachine   - ignores validator-set changes: counts votes, quorums
                        and proposers by the genesis set at every height
* VerdictBlindMachine - votes for a block whose verdict root (PROTOCOL §10.6)
                        differs from the one it derives (the node refuses
                        it: VerdictMismatch)
* VerdictDriftMachine - derives verdicts from local state (its policy's
                        rule names the validator evaluating it), so its
                        verdict root is its own: a nondeterministic policy
* StaleSetMachine     - applies each validator-set change one height late:
                        for a height it still counts a removed validator's
                        votes (and not an added one's, nor a rotated key's)
"""

from __future__ import annotations

from typing import Any, Sequence

from consensus.events import Broadcast, SendTo
from consensus.machine import ConsensusMachine
from consensus.messages import SignedVote
from consensus.params import NIL_ROUND, Step, Timer
from consensus.state import PersistedState
from consensus.votes import BlockId, VoteTally
from ledger.approvals import VerdictMismatch
from ledger.genesis import Genesis
from ledger.policy import Decision, Outcome, PolicyEngine, RecordInput

from .app import SimApp


class IgnoreLockMachine(ConsensusMachine):
    """Forgets its lock: prevotes as if it had never locked, and as proposer
    offers a fresh block instead of the one it locked on (its valid value)."""

    def _rule_prevote(self) -> bool:
        saved = self.locked_round, self.locked_block
        self.locked_round, self.locked_block = NIL_ROUND, None
        try:
            return super()._rule_prevote()
        finally:
            self.locked_round, self.locked_block = saved

    def _maybe_propose(self) -> None:
        saved, self.valid = self.valid, None
        try:
            super()._maybe_propose()
        finally:
            self.valid = saved


class DoubleCountTally(VoteTally):
    """Counts vote *messages*: a duplicate delivery counts again."""

    def __init__(self) -> None:
        super().__init__()
        self.all: list[SignedVote] = []

    def has(self, validator: int, block: BlockId) -> bool:
        return False  # so duplicate deliveries are never skipped

    def add(self, sv: SignedVote, force: bool = False) -> tuple[bool, SignedVote | None]:
        self.all.append(sv)
        self.first.setdefault(sv.validator, sv)
        return True, None

    def count(self, block: BlockId) -> int:
        return sum(1 for v in self.all if v.block == block)

    def blocks_reaching(self, threshold: int) -> list[BlockId]:
        blocks = list(dict.fromkeys(v.block for v in self.all))
        return [b for b in blocks if self.count(b) >= threshold]

    def votes_for(self, block: BlockId) -> list[SignedVote]:
        return [v for v in self.all if v.block == block]


class DoubleCountMachine(ConsensusMachine):
    tally_factory = DoubleCountTally


class SmallQuorumMachine(ConsensusMachine):
    @staticmethod
    def _quorum_size(genesis: Genesis) -> int:
        return max(1, genesis.n // 2)


class NoValidationMachine(ConsensusMachine):
    def _block_valid(self, block_hash: bytes, proposer: int | None = None) -> bool:
        return True


class NoTimeoutMachine(ConsensusMachine):
    def _on_timeout(self, timer: Timer) -> None:
        return


class SendBeforePersistMachine(ConsensusMachine):
    def _send(self, effect: Broadcast | SendTo) -> None:
        self._out.append(effect)  # the Persist only follows at the end of the step


class ForgetfulMachine(ConsensusMachine):
    def snapshot(self) -> PersistedState:
        return PersistedState(height=self.height, round=self.round, step=Step.PROPOSE)


class GenesisSetMachine(ConsensusMachine):
    def _enter_epoch(self, height: int) -> None:
        saved, self.epochs = self.epochs, lambda _height: self.first_genesis
        try:
            super()._enter_epoch(height)
        finally:
            self.epochs = saved

    def epoch(self, height: int) -> Genesis:
        return self.first_genesis


class VerdictBlindMachine(ConsensusMachine):
    def _block_valid(self, block_hash: bytes, proposer: int | None = None) -> bool:
        if super()._block_valid(block_hash, proposer):
            return True
        return isinstance(self.validity.get(block_hash), VerdictMismatch)


class LocalRuleEngine(PolicyEngine):
    """A policy (version 1) whose every verdict names who evaluated it."""

    def __init__(self, evaluator: str) -> None:
        self.evaluator = evaluator

    @property
    def version(self) -> int:
        return 1

    def evaluate_block(self, height: int, time_ms: int,
                       records: Sequence[RecordInput]) -> list[Decision]:
        return [Decision(Outcome.ALLOW, f"default@{self.evaluator}", policy_version=1)] * len(records)


class VerdictDriftMachine(ConsensusMachine):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.app, SimApp):
            me = min(self.signers, default=b"").hex()[:8]
            self.app.chain.verdicts.engine = LocalRuleEngine(me)


class StaleSetMachine(ConsensusMachine):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        epochs = kwargs.get("epochs")
        if epochs is not None:
            kwargs["epochs"] = lambda height: epochs(max(1, height - 1))
        super().__init__(*args, **kwargs)


BROKEN = {
    "ignore-lock": IgnoreLockMachine,
    "double-count": DoubleCountMachine,
    "small-quorum": SmallQuorumMachine,
    "no-validation": NoValidationMachine,
    "no-timeout": NoTimeoutMachine,
    "send-before-persist": SendBeforePersistMachine,
    "forgetful": ForgetfulMachine,
    "verdict-blind": VerdictBlindMachine,
    "verdict-drift": VerdictDriftMachine,
}
# Broken only across validator-set changes: caught by epoch runs
# (scripts/simulate --epochs) and the enumerator's epoch plans (change=...).
EPOCH_BROKEN = {"genesis-set": GenesisSetMachine, "stale-set": StaleSetMachine}
