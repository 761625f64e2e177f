"""Online backup: a running node copies its own store on request.

LevelDB admits one process per database, so the copy is made by the node
that holds the lock, from a LevelDB snapshot (``LevelDBStore.copy_snapshot``):
a commit is one write batch, so the copy holds whole blocks only, and the
node keeps committing while it is made.

The request comes over the node's operator socket, ``<data_dir>/admin.sock``:
a Unix domain socket, mode 0600, so only the account that owns the node (and
root) can connect; it is never on the network.  It serves one route,
``POST /admin/backup`` with ``{"to": "/absolute/dir"}``.  Request
authentication beyond file permissions comes with issue 24.

A backup directory holds ``chain/`` (a LevelDB database) and ``backup.json``
(what was copied); ``backup.json`` is written last, so a directory without
it is an interrupted backup.  ``ledger-node restore`` (node/restore.py)
checks one before putting it in place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ledger import schema
from ledger.storage import LevelDBStore

log = logging.getLogger("node.backup")

ADMIN_SOCKET = "admin.sock"
MANIFEST = "backup.json"
BACKUP_PATH = "/admin/backup"
# Linux's sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


class BackupRefused(Exception):
    """The request cannot be carried out as asked (bad target, one running)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BackupResult:
    to: str
    height: int
    records: int
    keys: int
    bytes: int
    seconds: float
    chain: str
    schema_version: int
    node: str


def socket_path(data_dir: Path) -> Path:
    return data_dir / ADMIN_SOCKET


def check_target(to: Any, data_dir: Path) -> Path:
    """The backup directory named by a request: absolute, outside the node's
    data dir, and absent or empty (a backup never overwrites anything)."""
    if not isinstance(to, str) or not to or not os.path.isabs(to):
        raise BackupRefused("bad_request", "\"to\" must be an absolute directory path")
    target = Path(os.path.normpath(to))
    data = data_dir.resolve()
    resolved = target.resolve()
    if resolved == data or data in resolved.parents:
        raise BackupRefused("bad_request", f"{target} is inside the node's data dir {data}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupRefused("bad_request", f"{target} exists and is not an empty directory")
    return target


def make_backup(store: LevelDBStore, target: Path, *, chain: str, node: str) -> BackupResult:
    """Copy ``store`` into ``target`` (checked by :func:`check_target`)."""
    started = time.monotonic()
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "chain.partial"
    last_log = [started]

    def progress(keys: int, size: int) -> None:
        now = time.monotonic()
        if now - last_log[0] >= 5.0:
            last_log[0] = now
            log.info("backup to %s: %d keys, %d bytes copied", target, keys, size)

    get, keys, size = store.copy_snapshot(str(partial), progress=progress)
    os.rename(partial, target / "chain")
    tip, log_size, version = (get(schema.META_TIP), get(schema.META_LOG_SIZE),
                              get(schema.META_SCHEMA_VERSION))
    result = BackupResult(
        to=str(target),
        height=schema.unpack_u64(tip) if tip else 0,
        records=schema.unpack_u64(log_size) if log_size else 0,
        keys=keys, bytes=size, seconds=round(time.monotonic() - started, 3), chain=chain,
        schema_version=schema.unpack_u64(version) if version else 0, node=node)
    _write_durably(target / MANIFEST, json.dumps(asdict(result), indent=2) + "\n")
    return result


def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AdminServer:
    """The operator socket of one node (see the module docstring)."""

    def __init__(self, store: LevelDBStore, data_dir: Path, *, chain: str, node: str) -> None:
        self.store = store
        self.data_dir = data_dir
        self.chain = chain
        self.node = node
        self.path = socket_path(data_dir)
        self._busy = False
        self._copy: asyncio.Future[BackupResult] | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> bool:
        """Listen; False (logged) where the socket cannot be made."""
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            log.warning("operator socket disabled: %s is longer than a Unix socket path "
                        "may be (%d bytes); ledger-node backup will not reach this node",
                        self.path, MAX_SOCKET_PATH)
            return False
        if self.path.is_socket():
            self.path.unlink()  # left by a node that was killed: the lock says none runs
        app = web.Application()
        app.router.add_post(BACKUP_PATH, self._backup)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Created 0600 (umask), not chmodded after: no moment where others may connect.
        old = os.umask(0o177)
        try:
            await web.UnixSite(self._runner, str(self.path)).start()
        except OSError as exc:  # the node serves without it; backups are then offline only
            log.warning("operator socket disabled: cannot listen on %s: %s", self.path, exc)
            await self._runner.cleanup()
            self._runner = None
            return False
        finally:
            os.umask(old)
        log.info("operator socket at %s (mode 0600)", self.path)
        return True

    async def stop(self) -> None:
        """Stop listening; a copy under way is waited for (the store it reads
        is closed next)."""
        if self._copy is not None:
            log.info("waiting for the backup under way to finish")
            await asyncio.wait([self._copy])
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            try:
                self.path.unlink()
            except OSError:
                pass

    async def _backup(self, request: web.Request) -> web.Response:
        try:
            try:
                doc = await request.json()
            except ValueError:
                raise BackupRefused("bad_request", "the body must be JSON") from None
            if not isinstance(doc, dict):
                raise BackupRefused("bad_request", "the body must be a JSON object")
            target = check_target(doc.get("to"), self.data_dir)
            if self._busy:
                raise BackupRefused("rate_limited", "a backup is already running (one at a time)")
        except BackupRefused as exc:
            status = 429 if exc.code == "rate_limited" else 400
            return web.json_response({"error": {"code": exc.code, "message": str(exc)}},
                                     status=status)
        self._busy = True
        log.info("backup to %s started", target)
        try:
            # In a thread: the copy reads the whole store; the node keeps serving
            # and committing on the event loop meanwhile.
            self._copy = asyncio.ensure_future(asyncio.to_thread(
                make_backup, self.store, target, chain=self.chain, node=self.node))
            result = await asyncio.shield(self._copy)
        except Exception as exc:  # a full disk at the target is the operator's to fix
            log.error("backup to %s failed: %s", target, exc)
            return web.json_response({"error": {"code": "unavailable",
                                                "message": f"backup failed: {exc}"}}, status=503)
        finally:
            self._busy = False
            self._copy = None
        log.info("backup to %s done: height %d, %d records, %d bytes in %.1f s", target,
                 result.height, result.records, result.bytes, result.seconds,
                 extra={"backup": asdict(result)})
        return web.json_response(asdict(result))


async def request_backup(data_dir: Path, to: Path, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Ask the node running over ``data_dir`` for a backup into ``to``;
    returns its answer (``{"error": ...}`` on refusal).  Raises OSError /
    aiohttp.ClientError when no node answers."""
    path = socket_path(data_dir)
    connector = aiohttp.UnixConnector(path=str(path))
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.post("http://node" + BACKUP_PATH,
                                json={"to": str(to.absolute())}) as resp:
            answer: dict[str, Any] = await resp.json(content_type=None)
            return answer
