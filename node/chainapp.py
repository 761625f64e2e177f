"""The consensus machine's view of this node: block building and validation.

:class:`NodeApplication` is both the machine's ``Application`` (build a block
from the mempool, validate a proposed or fetched block) and the
``ValidationContext`` of :func:`consensus.validation.validate_block`, over the
real :class:`ChainStore` and :class:`Mempool`.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.validation import block_records_cap, validate_block
from ledger.blocks import Header
from ledger.chain import ChainStore
from ledger.genesis import Genesis
from ledger.membership import Membership
from ledger.errors import VerificationError
from ledger.records import Envelope
from ledger.statesync import history_reason

from .mempool import Mempool

# Certified blocks skip the clock-skew check (a lagging clock must not stop
# catch-up): an effectively infinite skew.
NO_SKEW_LIMIT = 1 << 62


class HistoryIncomplete(VerificationError):
    """A proposal reached a node still back-filling history (it cannot check nonces)."""

    code = "unavailable"
    step = "history"


class NodeApplication:
    def __init__(self, genesis: Genesis, chain: ChainStore, mempool: Mempool, *,
                 max_block_records: int, max_clock_skew_ms: int) -> None:
        self.genesis = genesis
        self.chain = chain
        self.mempool = mempool
        self.max_block_records = max_block_records
        self._skew_limit = max_clock_skew_ms
        self.max_clock_skew_ms = max_clock_skew_ms
        self.now_ms = 0
        self._trust_certified = False
        self._nonce_holders: dict[tuple[bytes, int], bytes] | None = None

    # -- Application -------------------------------------------------------

    def pending_count(self) -> int:
        return len(self.mempool)

    def build_block(self, height: int, round: int, time_ms: int, proposer: int
                    ) -> tuple[Header, tuple[Envelope, ...]] | None:
        if self.chain.history_gap:
            return None  # back-filling: nothing admitted (node/statesync.py)
        envelopes = self.mempool.select(self.block_cap(height), time_ms=time_ms)
        if not envelopes:
            return None
        return self.chain.next_header(envelopes, time_ms, proposer), tuple(envelopes)

    def block_cap(self, height: int) -> int:
        """Records in a block this node proposes at ``height``: node.toml's
        ``limits.max_block_records``, lowered by the chain param in force
        there (PROTOCOL §9; validators refuse a block above the param)."""
        return min(self.max_block_records,
                   block_records_cap(self.chain.membership.at(height).params,
                                     self.max_block_records))

    def validate(self, header: Header, envelopes: Sequence[Envelope], *, now_ms: int,
                 certified: bool) -> None:
        gap = self.chain.history_gap
        if gap and not certified:
            # Nonces used below the snapshot are unknown until back-fill ends
            # (every block holds records): vote nil; validators holding the
            # whole history decide.
            raise HistoryIncomplete(history_reason(gap))
        self.now_ms = now_ms
        self.max_clock_skew_ms = NO_SKEW_LIMIT if certified else self._skew_limit
        # A certified block carries precommits of a quorum, so at least f+1
        # honest validators checked every record signature before signing;
        # re-checking them would only slow catch-up down.  Everything else
        # (header chain, roots, nonces, parents) is still recomputed here.
        self._trust_certified = certified
        # The chain's holders of the block's nonces the mempool does not
        # hold, looked up together (a range walk per submitter, not a read
        # per record: a block caught up holds thousands, none pending here).
        keys = ((env.record.submitter, env.record.nonce) for env in envelopes)
        if self.mempool.holds_nonces():
            holds = self.mempool.holds_nonce
            keys = (key for key in keys if not holds(*key))
        self._nonce_holders = self.chain.nonce_holders(keys)
        try:
            validate_block(header, envelopes, self, record_times=not certified)
        finally:
            self._trust_certified = False
            self._nonce_holders = None
        # Every record's verdict, derived here from committed state, must be
        # what the header commits (PROTOCOL §10.6): a proposer whose policy
        # decided otherwise gets no prevote, and a certified block this node
        # derives other verdicts for is refused (the node stops following
        # rather than commit verdicts it cannot reproduce).  Kept for the commit.
        self.chain.block_verdicts(header, envelopes)
        if not certified:
            # Signatures this validation checked; a certified block's were
            # trusted, not checked (and it is committed next: nothing to keep).
            self.mempool.mark_verified(e.leaf_hash for e in envelopes)

    # -- ValidationContext -------------------------------------------------

    @property
    def tip(self) -> Header | None:
        return self.chain.tip()

    @property
    def membership(self) -> Membership:
        return self.chain.membership

    def log_preview(self, leaf_hashes: Sequence[bytes]) -> tuple[int, bytes]:
        return self.chain.log.preview(leaf_hashes)

    # A record pending in the mempool is not committed, and a nonce a pending
    # record holds is not used in the chain: committing a block drops its
    # records, and every pending record that shared a nonce with them, from
    # the mempool in the same step (Mempool.committed).  So a block built of
    # pending records is checked without a store read per record.

    def nonce_holder(self, submitter: bytes, nonce: int) -> bytes | None:
        known = self._nonce_holders
        if known is not None:
            # Validating a block: its nonces were looked up together, those a
            # pending record holds left out (so absent here, None).
            return known.get((submitter, nonce))
        if self.mempool.holds_nonce(submitter, nonce):
            return None
        return self.chain.id_for_nonce(submitter, nonce)

    def record_known_committed(self, record_id: bytes) -> bool:
        if record_id in self.mempool:
            return False
        if self.chain.record_location(record_id) is not None:
            return True
        # A certified block may name a parent below a state-sync snapshot
        # that back-fill has not reached: a quorum checked it.
        return self._trust_certified and bool(self.chain.history_gap)

    def signature_verified(self, envelope_id: bytes) -> bool:
        return self._trust_certified or self.mempool.signature_verified(envelope_id)
