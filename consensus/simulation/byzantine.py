"""Byzantine validators: an honest machine whose outgoing messages are
tampered with on the way out, so they stay plausible (right height, right
round, properly signed) while attacking safety.

* equivocate  - as proposer, two different valid blocks to two halves (and
                votes for the second one to its half)
* double-vote - every vote is paired with a conflicting one to the other half
* withhold    - silent, or drops its precommits, or talks to half the peers
* invalid     - as proposer, an invalid block (see mutations) plus votes for it
* amnesia     - forgets its locks (runs IgnoreLockMachine: prevotes as if
                unlocked, proposes fresh blocks) and also prevotes every
                proposal it receives, precommitting it to half of its peers:
                the classic way to make one honest validator decide a block
                the others then abandon, if their locks let them
* twins       - not here: two honest instances with one key (see world.py)
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING

from consensus.machine import ConsensusMachine
from consensus.messages import Message, Proposal, SignedVote, sign_proposal, sign_vote
from consensus.params import NIL_ROUND
from ledger.blocks import Vote, VoteType
from ledger.encoding import H
from ledger.records import Envelope

from .broken import IgnoreLockMachine
from .crypto_cache import CachedSigner
from .mutations import ALL_KINDS, mutate
from .node import MachineFactory, SimNode
from .wire import decode_frame, encode_frame

if TYPE_CHECKING:
    from .world import World

BEHAVIOURS = ("equivocate", "double-vote", "withhold", "invalid", "amnesia", "twins")


class ByzantineNode(SimNode):
    honest = False

    def __init__(self, world: "World", endpoint: int, validator: int, clock_offset: int,
                 behaviours: frozenset[str], rng: random.Random,
                 machine_factory: MachineFactory | None = None) -> None:
        own = IgnoreLockMachine if "amnesia" in behaviours else ConsensusMachine
        super().__init__(world, endpoint, validator, clock_offset, machine_factory or own)
        self.behaviours = behaviours
        self.rng = rng
        self.withhold_mode = rng.choice(("silent", "precommits", "half"))
        self.alternatives: dict[tuple[int, int], bytes] = {}

    def describe(self) -> str:
        extra = f"({self.withhold_mode})" if "withhold" in self.behaviours else ""
        return "+".join(sorted(self.behaviours)) + extra

    # ------------------------------------------------------------------

    def deliver(self, src: int, data: bytes) -> None:
        super().deliver(src, data)
        if "amnesia" in self.behaviours and self.up:
            msg = decode_frame(data)
            if isinstance(msg, Proposal) and msg.height == self.machine.height \
                    and self.signer_at(msg.height) is not None:
                SimNode.broadcast(self, self._vote_for(VoteType.PREVOTE, msg.height, msg.round, msg.block_hash))
                half, _ = self._halves()
                self._send_only(self._vote_for(VoteType.PRECOMMIT, msg.height, msg.round, msg.block_hash), half)

    def broadcast(self, msg: Message) -> None:
        b = self.behaviours
        if "withhold" in b and self._withhold(msg):
            return
        fresh = isinstance(msg, Proposal) and msg.pol_round == NIL_ROUND
        if fresh and "invalid" in b and self.rng.random() < 0.8:
            self._invalid(msg)  # type: ignore[arg-type]
        elif fresh and "equivocate" in b:
            self._equivocate(msg)  # type: ignore[arg-type]
        elif isinstance(msg, SignedVote) and "double-vote" in b:
            self._double_vote(msg)
        else:
            super().broadcast(msg)

    def gossip(self, envelopes: tuple[Envelope, ...]) -> None:
        return  # keeps client records to itself

    def _halves(self) -> tuple[list[int], list[int]]:
        peers = list(self.world.net.links[self.endpoint])
        self.rng.shuffle(peers)
        cut = len(peers) // 2 or 1
        return peers[:cut], peers[cut:]

    def _send_only(self, msg: Message, peers: list[int]) -> None:
        self.world.on_send(self, msg)
        self.world.net.broadcast(self.endpoint, encode_frame(msg), only=peers)

    def _vote_for(self, type_: VoteType, height: int, round_: int, block: bytes | None) -> SignedVote:
        # Only called for heights it is a validator at (it signs what it
        # sends, and sends only what its machine signed or a proposal made it vote on).
        index, signer = self._identity(height)
        return sign_vote(Vote(type_, self.world.genesis.chain, height, round_, block), index, signer)

    def _identity(self, height: int) -> tuple[int, CachedSigner]:
        found = self.signer_at(height)
        # Outside the set, sign as the genesis slot anyway: such votes must count for nothing.
        return found if found is not None else (self.validator, self.signer)

    # ------------------------------------------------------------------

    def _withhold(self, msg: Message) -> bool:
        if self.withhold_mode == "silent":
            return True
        if self.withhold_mode == "precommits":
            return isinstance(msg, SignedVote) and msg.type == VoteType.PRECOMMIT
        half, _ = self._halves()
        self._send_only(msg, half)
        return True

    def _equivocate(self, p: Proposal) -> None:
        alt_header = replace(p.header, time=p.header.time + 1, header_bytes=b"")
        alt = sign_proposal(alt_header, p.envelopes, p.round, NIL_ROUND, self._identity(p.height)[1])
        self.alternatives[(p.height, p.round)] = alt.block_hash
        a, b = self._halves()
        self._send_only(p, a)
        self._send_only(alt, b)
        for type_ in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            self._send_only(self._vote_for(type_, p.height, p.round, alt.block_hash), b)

    def _double_vote(self, sv: SignedVote) -> None:
        other = self._other_block(sv)
        twin = self._vote_for(sv.type, sv.height, sv.round, other)
        a, b = self._halves()
        self._send_only(sv, a)
        self._send_only(twin, b)

    def _other_block(self, sv: SignedVote) -> bytes | None:
        alt = self.alternatives.get((sv.height, sv.round))
        if alt is not None and alt != sv.block:
            return alt
        known = [h for h in self.machine.blocks if h != sv.block] if sv.height == self.machine.height else []
        if known:
            return self.rng.choice(sorted(known))
        if sv.block is not None:
            return None
        return H(b"phantom block %d/%d" % (sv.height, sv.round))

    def _invalid(self, p: Proposal) -> None:
        kind = self.rng.choice(ALL_KINDS)
        _, signer = self._identity(p.height)
        header, envelopes = mutate(kind, p.header, p.envelopes, self.chain, self.rng,
                                   self.epoch_genesis(p.height).n)
        bad = sign_proposal(header, envelopes, p.round, NIL_ROUND, signer)
        self.world.trace.note(self.world.sched.now, self.name, f"INVALID proposal ({kind})")
        super().broadcast(bad)
        for type_ in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            super().broadcast(self._vote_for(type_, p.height, p.round, bad.block_hash))


class TwinNode(SimNode):
    """One of two honest instances sharing a validator key: Byzantine as a pair."""

    honest = False
