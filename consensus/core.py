"""The Tendermint round logic (arXiv 1807.04938, Algorithm 1) over one height.

:class:`RoundCore` holds the per-height state and the "upon" rules; the public
:class:`consensus.machine.ConsensusMachine` adds event intake on top.  Rules
are re-evaluated after every input until none fires, so the order in which
messages arrive never matters, only the set received.

Deviations from the paper, each for a reason:

* A resend timer re-broadcasts what we signed in the current round while the
  round lasts: the paper assumes eventual delivery, which a message lost
  before the network stabilised would otherwise break (votes waited for by
  the 2f+1 timeout rules could be gone for good).
* Timers only run while the height has work (records pending, or a proposal
  or vote for this height was received): no empty blocks and no idle churn.
* A re-proposal carries the prevotes of its POL round, so validators that
  missed that polka can still accept it (liveness after message loss).
* Block data is kept by hash: a block decided by a quorum of precommits can
  come from any round's proposal, a fetched proposal or a Decision.
* Votes are counted per block over distinct validators (votes.py): an
  equivocator counts for each block it voted for, which is safe (quorum
  intersection) and lets a POL that includes its vote still convince us.
* Catch-up (machine.py): a validator seen still working on the height we
  just decided is sent the Decision; f+1 validators seen ahead ask the
  driver to fetch blocks (NeedCatchUp).
* Epochs (PROTOCOL §9.9): the validator set, our index in it (or none), n,
  the quorum and the proposer rotation are those in force at the current
  height, asked of the ``epochs`` source at every new height.  A validator
  outside the set follows (counts votes, decides, catches up) but never
  signs.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from ledger.blocks import Certificate, Header, Vote, VoteType
from ledger.errors import VerificationError
from ledger.genesis import Genesis
from ledger.records import Envelope

from .app import Application
from .events import Broadcast, Commit, Effect, FetchBlock, Persist, Rejected, SendTo, SetTimer
from .messages import Decision, Proposal, SignatureCheck, SignedVote, Signer, sign_proposal, sign_vote
from .params import NIL_ROUND, ConsensusConfig, Step, Timer, proposer_for, weak_quorum
from .state import PersistedState, ValidValue
from .validation import BlockFromFuture, check_proposer
from .votes import HeightVotes, VoteTally

Block = tuple[Header, tuple[Envelope, ...]]
# At most this many conflicting proposals are kept per round (an equivocating
# proposer could otherwise make us store unbounded block data); blocks we
# explicitly fetched are always accepted.
MAX_PROPOSALS_PER_ROUND = 2
# The validator set in force at a height, as a genesis of that epoch (see
# ledger.membership.State.as_genesis): same chain, that epoch's validators.
EpochSource = Callable[[int], Genesis]
# The consensus config (timeouts) in force at a height: a node takes the
# chain params of the membership in force there (PROTOCOL §9).
ConfigSource = Callable[[int], ConsensusConfig]


class RoundCore:
    """Per-height consensus state and the rules of the paper."""

    tally_factory: type[VoteTally] = VoteTally

    def __init__(
        self,
        genesis: Genesis,
        signers: Mapping[bytes, Signer],
        app: Application,
        config: ConsensusConfig,
        check: SignatureCheck,
        epochs: EpochSource | None = None,
        configs: ConfigSource | None = None,
    ) -> None:
        self.first_genesis = genesis
        self.configs = configs
        self.signers = dict(signers)
        self.epochs: EpochSource = epochs or (lambda _height: genesis)
        self._enter_epoch(1)
        self.app = app
        self.config = config
        self.check = check
        self.now = 0
        self.tip_time = 0
        self._out: list[Effect] = []
        self._dirty = False
        self._halted = False  # a decision was emitted: no more rules this height
        self.last_decision: Decision | None = None
        self._decided_at = 0
        self._reset_height(1)

    @staticmethod
    def _quorum_size(genesis: Genesis) -> int:
        return genesis.quorum  # ledger.genesis.quorum(n): the one definition

    def epoch(self, height: int) -> Genesis:
        """The validator set in force at ``height`` (PROTOCOL §9.9), for the
        heights we act on: the previous one (helping a laggard), this one and
        the next (known for sure: a change committed at h is in force from
        h + 2).  A message from further ahead is judged by the next height's
        set: it only hints that we fell behind, and catch-up verifies each
        block it then fetches against its own set."""
        height = max(self.height - 1, min(height, self.height + 1))
        if height == self.height:
            return self.genesis
        found = self._epoch_cache.get(height)
        if found is None:
            found = self._epoch_cache[height] = self.epochs(height)
        return found

    def _enter_epoch(self, height: int) -> None:
        """Take the validator set of ``height``: who we are in it, n, quorums."""
        genesis = self.epochs(height)
        self._epoch_cache: dict[int, Genesis] = {}
        self.genesis = genesis
        self.n = genesis.n
        self.quorum = self._quorum_size(genesis)
        self.weak_quorum = weak_quorum(genesis.n)
        self.me: int | None = None
        self.signer: Signer | None = None
        for v in genesis.validators:
            signer = self.signers.get(v.pubkey)
            if signer is not None:
                self.me, self.signer = v.index, signer
                break

    def _proposer(self, height: int, round_: int) -> int:
        return proposer_for(self.epoch(height).n, height, round_)

    # ------------------------------------------------------------------
    # Height state
    # ------------------------------------------------------------------

    def _reset_height(self, height: int) -> None:
        self._enter_epoch(height)
        if self.configs is not None:
            self.config = self.configs(height)
        self.height = height
        self.round = 0
        self.step = Step.PROPOSE
        self.locked_round = NIL_ROUND
        self.locked_block: bytes | None = None
        self.valid: ValidValue | None = None
        self.proposed_round = NIL_ROUND
        self.own_votes: dict[tuple[int, VoteType], SignedVote] = {}
        self.votes = HeightVotes(height, self.quorum, self.tally_factory)
        self.proposals: dict[int, dict[bytes, Proposal]] = {}
        self.blocks: dict[bytes, Block] = {}
        self.validity: dict[bytes, VerificationError | None] = {}
        self.polka_done: set[int] = set()
        self.prevote_timer_done: set[int] = set()
        self.precommit_timer_done: set[int] = set()
        self.fetch_requested: set[bytes] = set()
        self.active = False
        self._halted = False
        self._dirty = True

    def _restore(self, state: PersistedState) -> None:
        """Load a persisted snapshot for the current height (after a crash)."""
        self.round, self.step = state.round, state.step
        self.locked_round, self.locked_block = state.locked_round, state.locked_block
        self.proposed_round = state.proposed_round
        for sv in state.votes:
            self.own_votes[(sv.round, sv.type)] = sv
            self.votes.add(sv)
        if state.valid is not None:
            self.valid = state.valid
            self.blocks[state.valid.block_hash] = (state.valid.header, state.valid.envelopes)
            for sv in state.valid.pol:
                self.votes.add(sv, force=True)
        self._dirty = False

    def snapshot(self) -> PersistedState:
        return PersistedState(
            height=self.height,
            round=self.round,
            step=self.step,
            locked_round=self.locked_round,
            locked_block=self.locked_block,
            valid=self.valid,
            proposed_round=self.proposed_round,
            votes=tuple(self.own_votes.values()),
        )

    # ------------------------------------------------------------------
    # Output helpers: the Persist-before-send contract lives here
    # ------------------------------------------------------------------

    def _emit(self, effect: Effect) -> None:
        self._out.append(effect)

    def _send(self, effect: Broadcast | SendTo) -> None:
        # Anything we are about to send may carry a fresh signature: make the
        # state that remembers it durable first.
        self._flush_persist()
        self._out.append(effect)

    def _flush_persist(self) -> None:
        if self._dirty:
            self._dirty = False
            self._out.append(Persist(self.snapshot()))

    def _set_timer(self, step: Step) -> None:
        self._emit(SetTimer(Timer(self.height, self.round, step), self.config.timeout_ms(step, self.round)))

    def _set_resend_timer(self) -> None:
        self._emit(SetTimer(Timer(self.height, self.round, Step.PROPOSE, resend=True), self.config.resend_ms))

    # ------------------------------------------------------------------
    # Transitions
    # ------------------------------------------------------------------

    def _activate(self) -> None:
        """There is work at this height: from now on the round timers run."""
        if not self.active:
            self.active = True
            self._arm_round_timers()

    def _arm_round_timers(self) -> None:
        # Paper: timeoutPropose at round start; timeoutPrevote/Precommit are
        # armed by the rules when 2f+1 votes of the round have arrived, which
        # is what keeps honest validators' rounds in step with each other.
        if self.step == Step.PROPOSE:
            self._set_timer(Step.PROPOSE)
        self._set_resend_timer()

    def _set_step(self, step: Step) -> None:
        self.step = step
        self._dirty = True

    def _start_round(self, round_: int) -> None:
        self.round = round_
        self._set_step(Step.PROPOSE)
        if self.active:
            self._arm_round_timers()
        self._maybe_propose()

    def _cast(self, type_: VoteType, block: bytes | None) -> None:
        key = (self.round, type_)
        sv = self.own_votes.get(key)
        if sv is None:
            if self.me is None or self.signer is None:
                return  # not a validator at this height: we follow, never sign
            vote = Vote(type_, self.genesis.chain, self.height, self.round, block)
            sv = sign_vote(vote, self.me, self.signer)
            self.own_votes[key] = sv
            self._dirty = True
        # else: signed before a crash; re-send that vote, never sign another.
        self._send(Broadcast(sv))
        self.votes.add(sv)

    def _prevote(self, block: bytes | None) -> None:
        self._set_step(Step.PREVOTE)
        self._cast(VoteType.PREVOTE, block)

    def _precommit(self, block: bytes | None) -> None:
        self._set_step(Step.PRECOMMIT)
        self._cast(VoteType.PRECOMMIT, block)

    def _maybe_propose(self) -> None:
        if (
            self._halted
            or self.me is None
            or self.signer is None
            or self.step != Step.PROPOSE
            or proposer_for(self.n, self.height, self.round) != self.me
            or self.proposed_round >= self.round
        ):
            return
        if self.valid is not None:
            v = self.valid
            header, envelopes, pol_round, pol = v.header, v.envelopes, v.round, v.pol
        else:
            built = self.app.build_block(self.height, self.round, max(self.now, self.tip_time), self.me)
            if built is None:
                return  # nothing pending: no empty blocks
            (header, envelopes), pol_round, pol = built, NIL_ROUND, ()
        proposal = sign_proposal(header, envelopes, self.round, pol_round, self.signer, pol)
        self.proposed_round = self.round
        self._dirty = True
        self._send(Broadcast(proposal))
        self._store_proposal(proposal)
        self._activate()

    def _store_proposal(self, p: Proposal) -> None:
        self.proposals.setdefault(p.round, {})[p.block_hash] = p
        self.blocks.setdefault(p.block_hash, (p.header, p.envelopes))

    def _decide(self, block: Block, cert: Certificate) -> None:
        header, envelopes = block
        # No Persist: the Commit makes this height's state obsolete, and every
        # vote we signed in it was persisted before it was sent.
        self._emit(Commit(header, envelopes, cert))
        self.last_decision = Decision(header, envelopes, cert)
        self._decided_at = self.now
        self.tip_time = header.time
        self._halted = True

    # ------------------------------------------------------------------
    # Validity (cached per block hash for the height)
    # ------------------------------------------------------------------

    def _block_valid(self, block_hash: bytes, proposer: int | None = None) -> bool:
        if block_hash in self.validity:
            return self.validity[block_hash] is None
        header, envelopes = self.blocks[block_hash]
        try:
            self.app.validate(header, envelopes, now_ms=self.now, certified=False)
            error = None
        except BlockFromFuture as exc:
            self._emit(Rejected("block", exc, proposer))
            return False  # may become valid as our clock advances: not cached
        except VerificationError as exc:
            error = exc.as_value()  # cached: no traceback holding this frame
            self._emit(Rejected("block", error, proposer))
        self.validity[block_hash] = error
        return error is None

    def _proposal_valid(self, p: Proposal) -> bool:
        proposer = proposer_for(self.n, p.height, p.round)
        try:
            check_proposer(p.header, self.n, p.round, p.pol_round)
        except VerificationError as exc:
            self._emit(Rejected("proposal", exc, proposer))
            return False
        return self._block_valid(p.block_hash, proposer)

    # ------------------------------------------------------------------
    # Rules
    # ------------------------------------------------------------------

    def _advance(self) -> None:
        while not self._halted and (
            self._rule_decide()
            or self._rule_skip_round()
            or self._rule_prevote()
            or self._rule_polka()
            or self._rule_nil_polka()
        ):
            pass
        if not self._halted:
            self._rule_prevote_timeout()
            self._rule_precommit_timeout()

    def _rule_decide(self) -> bool:
        """Any round: a proposal's block + a quorum of precommits for it -> decide."""
        for r, block in self.votes.decisive:
            assert block is not None
            if block not in self.blocks:
                self._request_block(block)
                continue
            if self._decidable(block, r):
                tally = self.votes.tally(r, VoteType.PRECOMMIT)
                cert = Certificate(self.height, r, block,
                                   tuple((v.validator, v.sig) for v in tally.votes_for(block)))
                self._decide(self.blocks[block], cert)
                return True
        return False

    def _decidable(self, block: bytes, round_: int) -> bool:
        try:
            check_proposer(self.blocks[block][0], self.n, round_, round_)
        except VerificationError as exc:
            self._emit(Rejected("decision", exc))
            return False
        return self._block_valid(block)

    def _request_block(self, block: bytes) -> None:
        if block not in self.fetch_requested:
            self.fetch_requested.add(block)
            self._emit(FetchBlock(self.height, block))

    def _rule_skip_round(self) -> bool:
        """f+1 validators speak in a later round: at least one honest is there."""
        later = [r for r, who in self.votes.senders.items() if r > self.round and len(who) >= self.weak_quorum]
        if not later:
            return False
        self._start_round(max(later))
        return True

    def _rule_prevote(self) -> bool:
        if self.step != Step.PROPOSE:
            return False
        proposals = self.proposals.get(self.round)
        if not proposals:
            return False
        p = next(iter(proposals.values()))  # an equivocator's first one is what we judge
        block = p.block_hash
        if p.pol_round == NIL_ROUND:
            unlocked = self.locked_round == NIL_ROUND or self.locked_block == block
        else:
            polka = self.votes.peek(p.pol_round, VoteType.PREVOTE)
            if polka is None or polka.count(block) < self.quorum:
                return False  # wait for the POL prevotes (or the timeout)
            unlocked = self.locked_round <= p.pol_round or self.locked_block == block
        ok = unlocked and self._proposal_valid(p)
        self._prevote(block if ok else None)
        return True

    def _rule_polka(self) -> bool:
        """Proposal of this round + a quorum of prevotes for it: lock (if still
        in prevote) and remember it as the valid value."""
        if self.step < Step.PREVOTE or self.round in self.polka_done:
            return False
        tally = self.votes.peek(self.round, VoteType.PREVOTE)
        if tally is None:
            return False
        for block in tally.blocks_reaching(self.quorum):
            p = self.proposals.get(self.round, {}).get(block) if block is not None else None
            if p is None or not self._proposal_valid(p):
                continue
            self.polka_done.add(self.round)
            pol = tuple(tally.votes_for(block))
            self.valid = ValidValue(self.round, p.header, p.envelopes, pol)
            self._dirty = True
            if self.step == Step.PREVOTE:
                self.locked_round, self.locked_block = self.round, block
                self._precommit(block)
            return True
        return False

    def _rule_nil_polka(self) -> bool:
        if self.step != Step.PREVOTE:
            return False
        tally = self.votes.peek(self.round, VoteType.PREVOTE)
        if tally is None or tally.count(None) < self.quorum:
            return False
        self._precommit(None)
        return True

    def _rule_prevote_timeout(self) -> None:
        """2f+1 prevotes of any kind while in prevote: wait a little for a polka."""
        if self.step != Step.PREVOTE or self.round in self.prevote_timer_done:
            return
        tally = self.votes.peek(self.round, VoteType.PREVOTE)
        if tally is not None and tally.total() >= self.quorum:
            self.prevote_timer_done.add(self.round)
            self._set_timer(Step.PREVOTE)

    def _rule_precommit_timeout(self) -> None:
        """2f+1 precommits of any kind in this round: leave it after the timeout
        even if we are still in an earlier step."""
        if self.round in self.precommit_timer_done:
            return
        tally = self.votes.peek(self.round, VoteType.PRECOMMIT)
        if tally is not None and tally.total() >= self.quorum:
            self.precommit_timer_done.add(self.round)
            self._set_timer(Step.PRECOMMIT)

    # ------------------------------------------------------------------
    # Timeouts (paper: OnTimeoutPropose/Prevote/Precommit)
    # ------------------------------------------------------------------

    def _on_timeout(self, timer: Timer) -> None:
        if timer.height != self.height or timer.round != self.round or self._halted:
            return
        if timer.resend:
            self._resend()
        elif timer.step == Step.PROPOSE and self.step == Step.PROPOSE:
            self._prevote(None)
        elif timer.step == Step.PREVOTE and self.step == Step.PREVOTE:
            self._precommit(None)
        elif timer.step == Step.PRECOMMIT:
            self._start_round(self.round + 1)

    def _resend(self) -> None:
        """The round is stuck: re-broadcast what we signed in it (never anything
        new), and the precommits of the previous round that moved us here, so
        a validator that lost them can follow (it gets f+1 senders of that
        round to skip to it, then the 2f+1 precommits that time it out)."""
        for (round_, _), sv in self.own_votes.items():
            if round_ == self.round:
                self._send(Broadcast(sv))
        mine = self.proposals.get(self.round, {})
        if proposer_for(self.n, self.height, self.round) == self.me and mine:
            self._send(Broadcast(next(iter(mine.values()))))
        previous = self.votes.peek(self.round - 1, VoteType.PRECOMMIT) if self.round > 0 else None
        if previous is not None and previous.total() >= self.quorum:
            for sv in previous.first.values():
                self._send(Broadcast(sv))
        self._on_stuck()
        self._set_resend_timer()

    def _on_stuck(self) -> None:
        """Hook for the machine: a resend period passed without leaving the round."""

    def _pol_votes_ok(self, p: Proposal, pol: Sequence[SignedVote]) -> bool:
        return all(
            v.height == p.height and v.round == p.pol_round and v.type == VoteType.PREVOTE
            and v.block == p.block_hash for v in pol
        )
