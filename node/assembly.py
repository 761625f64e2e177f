"""Proposals on the wire as leaf hashes, reassembled from the mempool.

Every record reaches every validator twice under the original wire format:
once as gossip (admitted, signature checked) and once inside the proposal
that includes it.  Whichever copy lost the race was decoded again, and when
the proposal won, its signature was checked in block validation *and* the
gossip copy was decoded later for nothing: about a third of a node's CPU in
the throughput profile.

So a proposal travels as its consensus message with an empty envelope list
plus the block's leaf hashes (32 bytes each, in block order).  The receiver
rebuilds the envelope list from its mempool by leaf hash - the leaf hash
covers the whole envelope, signature included, so a hit is exactly the
envelope the proposer meant.  Block validation then recomputes ``tx_root``
and every rule as before; nothing is trusted that was not before.

When some leaves are not here yet (their gossip is still being admitted, or
was lost), the proposal is parked; it is completed as admission catches up,
and after ``fetch_after_ms`` the missing envelopes are asked of the peer that
sent the proposal.  A proposal that never completes is simply never seen by
the consensus machine, which then times out of the round as it would for a
lost proposal.

A decision (the block and certificate a validator sends a peer still at the
height it decided) travels compact the same way: the laggard validated the
block's proposal, so its mempool holds the envelopes unless it has committed
the block meanwhile (then the decision is stale and dropped on arrival).
Its missing envelopes are fetched like a proposal's; the sender answers from
its mempool or, the block being committed there, from the decision it keeps.

:class:`ProposalAssembler` is sans-I/O like the consensus machine: the node
feeds it frames, admissions and clock ticks and carries out what it returns.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from consensus import Decision, Proposal, decode_message
from consensus.messages import MAX_BLOCK_ENVELOPES, MAX_MESSAGE_BYTES
from ledger.encoding import canonical, decode_committed
from ledger.errors import BadEncoding
from ledger.merkle import HASH_LEN, leaf_hash
from ledger.records import Envelope, decode_envelope

Lookup = Callable[[bytes], Envelope | None]

MAX_PARKED = 16          # proposals waiting for envelopes at once
MAX_PARKED_AGE_MS = 30_000  # a proposal still incomplete after this is dropped
# While admission is still working through peers' records, the missing ones
# are most likely queued here: fetching them would only duplicate the work.
# Past this age, fetch anyway (a peer could keep admission busy on purpose).
MAX_BUSY_WAIT_MS = 2_000


def compact_proposal(message: bytes) -> tuple[bytes, bytes] | None:
    """Split an encoded proposal or decision into (message with no
    envelopes, leaf hashes).

    Returns None for a vote, which travels unchanged.
    Works on bytes, not on a :class:`Proposal`, so that it also applies to
    whatever a test-only Byzantine sender re-encodes.  The bytes are this
    node's own ``encode_message`` output, so they are not proven canonical
    again here (the receiver's decoder does that).
    """
    if message[:2] == b"\x84\xa3":  # a map of 4 keys, "sig" first: a vote, not decoded here
        return None
    value = decode_committed(message)
    if not isinstance(value, dict) or value.get("t") not in ("proposal", "decision"):
        return None
    envelopes = value["envelopes"]
    value["envelopes"] = []
    return canonical(value), b"".join(leaf_hash(e) for e in envelopes)


def check_leaves(leaves: bytes) -> None:
    """Raise unless ``leaves`` is at most a block's worth of 32-byte hashes."""
    if not isinstance(leaves, bytes) or len(leaves) % HASH_LEN:
        raise BadEncoding("leaves must be concatenated 32-byte hashes")
    if len(leaves) // HASH_LEN > MAX_BLOCK_ENVELOPES:
        raise BadEncoding(f"a proposal may name at most {MAX_BLOCK_ENVELOPES} leaves")


def split_leaves(leaves: bytes) -> list[bytes]:
    check_leaves(leaves)
    return [leaves[i:i + HASH_LEN] for i in range(0, len(leaves), HASH_LEN)]


Block = Proposal | Decision


def decode_compact(message: bytes, leaves: bytes) -> tuple[Block, list[bytes]]:
    """Decode a compact proposal or decision: the message (checked by the
    consensus decoder, envelope list empty) and its leaf hashes."""
    decoded = decode_message(message, max_size=MAX_MESSAGE_BYTES)
    if not isinstance(decoded, (Proposal, Decision)) or decoded.envelopes:
        raise BadEncoding("a compact proposal carries leaf hashes, not envelopes")
    return decoded, split_leaves(leaves)


def _key(block: Block) -> tuple[int, int, bytes]:
    """What tells parked messages apart: height, round, block hash."""
    if isinstance(block, Proposal):
        return block.height, block.round, block.block_hash
    return block.height, block.certificate.round, block.header.hash


@dataclass
class _Parked:
    peer: int
    proposal: Block
    leaves: list[bytes]
    missing: set[bytes]
    found: dict[bytes, Envelope] = field(default_factory=dict)
    parked_ms: int = 0
    fetch_at_ms: int = 0
    fetches: int = 0


@dataclass(frozen=True)
class Fetch:
    """Ask ``peer`` for the envelopes with these leaf hashes."""

    peer: int
    leaves: tuple[bytes, ...]


@dataclass
class AssemblerStats:
    immediate: int = 0     # proposals complete on arrival
    parked: int = 0        # proposals that had to wait
    completed: int = 0     # parked proposals completed later
    dropped: int = 0       # parked proposals given up (stale, too old, evicted)
    fetches: int = 0       # Fetch actions returned
    fetched: int = 0       # envelopes that arrived by fetch and filled a hole


class ProposalAssembler:
    """Parks compact proposals until the mempool (or a fetch) has every envelope.

    The node reports each leaf hash its mempool admits (:meth:`admitted`);
    an index from missing leaf to parked proposals makes that O(1) per
    record, however many leaves a parked proposal still lacks.
    """

    def __init__(self, lookup: Lookup, *, fetch_after_ms: int, refetch_ms: int) -> None:
        self._lookup = lookup
        self.fetch_after_ms = fetch_after_ms
        self.refetch_ms = refetch_ms
        self._parked: OrderedDict[tuple[int, int, bytes], _Parked] = OrderedDict()
        self._wanted: dict[bytes, list[_Parked]] = {}
        self.stats = AssemblerStats()

    def __len__(self) -> int:
        return len(self._parked)

    def offer(self, peer: int, proposal: Block, leaves: list[bytes],
              now_ms: int) -> Block | None:
        """The complete proposal (or decision) if every leaf is known here;
        otherwise park it."""
        found: dict[bytes, Envelope] = {}
        missing: set[bytes] = set()
        for leaf in leaves:
            env = self._lookup(leaf)
            if env is None:
                missing.add(leaf)
            else:
                found[leaf] = env
        if not missing:
            self.stats.immediate += 1
            return _complete(proposal, leaves, found)
        key = _key(proposal)
        if key in self._parked:
            return None  # a duplicate of one already waiting
        parked = _Parked(peer, proposal, leaves, missing, found, now_ms,
                         now_ms + self.fetch_after_ms)
        self._parked[key] = parked
        for leaf in missing:
            self._wanted.setdefault(leaf, []).append(parked)
        self.stats.parked += 1
        while len(self._parked) > MAX_PARKED:
            self._unpark(next(iter(self._parked)))
            self.stats.dropped += 1
        return None

    def admitted(self, leaves: Iterable[bytes]) -> None:
        """These leaf hashes are now in the mempool: fill the holes they match."""
        wanted = self._wanted
        if not wanted:
            return
        for leaf in leaves:
            waiting = wanted.pop(leaf, None)
            if waiting is None:
                continue
            env = self._lookup(leaf)
            if env is None:  # admitted and already gone again: keep waiting
                wanted[leaf] = waiting
                continue
            for parked in waiting:
                parked.missing.discard(leaf)
                parked.found[leaf] = env

    def poll(self, now_ms: int, height: int, *, admission_busy: bool = False
             ) -> tuple[list[Block], list[Fetch]]:
        """Hand over completed proposals; drop those below ``height`` (the
        machine's current height) or too old; and return the fetches that
        are due (none while ``admission_busy``, unless a proposal has waited
        :data:`MAX_BUSY_WAIT_MS`)."""
        ready: list[Block] = []
        fetches: list[Fetch] = []
        for key, parked in list(self._parked.items()):
            if parked.proposal.height < height or now_ms - parked.parked_ms > MAX_PARKED_AGE_MS:
                self._unpark(key)
                self.stats.dropped += 1
                continue
            if parked.missing and now_ms >= self._due_ms(parked, admission_busy):
                self._fill(parked)  # rare: catch anything not reported to admitted()
                if parked.missing:
                    parked.fetch_at_ms = now_ms + self.refetch_ms
                    parked.fetches += 1
                    self.stats.fetches += 1
                    fetches.append(Fetch(parked.peer, tuple(sorted(parked.missing))))
            if not parked.missing:
                self._unpark(key)
                self.stats.completed += 1
                ready.append(_complete(parked.proposal, parked.leaves, parked.found))
        return ready, fetches

    def deliver(self, envelopes: Iterable[bytes]) -> int:
        """Envelopes a peer sent in answer to a fetch: keep those that fill a
        hole (decoded; block validation checks their signatures, since they
        never passed admission).  Returns how many were used."""
        used = 0
        for raw in envelopes:
            if not isinstance(raw, bytes):
                continue
            waiting = self._wanted.get(leaf := leaf_hash(raw))
            if waiting is None:
                continue
            env = decode_envelope(raw, cosigs=True)
            del self._wanted[leaf]
            for parked in waiting:
                parked.missing.discard(leaf)
                parked.found[leaf] = env
            used += 1
        self.stats.fetched += used
        return used

    def next_due_ms(self, *, admission_busy: bool = False) -> int | None:
        """When :meth:`poll` next has work: a completed proposal to hand over
        (now) or a fetch to make (None: nothing parked).

        Takes the same ``admission_busy`` as :meth:`poll`: while admission is
        busy a fetch is not due before :data:`MAX_BUSY_WAIT_MS`, and a due
        time in the past that poll would not act on makes the caller spin
        (it did, and it showed in the throughput profile's event-loop time).
        The caller wakes again when admission goes idle."""
        return min((self._due_ms(p, admission_busy) for p in self._parked.values()),
                   default=None)

    @staticmethod
    def _due_ms(parked: _Parked, admission_busy: bool) -> int:
        if not parked.missing:
            return 0
        if admission_busy:
            return max(parked.fetch_at_ms, parked.parked_ms + MAX_BUSY_WAIT_MS)
        return parked.fetch_at_ms

    def _unpark(self, key: tuple[int, int, bytes]) -> None:
        parked = self._parked.pop(key)
        for leaf in parked.missing:
            waiting = self._wanted.get(leaf)
            if waiting is not None:
                waiting[:] = [p for p in waiting if p is not parked]
                if not waiting:
                    del self._wanted[leaf]

    def _fill(self, parked: _Parked) -> None:
        for leaf in list(parked.missing):
            env = self._lookup(leaf)
            if env is not None:
                parked.missing.discard(leaf)
                parked.found[leaf] = env
                waiting = self._wanted.get(leaf)
                if waiting is not None:
                    waiting[:] = [p for p in waiting if p is not parked]
                    if not waiting:
                        del self._wanted[leaf]


def _complete(proposal: Block, leaves: list[bytes], found: dict[bytes, Envelope]) -> Block:
    return dataclasses.replace(proposal, envelopes=tuple(found[leaf] for leaf in leaves))

