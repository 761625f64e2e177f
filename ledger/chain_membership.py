"""The membership of a chain store (part of :class:`ledger.chain.ChainStore`):
genesis plus every committed governance record (PROTOCOL §9), replayed block
by block from the ``g`` index on open; below a state-sync snapshot, what the
snapshot carried.  A record that does not apply is :class:`StorageCorruption`."""

from __future__ import annotations

import msgpack

from . import schema
from .chain_records import ChainRecords
from .errors import StorageCorruption, VerificationError
from .genesis import Genesis
from .membership import Membership
from .records import decode_committed_envelope
from .verify import check_envelope
from .verify_epochs import parse_entry


class ChainMembership(ChainRecords):
    """Loading the membership of :class:`ledger.chain.ChainStore`."""

    genesis: Genesis

    def _load_membership(self) -> Membership:
        """Genesis plus every committed governance record, block by block,
        found through the ``g`` index (not a scan of the log).

        While a gap below a snapshot is open, the governance below it is
        what the snapshot carried (verified at install, ledger/statesync.py)
        and the ``g`` index counts only above the snapshot: a part of the
        history below would give a set that is not the one in force.  The
        node rebuilds the membership when back-fill closes the gap."""
        gap = self.history_gap
        base = self._snapshot_membership() if gap else None
        membership = self.membership_through(self.height, above=gap.stop - 1 if gap else 0,
                                             base=base)
        return membership.apply(self.height, []) if self.height > membership.height \
            else membership

    def _snapshot_membership(self) -> Membership:
        """Genesis plus the governance records the state-sync snapshot carried
        (``META_SNAPSHOT_GOVERNANCE``, verified when installed): the
        membership below the snapshot until back-fill closes the gap."""
        membership = Membership.from_genesis(self.genesis)
        raw = self._store.get(schema.META_SNAPSHOT_GOVERNANCE)
        if raw is None:
            return membership
        try:
            for entry in msgpack.unpackb(raw, raw=False):
                parsed = parse_entry(entry)
                membership = membership.apply(parsed.height, [check_envelope(parsed.envelope)],
                                              signatures=False)
        except (VerificationError, ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StorageCorruption(f"the snapshot's governance records do not apply: {exc}") \
                from None
        return membership

    def membership_through(self, top: int, above: int = 0,
                           base: Membership | None = None) -> Membership:
        """``base`` (default genesis) plus the committed governance records of
        blocks ``above + 1``..``top`` (from the ``g`` index); back-fill walks
        the validator sets below a snapshot from ``membership_through(H)``."""
        membership = Membership.from_genesis(self.genesis) if base is None else base
        by_height: dict[int, list[int]] = {}
        for key, _ in self._store.iterate(schema.GOVERNANCE):
            height, leaf_index = schema.unpack_governance_key(key)
            if not 1 <= height <= self.height or leaf_index >= self.log.size:
                raise StorageCorruption(f"governance index entry ({height}, {leaf_index}) "
                                        "is past the tip")
            if above < height <= top:
                by_height.setdefault(height, []).append(leaf_index)
        for height in sorted(by_height):
            try:
                envelopes = [decode_committed_envelope(self.envelope_at(i))
                             for i in sorted(by_height[height])]
                membership = membership.apply(height, envelopes, signatures=False)
            except VerificationError as exc:
                raise StorageCorruption(
                    f"committed governance record of block {height} does not apply: {exc}"
                ) from None
        return membership
