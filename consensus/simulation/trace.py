"""A readable trace of a run: the last events in a ring buffer, formatted
only when someone looks (formatting every event would dominate run time)."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, TextIO

from consensus.messages import Decision, Message, Proposal, SignedVote
from ledger.encoding import to_hex


def short(block: bytes | None) -> str:
    return "nil" if block is None else to_hex(block)[:8]


def describe(msg: Message | Any) -> str:
    if isinstance(msg, SignedVote):
        return f"{msg.type} h{msg.height} r{msg.round} {short(msg.block)} by v{msg.validator}"
    if isinstance(msg, Proposal):
        return (f"PROPOSAL h{msg.height} r{msg.round} pol{msg.pol_round} {short(msg.block_hash)} "
                f"txs={len(msg.envelopes)}")
    if isinstance(msg, Decision):
        return f"DECISION h{msg.height} {short(msg.header.hash)} r{msg.certificate.round}"
    return str(msg)


class Trace:
    def __init__(self, keep: int = 200, echo: TextIO | None = None) -> None:
        self._lines: deque[tuple[int, str, Callable[..., str], tuple[Any, ...]]] = deque(maxlen=keep)
        self._echo = echo

    def add(self, time: int, who: str, fmt: Callable[..., str], *args: Any) -> None:
        entry = (time, who, fmt, args)
        self._lines.append(entry)
        if self._echo is not None:
            self._echo.write(self._format(entry) + "\n")

    def note(self, time: int, who: str, text: str) -> None:
        self.add(time, who, str, text)

    @staticmethod
    def _format(entry: tuple[int, str, Callable[..., str], tuple[Any, ...]]) -> str:
        time, who, fmt, args = entry
        return f"{time:>8}ms {who:<6} {fmt(*args)}"

    def lines(self) -> list[str]:
        return [self._format(e) for e in self._lines]
