"""The consensus state that must survive a crash (see the Persist effect).

It is exactly what prevents double signing and keeps locks across restarts:
height/round/step, the lock (round + block hash), the valid value (round,
block data and the prevotes proving its polka, so the restarted validator can
still re-propose it), the last round it proposed in, and every vote it signed
at this height.  A restarted machine re-sends a stored vote rather than ever
signing a different one for the same (height, round, type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.blocks import HASH_LEN, Header, decode_header
from ledger.encoding import decode, packb_plain
from ledger.errors import StorageCorruption, VerificationError
from ledger.records import Envelope, decode_envelope

from .messages import SignedVote, decode_message, encode_message
from .params import NIL_ROUND, Step

STATE_VERSION = 1


@dataclass(frozen=True)
class ValidValue:
    """The paper's validValue/validRound, with the polka that justifies it."""

    round: int
    header: Header
    envelopes: tuple[Envelope, ...]
    pol: tuple[SignedVote, ...]

    @property
    def block_hash(self) -> bytes:
        return self.header.hash


@dataclass(frozen=True)
class PersistedState:
    height: int
    round: int
    step: Step
    locked_round: int = NIL_ROUND
    locked_block: bytes | None = None
    valid: ValidValue | None = None
    proposed_round: int = NIL_ROUND
    votes: tuple[SignedVote, ...] = ()

    def to_bytes(self) -> bytes:
        """``canonical`` of the state map.  Every value is already normal
        (ints, bytes, None, lists of bytes) and the keys are written in
        canonical order, so it is packed as it stands: the canonical walk
        over a valid block's envelopes is most of the cost and changes
        nothing (tests/test_consensus_machine.py compares the two)."""
        valid = self.valid
        return packb_plain(
            {
                "height": self.height,
                "locked_block": self.locked_block,
                "locked_round": self.locked_round,
                "proposed_round": self.proposed_round,
                "round": self.round,
                "step": int(self.step),
                "v": STATE_VERSION,
                "valid_envelopes": [e.envelope_bytes for e in valid.envelopes] if valid else [],
                "valid_header": valid.header.header_bytes if valid else None,
                "valid_pol": [encode_message(v) for v in valid.pol] if valid else [],
                "valid_round": valid.round if valid else NIL_ROUND,
                "votes": [encode_message(v) for v in self.votes],
            }
        )


_KEYS = frozenset(
    {"v", "height", "round", "step", "locked_round", "locked_block", "valid_round",
     "valid_header", "valid_envelopes", "valid_pol", "proposed_round", "votes"}
)


def _int(value: Any, what: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise StorageCorruption(f"consensus state: {what} must be an integer >= {minimum}")
    return value


def _votes(raw: Any, what: str) -> tuple[SignedVote, ...]:
    if not isinstance(raw, list):
        raise StorageCorruption(f"consensus state: {what} must be a list")
    out = []
    for item in raw:
        msg = decode_message(item) if isinstance(item, bytes) else None
        if not isinstance(msg, SignedVote):
            raise StorageCorruption(f"consensus state: {what} entries must be votes")
        out.append(msg)
    return tuple(out)


def _valid_value(value: dict[str, Any]) -> ValidValue | None:
    valid_round = _int(value["valid_round"], "valid_round", NIL_ROUND)
    if value["valid_header"] is None:
        if valid_round != NIL_ROUND:
            raise StorageCorruption("consensus state: valid round without a block")
        return None
    if not isinstance(value["valid_header"], bytes) or not isinstance(value["valid_envelopes"], list):
        raise StorageCorruption("consensus state: valid block is malformed")
    header = decode_header(value["valid_header"])
    envelopes = tuple(decode_envelope(e, cosigs=True) for e in value["valid_envelopes"])
    return ValidValue(valid_round, header, envelopes, _votes(value["valid_pol"], "valid_pol"))


def decode_state(data: bytes) -> PersistedState:
    """Decode stored state; any damage raises :class:`StorageCorruption`."""
    try:
        value = decode(data)
        if not isinstance(value, dict) or set(value) != _KEYS or value["v"] != STATE_VERSION:
            raise StorageCorruption("consensus state: wrong keys or version")
        locked_block = value["locked_block"]
        if locked_block is not None and (not isinstance(locked_block, bytes) or len(locked_block) != HASH_LEN):
            raise StorageCorruption("consensus state: locked_block must be 32 bytes or nil")
        return PersistedState(
            height=_int(value["height"], "height", 1),
            round=_int(value["round"], "round", 0),
            step=Step(_int(value["step"], "step", 0)),
            locked_round=_int(value["locked_round"], "locked_round", NIL_ROUND),
            locked_block=locked_block,
            valid=_valid_value(value),
            proposed_round=_int(value["proposed_round"], "proposed_round", NIL_ROUND),
            votes=_votes(value["votes"], "votes"),
        )
    except StorageCorruption:
        raise
    except (VerificationError, ValueError) as exc:
        raise StorageCorruption(f"consensus state: {exc}") from None
