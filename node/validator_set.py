"""The node's side of validator-set changes (PROTOCOL §9.9): links, keys, sync.

After every committed block :meth:`ValidatorLinks.committed` takes the sets
in force at the next two heights from the chain's membership
(node/peers.py): the transport dials validators that entered and drops those
that left, handshakes and frames are signed with the node's key in force (a
rotation), and block sync fetches from every validator the node knows of.
A node none of whose keys is in force follows the chain: it is dialed by
nobody, so it learns the peers' heights by asking their ``/v1/status``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, Validator

from .peers import PeerBook
from .sync import BlockSync
from .syncauth import SyncForbidden, SyncUnauthorized, check_request, sign_request
from .transport import PeerTransport

log = logging.getLogger("node.validators")


class ValidatorLinks:
    def __init__(self, genesis: Genesis, keys: Sequence[SigningKey], chain: ChainStore) -> None:
        self.genesis = genesis
        self.chain = chain
        self.keys = {k.public_key: k for k in keys}
        self.first = keys[0]
        self.book = PeerBook(genesis, self.keys)
        self.book.refresh(chain.membership, chain.height)
        self.transport: PeerTransport | None = None
        self.sync: BlockSync | None = None
        self._was_member = self.book.member

    # -- wiring --------------------------------------------------------------

    def peers(self) -> tuple[Validator, ...]:
        """The validators to link with at start (``index``: peer id)."""
        return self.book.linked()

    def key(self) -> SigningKey:
        """The key to sign links with: ours in force at the next height (or
        the one after), else the configured one."""
        for height in (self.chain.height + 1, self.chain.height + 2):
            found = self.book.signing_key(self.chain.membership, height)
            if found is not None:
                return self.keys[found]
        return self.first

    def attach(self, transport: PeerTransport, sync: BlockSync) -> None:
        self.transport, self.sync = transport, sync
        transport.index_of = self.book.peer_id
        transport.own_keys = dict(self.keys)
        transport.set_key(self.key())
        sync.peers = list(self.book.known())

    def genesis_index(self) -> int | None:
        """Our genesis validator index (sync requests name it), if any."""
        return next((v.index for v in self.genesis.validators if v.pubkey in self.keys), None)

    # -- the chain moved -----------------------------------------------------

    def committed(self, height: int) -> None:
        change = self.book.refresh(self.chain.membership, height)
        if self.transport is not None:
            if change:
                self.transport.set_peers(change.added, change.removed)
            self.transport.set_key(self.key())
        if self.sync is not None and change:
            self.sync.peers = list(self.book.known())
        if self.book.member != self._was_member:
            self._was_member = self.book.member
            log.warning("this node's key %s the validator set in force at height %d",
                        "is in" if self.book.member else "left", height + 2)

    @property
    def following(self) -> bool:
        """No key of ours is in the sets of the next two heights."""
        return not self.book.member

    # -- block sync ----------------------------------------------------------

    def sign_sync(self, peer: Validator, target: str, now_ms: int) -> dict[str, str]:
        key = self.key()
        index = self.genesis.validator_index(key.public_key)
        return sign_request(self.genesis, key, index, peer.pubkey, target, now_ms)

    def check_sync(self, headers: Mapping[str, str], target: str, now_ms: int,
                   window_ms: int) -> int | bytes:
        """A sync request addressed to any of our keys, by a key that was a
        validator at some height (PROTOCOL §6, sync authentication)."""
        error: SyncUnauthorized | SyncForbidden | None = None
        for mine in self.keys:
            try:
                return check_request(self.genesis, mine, headers, target, now_ms, window_ms,
                                     self.book.was_validator)
            except SyncUnauthorized as exc:  # maybe addressed to another key of ours
                error = exc
        assert error is not None
        raise error
