"""What a chain store reads back of its blocks and records: headers and
certificates (the last ``BLOCK_CACHE`` blocks read kept decoded), a block's
envelopes, a record's location and envelope, the nonce, children and
submitter indexes (keys in
:mod:`ledger.schema`, written with each block by :class:`ledger.chain.ChainStore`,
which these methods are part of).  Everything read back is checked as far
as it can be: an envelope against its leaf hash, an index value that must be
a record id against its length; damage is :class:`StorageCorruption`, named."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from . import schema
from .blocks import Certificate, Header, certificate_from_bytes, decode_header
from .crypto import digest_equal
from .encoding import H
from .errors import NotFound, StorageCorruption, VerificationError
from .log import MerkleLog
from .merkle import leaf_hash
from .records import stored_record_id
from .storage import KeyValueStore

Location = tuple[int, int]  # (height, leaf_index)

# nonce_holders walks a submitter's nonce range when it is asked at least
# NONCE_WALK_MIN of them and the range holds at most NONCE_WALK_SPAN keys per
# nonce asked (else it reads each nonce: a walk costs a few reads to start).
NONCE_WALK_MIN = 4
NONCE_WALK_SPAN = 4
BLOCK_CACHE = 4096  # decoded (header, certificate) pairs kept for proofs


class ChainRecords:
    """The block and record reads of :class:`ledger.chain.ChainStore`."""

    _store: KeyValueStore
    log: MerkleLog
    _tip: Header | None
    _blocks: OrderedDict[int, tuple[bytes, Header, Certificate]]
    _history_from: int  # with _backfilled: (1, 0) for a store holding every block
    _backfilled: int

    @property
    def height(self) -> int:
        tip = self._tip
        return 0 if tip is None else tip.height

    def tip(self) -> Header | None:
        return self._tip

    @property
    def history_gap(self) -> range:
        """Heights whose blocks are not stored in full: empty unless the store
        was started from a snapshot (ledger/statesync.py) and back-fill has
        not reached it.  The header and certificate of the gap's top (the
        snapshot height) are stored; nothing else of the gap is."""
        return range(self._backfilled + 1, self._history_from)

    def _block(self, height: int) -> tuple[bytes, Header, Certificate] | None:
        """Header bytes, header and certificate at ``height``, checked against
        each other (the certificate names the header's hash)."""
        tip = self._tip
        if not 1 <= height <= (0 if tip is None else tip.height):
            return None
        if height in self.history_gap and height != self._history_from - 1:
            return None  # below a snapshot, not back-filled yet
        cached = self._blocks.get(height)
        if cached is not None:
            self._blocks.move_to_end(height)
            return cached
        header_bytes, cert = self._read_block(height)
        block = (header_bytes, decode_stored_header(header_bytes, height), cert)
        self._blocks[height] = block
        if len(self._blocks) > BLOCK_CACHE:
            self._blocks.popitem(last=False)
        return block

    def _read_block(self, height: int) -> tuple[bytes, Certificate]:
        header_bytes = self._store.get(schema.header_key(height))
        cert_bytes = self._store.get(schema.certificate_key(height))
        if header_bytes is None or cert_bytes is None:
            raise StorageCorruption(f"block {height} is not fully stored "
                                    "(header or certificate missing)")
        try:
            cert = certificate_from_bytes(cert_bytes)
        except VerificationError as exc:
            raise StorageCorruption(f"certificate of block {height} is damaged: {exc}") from None
        if cert.height != height or not digest_equal(cert.block, H(header_bytes)):
            raise StorageCorruption(f"header of block {height} does not match its certificate")
        return header_bytes, cert

    def header_bytes(self, height: int) -> bytes | None:
        block = self._block(height)
        return None if block is None else block[0]

    def header(self, height: int) -> Header | None:
        block = self._block(height)
        return None if block is None else block[1]

    def certificate(self, height: int) -> Certificate | None:
        block = self._block(height)
        return None if block is None else block[2]

    def _leaf_range(self, height: int) -> range:
        header = self.header(height)
        if header is None:
            raise NotFound(f"no block at height {height}")
        return range(header.log_size - header.tx_count, header.log_size)

    def block_envelopes(self, height: int) -> list[bytes]:
        """The envelopes of block ``height`` in log order (NotFound if none),
        each checked against its leaf hash as :meth:`envelope_at` does."""
        return self._envelopes(self._leaf_range(height))

    def block_record_ids(self, height: int) -> list[bytes]:
        """The record ids of block ``height`` in log order (NotFound if none)."""
        leaves = self._leaf_range(height)
        return [stored_record_id(env, i) for i, env in zip(leaves, self._envelopes(leaves))]

    def _envelopes(self, leaves: range) -> list[bytes]:
        """The envelopes at ``leaves`` in one range scan (whole blocks are
        read to serve catch-up and block listings), leaf hashes tile by tile."""
        if not leaves:
            return []
        hashes = self.log.leaf_hashes(leaves.start, leaves.stop)
        out: list[bytes] = []
        scan = self._store.iterate(schema.ENVELOPE, start=schema.envelope_key(leaves.start))
        for index, expected, (key, envelope) in zip(leaves, hashes, scan):
            if key != schema.envelope_key(index):
                break  # a gap: reported below with the first missing index
            out.append(matching_leaf(index, envelope, expected))
        if len(out) != len(leaves):
            raise StorageCorruption(f"envelope at leaf {leaves.start + len(out)} is missing")
        return out

    def envelope_at(self, leaf_index: int) -> bytes:
        """The envelope at ``leaf_index``, checked against its stored leaf hash."""
        if not 0 <= leaf_index < self.log.size:
            raise NotFound(f"no leaf {leaf_index} in a log of {self.log.size}")
        envelope = self._store.get(schema.envelope_key(leaf_index))
        if envelope is None:
            raise StorageCorruption(f"envelope at leaf {leaf_index} is missing")
        return matching_leaf(leaf_index, envelope, self.log.leaf_hash(leaf_index))

    def record_location(self, record_id: bytes) -> Location | None:
        """``(height, leaf_index)`` of a committed record, or None."""
        raw = self._store.get(schema.record_location_key(record_id))
        if raw is None:
            return None
        height, leaf_index = schema.unpack_location(raw)
        tip = self._tip
        if not (1 <= height <= (0 if tip is None else tip.height) and leaf_index < self.log.size):
            raise StorageCorruption(f"record location ({height}, {leaf_index}) is past the tip")
        return height, leaf_index

    def envelope(self, record_id: bytes) -> bytes | None:
        location = self.record_location(record_id)
        if location is None:
            return None
        envelope = self.envelope_at(location[1])
        if not digest_equal(stored_record_id(envelope, location[1]), record_id):
            raise StorageCorruption(f"record index points to leaf {location[1]}, "
                                    "which holds another record")
        return envelope

    def committed_leaf_hash(self, record_id: bytes) -> bytes | None:
        """The leaf hash of a committed record's envelope, or None: tells a
        resubmission of the same bytes from another envelope of the record."""
        location = self.record_location(record_id)
        return None if location is None else self.log.leaf_hash(location[1])

    def id_for_nonce(self, submitter: bytes, nonce: int) -> bytes | None:
        record_id = self._store.get(schema.nonce_key(submitter, nonce))
        if record_id is not None:
            check_stored_id(record_id, f"nonce index entry for nonce {nonce}")
        return record_id

    def nonce_holders(self, keys: Iterable[tuple[bytes, int]]) -> dict[tuple[bytes, int], bytes]:
        """The committed record ids holding any of these ``(submitter,
        nonce)`` pairs: :meth:`id_for_nonce` for many at once.  A submitter's
        nonces that lie close together (a block's usually do) are found by
        ONE walk of the nonce index over their range rather than a read each;
        the walk is bounded by ``NONCE_WALK_SPAN`` keys per nonce asked.
        Reads only: the same answers as a read per pair."""
        by_submitter: dict[bytes, set[int]] = {}
        for submitter, nonce in keys:
            by_submitter.setdefault(submitter, set()).add(nonce)
        found: dict[tuple[bytes, int], bytes] = {}
        for submitter, nonces in by_submitter.items():
            lo, hi = min(nonces), max(nonces)
            if len(nonces) < NONCE_WALK_MIN or hi - lo >= NONCE_WALK_SPAN * len(nonces):
                for nonce in nonces:  # few or scattered: one read each
                    record_id = self.id_for_nonce(submitter, nonce)
                    if record_id is not None:
                        found[(submitter, nonce)] = record_id
                continue
            prefix = schema.nonce_prefix(submitter)
            for key, record_id in self._store.iterate(prefix, start=prefix + schema.pack_u64(lo)):
                nonce = schema.nonce_from_key(key)
                if nonce > hi:
                    break
                if nonce in nonces:
                    check_stored_id(record_id, f"nonce index entry for nonce {nonce}")
                    found[(submitter, nonce)] = record_id
        return found

    def children(self, record_id: bytes, *, limit: int | None = None,
                 after: bytes | None = None) -> list[bytes]:
        """Ids of committed records naming ``record_id`` as a parent (id order).

        ``after`` (an id) starts the walk past that id and ``limit`` stops it:
        one page is a range scan from the cursor, however many children the
        record has (anyone may name any committed record as a parent).
        """
        prefix = schema.children_prefix(record_id)
        start = None if after is None else schema.child_key(record_id, after)
        children: list[bytes] = []
        if limit is not None and limit <= 0:
            return children
        for key, _ in self._store.iterate(prefix, start=start):
            child = schema.child_from_key(key)
            if child == after:  # ``start`` is inclusive; the cursor itself was served
                continue
            check_stored_id(child, "children index key")
            children.append(child)
            if limit is not None and len(children) >= limit:
                break
        return children

    def records_by_submitter(
        self, submitter: bytes, limit: int = 100, after_index: int = -1
    ) -> list[tuple[int, bytes]]:
        """``(leaf_index, id)`` of the submitter's records with leaf index above
        ``after_index``, in log order, at most ``limit`` (a page, not a scan)."""
        first = after_index + 1
        if limit <= 0 or first > schema.U64_MAX:
            return []
        prefix = schema.submitter_prefix(submitter)
        start = schema.submitter_key(submitter, max(first, 0))
        out: list[tuple[int, bytes]] = []
        for key, record_id in self._store.iterate(prefix, start=start):
            check_stored_id(record_id, "submitter index entry")
            out.append((schema.leaf_index_from_submitter_key(key), record_id))
            if len(out) >= limit:
                break
        return out


def decode_stored_header(header_bytes: bytes, height: int) -> Header:
    try:
        header = decode_header(header_bytes)
    except VerificationError as exc:
        raise StorageCorruption(f"header {height} is damaged: {exc}") from None
    if header.height != height:
        raise StorageCorruption(f"header stored at height {height} says {header.height}")
    return header


def matching_leaf(leaf_index: int, envelope: bytes, expected: bytes) -> bytes:
    """``envelope`` if it hashes to the log's leaf ``expected``; else the damage, named."""
    if not digest_equal(leaf_hash(envelope), expected):
        raise StorageCorruption(f"envelope at leaf {leaf_index} does not match its leaf hash")
    return envelope


def check_stored_id(record_id: bytes, what: str) -> None:
    """An index value or key part read back as a record id must be one."""
    if len(record_id) != schema.ID_LEN:
        raise StorageCorruption(f"{what}: a record id must be {schema.ID_LEN} bytes, "
                                f"found {len(record_id)} (run ledger-node --check)")
