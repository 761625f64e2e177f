"""Which validators a node links with, as the validator set changes (PROTOCOL §9.9).

Peers are named by public key: indexes move between epochs.  Inside the node
each peer key gets a **peer id**, an integer stable for the life of the
process: a genesis validator's id is its genesis index (so logs, metrics and
``/v1/status`` read as before a change), and each key met later (an added
validator, the new key of a rotation) gets the next free id, in the order the
chain made them.  Transport links, peer heights, proposal fetches and
checkpoint signatures are keyed by peer id.

After each committed block the node asks :meth:`PeerBook.refresh` for the
validators to link with: the sets in force at the tip and the next two
heights (a change committed at the tip is in force at tip + 2), without the
node's own keys.  A validator that left all three is no longer dialed, and its handshakes are
refused; one that entered is dialed at the address its ``gov.validator.add``
gave.  A node whose own keys left the sets links with nobody (it follows the
chain by block sync).  Block sync is served to every key that was a validator at some height
of the chain (a removed validator keeps following it, signing nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from ledger.genesis import Genesis, Validator
from ledger.membership import Membership


@dataclass(frozen=True)
class PeerChange:
    """What one :meth:`PeerBook.refresh` changed (by peer id)."""

    added: tuple[Validator, ...] = ()
    removed: tuple[Validator, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class PeerBook:
    """The peers of a node whose own validator keys are ``own``."""

    def __init__(self, genesis: Genesis, own: Iterable[bytes]) -> None:
        self.genesis = genesis
        self.own = frozenset(own)
        self._ids: dict[bytes, int] = {}
        self._known: dict[int, Validator] = {}  # every peer ever linked or known, by id
        self._ever: set[bytes] = set()  # keys that were validators at some height
        for v in genesis.validators:
            self._id_for(v)
            self._ever.add(v.pubkey)
        # Before the first refresh: the genesis set, as the node starts from it.
        self._linked: dict[int, Validator] = {
            i: v for i, v in self._known.items() if v.pubkey not in self.own}
        self.member = any(v.pubkey in self.own for v in genesis.validators)
        self._changes_seen = 0

    def _id_for(self, v: Validator) -> int:
        found = self._ids.get(v.pubkey)
        if found is None:
            found = self._ids[v.pubkey] = len(self._ids)
        self._known[found] = replace(v, index=found)
        return found

    # -- queries -----------------------------------------------------------

    def linked(self) -> tuple[Validator, ...]:
        """The peers to link with now, ``index`` being the peer id."""
        return tuple(self._linked[i] for i in sorted(self._linked))

    def known(self) -> tuple[Validator, ...]:
        """Every peer this node knows of (to fetch blocks from), by peer id."""
        return tuple(v for i, v in sorted(self._known.items()) if v.pubkey not in self.own)

    def peer_id(self, pubkey: bytes) -> int | None:
        """The id of a peer key this node links with now (None: not linked)."""
        found = self._ids.get(pubkey)
        return found if found in self._linked else None

    def any_id(self, pubkey: bytes) -> int | None:
        return self._ids.get(pubkey)

    def was_validator(self, pubkey: bytes) -> bool:
        """``pubkey`` was in the validator set at some height this node knows."""
        return pubkey in self._ever

    @property
    def follower(self) -> bool:
        """One of our keys was a validator and none is in the sets of the
        next two heights: removed, the node follows the chain and signs
        nothing.  (A node whose key was never a validator it knows of is
        joining: it links with the validators it knows and catches up.)"""
        return not self.member and any(k in self._ever for k in self.own)

    def signing_key(self, membership: Membership, height: int) -> bytes | None:
        """Our key in the set in force at ``height``, if any."""
        for v in membership.at(height).validators:
            if v.pubkey in self.own:
                return v.pubkey
        return None

    def key_of(self, peer: int) -> bytes | None:
        v = self._known.get(peer)
        return v.pubkey if v is not None else None

    def name(self, peer: int) -> str:
        v = self._known.get(peer)
        return v.name if v is not None else f"peer {peer}"

    # -- the chain moved ---------------------------------------------------

    def refresh(self, membership: Membership, tip: int) -> PeerChange:
        """Take the sets in force at ``tip``, ``tip + 1`` and ``tip + 2``
        (every change committed up to the tip is in force by then; the
        tip's own set, so that a validator leaving still hears how the last
        height it took part in ended)."""
        wanted: dict[int, Validator] = {}
        member = False
        for height in (max(tip, 1), tip + 1, tip + 2):
            for v in membership.at(height).validators:
                self._ever.add(v.pubkey)
                if v.pubkey in self.own:
                    member = member or height > tip
                    continue
                peer = self._id_for(v)
                wanted[peer] = self._known[peer]
        for change in membership.changes[self._changes_seen:]:  # epochs in between
            if change.action.changes_validators:
                self._note_epoch_keys(membership, change.effective)
        self._changes_seen = len(membership.changes)
        self.member = member
        if self.follower:
            wanted = {}  # removed: nobody takes our links; we ask heights over HTTP
        added = tuple(v for i, v in sorted(wanted.items()) if i not in self._linked)
        removed = tuple(v for i, v in sorted(self._linked.items()) if i not in wanted)
        self._linked = wanted
        return PeerChange(added, removed)

    def _note_epoch_keys(self, membership: Membership, height: int) -> None:
        for v in membership.at(height).validators:
            if v.pubkey not in self._ever:
                self._ever.add(v.pubkey)
                if v.pubkey not in self.own:
                    self._id_for(v)
