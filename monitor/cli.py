"""``ledger-monitor``: the risk monitor's command line (docs/monitor.md).

``ledger-monitor score --input records.jsonl --output scores.jsonl`` scores
offline: exit status 0 when every line was read (malformed lines are
skipped, counted and named on stderr, not an error), 2 for usage errors or
files that cannot be opened.

``ledger-monitor follow --node URL`` follows a node's block stream,
verifying and scoring every block (:mod:`monitor.follow`); exit status 3
when a streamed block fails verification.
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


@main.command()
@click.option("--node", "node_url", required=True, help="Base URL of a node, e.g. http://127.0.0.1:7700.")
@click.option("--genesis", "genesis_path", type=click.Path(exists=True, dir_okay=False),
              help="The chain's genesis.json to verify against (default: the node's "
                   "GET /v1/genesis, which then is trusted).")
@click.option("--output", "output_path", type=click.File("ab"), default="-", show_default=True,
              help="Flagged records as JSON lines {id, height, score, flag, reasons}.")
@click.option("--flag", default=DEFAULT_FLAG, type=float, show_default=True,
              help="Score at or above which a record is flagged.")
@click.option("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)), show_default=True,
              help="Approval thresholds in minor units, for the just-under-threshold feature.")
@click.option("--until", "until", type=int, default=None,
              help="Stop once this height is verified and scored (default: follow forever).")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port (127.0.0.1).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="PEM trust roots for an https:// node.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False),
              help="The monitor's key file: requests are signed with it (PROTOCOL §11) and "
                   "flagged records become risk.alert records it signs (PROTOCOL §12.2); its "
                   "key needs the roles monitor and submit.")
@click.option("--no-alerts", is_flag=True, help="With --key: sign requests, submit no alerts.")
def follow(node_url: str, genesis_path: str | None, output_path: IO[bytes], flag: float,
           thresholds: str, until: int | None, metrics_port: int | None,
           ca_file: str | None, key_file: str | None, no_alerts: bool) -> None:
    """Follow a node's committed blocks: verify each, score its records."""
    from .follow_cli import run_follow
    try:
        limits = tuple(int(x) for x in thresholds.split(",") if x)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    code = run_follow(node_url, genesis_path=genesis_path, output=output_path, flag=flag,
                      detector=BuiltinDetector(thresholds=limits), until=until,
                      metrics_port=metrics_port, ca_file=ca_file, key_file=key_file,
                      submit_alerts=not no_alerts)
    sys.exit(code)


if __name__ == "__main__":
    main()
