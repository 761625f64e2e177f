"""node/wire.py: a decision for a height already committed here is skipped
before its envelopes are decoded; every other message decodes as before."""

from __future__ import annotations

import msgpack
import pytest
from helpers import commit_envelopes, make_world

import node.wire
from consensus import Decision, encode_message
from ledger.chain import ChainStore
from ledger.encoding import canonical
from ledger.errors import LedgerError
from ledger.records import Envelope
from ledger.storage import MemoryStore
from node.wire import decode_consensus, stale_decision


def decision_at(height: int) -> tuple[bytes, list[Envelope]]:
    """The encoded decision of a chain's block ``height`` (blocks of 3 records)."""
    world = make_world()
    chain = ChainStore(MemoryStore(), world.genesis)
    for h in range(1, height + 1):
        envs = world.envelopes(10 * h, 3)
        header, cert = commit_envelopes(chain, envs, world.validators)
    return encode_message(Decision(header, tuple(envs), cert)), envs


def test_a_decision_at_or_below_the_committed_height_is_skipped_undecoded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = decision_at(2)
    decoded: list[bytes] = []
    real = node.wire.decode_envelope
    monkeypatch.setattr(node.wire, "decode_envelope",
                        lambda raw, **kw: decoded.append(raw) or real(raw, **kw))
    assert stale_decision(data, 2) and stale_decision(data, 5)
    assert decode_consensus(data, lambda leaf: None, 2) is None
    assert decode_consensus(data, lambda leaf: None, 3) is None
    assert decoded == []
    # the next height, or no height given: decoded in full, as before
    assert not stale_decision(data, 1)
    for committed in (1, 0):
        message = decode_consensus(data, lambda leaf: None, committed)
        assert isinstance(message, Decision) and message.height == 2
    assert len(decoded) == 6


def test_a_malformed_or_non_canonical_decision_is_still_decoded_and_refused() -> None:
    data, envs = decision_at(1)
    # not canonical (keys out of order): skipped when its header says it is
    # stale (the machine would ignore it whatever it held), else refused
    value = msgpack.unpackb(data, raw=False)
    moved = msgpack.packb({k: value[k] for k in ("t", "header", "certificate", "envelopes")})
    assert stale_decision(moved, 1)  # its header says height 1: skipped unread
    assert decode_consensus(moved, lambda leaf: None, 1) is None
    with pytest.raises(LedgerError):
        decode_consensus(moved, lambda leaf: None, 0)
    # a header that is not one: decoded in full, and refused
    broken = canonical({**value, "header": b"\x01\x02"})
    assert not stale_decision(broken, 1)
    with pytest.raises(LedgerError):
        decode_consensus(broken, lambda leaf: None, 1)
    # another kind of message is never skipped
    assert not stale_decision(canonical({"t": "vote", "x": 1}), 10)
    assert not stale_decision(b"\xc1", 10)
    assert not stale_decision(envs[0].envelope_bytes, 10)
