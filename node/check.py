"""``ledger-node --config node.toml --check``: a full consistency check of
the node's store (``ledger/fsck.py``) with a progress bar.

Exit codes: 0 clean, 1 damaged (or the store cannot be opened or read),
2 usage or configuration (see ``node/main.py``), a store in use by a running
node (LevelDB admits one process at a time: ``ledger-node backup`` copies a
running node's store) or a store of a schema version this release does not
read.
"""

from __future__ import annotations

import time
from pathlib import Path

import plyvel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from ledger.errors import LedgerError, SchemaUnsupported
from ledger.fsck import FsckReport, fsck
from ledger.storage import LevelDBStore, StoreLocked

from .config import ConfigError, NodeConfig

EXIT_CLEAN, EXIT_DAMAGED, EXIT_REFUSED = 0, 1, 2

ADVICE = ("The store is damaged. Do not serve from it: stop the node, move its data "
          "directory aside (keep it for inspection) and restore from a fresh data dir that "
          "re-syncs from peers (start the node with an empty data_dir; it catches up and "
          "checks every block it fetches).")


def store_path(config: NodeConfig) -> Path:
    return config.data_dir / "chain"


def run_check(config: NodeConfig, console: Console, *, signatures: bool = False) -> int:
    """Check the store of ``config``'s node; print a summary; return the exit code."""
    path = store_path(config)
    if not path.is_dir():
        raise ConfigError("node.data_dir", f"no store to check at {path}")
    started = time.monotonic()
    try:
        store = LevelDBStore(str(path), create=False)
        try:
            report = _check_with_progress(store, config, console, signatures)
        finally:
            store.close()
    except StoreLocked:
        console.print(f"ledger-node --check: the store at {path} is in use by a running node "
                      f"(it holds the LevelDB lock {path / 'LOCK'}); it was not checked. Stop "
                      "the node to check its store, or check a copy made while it runs "
                      "(ledger-node backup).", highlight=False)
        return EXIT_REFUSED
    except SchemaUnsupported as exc:
        console.print(f"ledger-node --check: {path}: {exc}; it was not checked.",
                      highlight=False)
        return EXIT_REFUSED
    except (LedgerError, plyvel.Error) as exc:
        console.print(f"[red]ledger-node --check: cannot read the store at {path}: {exc}[/red]")
        console.print(ADVICE)
        return EXIT_DAMAGED
    return _print_report(report, console, path, time.monotonic() - started)


def _check_with_progress(store: LevelDBStore, config: NodeConfig, console: Console,
                         signatures: bool) -> FsckReport:
    columns = (TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        return fsck(store, config.genesis, progress=progress, verify_signatures=signatures)


def _print_report(report: FsckReport, console: Console, path: Path, seconds: float) -> int:
    lines = report.summary()
    rate = report.records / seconds if seconds > 0 else 0.0
    console.print(f"{path}: {lines[0]} in {seconds:.1f}s ({rate:,.0f} records/s)")
    if report.clean:
        console.print("[green]clean: no damage found[/green]")
        return EXIT_CLEAN
    console.print(f"[red]DAMAGED: {lines[1]}[/red]")
    for line in lines[2:]:
        console.print(line, highlight=False)
    shown = report.listed[:20]
    if shown:
        console.print("first damaged keys:")
        for damage in shown:
            console.print("  " + damage.describe(), highlight=False)
    console.print(ADVICE)
    return EXIT_DAMAGED
