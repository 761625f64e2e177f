"""``ledger-node restore``: put a backup (node/backup.py) in place as a
node's store, after checking it.

Steps: the backup must be complete (``backup.json``, written last) and pass
the full store check (``ledger/fsck.py``, as ``--check``) under the node's
own genesis; only then is it copied next to the data dir's store and
renamed into place.  A store already there is never deleted: restore
refuses unless told (``--force``), and then moves it aside as
``chain.replaced-<time>``.

Consensus safety.  A validator's store also holds its consensus state: the
round, lock and votes it signed at the height it is working on, which is
how a restarted validator avoids signing a conflicting vote.  A backup
carries the state of the moment it was made; restoring it over a store
whose state is NEWER would make the validator forget votes it signed since,
and it could then sign conflicting ones (equivocation, which counts it as a
faulty validator).  So restore reads the consensus state of the store it
replaces and refuses - with or without ``--force`` - when that state is
ahead of the backup's (a later height, or a later round of the same
height); a store it cannot open is not replaced either.  docs/operators.md
says what remains the operator's to ensure when no old store survives.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from consensus.state import decode_state
from ledger import schema
from ledger.errors import LedgerError, SchemaUnsupported
from ledger.fsck import fsck
from ledger.genesis import Genesis
from ledger.storage import LevelDBStore, StoreLocked

from .backup import MANIFEST

EXIT_OK, EXIT_DAMAGED, EXIT_REFUSED = 0, 1, 2


class RestoreRefused(Exception):
    """Restore will not run as asked; the message says why (exit 2)."""


VotePosition = tuple[int, int]  # (height, round) of a consensus state


def vote_position(store: LevelDBStore) -> VotePosition:
    """How far the store's validator may have signed: its consensus state's
    (height, round), or (tip + 1, -1) - nothing signed above the tip - when
    that is later (no state, or one of a height already committed)."""
    tip = store.get(schema.META_TIP)
    position = ((schema.unpack_u64(tip, "tip height") if tip else 0) + 1, -1)
    raw = store.get(schema.META_CONSENSUS)
    if raw is not None:
        state = decode_state(raw)
        position = max(position, (state.height, state.round))
    return position


def _read_manifest(backup: Path) -> dict[str, Any]:
    try:
        doc = json.loads((backup / MANIFEST).read_text())
    except FileNotFoundError:
        raise RestoreRefused(f"{backup} is not a complete backup: no {MANIFEST} (a backup "
                             "that was interrupted, or not a backup directory)") from None
    except (OSError, ValueError) as exc:
        raise RestoreRefused(f"{backup / MANIFEST} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or not (backup / "chain").is_dir():
        raise RestoreRefused(f"{backup} is not a complete backup")
    return doc


def check_backup(backup: Path, genesis: Genesis, console: Console) -> VotePosition:
    """Run the store check on the backup; its consensus position if clean."""
    manifest = _read_manifest(backup)
    try:
        store = LevelDBStore(str(backup / "chain"), create=False)
    except LedgerError as exc:
        raise _Damaged(f"the backup's store does not open: {exc}") from None
    try:
        started = time.monotonic()
        report = fsck(store, genesis)
        position = vote_position(store)
    except SchemaUnsupported as exc:
        raise RestoreRefused(f"the backup: {exc}") from None
    except LedgerError as exc:
        raise _Damaged(f"the backup cannot be read: {exc}") from None
    finally:
        store.close()
    lines = report.summary()
    console.print(f"backup {backup} (node {manifest.get('node')}, height "
                  f"{manifest.get('height')}): {lines[0]}, checked in "
                  f"{time.monotonic() - started:.1f}s", highlight=False)
    if not report.clean:
        raise _Damaged("; ".join(lines[1:]))
    return position


class _Damaged(Exception):
    pass


def _current_position(chain_dir: Path) -> VotePosition | None:
    """The consensus position of the store being replaced (None: no store)."""
    if not chain_dir.exists() or not any(chain_dir.iterdir()):
        return None
    try:
        store = LevelDBStore(str(chain_dir), create=False)
    except StoreLocked:
        raise RestoreRefused(f"{chain_dir} is in use by a running node (it holds the LevelDB "
                             f"lock {chain_dir / 'LOCK'}): stop the node first") from None
    except LedgerError as exc:
        raise RestoreRefused(
            f"{chain_dir} cannot be opened ({exc}), so its consensus state cannot be "
            "compared with the backup's; move it aside yourself only if this node never "
            "ran as a validator past the backup (docs/operators.md, Backup and restore)"
        ) from None
    try:
        return vote_position(store)
    except LedgerError as exc:
        raise RestoreRefused(f"{chain_dir}: its consensus state cannot be read ({exc})") from None
    finally:
        store.close()


def restore(backup: Path, data_dir: Path, genesis: Genesis, console: Console, *,
            force: bool = False) -> int:
    """Check ``backup`` and make it the store of the node over ``data_dir``;
    the exit code (0 restored, 1 the backup is damaged, 2 refused)."""
    chain_dir = data_dir / "chain"
    try:
        current = _current_position(chain_dir)
        if current is not None and not force:
            raise RestoreRefused(f"{chain_dir} already holds a store; restore replaces it only "
                                 "with --force (it is moved aside, not deleted)")
        position = check_backup(backup, genesis, console)
        if current is not None and current > position:
            raise RestoreRefused(
                f"the store in {chain_dir} holds consensus state at height {current[0]} round "
                f"{current[1]}, ahead of the backup's (height {position[0]} round "
                f"{position[1]}): this validator signed votes the backup does not remember, "
                "and restoring it could make it sign conflicting ones. Restore a backup made "
                "after that point, or keep this store")
    except RestoreRefused as exc:
        console.print(f"ledger-node restore: refused: {exc}", highlight=False)
        return EXIT_REFUSED
    except _Damaged as exc:
        console.print(f"ledger-node restore: the backup is damaged, nothing was restored: {exc}",
                      highlight=False)
        return EXIT_DAMAGED
    data_dir.mkdir(parents=True, exist_ok=True)
    incoming = data_dir / "chain.restoring"
    if incoming.exists():
        shutil.rmtree(incoming)  # an earlier restore that was interrupted
    shutil.copytree(backup / "chain", incoming, ignore=shutil.ignore_patterns("LOCK"))
    _fsync_tree(incoming)
    if current is not None:
        aside = data_dir / time.strftime("chain.replaced-%Y%m%dT%H%M%SZ", time.gmtime())
        os.rename(chain_dir, aside)
        console.print(f"the store it replaces was moved to {aside}", highlight=False)
    elif chain_dir.exists():
        chain_dir.rmdir()  # empty
    os.rename(incoming, chain_dir)
    _fsync_dir(data_dir)
    console.print(f"restored into {chain_dir}; start the node to catch up with its peers",
                  highlight=False)
    return EXIT_OK


def _fsync_tree(root: Path) -> None:
    for path in root.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
