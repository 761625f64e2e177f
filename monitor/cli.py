"""``ledger-monitor``: the risk monitor's command line (docs/monitor.md).

Today it scores offline: ``ledger-monitor score --input records.jsonl
--output scores.jsonl``.  Exit status 0 when every line was read (malformed
lines are skipped, counted and named on stderr, not an error), 2 for usage
errors or files that cannot be opened.
"""

from __future__ import annotations

import sys
from typing import IO

import click

from .builtin import DEFAULT_THRESHOLDS, BuiltinDetector
from .detector import Detector
from .score import DEFAULT_FLAG, score_file


def make_detector(name: str, thresholds: tuple[int, ...]) -> Detector:
    if name == "builtin":
        return BuiltinDetector(thresholds=thresholds)
    if name == "zscore":
        from .baselines import ZScoreDetector
        return ZScoreDetector()
    from .baselines import HalfSpaceTreesDetector  # "river-hst"
    return HalfSpaceTreesDetector()


@click.group()
@click.version_option(package_name="auditledger", prog_name="ledger-monitor")
def main() -> None:
    """The auditledger risk monitor."""


@main.command()
@click.option("--input", "input_path", required=True, type=click.File("rb"),
              help="JSON lines {id, height, time, record}; - for stdin.")
@click.option("--output", "output_path", required=True, type=click.File("wb"),
              help="JSON lines {id, score, flag, reasons}; - for stdout.")
@click.option("--detector", default="builtin", type=click.Choice(["builtin", "zscore", "river-hst"]),
              show_default=True)
@click.option("--flag", default=DEFAULT_FLAG, type=float, show_default=True,
              help="Score at or above which a record is flagged.")
@click.option("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)), show_default=True,
              help="Approval thresholds in minor units, for the just-under-threshold feature.")
def score(input_path: IO[bytes], output_path: IO[bytes], detector: str, flag: float,
          thresholds: str) -> None:
    """Score records offline, strictly online in input order."""
    try:
        limits = tuple(int(x) for x in thresholds.split(",") if x)
        det = make_detector(detector, limits)
    except (ValueError, RuntimeError) as exc:
        raise click.UsageError(str(exc)) from None
    summary = score_file(input_path, output_path, det, flag)
    print(summary.line(), file=sys.stderr)


if __name__ == "__main__":
    main()
