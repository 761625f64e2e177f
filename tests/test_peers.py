"""A node's peers follow the validator set (node/peers.py, PROTOCOL §9.9):
links to the sets in force at the next two heights, stable peer ids,
handshakes refused to keys in neither set, block sync served to every key
that was a validator, a removed node linking with nobody."""

from __future__ import annotations

import pytest
from govhelpers import gov_genesis, gov_record
from helpers import make_keys

from ledger.membership import Membership
from node import frames
from node.driver import now_ms
from node.peers import PeerBook
from node.syncauth import SyncForbidden, check_request, sign_request

GENESIS, VKEYS, MEMBERS, _ = gov_genesis()
NEW, ROTATED = make_keys(2, 3_700_000)


def _add(m: Membership, height: int, nonce: int) -> Membership:
    return m.apply(height, [gov_record(GENESIS.chain, MEMBERS[:2], nonce, "gov.validator.add",
                                       {"name": "v4", "pubkey": NEW.public_key,
                                        "address": "127.0.0.1:7704"})])


def _remove(m: Membership, height: int, nonce: int, key: bytes) -> Membership:
    return m.apply(height, [gov_record(GENESIS.chain, MEMBERS[:2], nonce,
                                       "gov.validator.remove", {"pubkey": key})])


def test_links_follow_adds_and_removals_with_stable_ids() -> None:
    book = PeerBook(GENESIS, [VKEYS[0].public_key])
    m = Membership.from_genesis(GENESIS)
    assert not book.refresh(m, 0)
    assert [v.index for v in book.linked()] == [1, 2, 3] and book.member
    m = _add(m, 5, 1)  # in force at 7: linked from tip 5 (tip + 2)
    change = book.refresh(m, 5)
    assert [(v.index, v.name, v.address) for v in change.added] == [(4, "v4", "127.0.0.1:7704")]
    assert book.peer_id(NEW.public_key) == 4 and book.was_validator(NEW.public_key)
    m = _remove(m, 9, 2, VKEYS[2].public_key)  # in force at 11
    assert not book.refresh(m, 10)  # still in the set of height 10, the tip
    change = book.refresh(m, 11)
    assert [v.index for v in change.removed] == [2]  # in none of the sets: no link
    assert [v.index for v in book.linked()] == [1, 3, 4]
    assert book.peer_id(VKEYS[2].public_key) is None  # its handshakes are refused
    assert book.was_validator(VKEYS[2].public_key)    # but it may still fetch blocks
    assert book.any_id(VKEYS[2].public_key) == 2 and book.name(2) == GENESIS.validators[2].name


def test_a_removed_node_links_with_nobody_and_a_joining_one_with_genesis() -> None:
    m = _remove(_add(Membership.from_genesis(GENESIS), 1, 1), 3, 2, VKEYS[0].public_key)
    removed = PeerBook(GENESIS, [VKEYS[0].public_key])
    removed.refresh(m, 4)
    assert removed.follower and not removed.member and removed.linked() == ()
    joining = PeerBook(GENESIS, [NEW.public_key])
    assert not joining.member and not joining.follower  # never a validator it knows of
    assert [v.index for v in joining.linked()] == [0, 1, 2, 3]
    joining.refresh(m, 1)
    assert joining.member and joining.signing_key(m, 3) == NEW.public_key
    assert joining.signing_key(m, 2) is None


def test_a_rotation_links_the_new_key_and_signs_with_the_key_in_force() -> None:
    m = Membership.from_genesis(GENESIS).apply(2, [gov_record(
        GENESIS.chain, MEMBERS[:2], 1, "gov.validator.rotate",
        {"pubkey": VKEYS[1].public_key, "new_pubkey": ROTATED.public_key})])
    rotating = PeerBook(GENESIS, [VKEYS[1].public_key, ROTATED.public_key])
    rotating.refresh(m, 2)
    assert rotating.signing_key(m, 3) == VKEYS[1].public_key
    assert rotating.signing_key(m, 4) == ROTATED.public_key
    other = PeerBook(GENESIS, [VKEYS[0].public_key])
    change = other.refresh(m, 2)  # both keys are linked around the change
    assert [v.index for v in change.added] == [4] and other.peer_id(ROTATED.public_key) == 4
    change = other.refresh(m, 4)
    assert [v.index for v in change.removed] == [1]


def test_handshake_and_sync_accept_keys_the_node_names() -> None:
    me = VKEYS[0]
    data = frames.hello(GENESIS, NEW, me.public_key, frames.fresh_nonce())
    with pytest.raises(frames.HandshakeError) as info:
        frames.check_hello(GENESIS, me, data)
    assert info.value.reason == "unknown_peer"
    assert frames.check_hello(GENESIS, me, data, {NEW.public_key: 4}.get).dialer_index == 4
    assert frames.addressed_to(data) == me.public_key and frames.addressed_to(b"\x01") is None

    target = "/v1/sync/blocks?from=1"
    headers = sign_request(GENESIS, NEW, None, me.public_key, target, now_ms())
    assert headers["X-Ledger-Validator"] == NEW.public_key.hex()
    assert check_request(GENESIS, me.public_key, headers, target, now_ms(), 60_000,
                         {NEW.public_key}.__contains__) == NEW.public_key
    with pytest.raises(SyncForbidden):
        check_request(GENESIS, me.public_key, headers, target, now_ms(), 60_000)
    by_index = sign_request(GENESIS, VKEYS[1], 1, me.public_key, target, now_ms())
    assert check_request(GENESIS, me.public_key, by_index, target, now_ms(), 60_000) == 1
