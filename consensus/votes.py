"""Vote bookkeeping for one height, and equivocation evidence.

A validator is counted at most once per (round, type, block), and a second
vote of one validator for another block in the same (round, type) is kept as
:class:`Evidence`.  Counting distinct signers is what makes two quorums
intersect in an honest validator; the simulator's broken replicas break
exactly this to prove the checkers notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.blocks import VoteType
from ledger.crypto import verify_signature
from ledger.encoding import canonical, decode
from ledger.errors import BadEncoding
from ledger.genesis import Genesis

from .messages import SignatureCheck, SignedVote, decode_message, encode_message

BlockId = bytes | None


@dataclass(frozen=True)
class Evidence:
    """Two signed votes of one validator for one (height, round, type) naming
    different blocks: proof of Byzantine behaviour anyone can check."""

    first: SignedVote
    second: SignedVote

    @property
    def validator(self) -> int:
        return self.first.validator

    @property
    def key(self) -> tuple[int, int, int, str]:
        return (self.validator, self.first.height, self.first.round, self.first.type)

    def to_bytes(self) -> bytes:
        return canonical({"first": encode_message(self.first), "second": encode_message(self.second)})


def decode_evidence(data: bytes) -> Evidence:
    value = decode(data)
    if not isinstance(value, dict) or set(value) != {"first", "second"}:
        raise BadEncoding("evidence must be a map of first and second")
    pair = [decode_message(value[k]) if isinstance(value[k], bytes) else None for k in ("first", "second")]
    if not all(isinstance(v, SignedVote) for v in pair):
        raise BadEncoding("evidence entries must be vote messages")
    return Evidence(pair[0], pair[1])  # type: ignore[arg-type]


def verify_evidence(ev: Evidence, genesis: Genesis, check: SignatureCheck = verify_signature) -> None:
    """Raise unless ``ev`` proves its validator signed two conflicting votes."""
    a, b = ev.first, ev.second
    if a.validator != b.validator:
        raise BadEncoding("evidence votes are from different validators")
    same = (a.vote.chain, a.height, a.round, a.type) == (b.vote.chain, b.height, b.round, b.type)
    if not same or a.vote.chain != genesis.chain:
        raise BadEncoding("evidence votes are not for one chain, height, round and type")
    if a.block == b.block:
        raise BadEncoding("evidence votes do not conflict")
    a.verify(genesis, check)
    b.verify(genesis, check)


class VoteTally:
    """The votes of one (round, type) at one height.

    Counts are per block over *distinct* validators.  A validator that votes
    for two blocks (Byzantine) is counted once for each: two quorums for
    different blocks still intersect in f+1 validators, one of them honest,
    so this is safe, and it is needed for liveness: a proof-of-lock carried
    by a proposal may include the equivocator's vote for the locked block
    while we first heard its other vote.  Per validator at most
    ``MAX_BLOCKS_PER_VALIDATOR`` blocks are stored, unless the vote comes as
    part of a proposal's POL (bounded by the proposals we keep).
    """

    MAX_BLOCKS_PER_VALIDATOR = 3

    def __init__(self) -> None:
        self.by_block: dict[BlockId, dict[int, SignedVote]] = {}
        self.first: dict[int, SignedVote] = {}
        self._blocks_of: dict[int, int] = {}

    def has(self, validator: int, block: BlockId) -> bool:
        voters = self.by_block.get(block)
        return voters is not None and validator in voters

    def add(self, sv: SignedVote, force: bool = False) -> tuple[bool, SignedVote | None]:
        """Count ``sv``.  Returns (added, an earlier vote of this validator for
        another block, i.e. evidence, or None)."""
        if self.has(sv.validator, sv.block):
            return False, None
        earlier = self.first.get(sv.validator)
        if earlier is None:
            self.first[sv.validator] = sv
        elif not force and self._blocks_of[sv.validator] >= self.MAX_BLOCKS_PER_VALIDATOR:
            return False, earlier
        self.by_block.setdefault(sv.block, {})[sv.validator] = sv
        self._blocks_of[sv.validator] = self._blocks_of.get(sv.validator, 0) + 1
        return True, earlier

    def count(self, block: BlockId) -> int:
        return len(self.by_block.get(block, ()))

    def total(self) -> int:
        """Distinct validators that voted (for anything)."""
        return len(self.first)

    def blocks_reaching(self, threshold: int) -> list[BlockId]:
        return [b for b, voters in self.by_block.items() if len(voters) >= threshold]

    def votes_for(self, block: BlockId) -> list[SignedVote]:
        return sorted(self.by_block.get(block, {}).values(), key=lambda v: v.validator)

    def get(self, validator: int) -> SignedVote | None:
        return self.first.get(validator)


class HeightVotes:
    """All tallies of one height plus who has spoken in each round."""

    def __init__(self, height: int, quorum: int, tally_factory: Any = VoteTally) -> None:
        self.height = height
        self.quorum = quorum
        self._factory = tally_factory
        self.tallies: dict[tuple[int, VoteType], VoteTally] = {}
        self.senders: dict[int, set[int]] = {}
        # (round, block) pairs whose precommits reached the quorum, in the
        # order they did: the only candidates for a decision.
        self.decisive: list[tuple[int, BlockId]] = []

    def tally(self, round_: int, type_: VoteType) -> VoteTally:
        key = (round_, type_)
        found = self.tallies.get(key)
        if found is None:
            found = self.tallies[key] = self._factory()
        return found

    def peek(self, round_: int, type_: VoteType) -> VoteTally | None:
        return self.tallies.get((round_, type_))

    def add(self, sv: SignedVote, force: bool = False) -> tuple[bool, SignedVote | None]:
        self.note_sender(sv.round, sv.validator)
        tally = self.tally(sv.round, sv.type)
        added, conflict = tally.add(sv, force)
        if added and sv.type == VoteType.PRECOMMIT and sv.block is not None and tally.count(sv.block) >= self.quorum:
            key = (sv.round, sv.block)
            if key not in self.decisive:
                self.decisive.append(key)
        return added, conflict

    def note_sender(self, round_: int, validator: int) -> None:
        self.senders.setdefault(round_, set()).add(validator)

