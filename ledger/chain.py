"""Certified blocks on top of the Merkle log, with every index, in one store.

A block is committed with ONE synced write batch holding its envelopes, leaf
hashes and tree nodes, the record indexes, the header, the certificate and
the new tip; LevelDB applies a batch atomically, so after a crash the store
holds the whole block or none of it.  Nothing here trusts what it reads back
more than it must: envelopes are checked against their leaf hashes, headers
against their certificates, and :meth:`ChainStore.check_integrity` re-checks
the tip (certificate, hash link, log root) on open.

The block and record reads are in :mod:`ledger.chain_records`, the checks of
the tip on open in :mod:`ledger.chain_integrity`, the membership replayed
from the committed governance records in :mod:`ledger.chain_membership` and
what the node keeps beside the blocks (consensus state, evidence,
checkpoint and witness signatures) in :mod:`ledger.chain_side`:
:class:`ChainStore` inherits them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from . import blocks, schema, verdict_store
from .approvals import BlockVerdicts, VerdictState
from .breaker_state import derive_breakers
from .breakers import Breakers
from .blocks import ZERO_HASH, Certificate, Header
from .chain_integrity import ChainIntegrity
from .chain_membership import ChainMembership
from .chain_records import decode_stored_header
from .chain_side import ChainSideData
from .crypto import digest_equal
from .errors import (
    HeaderError,
    SchemaUnsupported,
    StorageCorruption,
    ValidatorSetMismatch,
    WrongChain,
)
from .genesis import Genesis
from .governance import GOV_PREFIX
from .log import MerkleLog
from .membership import Membership
from .merkle import root
from .pending import stage_pending_done
from .policy import PolicyEngine
from .records import Envelope, Record, decode_committed_envelope
from .storage import KeyValueStore, WriteBatch

# Blocks between persisted policy states (schema.META_POLICY_STATE): a
# restart replays this many blocks' records into the policy engine, plus
# those after a crash's last save.  A save costs in proportion to the
# windows' entries (an hour's window at thousands of records/s holds
# millions), so it also waits until the records committed since the last
# save are at least as many: its cost stays under about one entry's
# encoding per record, and a restart replays at most the longest window's
# records more.
POLICY_STATE_EVERY = 256


class ChainStore(ChainMembership, ChainIntegrity, ChainSideData):
    """Blocks, certificates, envelopes and indexes over a :class:`KeyValueStore`.

    One writer at a time: callers serialize ``commit_block`` (the consensus
    driver does).  Reads may run alongside it: stored values never change
    once written, and the tip and the log's frontier are swapped in single
    assignments after the batch is durable.
    """

    def __init__(self, store: KeyValueStore, genesis: Genesis, *, check: bool = True) -> None:
        self._store = store
        self.genesis = genesis
        self._init_schema()
        # Committed blocks never change, and every proof needs its block's
        # header and certificate: the last chain_records.BLOCK_CACHE blocks read stay
        # decoded (checked against each other once, when first read).
        self._blocks: OrderedDict[int, tuple[bytes, Header, Certificate]] = OrderedDict()
        self.log = MerkleLog(store)
        self._tip = self._load_tip()
        self._history_from, self._backfilled = self._load_history()
        # Who may do what at each height (PROTOCOL §9): genesis plus the
        # committed governance records, replayed from their index.
        self.membership = self._load_membership()
        # Verdicts (PROTOCOL §10.5): the base engine (no policy) until the
        # node installs its own (set_policy_engine); held records from the store.
        self.verdicts = self._load_verdicts(PolicyEngine())
        self._verdict_cache: tuple[bytes, BlockVerdicts] | None = None
        self._saved_at = (self.height, self.log.size)  # height, log size of the last save
        if check:
            self.check_integrity()

    # ------------------------------------------------------------- open/close

    def _init_schema(self) -> None:
        self._packed_verdicts = True  # version 3 on: verdict entries by shape
        raw = self._store.get(schema.META_SCHEMA_VERSION)
        if raw is None:
            if next(iter(self._store.iterate(b"")), None) is not None:
                raise StorageCorruption("store holds data but no schema version")
            batch = WriteBatch()
            batch.put(schema.META_SCHEMA_VERSION, schema.schema_version_value())
            self._store.write(batch, sync=True)
            return
        version = schema.unpack_u64(raw, "schema version")
        if version not in schema.READABLE_SCHEMA_VERSIONS:
            raise SchemaUnsupported(version, schema.SCHEMA_VERSION)
        self._packed_verdicts = version >= 3

    def _load_tip(self) -> Header | None:
        raw = self._store.get(schema.META_TIP)
        if raw is None:
            return None
        height = schema.unpack_u64(raw, "tip height")
        header_bytes = self._store.get(schema.header_key(height))
        if header_bytes is None:
            raise StorageCorruption(f"tip header at height {height} is missing")
        return decode_stored_header(header_bytes, height)

    def reload_membership(self) -> None:
        """Rebuild the membership from the ``g`` index: when back-fill has
        closed the gap below a snapshot (ledger/statesync.py).  Called
        by the thread that commits, so no commit is in between.  The
        breakers, derived without those blocks, are derived again from
        every block (the persisted ones are dropped)."""
        self.membership = self._load_membership()
        batch = WriteBatch()
        batch.delete(schema.META_BREAKERS)
        self._store.write(batch, sync=False)
        self._breakers_ready = False
        self._verdict_cache = None

    def _load_verdicts(self, engine: PolicyEngine) -> VerdictState:
        tip = self._tip
        # The breakers are derived when first needed (:attr:`breakers`): a
        # store opened only to be read never replays blocks for them.
        self._breakers_ready = False
        return VerdictState(engine, verdict_store.load_held(self._store),
                            blocks.HEADER_VERSION if tip is None else tip.version,
                            lookup=self.committed_record)

    @property
    def breakers(self) -> Breakers:
        """The circuit breakers after the tip (PROTOCOL §12.3), part of the
        verdict state: derived from the persisted state and the blocks after
        it on first use, then advanced by each commit."""
        self.derive_breakers()
        return self.verdicts.breakers

    def derive_breakers(self) -> None:
        """Bring the breakers up to the tip if they are not yet (a node does
        at start; otherwise the first verdict or commit does)."""
        if not self._breakers_ready:
            self.verdicts.breakers = derive_breakers(self, self.committed_record)
            self._breakers_ready = True

    def committed_record(self, record_id: bytes) -> Record | None:
        """A committed record by id, or None."""
        raw = self.envelope(record_id)
        return decode_committed_envelope(raw).record if raw is not None else None

    def set_policy_engine(self, engine: PolicyEngine) -> None:
        """Judge the next blocks with ``engine``, whose state must be that
        after the tip (node/policy_runtime.py builds it)."""
        self.verdicts.engine = engine
        self._verdict_cache = None

    def _load_history(self) -> tuple[int, int]:
        """``(history_from, backfilled)``: (1, 0) for a store holding every block."""
        raw = self._store.get(schema.META_HISTORY_FROM)
        if raw is None:
            return 1, 0
        done = self._store.get(schema.META_BACKFILLED)
        return (schema.unpack_u64(raw, "history_from"),
                0 if done is None else schema.unpack_u64(done, "backfilled"))

    def _reload(self) -> None:
        """Forget cached state and re-read it from the store."""
        self.log.reload()
        self._tip = self._load_tip()
        self._history_from, self._backfilled = self._load_history()
        self._blocks.clear()
        self.membership = self._load_membership()
        self.verdicts = self._load_verdicts(self.verdicts.engine)
        self._verdict_cache = None

    def close(self) -> None:
        self.save_policy_state()
        self._store.close()

    def save_policy_state(self) -> None:
        """Persist the policy engine's state after the tip (its own height
        inside): a restart then replays only the blocks after it.  Written
        after the block it follows, so it never runs ahead of the tip."""
        self._saved_at = (self.height, self.log.size)
        data = self.verdicts.engine.state_bytes()
        batch = WriteBatch()
        if data is not None:
            batch.put(schema.META_POLICY_STATE, data)
        if self._breakers_ready:
            batch.put(schema.META_BREAKERS, self.verdicts.breakers.to_bytes())
        if data is not None or self._breakers_ready:
            self._store.write(batch, sync=False)

    def policy_state_bytes(self) -> bytes | None:
        """What :meth:`save_policy_state` wrote last, if anything."""
        return self._store.get(schema.META_POLICY_STATE)

    def breaker_state_bytes(self) -> bytes | None:
        return self._store.get(schema.META_BREAKERS)

    # ------------------------------------------------------------------ blocks

    def write_history(self, batch: WriteBatch, backfilled: int) -> None:
        """Write a back-fill batch (:class:`ledger.statesync.Backfill`) that
        completes blocks up to ``backfilled``, and move the gap in the same
        write; the gap's meta keys go when it closes."""
        if backfilled >= self._history_from - 1:
            batch.delete(schema.META_HISTORY_FROM)
            batch.delete(schema.META_BACKFILLED)
            batch.delete(schema.META_SNAPSHOT_GOVERNANCE)  # the blocks hold them now
            self._store.write(batch, sync=True)
            self._history_from, self._backfilled = 1, 0
        else:
            batch.put(schema.META_BACKFILLED, schema.pack_u64(backfilled))
            self._store.write(batch, sync=True)
            self._backfilled = backfilled

    # ------------------------------------------------------------------ commit

    def next_header(self, envelopes: Sequence[Envelope], time: int, proposer: int) -> Header:
        """The header a proposer builds on the tip for ``envelopes``."""
        leaves = [env.leaf_hash for env in envelopes]
        log_size, log_root = self.log.preview(leaves)
        tip = self._tip
        verdicts = self.next_verdicts(self.height + 1, time, envelopes)
        header = Header(
            chain=self.genesis.chain,
            height=self.height + 1,
            prev=ZERO_HASH if tip is None else tip.hash,
            time=time,
            proposer=proposer,
            tx_count=len(envelopes),
            tx_root=root(leaves),
            log_size=log_size,
            log_root=log_root,
            validators=self.membership.at(self.height + 1).validators_hash,
            verdicts=verdicts.root,
        )
        self._verdict_cache = (header.hash, verdicts)
        return header

    # ---------------------------------------------------------------- verdicts

    def next_verdicts(self, height: int, time: int,
                      envelopes: Sequence[Envelope]) -> BlockVerdicts:
        """The verdicts of a next block at ``time`` holding ``envelopes``
        (PROTOCOL §10.5), derived from committed state only."""
        self.derive_breakers()
        return self.verdicts.compute(self.membership.at(height), height, time, envelopes,
                                     self.log.size)

    def block_verdicts(self, header: Header, envelopes: Sequence[Envelope]) -> BlockVerdicts:
        """The verdicts of the next block ``header``, raising
        :class:`~ledger.approvals.VerdictMismatch` unless its header commits
        exactly them.  Kept for the commit that follows (one evaluation per block)."""
        cached = self._verdict_cache
        if cached is not None and digest_equal(cached[0], header.hash):
            return cached[1]
        verdicts = self.next_verdicts(header.height, header.time, envelopes)
        verdicts.check(header)
        self._verdict_cache = (header.hash, verdicts)
        return verdicts

    def record_verdict(self, record_id: bytes) -> verdict_store.RecordVerdict | None:
        """A committed record's verdict and status (PROTOCOL §10.8), or None."""
        location = self.record_location(record_id)
        if location is None:
            return None
        header = self.header(location[0])
        if header is None:
            return None
        verdict, index = verdict_store.verdict_at(self._store, header, record_id, location[1])
        final = verdict_store.final_location(self._store, record_id)
        if final is None:
            return verdict_store.RecordVerdict(verdict, verdict.status, index)
        final_header = self.header(final[0])
        if final_header is None:
            return verdict_store.RecordVerdict(verdict, verdict.status, index)
        transition = verdict_store.transition_at(self._store, final_header, final[1], record_id)
        return verdict_store.RecordVerdict(verdict, transition.status, index, final[0],
                                           final[1], transition)

    def final_location(self, record_id: bytes) -> tuple[int, int] | None:
        """Where a held record's transition is committed (height, entry index), or None."""
        return verdict_store.final_location(self._store, record_id)

    def decided(self, limit: int, after: bytes | None = None) -> list[bytes]:
        """A page of the records that reached a final status by a transition
        (PROTOCOL §10.7, §10.10), in id order past ``after``."""
        return verdict_store.decided(self._store, limit, after) if limit > 0 else []

    def verdict_entries(self, height: int) -> list[bytes] | None:
        """The verdict entry bytes of block ``height`` (None: version 1 or no such block)."""
        header = self.header(height)
        return None if header is None else verdict_store.entries(self._store, header)

    def check_header(self, header: Header, leaves: Sequence[bytes]) -> None:
        """Raise unless ``header`` extends the tip with exactly these leaves
        (everything but the log root, which needs the appended tree)."""
        tip = self._tip
        if header.chain != self.genesis.chain:
            raise WrongChain(f"header is for chain {header.chain!r}")
        if header.height != self.height + 1:
            raise HeaderError(f"header height {header.height}, expected {self.height + 1}")
        if not digest_equal(header.prev, ZERO_HASH if tip is None else tip.hash):
            raise HeaderError(f"header {header.height}'s prev is not the tip's hash")
        in_force = self.membership.at(header.height)
        if not digest_equal(header.validators, in_force.validators_hash):
            raise ValidatorSetMismatch(
                f"header validators differ from the set in force at height {header.height}")
        if not 0 <= header.proposer < len(in_force.validators):
            raise HeaderError(f"proposer {header.proposer} is not a validator index")
        if header.tx_count != len(leaves):
            raise HeaderError(f"tx_count {header.tx_count} but {len(leaves)} envelopes")
        if not digest_equal(header.tx_root, root(leaves)):
            raise HeaderError("tx_root is not the MTH of the block's envelopes")

    def check_block(self, header: Header, envelopes: Sequence[Envelope]) -> None:
        """Everything :meth:`commit_block` checks but the certificate, writing
        nothing: what a validator needs before it votes for a proposal."""
        leaves = [env.leaf_hash for env in envelopes]
        self.check_header(header, leaves)
        _check_log_after(header, *self.log.preview(leaves))
        self.block_verdicts(header, envelopes)

    def commit_block(
        self,
        header: Header,
        envelopes: Sequence[Envelope],
        certificate: Certificate,
        *,
        verify_certificate: bool = True,
        validated: bool = False,
        pending_done: Sequence[int] = (),
        verdicts: BlockVerdicts | None = None,
    ) -> None:
        """Check ``header`` against the tip and the log, verify the
        certificate (unless the caller already did), then write the whole
        block in one synced batch.

        ``validated``: the caller ran ``consensus.validation.validate_block``
        on this tip (the consensus driver always has), so no id or nonce of
        the block is committed already and the indexes' guard reads - two
        store reads per record - are skipped; repeats within the block are
        still guarded.

        ``pending_done``: sequence numbers of this node's pending entries
        (:mod:`ledger.pending`) that the block commits, deleted in the same
        batch: never both gone from the pending keyspace and uncommitted."""
        leaves = [env.leaf_hash for env in envelopes]
        self.check_header(header, leaves)
        self.derive_breakers()  # up to the tip, before this block advances them
        batch = WriteBatch()
        log_size, log_root = self.log.stage(leaves, batch)
        _check_log_after(header, log_size, log_root)
        if verify_certificate:
            blocks.verify_certificate(certificate, header, self.epoch_genesis(header.height))
        if verdicts is None:
            verdicts = self.block_verdicts(header, envelopes)
        else:
            verdicts.check(header)
        # The block's governance records, found in one pass (most blocks have none).
        first = log_size - len(envelopes)
        governance = [(leaf_index, env) for leaf_index, env in enumerate(envelopes, start=first)
                      if env.record.kind.startswith(GOV_PREFIX)]
        # Raises (the block is invalid) if a governance record does not apply;
        # only governance records change the membership.
        membership = self.membership.apply(header.height, [env for _, env in governance],
                                           signatures=False)
        self._stage_records(header.height, envelopes, batch, read_guards=not validated)
        for leaf_index, _ in governance:
            batch.put(schema.governance_key(header.height, leaf_index), b"")
        batch.put(schema.header_key(header.height), header.header_bytes)
        batch.put(schema.certificate_key(header.height), certificate.to_bytes())
        batch.put(schema.META_TIP, schema.pack_u64(header.height))
        stage_pending_done(batch, pending_done)
        verdict_store.stage(batch, header, verdicts, packed_form=self._packed_verdicts)
        self._write_block(batch, header, log_size, membership)
        self.verdicts.commit(header.height, header.time, verdicts)
        self._verdict_cache = None
        saved_height, saved_size = self._saved_at
        if (header.height - saved_height >= POLICY_STATE_EVERY
                and self.log.size - saved_size >= self.verdicts.engine.state_entries()):
            self.save_policy_state()

    def _stage_records(self, height: int, envelopes: Sequence[Envelope], batch: WriteBatch,
                       *, read_guards: bool = True) -> None:
        first = self.log.size
        if not read_guards:
            # A validated block: no id or nonce of it is committed already.
            # Without repeats inside it either (always, for one that passed
            # validation) every index entry is written, built in one pass.
            ids = {env.record.id for env in envelopes}
            nonces = {(env.record.submitter, env.record.nonce) for env in envelopes}
            if len(ids) == len(nonces) == len(envelopes):
                batch.put_many(schema.record_entries(height, first, envelopes))
                return
        seen_ids: set[bytes] = set()
        seen_nonces: set[tuple[bytes, int]] = set()
        get = self._store.get if read_guards else _absent
        ops: list[tuple[bytes, bytes]] = []  # one extend of the batch, not a call per put
        put = ops.append
        for leaf_index, env in enumerate(envelopes, start=first):
            record = env.record
            record_id = record.id
            put((schema.envelope_key(leaf_index), env.envelope_bytes))
            put((schema.submitter_key(record.submitter, leaf_index), record_id))
            for parent in record.parents:
                put((schema.child_key(parent, record_id), b""))
            # First occurrence wins: an id or nonce, once committed, keeps
            # pointing where it was first committed (admission rejects
            # repeats; this only guards the indexes against a bad block).
            location_key = schema.record_location_key(record_id)
            if record_id not in seen_ids and get(location_key) is None:
                put((location_key, schema.pack_location(height, leaf_index)))
            seen_ids.add(record_id)
            nonce = (record.submitter, record.nonce)
            nonce_key = schema.nonce_key(*nonce)
            if nonce not in seen_nonces and get(nonce_key) is None:
                put((nonce_key, record_id))
            seen_nonces.add(nonce)
        batch.put_many(ops)

    def _write_block(self, batch: WriteBatch, header: Header, log_size: int,
                     membership: Membership) -> None:
        try:
            self._store.write(batch, sync=True)
        except BaseException:
            # The write may have landed before failing (e.g. an fsync error):
            # re-read rather than guess; if the store is gone, keep the
            # original error.
            try:
                self._reload()
            except Exception:
                pass
            raise
        self.log.applied(log_size)
        self._tip = header
        self.membership = membership


def _absent(key: bytes) -> None:
    """The guard read of a validated block: validation found nothing there."""
    return None


def _check_log_after(header: Header, log_size: int, log_root: bytes) -> None:
    if header.log_size != log_size:
        raise HeaderError(f"log_size {header.log_size}, appending gives {log_size}")
    if not digest_equal(header.log_root, log_root):
        raise HeaderError("log_root is not the log's root after appending the block")


def upgrade_schema(store: KeyValueStore) -> int | None:
    """Mark a store of an older readable schema version (schema.py) as this
    release's: the version it had, or None if it needed nothing.  Only the
    marker is written (the layouts differ in what the newer one may write);
    a store of another version is left for ChainStore to refuse."""
    raw = store.get(schema.META_SCHEMA_VERSION)
    if raw is None:
        return None
    version = schema.unpack_u64(raw, "schema version")
    if version == schema.SCHEMA_VERSION or version not in schema.READABLE_SCHEMA_VERSIONS:
        return None
    batch = WriteBatch()
    batch.put(schema.META_SCHEMA_VERSION, schema.schema_version_value())
    store.write(batch, sync=True)
    return version
