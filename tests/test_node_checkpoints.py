"""node/checkpoints.py: gathering validators' checkpoint signatures in the store."""

from __future__ import annotations

import pytest
from helpers import World, commit_envelopes

from ledger import note
from ledger.chain import ChainStore
from ledger.errors import BadSignature, NotFound
from ledger.fsck import fsck
from ledger.storage import MemoryStore
from node.checkpoints import Checkpoints


def node_of(world: World, me: int) -> tuple[ChainStore, Checkpoints, list[tuple[int, bytes]]]:
    chain = ChainStore(MemoryStore(), world.genesis)
    sent: list[tuple[int, bytes]] = []
    cps = Checkpoints(world.genesis, chain, [world.validators[me]],
                      lambda h, s: sent.append((h, s)))
    return chain, cps, sent


def test_a_quorum_of_verified_signatures_makes_a_served_note(world: World) -> None:
    chain, cps, sent = node_of(world, 0)
    header, _ = commit_envelopes(chain, world.envelopes(0, 3), world.validators)
    with pytest.raises(NotFound):
        cps.latest()
    cps.committed(header)
    assert sent and sent[0][0] == 1
    text = note.checkpoint_text(cps.origin, header.log_size, header.log_root)
    header2_envs = world.envelopes(10, 1)
    cps.offer(1, 1, note.sign_text(world.validators[1], text))
    with pytest.raises(NotFound, match="2 validator signatures"):
        cps.note_at(1)
    with pytest.raises(BadSignature):
        cps.offer(2, 1, note.sign_text(world.validators[3], text))  # not validator 2's key
    cps.offer(3, 1, note.sign_text(world.validators[3], text))
    height, signed = cps.latest()
    assert height == 1
    cp = note.open_note(signed, cps.verifiers(1), world.genesis.quorum)
    assert (cp.log_size, cp.log_root, cp.signers) == (header.log_size, header.log_root, (0, 1, 3))
    # A signature for a height not committed yet is checked once it is.
    header2 = chain.next_header(header2_envs, time=header.time + 1, proposer=1)
    early = note.sign_text(world.validators[2],
                           note.checkpoint_text(cps.origin, header2.log_size, header2.log_root))
    cps.offer_from(world.validators[2].public_key, 2, early)
    assert chain.checkpoint_signatures(2) == {}
    h2, _ = commit_envelopes(chain, header2_envs, world.validators, time=header.time + 1,
                             proposer=1)
    cps.committed(h2)
    assert set(chain.checkpoint_signatures(2)) == {0, 2}


def test_signatures_survive_a_restart_and_fsck_accepts_them(world: World) -> None:
    store = MemoryStore()
    chain = ChainStore(store, world.genesis)
    cps = Checkpoints(world.genesis, chain, [world.validators[0]], lambda h, s: None)
    header, _ = commit_envelopes(chain, world.envelopes(0, 2), world.validators)
    text = note.checkpoint_text(cps.origin, header.log_size, header.log_root)
    cps.committed(header)
    for i in (1, 2):
        cps.offer(i, 1, note.sign_text(world.validators[i], text))
    again = Checkpoints(world.genesis, ChainStore(store, world.genesis), [world.validators[0]],
                        lambda h, s: None)
    assert again.latest()[0] == 1
    assert fsck(store, world.genesis).clean


def test_checkpoints_are_signed_by_the_set_in_force_at_their_height() -> None:
    """PROTOCOL §6, §9.9: after a rotation the re-keyed validator signs with
    its new key under its index in that set; the old key counts for nothing,
    and the note opens with that height's keys, not with genesis's."""
    from govhelpers import gov_genesis, gov_record
    from helpers import make_envelope, make_keys

    genesis, vkeys, members, submitter = gov_genesis()
    new = make_keys(1, 3_800_000)[0]
    chain = ChainStore(MemoryStore(), genesis)
    rotate = gov_record(genesis.chain, members[:2], 1, "gov.validator.rotate",
                        {"pubkey": vkeys[1].public_key, "new_pubkey": new.public_key})
    commit_envelopes(chain, [rotate], vkeys)                                 # in force at 3
    commit_envelopes(chain, [make_envelope(submitter, genesis.chain, 1)], vkeys)
    epoch = [vkeys[0], new, vkeys[2], vkeys[3]]
    header, _ = commit_envelopes(chain, [make_envelope(submitter, genesis.chain, 2)], epoch)
    sent: list[tuple[int, bytes]] = []
    cps = Checkpoints(genesis, chain, [vkeys[1], new], lambda h, s: sent.append((h, s)))
    text = note.checkpoint_text(cps.origin, header.log_size, header.log_root)
    cps.committed(header)
    assert [v.public_key for v in cps.verifiers(3)] == [k.public_key for k in epoch]
    note.verify_one(cps.verifiers(3)[1], text, sent[0][1])  # the new key's signature
    cps.offer_from(vkeys[1].public_key, 3, note.sign_text(vkeys[1], text))  # rotated out
    cps.offer_from(b"\x07" * 32, 3, note.sign_text(vkeys[1], text))         # a stranger
    assert set(chain.checkpoint_signatures(3)) == {1}
    for key in (vkeys[0], vkeys[3]):
        cps.offer_from(key.public_key, 3, note.sign_text(key, text))
    signed = cps.note_at(3)
    cp = note.open_note(signed, cps.verifiers(3), 3)
    assert cp.signers == (0, 1, 3)
    genesis_keys = note.verifiers(cps.origin, [v.pubkey for v in genesis.validators])
    with pytest.raises(note.NoteError):
        note.open_note(signed, genesis_keys, 3)
