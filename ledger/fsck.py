"""Full consistency check of a chain store: every key, both directions.

:func:`fsck` walks the chain block by block in constant memory and

* re-checks each block's header, certificate, envelopes, ``tx_root`` and
  ``log_root`` with :class:`~ledger.audit.ChainAuditor` (the hash chain);
* checks each envelope against its stored leaf hash, and recomputes every
  index entry the record implies - submitter (``s``), children (``c``),
  record location (``r``, first occurrence wins), nonce (``u``, first
  occurrence wins) and governance record (``g``) - comparing it with the
  store: **missing** or **wrong**;
* checks the Merkle log through its own API (:class:`~ledger.log.MerkleLog`
  owns the tree's byte layout): every leaf hash against its envelope, and
  the root at every block's log size against that block's ``log_root``;
* then walks every stored key once, in key order, and reports the entries
  no block implies (**stray**): envelopes, headers or certificates past the
  tip, unknown prefixes (tree keys under ``n`` are the log's and are judged
  through it, above).  An index whose entry count equals the count the
  blocks imply, and in which the forward walk found every implied entry,
  holds nothing else; any other index is walked again entry by entry, each
  checked against the record it names, to name its stray keys;
* finally re-runs :meth:`ChainStore.check_integrity` (the check on open).

A store started by state sync and still back-filling (``history_from`` and
``backfilled``, ledger/statesync.py) lacks the blocks of its gap: they are
not reported missing.  Blocks back-filled so far are checked as above, their
leaves read through the back-fill's log; the snapshot block's header,
certificate and log root are checked; blocks above it are checked without
the hash chain (the auditor starts from block 1), as the node itself
accepted them: certified against the snapshot.

The result is a :class:`~ledger.fsck_report.FsckReport` naming each damaged
key and, per index and problem, the damaged key range.  Nothing is written.
"""

from __future__ import annotations

from . import schema
from .audit import ChainAuditor
from .blocks import Header, certificate_from_bytes, decode_header
from .chain import ChainStore
from .crypto import digest_equal
from .errors import SchemaUnsupported, StorageCorruption, VerificationError
from .fsck_keys import _INDEX_PREFIXES, KeyWalk, Progress, _location
from .fsck_report import (
    BLOCKS,
    CHILDREN,
    ENVELOPES,
    GOVERNANCE,
    LOCATIONS,
    META,
    MISSING,
    NONCES,
    SUBMITTERS,
    TREE,
    TREE_LEAF_KEY,
    TREE_ROOT_KEY,
    WRONG,
    FsckReport,
)
from .genesis import Genesis
from .log import MerkleLog
from .merkle import leaf_hash
from .membership import is_governance
from .records import Envelope, decode_envelope
from .statesync import history_log
from .storage import KeyValueStore

__all__ = ["FsckReport", "Progress", "fsck"]


# --------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------


def fsck(store: KeyValueStore, genesis: Genesis, *, progress: Progress | None = None,
         verify_signatures: bool = False) -> FsckReport:
    """Check every block and every stored key; return what is damaged.

    Raises :class:`SchemaUnsupported` for a store of another schema version:
    this code cannot tell damage from layout there, so it checks nothing."""
    raw = store.get(schema.META_SCHEMA_VERSION)
    found = schema.unpack_u64(raw) if raw is not None and len(raw) == 8 else None
    if found is not None and found not in schema.READABLE_SCHEMA_VERSIONS:
        raise SchemaUnsupported(found, schema.SCHEMA_VERSION)
    checker = _Checker(store, genesis, progress, verify_signatures)
    checker.run()
    return checker.report


def _no_progress(phase: str, done: int, total: int | None) -> None:
    pass


class _Checker(KeyWalk):
    def __init__(self, store: KeyValueStore, genesis: Genesis, progress: Progress | None,
                 verify_signatures: bool) -> None:
        self.store = store
        self.genesis = genesis
        self.progress = progress or _no_progress
        self.report = FsckReport()
        self.auditor: ChainAuditor | None = ChainAuditor(genesis,
                                                         verify_signatures=verify_signatures)
        self.tip_height = 0
        self.log_size = 0
        self.log: MerkleLog | None = None
        # Index entries the blocks imply, counted on the forward walk; the
        # key walk only looks at an index's entries one by one when its count
        # differs or the forward walk found it damaged.
        self.implied = dict.fromkeys(_INDEX_PREFIXES, 0)

    def run(self) -> None:
        self._read_meta()
        self._read_gap()
        self._walk_blocks()
        self._walk_keys()
        self._check_open()

    # ----------------------------------------------------------------- meta

    def _read_meta(self) -> None:
        self.tip_height = self._meta_u64(schema.META_TIP, "tip height")
        self.log_size = self._meta_u64(schema.META_LOG_SIZE, "log size")
        self.report.height, self.report.log_size = self.tip_height, self.log_size
        raw = self.store.get(schema.META_SCHEMA_VERSION)
        if raw is None or len(raw) != 8 \
                or schema.unpack_u64(raw) not in schema.READABLE_SCHEMA_VERSIONS:
            self.report.add(META, WRONG if raw else MISSING, schema.META_SCHEMA_VERSION,
                            f"expected schema version {schema.SCHEMA_VERSION}")
        try:
            self.log = MerkleLog(self.store)
        except StorageCorruption as exc:
            self.report.add(TREE, WRONG, TREE_ROOT_KEY + schema.pack_u64(self.log_size),
                            f"the log does not open: {exc}")

    def _read_gap(self) -> None:
        """The heights a state-synced store does not hold yet, and the log
        its back-filled blocks are read through."""
        self.gap = range(0)
        self.history: MerkleLog | None = None
        history_from = self._meta_u64(schema.META_HISTORY_FROM, "history_from")
        if not history_from:
            return
        backfilled = self._meta_u64(schema.META_BACKFILLED, "backfilled")
        self.gap = range(backfilled + 1, history_from)
        top = self._header_at(history_from - 1)
        below = self._header_at(backfilled) if backfilled else None
        if top is not None:
            self.history = history_log(self.store, top.log_size,
                                       below.log_size if below is not None else 0)

    def _header_at(self, height: int) -> Header | None:
        raw = self.store.get(schema.header_key(height))
        try:
            return None if raw is None else decode_header(raw)
        except VerificationError:
            return None  # reported by the block walk

    def _meta_u64(self, key: bytes, what: str) -> int:
        raw = self.store.get(key)
        if raw is None:
            return 0
        try:
            return schema.unpack_u64(raw, what)
        except StorageCorruption as exc:
            self.report.add(META, WRONG, key, str(exc))
            return 0

    # --------------------------------------------------------------- blocks

    def _walk_blocks(self) -> None:
        first_leaf = 0
        for height in range(1, self.tip_height + 1):
            if height in self.gap and height != self.gap.stop - 1:
                self.auditor = None  # its hash chain resumes only when back-filled
                continue
            header = self._check_block(height)
            if height in self.gap:  # the snapshot block: its leaves are in the gap
                if header is not None:
                    self._check_root(header)
                    first_leaf = header.log_size
                continue
            if header is not None:
                first_leaf = header.log_size - header.tx_count
                self._check_leaves(height, first_leaf, header.log_size)
                self._check_root(header)
                first_leaf = header.log_size
            self.report.blocks += 1
            self.progress("blocks", height, self.tip_height)
        if first_leaf != self.log_size and self.tip_height:
            self.report.add(META, WRONG, schema.META_LOG_SIZE,
                            f"log size {self.log_size}, the tip block says {first_leaf}")

    def _check_block(self, height: int) -> Header | None:
        """The block's header if it decodes (its leaves can then be checked)."""
        hkey, qkey = schema.header_key(height), schema.certificate_key(height)
        header_bytes, cert_bytes = self.store.get(hkey), self.store.get(qkey)
        if header_bytes is None or cert_bytes is None:
            for key, value in ((hkey, header_bytes), (qkey, cert_bytes)):
                if value is None:
                    self.report.add(BLOCKS, MISSING, key, f"block {height} below the tip")
            self.auditor = None
            return None
        try:
            header = decode_header(header_bytes)
        except VerificationError as exc:
            self.report.add(BLOCKS, WRONG, hkey, f"header does not decode: {exc}")
            self.auditor = None  # the hash chain cannot be followed past it
            return None
        if header.height != height:
            self.report.add(BLOCKS, WRONG, hkey, f"header says height {header.height}")
            self.auditor = None
            return None
        self._audit_block(header, header_bytes, cert_bytes)
        return header

    def _audit_block(self, header: Header, header_bytes: bytes, cert_bytes: bytes) -> None:
        auditor = self.auditor
        if auditor is None:
            return
        envelopes = [self.store.get(schema.envelope_key(i)) or b""
                     for i in range(header.log_size - header.tx_count, header.log_size)]
        try:
            auditor.check_block(header_bytes, certificate_from_bytes(cert_bytes), envelopes)
        except VerificationError as exc:
            key = schema.certificate_key(header.height)
            self.report.add(BLOCKS, WRONG, key, f"block {header.height} fails its checks: {exc}")
            self._resync(auditor, header)

    def _resync(self, auditor: ChainAuditor, header: Header) -> None:
        """Carry on past a failed block from its header and stored leaf hashes."""
        first = header.log_size - header.tx_count
        auditor.frontier.extend(self._stored_leaf(i) or b"" for i in range(first, header.log_size))
        auditor.tip = header

    # --------------------------------------------------------------- leaves

    def _check_leaves(self, height: int, first: int, end: int) -> None:
        for leaf_index in range(first, end):
            env = self._leaf_envelope(leaf_index)
            self.report.records += 1
            if env is not None:
                self._check_record_indexes(height, leaf_index, env)

    def _leaf_envelope(self, leaf_index: int) -> Envelope | None:
        key = schema.envelope_key(leaf_index)
        raw = self.store.get(key)
        if raw is None:
            self.report.add(ENVELOPES, MISSING, key, f"leaf {leaf_index} of the log")
            return None
        stored_leaf = self._stored_leaf(leaf_index)
        if stored_leaf is not None and not digest_equal(leaf_hash(raw), stored_leaf):
            self.report.add(ENVELOPES, WRONG, key, "does not match its leaf hash in the log")
        try:
            return decode_envelope(raw, cosigs=True)
        except VerificationError as exc:
            self.report.add(ENVELOPES, WRONG, key, f"does not decode: {exc}")
            return None

    def _stored_leaf(self, leaf_index: int) -> bytes | None:
        log = self.log
        if self.history is not None and leaf_index < self.history.size:
            log = self.history  # a back-filled leaf below a snapshot
        if log is None or leaf_index >= log.size:
            return None
        try:
            return log.leaf_hash(leaf_index)
        except StorageCorruption as exc:
            self.report.add(TREE, WRONG, TREE_LEAF_KEY + schema.pack_u64(leaf_index), str(exc))
            return None

    def _check_root(self, header: Header) -> None:
        log = self.log
        if self.history is not None and header.height < self.gap.start:
            log = self.history  # a back-filled block below a snapshot
        if log is None or header.log_size > log.size:
            return
        key = TREE_ROOT_KEY + schema.pack_u64(header.log_size)
        try:
            ok = digest_equal(log.root(header.log_size), header.log_root)
        except StorageCorruption as exc:
            self.report.add(TREE, WRONG, key, str(exc))
            return
        if not ok:
            self.report.add(TREE, WRONG, key, f"differs from block {header.height}'s log_root")

    def _check_record_indexes(self, height: int, leaf_index: int, env: Envelope) -> None:
        record = env.record
        self._expect(SUBMITTERS, schema.submitter_key(record.submitter, leaf_index), record.id,
                     f"record at leaf {leaf_index}")
        for parent in record.parents:
            self._expect(CHILDREN, schema.child_key(parent, record.id), b"",
                         f"record at leaf {leaf_index} names this parent")
        implied = self.implied
        implied[schema.SUBMITTER] += 1
        if is_governance(env):
            self._expect(GOVERNANCE, schema.governance_key(height, leaf_index), b"",
                         f"governance record at leaf {leaf_index}")
            implied[schema.GOVERNANCE] += 1
        if self._check_location(height, leaf_index, record.id):  # first occurrence
            implied[schema.RECORD_LOCATION] += 1
            implied[schema.CHILD] += len(record.parents)
            if self._check_nonce(leaf_index, env):
                implied[schema.NONCE] += 1
        else:
            self._check_nonce(leaf_index, env)

    def _expect(self, index: str, key: bytes, value: bytes, what: str) -> None:
        stored = self.store.get(key)
        if stored is None:
            self.report.add(index, MISSING, key, what)
        elif stored != value:
            self.report.add(index, WRONG, key, what)

    def _check_location(self, height: int, leaf_index: int, record_id: bytes) -> bool:
        """True when the entry names this leaf (the id's first occurrence)."""
        key = schema.record_location_key(record_id)
        raw = self.store.get(key)
        what = f"record at block {height}, leaf {leaf_index}"
        if raw is None:
            self.report.add(LOCATIONS, MISSING, key, what)
            return False
        location = _location(raw)
        if location == (height, leaf_index):
            return True
        # A repeated id keeps pointing at its first occurrence.
        if location is None or location[1] >= leaf_index or \
                self._id_at(location) != record_id:
            stored = "an undecodable value" if location is None else f"{location}"
            self.report.add(LOCATIONS, WRONG, key, f"{what}; stored {stored}")
        return False

    def _check_nonce(self, leaf_index: int, env: Envelope) -> bool:
        """True when the entry names this record."""
        record = env.record
        key = schema.nonce_key(record.submitter, record.nonce)
        raw = self.store.get(key)
        what = f"record at leaf {leaf_index}"
        if raw is None:
            self.report.add(NONCES, MISSING, key, what)
            return False
        if raw == record.id:
            return True
        # A reused nonce keeps naming the record that first used it.
        first = self._record_at_id(raw)
        if first is None or first[0] >= leaf_index or \
                (first[1].record.submitter, first[1].record.nonce) != \
                (record.submitter, record.nonce):
            self.report.add(NONCES, WRONG, key, f"{what}; names another record")
        return False

    # --------------------------------------------------------------- open

    def _check_open(self) -> None:
        """The node's own check on open, so fsck never passes a store it refuses."""
        try:
            ChainStore(self.store, self.genesis, check=True)
        except StorageCorruption as exc:
            self.report.add(BLOCKS, WRONG, schema.META_TIP, f"check on open fails: {exc}")
