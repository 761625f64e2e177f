"""The second half of :func:`ledger.fsck.fsck`: the key walk, which reads
every stored key once, in key order, and reports the entries no block
implies (**stray**); an index whose count or forward walk looks wrong is
walked again entry by entry, each checked against the record it names.
Also the point reads both walks share.  The forward walk over the blocks is
ledger/fsck.py, whose checker extends :class:`KeyWalk`."""

from __future__ import annotations

from collections.abc import Callable

from . import schema
from .blocks import decode_header
from .crypto import digest_equal
from .errors import StorageCorruption, VerificationError
from .fsck_report import (
    BLOCKS,
    CHILDREN,
    ENVELOPES,
    GOVERNANCE,
    LOCATIONS,
    META,
    MISSING,
    NONCES,
    STRAY,
    SUBMITTERS,
    UNKNOWN,
    WRONG,
    FsckReport,
)
from .membership import is_governance
from .records import Envelope, decode_envelope
from .storage import KeyValueStore

Progress = Callable[[str, int, int | None], None]  # (phase, done, total or None)


_INDEX_PREFIXES = {
    schema.RECORD_LOCATION: LOCATIONS,
    schema.NONCE: NONCES,
    schema.CHILD: CHILDREN,
    schema.SUBMITTER: SUBMITTERS,
    schema.GOVERNANCE: GOVERNANCE,
}


class KeyWalk:
    """Needs the state the forward walk of ``ledger.fsck`` fills in."""

    store: KeyValueStore
    report: FsckReport
    progress: Progress
    tip_height: int
    log_size: int
    implied: dict[bytes, int]

    # ---------------------------------------------------------- point reads

    def _envelope(self, leaf_index: int) -> Envelope | None:
        if not 0 <= leaf_index < self.log_size:
            return None
        raw = self.store.get(schema.envelope_key(leaf_index))
        if raw is None:
            return None
        try:
            return decode_envelope(raw, cosigs=True)
        except VerificationError:
            return None

    def _in_block(self, height: int, leaf_index: int) -> bool:
        raw = self.store.get(schema.header_key(height)) if 1 <= height <= self.tip_height \
            else None
        if raw is None:
            return False
        try:
            header = decode_header(raw)
        except VerificationError:
            return False
        return header.log_size - header.tx_count <= leaf_index < header.log_size

    def _id_at(self, location: tuple[int, int]) -> bytes | None:
        env = self._envelope(location[1])
        if env is None or not self._in_block(*location):
            return None
        return env.record.id

    def _record_at_id(self, record_id: bytes) -> tuple[int, Envelope] | None:
        """``(leaf_index, envelope)`` the location index gives for an id, if it holds it."""
        if len(record_id) != schema.ID_LEN:
            return None
        raw = self.store.get(schema.record_location_key(record_id))
        location = None if raw is None else _location(raw)
        if location is None:
            return None
        env = self._envelope(location[1])
        if env is None or not digest_equal(env.record.id, record_id):
            return None
        return location[1], env

    # ------------------------------------------------------------ key walk

    def _walk_keys(self) -> None:
        found = dict.fromkeys(_INDEX_PREFIXES, 0)
        for n, (key, value) in enumerate(self.store.iterate(b""), start=1):
            prefix = schema.key_prefix(key)
            if prefix in found:
                found[prefix] += 1
            else:
                self._check_key(key, value)
            self.report.keys = n
            if n % 4096 == 0:
                self.progress("keys", n, None)
        self.progress("keys", self.report.keys, self.report.keys)
        for prefix, index in _INDEX_PREFIXES.items():
            if found[prefix] != self.implied[prefix] or self._damaged(index):
                self._walk_index(prefix)

    def _damaged(self, index: str) -> bool:
        return any(i == index for i, _ in self.report.ranges)

    def _walk_index(self, prefix: bytes) -> None:
        """Each entry of one index against the record it names (the slow path)."""
        check = {
            schema.RECORD_LOCATION: self._stray_location,
            schema.NONCE: self._stray_nonce,
            schema.CHILD: self._stray_child,
            schema.SUBMITTER: self._stray_submitter,
            schema.GOVERNANCE: self._stray_governance,
        }[prefix]
        for n, (key, value) in enumerate(self.store.iterate(prefix), start=1):
            check(key, value)
            if n % 4096 == 0:
                self.progress(f"recheck {prefix.decode()}", n, None)

    def _check_key(self, key: bytes, value: bytes) -> None:
        prefix = schema.key_prefix(key)
        if prefix in (schema.ENVELOPE, schema.HEADER, schema.CERTIFICATE):
            self._stray_numbered(key)
        elif prefix == schema.META:
            if key not in schema.META_KEYS:
                self.report.add(META, STRAY, key, "unknown meta key")
        elif prefix not in (schema.EVIDENCE, schema.TILE, schema.PENDING, schema.CHECKPOINT_SIG,
                            schema.WITNESS_COSIG, schema.VERDICTS, schema.HELD,
                            schema.FINAL):
            # Verdict entries, held records and transition locations are
            # checked against the blocks' verdict roots by the replay
            # (ledger/policy_replay.py), not here.  Evidence, pending
            # envelopes (ledger/pending.py) and gathered
            # checkpoint signatures are not implied by blocks; a node
            # re-checks pending ones on start.
            self.report.add(UNKNOWN, STRAY, key, "no known prefix")

    def _stray_location(self, key: bytes, value: bytes) -> None:
        record_id = schema.parse_location_key(key)
        if record_id is None:
            self.report.add(LOCATIONS, STRAY, key, "malformed key")
            return
        location = _location(value)
        if location is None or self._id_at(location) != record_id:
            self.report.add(LOCATIONS, STRAY, key,
                            f"no record with this id at the location it names ({location})")

    def _stray_nonce(self, key: bytes, value: bytes) -> None:
        first = None if schema.parse_submitter_key(key) is None else self._record_at_id(value)
        if first is None:
            self._unresolved(NONCES, key, "names no record")
        elif schema.nonce_key(first[1].record.submitter, first[1].record.nonce) != key:
            self.report.add(NONCES, STRAY, key, "no record with this submitter and nonce")

    def _stray_child(self, key: bytes, value: bytes) -> None:
        pair = schema.parse_child_key(key)
        found = None if pair is None else self._record_at_id(pair[1])
        if pair is None or found is None:
            self._unresolved(CHILDREN, key, "names no record")
        elif pair[0] not in found[1].record.parents:
            self.report.add(CHILDREN, STRAY, key, "no record with this parent and id")

    def _unresolved(self, index: str, key: bytes, detail: str) -> None:
        """An entry naming a record id the location index does not resolve:
        stray, unless the location index is itself damaged (then it is the
        one reported; which record the entry names cannot be told)."""
        if (LOCATIONS, MISSING) in self.report.ranges or (LOCATIONS, WRONG) in self.report.ranges:
            return
        self.report.add(index, STRAY, key, detail)

    def _stray_submitter(self, key: bytes, value: bytes) -> None:
        parsed = schema.parse_submitter_key(key)
        env = None if parsed is None else self._envelope(parsed[1])
        if parsed is None or env is None or env.record.submitter != parsed[0]:
            self.report.add(SUBMITTERS, STRAY, key, "no record by this submitter at this leaf")

    def _stray_governance(self, key: bytes, value: bytes) -> None:
        env = None
        if len(key) == 1 + 16:
            height, leaf_index = schema.unpack_governance_key(key)
            if self._in_block(height, leaf_index):
                env = self._envelope(leaf_index)
        if env is None or not is_governance(env):
            self.report.add(GOVERNANCE, STRAY, key, "no governance record at this location")

    def _stray_numbered(self, key: bytes) -> None:
        prefix = schema.key_prefix(key)
        index = ENVELOPES if prefix == schema.ENVELOPE else BLOCKS
        number = schema.parse_numbered_key(key)
        if number is None:
            self.report.add(index, STRAY, key, "malformed key")
            return
        if prefix == schema.ENVELOPE:
            if number >= self.log_size:
                self.report.add(index, STRAY, key, f"leaf {number} is past the log size")
        elif not 1 <= number <= self.tip_height:
            self.report.add(index, STRAY, key, f"height {number} is past the tip")


def _location(raw: bytes) -> tuple[int, int] | None:
    try:
        return schema.unpack_location(raw)
    except StorageCorruption:
        return None
