"""Decoding consensus messages without decoding known envelopes twice.

A decision (and a proposal in full form; nodes send proposals compact, see
node/assembly.py) carries every envelope of its block, and most of them may
already sit decoded in our mempool.  Decoding an envelope
canonically costs far more than hashing it, so this adapter looks each one
up by leaf hash (which covers the whole envelope, signature included) and
decodes only the unknown ones; everything else - the map's canonical form,
the header, the round and POL rules - is still checked by
:func:`consensus.decode_message`, on the message minus its envelope list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from consensus import Decision, Message, Proposal, decode_message
from consensus.messages import MAX_BLOCK_ENVELOPES, MAX_MESSAGE_BYTES
from ledger.encoding import canonical, decode
from ledger.errors import BadEncoding
from ledger.merkle import leaf_hash
from ledger.records import Envelope, decode_envelope

Lookup = Callable[[bytes], Envelope | None]


def decode_consensus(data: bytes, known: Lookup) -> Message:
    """:func:`consensus.decode_message`, reusing envelopes ``known(leaf_hash)`` returns."""
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
