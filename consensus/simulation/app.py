"""The in-simulation application: an in-memory chain and mempool per node.

It implements both :class:`consensus.app.Application` (for the state
machine) and :class:`consensus.validation.ValidationContext` (for
:func:`validate_block`), the way the real node does over its ChainStore.
Record signatures are verified once per node (at admission or in the first
validation that sees the record) and then remembered in ``verified`` by leaf hash (which covers the signature).
"""

from __future__ import annotations

from typing import Sequence

from consensus.validation import validate_block
from ledger.approvals import BlockVerdicts, VerdictState
from ledger.blocks import ZERO_HASH, Certificate, Header
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from ledger.membership import Membership, check_envelope, is_governance
from ledger.merkle import root
from ledger.policy import PolicyEngine
from ledger.policy_replay import PolicyReplay
from ledger.records import Envelope

from .crypto_cache import envelope_verified, verify_envelope_once

# Sim blocks stay small ("3-6 blocks of a handful of records").
MAX_BLOCK_RECORDS = 8
NO_SKEW_LIMIT = 1 << 62


class SimChain:
    """The durable part of a node: survives crashes."""

    def __init__(self, genesis: Genesis, policy: PolicyEngine | None = None) -> None:
        self.genesis = genesis
        # Verdicts (PROTOCOL §10.5): this node's policy engine and held records.
        self.verdicts = VerdictState(policy)
        self.block_verdicts: list[BlockVerdicts] = []
        self.headers: list[Header] = []
        self.blocks: list[tuple[Envelope, ...]] = []
        self.certificates: list[Certificate] = []
        self.leaves: list[bytes] = []
        self.index_of: dict[bytes, int] = {}
        self.nonces: dict[tuple[bytes, int], bytes] = {}  # -> the record id that used it
        self.membership = Membership.from_genesis(genesis)

    @property
    def height(self) -> int:
        return len(self.headers)

    @property
    def tip(self) -> Header | None:
        return self.headers[-1] if self.headers else None

    def log_preview(self, leaf_hashes: Sequence[bytes]) -> tuple[int, bytes]:
        leaves = self.leaves + list(leaf_hashes)
        return len(leaves), root(leaves)

    def apply(self, header: Header, envelopes: tuple[Envelope, ...], cert: Certificate) -> None:
        if header.height != self.height + 1:
            raise AssertionError(f"driver bug: applying height {header.height} on {self.height}")
        verdicts = self.next_verdicts(header, envelopes)
        self.verdicts.commit(header.height, header.time, verdicts)
        self.block_verdicts.append(verdicts)
        self.membership = self.membership.apply(header.height, envelopes, signatures=False)
        self.headers.append(header)
        self.blocks.append(envelopes)
        self.certificates.append(cert)
        for env in envelopes:
            self.index_of[env.id] = len(self.leaves)
            self.leaves.append(env.leaf_hash)
            self.nonces[(env.record.submitter, env.record.nonce)] = env.id

    def rebuild_verdicts(self, policy: PolicyEngine | None) -> None:
        """After a crash: a fresh engine fed every committed block again, as a
        restarted node rebuilds its engine's state from its store; each
        block's verdicts must come out as committed."""
        replay = PolicyReplay(self.genesis, policy or PolicyEngine())
        for header, envelopes, verdicts in zip(self.headers, self.blocks, self.block_verdicts):
            replay.block(header, envelopes, verdicts.entries if verdicts.root else None)
        self.verdicts = replay.state

    def next_verdicts(self, header: Header, envelopes: Sequence[Envelope]) -> BlockVerdicts:
        """The verdicts this node derives for the next block ``header``,
        raising ``VerdictMismatch`` unless the header commits them."""
        verdicts = self.verdicts.compute(self.membership.at(header.height), header.height,
                                         header.time, envelopes, len(self.leaves))
        verdicts.check(header)
        return verdicts

    def build_header(self, envelopes: Sequence[Envelope], time_ms: int, proposer: int) -> Header:
        leaves = [e.leaf_hash for e in envelopes]
        size, log_root = self.log_preview(leaves)
        tip = self.tip
        return Header(
            chain=self.genesis.chain, height=self.height + 1, prev=tip.hash if tip else ZERO_HASH,
            time=time_ms, proposer=proposer, tx_count=len(envelopes), tx_root=root(leaves),
            log_size=size, log_root=log_root,
            validators=self.membership.at(self.height + 1).validators_hash,
            verdicts=self.verdicts.compute(self.membership.at(self.height + 1), self.height + 1,
                                           time_ms, envelopes, len(self.leaves)).root,
        )


class SimMempool:
    """Pending records in arrival order (volatile: lost on crash)."""

    def __init__(self) -> None:
        self.pending: dict[bytes, Envelope] = {}

    def select(self, chain: SimChain, limit: int) -> list[Envelope]:
        """Records whose parents are committed or selected before them."""
        chosen: list[Envelope] = []
        chosen_ids: set[bytes] = set()
        for env in list(self.pending.values()):
            if env.id in chain.index_of or (env.record.submitter, env.record.nonce) in chain.nonces:
                del self.pending[env.id]
                continue
            if all(p in chain.index_of or p in chosen_ids for p in env.record.parents):
                chosen.append(env)
                chosen_ids.add(env.id)
                if len(chosen) == limit:
                    break
        return chosen

    def drop_committed(self, chain: SimChain) -> None:
        for rid, env in list(self.pending.items()):
            if rid in chain.index_of or (env.record.submitter, env.record.nonce) in chain.nonces:
                del self.pending[rid]


class SimApp:
    """Application + ValidationContext of one simulated node."""

    def __init__(self, genesis: Genesis, chain: SimChain, max_clock_skew_ms: int) -> None:
        self.genesis = genesis
        self.chain = chain
        self.mempool = SimMempool()
        self.verified: set[bytes] = set()
        self.now_ms = 0
        self.max_clock_skew_ms = max_clock_skew_ms
        self._skew_limit = max_clock_skew_ms

    # -- mempool admission ------------------------------------------------

    def admit(self, env: Envelope) -> bool:
        """PROTOCOL §2 admission (signature verified here, once)."""
        if env.id in self.chain.index_of or env.id in self.mempool.pending:
            return False
        key = (env.record.submitter, env.record.nonce)
        if key in self.chain.nonces or any(
            (e.record.submitter, e.record.nonce) == key for e in self.mempool.pending.values()
        ):
            return False
        try:
            check_envelope(self.chain.membership, env, self.chain.height + 1, signatures=False)
            verify_envelope_once(env)
        except LedgerError:
            return False
        self.verified.add(env.leaf_hash)
        self.mempool.pending[env.id] = env
        return True

    def applied(self) -> None:
        self.mempool.drop_committed(self.chain)

    # -- Application ------------------------------------------------------

    def pending_count(self) -> int:
        # Only records a block could carry now: an orphan waiting for a parent
        # held elsewhere is no reason to run round timers here.
        return len(self.mempool.select(self.chain, MAX_BLOCK_RECORDS))

    def build_block(self, height: int, round: int, time_ms: int, proposer: int
                    ) -> tuple[Header, tuple[Envelope, ...]] | None:
        envelopes = self._applicable(height, self.mempool.select(self.chain, MAX_BLOCK_RECORDS))
        if not envelopes:
            return None
        return self.chain.build_header(envelopes, time_ms, proposer), tuple(envelopes)

    def _applicable(self, height: int, envelopes: list[Envelope]) -> list[Envelope]:
        """Leave out governance records that do not apply after the ones
        before them (two validator-set changes in one block conflict,
        PROTOCOL §9.3 rule 6): they wait for a later block, as in the node."""
        trial = self.chain.membership
        out: list[Envelope] = []
        for env in envelopes:
            if is_governance(env):
                try:
                    trial = trial.apply(height, [env], signatures=False)
                except LedgerError:
                    continue
            out.append(env)
        return out

    def validate(self, header: Header, envelopes: Sequence[Envelope], *, now_ms: int, certified: bool) -> None:
        self.now_ms = now_ms
        self.max_clock_skew_ms = NO_SKEW_LIMIT if certified else self._skew_limit
        validate_block(header, envelopes, self, record_times=not certified)
        self.chain.next_verdicts(header, envelopes)
        self.verified.update(e.leaf_hash for e in envelopes)

    # -- ValidationContext ------------------------------------------------

    @property
    def tip(self) -> Header | None:
        return self.chain.tip

    @property
    def membership(self) -> Membership:
        return self.chain.membership

    def log_preview(self, leaf_hashes: Sequence[bytes]) -> tuple[int, bytes]:
        return self.chain.log_preview(leaf_hashes)

    def nonce_holder(self, submitter: bytes, nonce: int) -> bytes | None:
        return self.chain.nonces.get((submitter, nonce))

    def record_known_committed(self, record_id: bytes) -> bool:
        return record_id in self.chain.index_of

    def signature_verified(self, envelope_id: bytes) -> bool:
        return envelope_id in self.verified or envelope_verified(envelope_id)
