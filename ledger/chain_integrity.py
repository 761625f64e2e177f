"""The checks a chain store runs on its tip when opened (part of
:class:`ledger.chain.ChainStore`): the tip's certificate verifies against the
validator set in force, the store is of this genesis, the header below hashes
to the tip's ``prev``, and the log matches the tip's size and root.  Damage
is :class:`StorageCorruption`, named."""

from __future__ import annotations

from . import blocks, schema
from .blocks import ZERO_HASH, Certificate, Header
from .chain_records import ChainRecords
from .crypto import digest_equal
from .encoding import H
from .errors import StorageCorruption, VerificationError
from .genesis import Genesis
from .membership import Membership


class ChainIntegrity(ChainRecords):
    """The tip checks of :class:`ledger.chain.ChainStore`, and the genesis in
    force at a height that they (and the commits) judge certificates by."""

    genesis: Genesis
    membership: Membership

    def epoch_genesis(self, height: int) -> Genesis:
        """The genesis with the validators, submitters, members and params in
        force at ``height``: what certificates and records of that height are
        judged against."""
        return self.membership.at(height).as_genesis(self.genesis)

    def check_integrity(self) -> None:
        """Raise :class:`StorageCorruption` naming the damage unless the tip
        is sound: same genesis, certificate verifies, the previous header
        hashes to ``prev``, and the log matches ``log_size``/``log_root``."""
        tip = self._tip
        if tip is None:
            if self.log.size != 0:
                raise StorageCorruption(f"log holds {self.log.size} leaves but no block")
            return
        cert = self._tip_certificate(tip)
        self._check_tip_genesis(tip)
        try:
            blocks.verify_certificate(cert, tip, self.epoch_genesis(tip.height))
        except VerificationError as exc:
            raise StorageCorruption(
                f"certificate of tip block {tip.height} does not verify: {exc}"
            ) from None
        self._check_prev_link(tip)
        self._check_tip_log(tip)

    def _tip_certificate(self, tip: Header) -> Certificate:
        # _block matches the certificate to the header bytes; doing that
        # before the genesis checks tells a damaged tip apart from a store
        # opened under the wrong genesis.
        block = self._block(tip.height)
        if block is None:
            raise StorageCorruption(f"tip block {tip.height} is not stored")
        return block[2]

    def _check_tip_genesis(self, tip: Header) -> None:
        if tip.chain != self.genesis.chain:
            raise StorageCorruption(f"store holds chain {tip.chain!r}, genesis says "
                                    f"{self.genesis.chain!r}")
        if not digest_equal(tip.validators, self.membership.at(tip.height).validators_hash):
            raise StorageCorruption("store was written under another validator set")

    def _check_prev_link(self, tip: Header) -> None:
        if tip.height - 1 in self.history_gap and tip.height - 1 != self._history_from - 1:
            return  # started from a snapshot at the tip: the block below comes by back-fill
        if tip.height == 1:
            if not digest_equal(tip.prev, ZERO_HASH):
                raise StorageCorruption("block 1 has a non-zero prev hash")
            return
        prev_bytes = self._store.get(schema.header_key(tip.height - 1))
        if prev_bytes is None:
            raise StorageCorruption(f"header {tip.height - 1} (below the tip) is missing")
        if not digest_equal(H(prev_bytes), tip.prev):
            raise StorageCorruption(
                f"header {tip.height - 1} does not hash to the prev of tip block {tip.height}"
            )

    def _check_tip_log(self, tip: Header) -> None:
        if self.log.size != tip.log_size:
            raise StorageCorruption(
                f"log size is {self.log.size} but tip block {tip.height} says {tip.log_size}"
            )
        if not digest_equal(self.log.root(tip.log_size), tip.log_root):
            raise StorageCorruption(f"log root differs from tip block {tip.height}'s log_root "
                                    "(tree nodes damaged)")
        if tip.log_size and tip.height not in self.history_gap:
            self.envelope_at(tip.log_size - 1)  # the newest leaf matches its hash
