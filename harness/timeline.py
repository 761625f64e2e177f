"""Where a block's time goes, from the timelines of harness/timeline_probe.

Reads ``DIR/<pid>.log`` (one per ledger-node process, written by
``harness/timeline_probe/sitecustomize.py``), groups the processes by
start order into clusters of ``--nodes`` (a benchmark's runs start their
clusters one after the other), and prints for each cluster:

- each step's wall time per call (count, p50, mean, p90, max, total): the
  consensus driver's events and effects, block building, validation, the
  verdict pass (``verdicts``: a proposer's and each validator's), the
  commit, admission;
- the block's critical path: for each height of at least ``--min-records``
  records (500: a loaded cluster's full blocks), from the first commit of the
  height before (on any node) to the proposer's build, its proposal sent,
  the second follower's validation done (with the proposer's own prevote
  that makes a quorum of prevotes possible), and the first and last node's
  commit done; medians over the heights.

Wall times, not CPU: four nodes on two cores wait for a core, so a step's
wall time is longer than its CPU time when the machine is busy.

    PYTHONPATH=harness/timeline_probe LEDGER_TIMELINE_DIR=/tmp/tl \\
        python -m harness.bench_secure --policy --pairs 1
    python -m harness.timeline /tmp/tl
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import click

from .bench_measure import pct

# The critical-path marks, in block order.
PATH_MARKS = ("build start", "proposal sent", "2nd follower validated", "first commit done",
              "last commit done")


@dataclass
class NodeTimeline:
    """One process's calls: (label, height or None, start, end)."""

    pid: int
    calls: list[tuple[str, int | None, float, float]] = field(default_factory=list)
    records: dict[int, int] = field(default_factory=dict)  # height -> its records


def read_timeline(path: Path) -> NodeTimeline:
    """One ``<pid>.log``: its ``>``/``<`` lines paired into calls."""
    node = NodeTimeline(int(path.stem))
    open_calls: dict[str, list[float]] = defaultdict(list)
    for line in path.read_text(encoding="ascii").splitlines():
        stamp, _, rest = line.partition(" ")
        direction, _, what = rest.partition(" ")
        if direction == ">":
            open_calls[what].append(float(stamp))
        elif direction == "<" and open_calls[what]:
            start = open_calls[what].pop()
            label, _, rest = what.partition(" ")
            height, _, records = rest.partition(" ")
            at = int(height) if height.isdigit() else None
            node.calls.append((label, at, start, float(stamp)))
            if at is not None and records.isdigit():
                node.records[at] = int(records)
    node.calls.sort(key=lambda c: c[2])
    return node


def step_table(nodes: list[NodeTimeline]) -> list[tuple[str, int, float, float, float, float,
                                                        float]]:
    """Per label over ``nodes``: count, p50, mean, p90, max and total ms."""
    spans: dict[str, list[float]] = defaultdict(list)
    for node in nodes:
        for label, _, start, end in node.calls:
            spans[label].append((end - start) * 1000)
    rows = []
    for label, values in sorted(spans.items()):
        rows.append((label, len(values), pct(values, 50), statistics.mean(values),
                     pct(values, 90), max(values), sum(values)))
    return rows


def critical_path(nodes: list[NodeTimeline], min_records: int = 0) -> dict[str, float]:
    """Median ms from the previous height's first commit to each of
    :data:`PATH_MARKS`, over the heights of at least ``min_records``
    records every mark was seen for (the key ``blocks``: how many)."""
    sizes = {h: n for node in nodes for h, n in node.records.items()}
    commit_done: dict[int, list[float]] = defaultdict(list)
    build: dict[int, float] = {}
    sent: dict[int, float] = {}
    validated: dict[int, list[tuple[int, float]]] = defaultdict(list)  # (node, end)
    proposer_of: dict[int, int] = {}
    for k, node in enumerate(nodes):
        for label, height, start, end in node.calls:
            if height is None:
                continue
            if label == "execute:Commit":
                commit_done[height].append(end)
            elif label == "build_block":
                build.setdefault(height, start)
                proposer_of.setdefault(height, k)
            elif label == "execute:Broadcast:Proposal":
                sent.setdefault(height, end)
            elif label == "validate":
                validated[height].append((k, end))
    offsets: dict[str, list[float]] = defaultdict(list)
    for height in sorted(commit_done):
        before = commit_done.get(height - 1)
        if not before or height not in build or height not in sent:
            continue
        # The proposer validates its own block too; the followers' are the others.
        followers = sorted(t for k, t in validated[height] if k != proposer_of[height])
        if len(followers) < 2 or len(commit_done[height]) < len(nodes) \
                or sizes.get(height, 0) < min_records:
            continue
        t0 = min(before)
        marks = (build[height], sent[height], followers[1], min(commit_done[height]),
                 max(commit_done[height]))
        for name, t in zip(PATH_MARKS, marks):
            offsets[name].append((t - t0) * 1000)
    out = {name: statistics.median(v) for name, v in offsets.items()}
    if out:
        out["blocks"] = len(offsets[PATH_MARKS[0]])
    return out


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--nodes", default=4, show_default=True, help="processes per cluster")
@click.option("--only", multiple=True, help="print only these labels (prefix match)")
@click.option("--min-records", default=500, show_default=True,
              help="the critical path of blocks of at least this many records only")
def main(directory: Path, nodes: int, only: tuple[str, ...], min_records: int) -> None:
    """Per cluster: each step's wall time, and the block's critical path."""
    files = sorted(directory.glob("*.log"), key=lambda p: int(p.stem))
    timelines = [read_timeline(p) for p in files]
    for c in range(0, len(timelines), nodes):
        group = timelines[c:c + nodes]
        click.echo(f"cluster {c // nodes} (pids {', '.join(str(t.pid) for t in group)})")
        click.echo(f"  {'step':44s} {'n':>7s} {'p50':>8s} {'mean':>8s} {'p90':>8s} "
                   f"{'max':>8s} {'total':>9s}  (ms)")
        for label, n, p50, mean, p90, peak, total in step_table(group):
            if only and not any(label.startswith(o) for o in only):
                continue
            click.echo(f"  {label:44s} {n:7d} {p50:8.2f} {mean:8.2f} {p90:8.2f} "
                       f"{peak:8.1f} {total:9.0f}")
        path = critical_path(group, min_records)
        if path:
            blocks = int(path.pop("blocks"))
            click.echo(f"  block critical path ({blocks} blocks of {min_records} records or "
                       "more), median ms after the previous height's first commit: "
                       + ", ".join(f"{k} {v:.1f}" for k, v in path.items()))


if __name__ == "__main__":
    main()
