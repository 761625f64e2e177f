"""``ledger-monitor score``: the offline scoring loop (docs/monitor.md).

Lines are read in order; each valid one is scored by the detector and only
then learned from, so a record's score uses only earlier lines.  A
malformed line is named on stderr (line number and why), skipped and
counted; the summary line at the end says how many.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from .detector import Detector
from .events import MalformedLine, parse_line

DEFAULT_FLAG = 0.5
MAX_NAMED = 20  # malformed lines named one by one; the rest only counted


@dataclass
class Summary:
    lines: int = 0
    scored: int = 0
    flagged: int = 0
    malformed: int = 0
    malformed_lines: list[tuple[int, str]] = field(default_factory=list)

    def line(self) -> str:
        return (f"ledger-monitor score: {self.lines} lines, {self.scored} scored, {self.flagged} flagged, "
                f"{self.malformed} malformed (skipped)")


def score_lines(lines: Iterable[bytes | str], detector: Detector, flag: float = DEFAULT_FLAG,
                summary: Summary | None = None, warn: IO[str] | None = None) -> Iterator[dict[str, Any]]:
    """Score each line; yields ``{"id", "score", "flag", "reasons"}``."""
    summary = summary if summary is not None else Summary()
    for number, line in enumerate(lines, 1):
        summary.lines += 1
        if not line.strip():
            summary.malformed += 1
            _name(summary, number, "empty line", warn)
            continue
        try:
            event = parse_line(line)
        except MalformedLine as exc:
            summary.malformed += 1
            _name(summary, number, str(exc), warn)
            continue
        score, reasons = detector.score(event)
        detector.learn(event)
        flagged = score >= flag
        summary.scored += 1
        summary.flagged += flagged
        yield {"id": event.id, "score": round(score, 6), "flag": flagged, "reasons": reasons}


def _name(summary: Summary, number: int, why: str, warn: IO[str] | None) -> None:
    if len(summary.malformed_lines) < MAX_NAMED:
        summary.malformed_lines.append((number, why))
        if warn is not None:
            print(f"line {number}: malformed, skipped: {why}", file=warn)


def score_file(src: IO[bytes], dst: IO[bytes], detector: Detector, flag: float = DEFAULT_FLAG,
               warn: IO[str] | None = None) -> Summary:
    summary = Summary()
    for out in score_lines(src, detector, flag, summary, warn if warn is not None else sys.stderr):
        dst.write(orjson.dumps(out) + b"\n")
    return summary
