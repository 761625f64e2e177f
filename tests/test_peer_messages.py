"""node/peer_messages.py: the bytes validators exchange are those of the
previous, letter-keyed code (other validators of this version must read
them), and anything malformed raises BadPeerMessage."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from ledger.errors import LedgerError
from node import peer_messages
from node.peer_messages import (
    BadPeerMessage,
    CompactProposal,
    ConsensusMessage,
    Cosign,
    Fetched,
    PeerKind,
    PeerMessage,
    Records,
    Sigs,
    Status,
    Want,
    WantSigs,
)

LEAVES = bytes(range(32)) + bytes(range(32, 64))
ENVS = (b"\x83envelope-one", b"\x83envelope-two")


def old_peer_message(kind: str, **fields: Any) -> bytes:
    """What node/app.py's peer_message() sent before this module existed."""
    return msgpack.packb({"t": kind, **fields}, use_bin_type=True)  # type: ignore[no-any-return]


CASES: list[tuple[PeerMessage, bytes]] = [
    (ConsensusMessage(b"\x84vote"), old_peer_message("c", m=b"\x84vote")),
    (CompactProposal(b"\x87proposal", LEAVES), old_peer_message("c", m=b"\x87proposal", l=LEAVES)),
    (Records(ENVS), old_peer_message("r", e=list(ENVS))),
    (Status(1234), old_peer_message("s", h=1234)),
    (Want(LEAVES), old_peer_message("w", l=LEAVES)),
    (Fetched(ENVS), old_peer_message("f", e=list(ENVS))),
    (Fetched(()), old_peer_message("f", e=[])),
    (Cosign(9, b"\x07" * 64), old_peer_message("k", h=9, s=b"\x07" * 64)),
    (WantSigs((9, 8)), old_peer_message("q", h=[9, 8])),
    (Sigs(((9, 2, b"\x07" * 64),)), old_peer_message("g", c=[[9, 2, b"\x07" * 64]])),
    (Sigs(()), old_peer_message("g", c=[])),
]


@pytest.mark.parametrize("msg,old", CASES, ids=lambda c: type(c).__name__ if not isinstance(c, bytes) else "")
def test_each_message_encodes_to_the_old_bytes_and_back(msg: PeerMessage, old: bytes) -> None:
    assert peer_messages.encode(msg) == old
    assert peer_messages.decode(old) == msg


def test_the_layout_is_pinned_byte_for_byte() -> None:
    # fixmap(2) "t" "s" "h" 5: independent of the msgpack library.
    assert peer_messages.encode(Status(5)) == b"\x82\xa1t\xa1s\xa1h\x05"
    assert {k.value for k in PeerKind} == {"c", "r", "s", "w", "f", "k", "q", "g"}


def test_unknown_keys_are_ignored_as_before() -> None:
    body = old_peer_message("s", h=7, extra="x")
    assert peer_messages.decode(body) == Status(7)


@pytest.mark.parametrize("body", [
    b"",
    b"\xc1",
    msgpack.packb([1, 2]),
    old_peer_message("x"),
    msgpack.packb({"m": b"no kind"}),
    msgpack.packb({"t": 1}),
    old_peer_message("c"),
    old_peer_message("c", m="text, not bytes"),
    old_peer_message("c", m=b"p", l=b"\x00" * 31),
    old_peer_message("c", m=b"p", l="leaves"),
    old_peer_message("r", e=b"not a list"),
    old_peer_message("r", e=[b"ok", 3]),
    old_peer_message("r"),
    old_peer_message("s", h=-1),
    old_peer_message("q", h=[]),
    old_peer_message("q", h=[0]),
    old_peer_message("q", h=list(range(1, 66))),
    old_peer_message("g", c=[[1, 0, b"\x00" * 63]]),
    old_peer_message("g", c=[[0, 0, b"\x00" * 64]]),
    old_peer_message("g", c=[[1, -1, b"\x00" * 64]]),
    old_peer_message("g", c="x"),
    old_peer_message("s", h=True),
    old_peer_message("s", h="5"),
    old_peer_message("w", l=b"\x00" * 33),
    old_peer_message("w"),
    old_peer_message("f", e={"a": b""}),
])
def test_malformed_messages_raise_the_typed_error(body: bytes) -> None:
    with pytest.raises(BadPeerMessage) as err:
        peer_messages.decode(body)
    assert isinstance(err.value, LedgerError) and err.value.code == "bad_encoding"
