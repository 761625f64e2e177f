"""Decoding consensus messages without decoding known envelopes twice.

A decision (and a proposal in full form; nodes send proposals compact, see
node/assembly.py) carries every envelope of its block, and most of them may
already sit decoded in our mempool.  Decoding an envelope
canonically costs far more than hashing it, so this adapter looks each one
up by leaf hash (which covers the whole envelope, signature included) and
decodes only the unknown ones; everything else - the map's canonical form,
the header, the round and POL rules - is still checked by
:func:`consensus.decode_message`, on the message minus its envelope list.

A decision for a height this node has already committed is useless (the
consensus machine ignores a certified block of any height but its own), yet
its envelopes are no longer in the mempool, so decoding it meant decoding a
whole block again: a fifth of a follower's CPU in the batch benchmark's
profile on a loaded machine, where laggards are often sent decisions
(docs/performance.md).  Such a decision is recognised from its header alone,
read without the canonical check, and skipped: :func:`decode_consensus`
answers None.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import msgpack

from consensus import Decision, Message, Proposal, decode_message
from consensus.messages import MAX_BLOCK_ENVELOPES, MAX_MESSAGE_BYTES
from ledger.blocks import decode_header
from ledger.encoding import canonical, decode
from ledger.errors import BadEncoding, LedgerError
from ledger.merkle import leaf_hash
from ledger.records import Envelope, decode_envelope

Lookup = Callable[[bytes], Envelope | None]


def stale_decision(data: bytes, committed_height: int) -> bool:
    """Whether ``data`` is plainly a decision for a height at or below
    ``committed_height`` (read without proving canonical form: a message
    that is not one, or is malformed, answers False and is decoded in full)."""
    if len(data) > MAX_MESSAGE_BYTES or data[:1] != b"\x84":  # a decision is a 4-key map
        return False
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if not isinstance(value, dict) or value.get("t") != "decision" \
                or not isinstance(header := value.get("header"), bytes):
            return False
        return decode_header(header).height <= committed_height
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError, LedgerError):
        return False


def decode_consensus(data: bytes, known: Lookup, committed_height: int = 0) -> Message | None:
    """:func:`consensus.decode_message`, reusing envelopes ``known(leaf_hash)``
    returns; None for a decision at or below ``committed_height``."""
    if committed_height and stale_decision(data, committed_height):
        return None
    value = decode(data, max_size=MAX_MESSAGE_BYTES)
    if not isinstance(value, dict) or value.get("t") not in ("proposal", "decision"):
        return decode_message(data, max_size=MAX_MESSAGE_BYTES)
    raw = value.get("envelopes")
    if not isinstance(raw, list) or len(raw) > MAX_BLOCK_ENVELOPES \
            or not all(isinstance(e, bytes) for e in raw):
        raise BadEncoding("envelopes must be a list of envelope bytes")
    value["envelopes"] = []
    message = decode_message(canonical(value), max_size=MAX_MESSAGE_BYTES)
    envelopes = []
    for item in raw:
        env = known(leaf_hash(item))
        envelopes.append(env if env is not None else decode_envelope(item, cosigs=True))
    assert isinstance(message, (Proposal, Decision))
    return dataclasses.replace(message, envelopes=tuple(envelopes))
