"""The public sans-I/O consensus state machine.

Usage by a driver (the node, or the simulator)::

    machine = ConsensusMachine(genesis, me, key, app, tip=chain.tip(),
                               persisted=decode_state(stored) if stored else None)
    run(machine.handle(Start(now_ms)))
    # for every input: run(machine.handle(event))

    def run(effects):
        for effect in effects:          # strictly in order
            Persist   -> write effect.state.to_bytes() durably (fsync) before going on
            Broadcast -> send encode_message(effect.message) to every other validator
            SendTo    -> send it to effect.validator only
            SetTimer  -> after effect.delay_ms, handle(TimerFired(effect.timer, now))
            Commit    -> append the block + certificate to the chain (durably), update
                         the mempool, then run(machine.handle(BlockApplied(height, now)))
            EvidenceFound, Rejected -> expose / log
            NeedCatchUp -> fetch committed blocks machine.height..effect.height from
                           peers; feed each as CommittedBlock, lowest first
            FetchBlock  -> ask peers for the block (Decision or Proposal) and feed it back

Peer bytes become events with ``received(decode_message(data), now_ms)``.
The driver must also answer peers' block requests (``proposal_for_block``,
or committed blocks from its store) and periodically exchange heights with
peers so that a validator that fell behind while idle learns about it.
"""

from __future__ import annotations

from collections import deque
from typing import Mapping

from ledger.blocks import Certificate, Header, verify_certificate
from ledger.crypto import verify_signature
from ledger.errors import StorageCorruption, VerificationError
from ledger.genesis import Genesis

from .app import Application
from .core import MAX_PROPOSALS_PER_ROUND, ConfigSource, EpochSource, RoundCore
from .events import (
    BlockApplied,
    Broadcast,
    CommittedBlock,
    Effect,
    Event,
    EvidenceFound,
    NeedCatchUp,
    ProposalReceived,
    RecordsAvailable,
    Rejected,
    SendTo,
    Start,
    TimerFired,
    VoteReceived,
)
from .messages import Proposal, SignatureCheck, SignedVote, Signer
from .params import ConsensusConfig, Step, proposer_for
from .state import PersistedState
from .validation import check_proposer
from .votes import Evidence

BufferKey = tuple[int, str, int, str]


class ConsensusMachine(RoundCore):
    """Tendermint consensus for one validator, driven by :meth:`handle`."""

    def __init__(
        self,
        genesis: Genesis,
        me: int | None,
        signer: Signer | None,
        app: Application,
        *,
        tip: Header | None,
        persisted: PersistedState | None = None,
        config: ConsensusConfig | None = None,
        check: SignatureCheck = verify_signature,
        epochs: EpochSource | None = None,
        signers: Mapping[bytes, Signer] | None = None,
        configs: ConfigSource | None = None,
    ) -> None:
        """``me``/``signer``: our genesis index and key.  Across validator-set
        changes pass ``epochs`` (the set in force at a height) and
        ``signers`` (our keys by public key, e.g. the old and new key around
        a rotation) instead, with ``me`` and ``signer`` None: at each height
        we are whichever validator of its set holds one of our keys, or a
        follower that signs nothing.  ``configs``: the timeouts in force at
        a height (``config`` holds at every height without it)."""
        keys = dict(signers or {})
        if me is not None:
            if not 0 <= me < genesis.n or signer is None:
                raise ValueError(f"validator index {me} is not in genesis")
            keys.setdefault(genesis.validators[me].pubkey, signer)
        super().__init__(genesis, keys, app, config or ConsensusConfig(), check, epochs,
                         configs)
        self.evidence: list[Evidence] = []
        self._evidence_keys: set[tuple[int, int, int, str]] = set()
        self._seen_height: dict[bytes, int] = {}  # by validator key: indexes move
        self._catch_up_sent = 0
        self._laggards: dict[bytes, tuple[int, int]] = {}
        self._next: dict[BufferKey, Proposal | SignedVote] = {}
        self._awaiting_apply: int | None = None
        self._queued: deque[Event] = deque(maxlen=self.config.max_queued_events)
        next_height = tip.height + 1 if tip else 1
        self.tip_time = tip.time if tip else 0
        self._reset_height(next_height)
        if persisted is not None and persisted.height > next_height:
            raise StorageCorruption(
                f"consensus state is at height {persisted.height} but the chain only at {next_height - 1}"
            )
        if persisted is not None and persisted.height == next_height:
            self._restore(persisted)
        # (older state belongs to a height whose block was applied: discard)

    # ------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------

    def handle(self, event: Event) -> list[Effect]:
        """Feed one event; returns the effects to execute in order."""
        self._out = []
        if self._awaiting_apply is not None and not isinstance(event, BlockApplied):
            self._queued.append(event)
            return []
        self._dispatch(event)
        while self._queued and self._awaiting_apply is None:
            self._dispatch(self._queued.popleft())
        # No Persist here: state nothing was sent from (a new height, a round
        # or step change, a valid value) needs no fsync.  Only what we signed
        # and sent must survive a crash, and _send persists that first.
        out, self._out = self._out, []
        return out

    def proposal_for_block(self, height: int, block_hash: bytes) -> Proposal | None:
        """A proposal we hold carrying ``block_hash`` (to answer a peer's FetchBlock)."""
        if height != self.height:
            return None
        for by_hash in self.proposals.values():
            if block_hash in by_hash:
                return by_hash[block_hash]
        return None

    @property
    def awaiting_apply(self) -> int | None:
        """Height of a Commit the driver has not acknowledged with BlockApplied."""
        return self._awaiting_apply

    # ------------------------------------------------------------------
    # Dispatch
    # ------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        self.now = event.now_ms
        if isinstance(event, VoteReceived):
            self._on_vote(event.vote)
        elif isinstance(event, ProposalReceived):
            self._on_proposal(event.proposal)
        elif isinstance(event, TimerFired):
            self._on_timeout(event.timer)
        elif isinstance(event, RecordsAvailable):
            self._on_records()
        elif isinstance(event, CommittedBlock):
            self._on_committed_block(event)
        elif isinstance(event, BlockApplied):
            self._on_block_applied(event.height)
            return
        elif isinstance(event, Start):
            self._on_start()
        else:
            raise TypeError(f"unknown event {type(event).__name__}")
        self._advance()
        self._note_decision()

    def _note_decision(self) -> None:
        if self._halted and self._awaiting_apply is None:
            self._awaiting_apply = self.height

    def _on_start(self) -> None:
        restored = bool(self.own_votes) or self.round > 0 or self.valid is not None
        if restored or self.app.pending_count() > 0:
            self._activate()
        # Re-send what we signed in this round: the crash may have eaten it.
        for (round_, _), sv in self.own_votes.items():
            if round_ == self.round:
                self._send(Broadcast(sv))
        self._maybe_propose()

    def _on_records(self) -> None:
        if self.app.pending_count() > 0:
            self._activate()
            self._maybe_propose()

    def _on_block_applied(self, height: int) -> None:
        if self._awaiting_apply != height:
            return
        self._awaiting_apply = None
        self._reset_height(height + 1)
        buffered = [m for m in self._next.values() if m.height == self.height]
        self._next = {}
        if self.app.pending_count() > 0 or buffered:
            self.active = True
        self._start_round(0)
        for msg in buffered:
            if isinstance(msg, Proposal):
                self._on_proposal(msg, verified=True)
            else:
                self._on_vote(msg, verified=True)
        self._advance()
        self._note_decision()

    # ------------------------------------------------------------------
    # Message intake
    # ------------------------------------------------------------------

    def _mine(self, height: int, index: int) -> bool:
        """Validator ``index`` of ``height``'s set holds one of our keys."""
        if height == self.height:
            return index == self.me
        return self.epoch(height).validators[index].pubkey in self.signers

    def _verify(self, msg: Proposal | SignedVote, sender: int) -> bool:
        try:
            msg.verify(self.epoch(msg.height), self.check)
        except VerificationError as exc:
            self._emit(Rejected(type(msg).__name__.lower(), exc, sender))
            return False
        return True

    def _on_vote(self, sv: SignedVote, verified: bool = False, pol: bool = False) -> None:
        if sv.vote.chain != self.genesis.chain or not 0 <= sv.validator < self.epoch(sv.height).n:
            return  # (a removed validator's index, or one beyond the set, counts for nothing)
        if self._mine(sv.height, sv.validator):
            return  # our own votes are counted when cast; an echo adds nothing
        if sv.height != self.height:
            self._other_height(sv, sv.validator, sv.round, verified)
            return
        if sv.round > self.round + self.config.max_rounds_ahead:
            return
        tally = self.votes.peek(sv.round, sv.type)
        if tally is not None and tally.has(sv.validator, sv.block):
            return  # duplicate delivery: skip the signature check
        if not verified and not self._verify(sv, sv.validator):
            return
        added, conflict = self.votes.add(sv, force=pol)
        if conflict is not None:
            self._record_evidence(conflict, sv)
        if added:
            self._activate()

    def _on_proposal(self, p: Proposal, verified: bool = False) -> None:
        if p.header.chain != self.genesis.chain:
            return
        proposer = self._proposer(p.height, p.round)
        if self._mine(p.height, proposer):
            return
        if p.height != self.height:
            self._other_height(p, proposer, p.round, verified)
            return
        if p.round > self.round + self.config.max_rounds_ahead:
            return
        known = self.proposals.get(p.round, {})
        if p.block_hash in known:
            return
        if len(known) >= MAX_PROPOSALS_PER_ROUND and p.block_hash not in self.fetch_requested:
            return
        if not verified and not self._verify(p, proposer):
            return
        if not self._pol_votes_ok(p, p.pol):
            self._emit(Rejected("proposal", VerificationError("POL votes do not match"), proposer))
            return
        for sv in p.pol:
            # Verified one by one (the proposer's signature does not cover
            # them) and always stored: they are the proof R2 needs.
            self._on_vote(sv, pol=True)
        self._store_proposal(p)
        self.votes.note_sender(p.round, proposer)
        self._activate()

    def _other_height(self, msg: Proposal | SignedVote, sender: int, round_: int, verified: bool) -> None:
        if msg.height == self.height - 1:
            self._help_laggard(msg, sender, round_, verified)
        elif msg.height > self.height:
            self._note_future(msg, sender, verified)

    def _help_laggard(self, msg: Proposal | SignedVote, sender: int, round_: int, verified: bool) -> None:
        """A validator is still at the height we decided (it missed the proposal
        or the precommits): send it the decision, at most once per round it is
        in.  In the deciding round itself only once it is clearly stuck there:
        a validator that is merely a little slower decides by itself."""
        decision = self.last_decision
        if decision is None or decision.height != msg.height:
            return
        if round_ == decision.certificate.round and self.now - self._decided_at < self.config.timeout_precommit_ms:
            return
        epoch = self.epoch(msg.height)
        who = epoch.validators[sender].pubkey
        if self._laggards.get(who, (0, -1)) >= (msg.height, round_):
            return
        if not verified and not self._verify(msg, sender):
            return
        self._laggards[who] = (msg.height, round_)
        self._send(SendTo(sender, decision, who))

    def _note_future(self, msg: Proposal | SignedVote, sender: int, verified: bool) -> None:
        if msg.height == self.height + 1:
            key: BufferKey = (sender, type(msg).__name__, msg.round,
                              msg.type if isinstance(msg, SignedVote) else "")
            if key in self._next:
                return
            mine = sum(1 for k in self._next if k[0] == sender)
            if mine >= self.config.next_height_buffer_per_validator:
                return
        who = self.epoch(msg.height).validators[sender].pubkey
        if msg.height > self.height + 1 and self._seen_height.get(who, 0) >= msg.height:
            return  # tells us nothing new: skip the signature check
        if not verified and not self._verify(msg, sender):
            return
        if msg.height == self.height + 1:
            self._next[key] = msg
        self._seen_height[who] = max(self._seen_height.get(who, 0), msg.height)
        self._check_catch_up()

    def _check_catch_up(self, stuck: bool = False) -> None:
        """f+1 validators at height >= H: an honest one is there, so every
        height below H is committed.  Ask the driver to fetch if we are two
        or more behind, or one behind while idle or stuck in a round (a slow
        validator that is about to decide by itself is not disturbed)."""
        heights = sorted(self._seen_height.values(), reverse=True)
        if len(heights) < self.weak_quorum:
            return
        committed = heights[self.weak_quorum - 1] - 1
        if committed < self.height:
            return
        fresh = committed > self._catch_up_sent and (committed > self.height or not self.active)
        if fresh or stuck:
            self._catch_up_sent = max(self._catch_up_sent, committed)
            self._emit(NeedCatchUp(committed))

    def _on_stuck(self) -> None:
        self._check_catch_up(stuck=True)

    def _record_evidence(self, first: SignedVote, second: SignedVote) -> None:
        ev = Evidence(first, second)
        if ev.key in self._evidence_keys:
            return
        self._evidence_keys.add(ev.key)
        self.evidence.append(ev)
        self._emit(EvidenceFound(ev))

    # ------------------------------------------------------------------
    # Catch-up with a certified block
    # ------------------------------------------------------------------

    def _on_committed_block(self, event: CommittedBlock) -> None:
        header, cert = event.header, event.certificate
        if header.height != self.height or self._halted:
            return
        try:
            self._verify_certificate(cert, header)
            check_proposer(header, self.n, cert.round, cert.round)
            self.app.validate(header, event.envelopes, now_ms=self.now, certified=True)
        except VerificationError as exc:
            self._emit(Rejected("committed block", exc))
            return
        self.blocks[header.hash] = (header, event.envelopes)
        self.validity[header.hash] = None
        self._decide((header, event.envelopes), cert)

    def _verify_certificate(self, cert: Certificate, header: Header) -> None:
        """ledger.blocks.verify_certificate, through our (caching) signature check."""
        verify_certificate(cert, header, self.genesis, self.check)


__all__ = ["ConsensusMachine", "Step"]
