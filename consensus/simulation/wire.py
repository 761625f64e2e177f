"""Framing of the simulated transport: consensus messages plus the driver's
own small protocol (height status, block sync, block fetch, record gossip).

A frame is one tag byte + canonical MessagePack.  Decoding is memoised per
frame: every receiver of a broadcast gets the same bytes, and decoding is a
pure function of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from consensus.messages import Message, decode_message, encode_message
from ledger.encoding import canonical, decode
from ledger.errors import BadEncoding
from ledger.records import Envelope, decode_envelope

CONSENSUS = b"C"
DRIVER = b"D"


@dataclass(frozen=True)
class Status:
    height: int


@dataclass(frozen=True)
class SyncRequest:
    from_height: int


@dataclass(frozen=True)
class FetchRequest:
    height: int
    block: bytes


@dataclass(frozen=True)
class Gossip:
    """Records a node admitted from a client, forwarded once to its peers."""

    envelopes: tuple[Envelope, ...]


DriverMessage = Union[Status, SyncRequest, FetchRequest, Gossip]
Frame = Union[Message, DriverMessage]

_cache: dict[bytes, Frame] = {}
_CACHE_MAX = 20_000


def encode_frame(msg: Frame) -> bytes:
    if isinstance(msg, Status):
        return DRIVER + canonical({"t": "status", "height": msg.height})
    if isinstance(msg, SyncRequest):
        return DRIVER + canonical({"t": "sync", "from": msg.from_height})
    if isinstance(msg, FetchRequest):
        return DRIVER + canonical({"t": "fetch", "height": msg.height, "block": msg.block})
    if isinstance(msg, Gossip):
        return DRIVER + canonical({"t": "gossip", "envelopes": [e.envelope_bytes for e in msg.envelopes]})
    return CONSENSUS + encode_message(msg)


def _decode_driver(body: bytes) -> DriverMessage:
    value = decode(body)
    if not isinstance(value, dict):
        raise BadEncoding("driver frame must be a map")
    kind = value.get("t")
    if kind == "status" and isinstance(value.get("height"), int):
        return Status(value["height"])
    if kind == "sync" and isinstance(value.get("from"), int):
        return SyncRequest(value["from"])
    if kind == "fetch" and isinstance(value.get("height"), int) and isinstance(value.get("block"), bytes):
        return FetchRequest(value["height"], value["block"])
    if kind == "gossip" and isinstance(value.get("envelopes"), list):
        return Gossip(tuple(decode_envelope(e, cosigs=True) for e in value["envelopes"]
                        if isinstance(e, bytes)))
    raise BadEncoding("unknown driver frame")


def decode_frame(data: bytes) -> Frame:
    found = _cache.get(data)
    if found is not None:
        return found
    tag, body = data[:1], data[1:]
    msg: Frame = decode_message(body) if tag == CONSENSUS else _decode_driver(body)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[data] = msg
    return msg
