"""``ledger-node --config node.toml``: run one validator until SIGINT/SIGTERM.

Exit codes: 0 after a clean stop, 2 for a configuration problem (the message
names the bad key) or a store of a schema version this release does not read
(written by a newer release), 1 when the node cannot start (store locked or damaged,
port in use); while running, 3 when a write to the store failed (disk full,
I/O error) and 4 when committing or persisting failed otherwise - the node
stops at once with one CRITICAL log line naming the cause (node/failstop.py).

The file may instead be named by ``LEDGER_CONFIG``, and
``LEDGER__SECTION__KEY=value`` variables override its keys
(``node/config_env.py``).  ``LEDGER_KEY_SEED_FD=<n>`` reads the validator
key file's text from inherited descriptor n instead of ``node.key_file``.
Before serving, node/startup.py refuses (exit 2) a key file readable by
others, another validator's key, a listen address that is not the genesis
address, and a TLS certificate that does not match its key or has expired.

``ledger-node --config node.toml --check`` checks the (stopped) node's store
instead - every block and index entry (``node/check.py``): 0 clean, 1 damaged,
2 usage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import click
import plyvel

from ledger.errors import LedgerError, SchemaUnsupported
from ledger.native import description as native_description

from .config import RETIRED, ConfigError, NodeConfig, load_config
from .config_env import CONFIG_VAR, env_overrides
from .logs import LogContext, setup_logging
from .memtune import fix_mmap_threshold, limit_malloc_arenas
from .startup import startup_checks

if TYPE_CHECKING:
    from .app import Node

log = logging.getLogger("node.main")

# An inherited file descriptor holding the validator key file's text (for
# secret stores that hand keys over a pipe rather than a file on disk).
KEY_FD_VAR = "LEDGER_KEY_SEED_FD"


# Builds the node _serve runs: node.app.Node itself, or (harness/byzantine.py)
# a function that builds one and wraps its behaviour before it starts.
NodeFactory = Callable[[NodeConfig, LogContext], "Node"]


def run(config: NodeConfig, make_node: NodeFactory | None = None) -> int:
    """Serve ``config`` until SIGINT/SIGTERM on the configured event loop and
    return the exit code; ``make_node`` builds the node (default
    :class:`node.app.Node`)."""
    return _event_loop_runner(config)(_serve(config, make_node))


async def _serve(config: NodeConfig, make_node: NodeFactory | None = None) -> int:
    from .app import Node  # imported late: a config error should not pay for aiohttp

    ctx = LogContext(node=config.name)
    setup_logging(ctx, config.settings.log.level)
    _log_event_loop(config)
    _tune_malloc(config)
    _warn_retired(config)
    if config.tls is None and config.settings.tls.insecure_plaintext:
        log.warning("tls.insecure_plaintext = true: the API and peer links are plain HTTP and "
                    "WebSocket, readable and alterable by anyone on the network; use it for "
                    "local demos only")
    if config.settings.auth.insecure_open:
        log.warning("auth.insecure_open = true: every route answers anyone, without request "
                    "signatures or roles; use it for local demos and tests only")
    log.info("records: decoding and signature batches in %s", native_description)
    node = (make_node or Node)(config, ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except SchemaUnsupported as exc:  # not damage: another release's store, left untouched
        log.error("cannot start: %s (%s)", exc, config.data_dir / "chain")
        await node.stop()
        return 2
    except (LedgerError, OSError) as exc:
        log.error("cannot start: %s", exc)
        await node.stop()
        return 1
    except plyvel.CorruptionError as exc:  # a damaged LevelDB table file
        log.error("cannot start: storage is damaged (LevelDB at %s): %s",
                  config.data_dir / "chain", exc)
        await node.stop()
        return 1
    log.info("serving on %s://%s:%d", "https" if config.tls else "http", config.host,
             config.port)
    await stop.wait()
    log.info("stopping")
    await node.stop()
    return 0


@click.group(invoke_without_command=True)
@click.version_option(package_name="auditledger", prog_name="ledger-node")
@click.option("--config", "config_path", envvar=CONFIG_VAR, show_envvar=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="the node's TOML file; LEDGER__SECTION__KEY=value variables override its keys")
@click.option("--check", is_flag=True,
              help="check the stopped node's store (every block and index entry) and exit: "
                   "0 clean, 1 damaged, 2 in use by a running node or another schema version")
@click.option("--signatures", is_flag=True,
              help="with --check: also verify every record's signature (slower)")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, check: bool, signatures: bool) -> None:
    """Run one ledger validator node (or, with --check, check its store).

    Operator commands: backup (a running node copies its store), restore
    (check a backup and put it in place)."""
    if ctx.invoked_subcommand is not None:
        given = ctx.get_parameter_source("config_path") == click.core.ParameterSource.COMMANDLINE
        if given or check or signatures:
            raise click.UsageError("give --config after the command: "
                                   f"ledger-node {ctx.invoked_subcommand} --config ...")
        return
    if config_path is None:
        raise click.UsageError("Missing option '--config' (or LEDGER_CONFIG).")
    if signatures and not check:
        raise click.UsageError("--signatures only applies with --check")
    try:
        if check:
            code = _check(config_path, signatures)
        else:
            key_fd = _key_fd(os.environ)
            config = load_config(config_path, env_overrides(os.environ), key_fd=key_fd)
            config = replace(config, tls=startup_checks(config, key_from_fd=key_fd is not None))
            code = run(config)
    except ConfigError as exc:
        click.echo(f"ledger-node: configuration error: {exc}", err=True)
        sys.exit(2)
    sys.exit(code)


def _key_fd(environ: Mapping[str, str]) -> int | None:
    """``LEDGER_KEY_SEED_FD``: an inherited descriptor to read the key file from."""
    text = environ.get(KEY_FD_VAR)
    if text is None:
        return None
    if not text.strip().isdigit():
        raise ConfigError(KEY_FD_VAR, "must be a file descriptor number")
    return int(text)


_config_option = click.option(
    "--config", "config_path", required=True, envvar=CONFIG_VAR, show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path), help="the node's TOML file")


@main.command()
@_config_option
@click.option("--to", "to", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the backup directory: absent or empty, outside the data dir, writable "
                   "by the node's account")
def backup(config_path: Path, to: Path) -> None:
    """Ask the running node to copy its store (consistent, while it serves).

    Exit codes: 0 done, 1 failed or no node running, 2 refused or usage."""
    from .backup import request_backup

    config = _load_or_exit(config_path)
    try:
        answer = asyncio.run(request_backup(config.data_dir, to))
    except (OSError, aiohttp.ClientError) as exc:
        click.echo(f"ledger-node backup: no running node answers on "
                   f"{config.data_dir / 'admin.sock'}: {exc}", err=True)
        sys.exit(1)
    error = answer.get("error")
    if isinstance(error, dict):
        click.echo(f"ledger-node backup: {error.get('code')}: {error.get('message')}", err=True)
        sys.exit(1 if error.get("code") == "unavailable" else 2)
    click.echo(f"backup of {answer['node']} at height {answer['height']} "
               f"({answer['records']} records, {answer['bytes']} bytes) written to "
               f"{answer['to']} in {answer['seconds']:.1f} s")


@main.command()
@_config_option
@click.option("--from", "source", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="a directory written by ledger-node backup")
@click.option("--to", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="the data dir to restore into (default: node.data_dir of --config)")
@click.option("--force", is_flag=True,
              help="replace a store already there (moved aside, not deleted)")
def restore(config_path: Path, source: Path, data_dir: Path | None, force: bool) -> None:
    """Check a backup (as --check does) and make it the node's store.

    Exit codes: 0 restored, 1 the backup is damaged, 2 refused or usage."""
    from rich.console import Console

    from .restore import restore as run_restore

    config = _load_or_exit(config_path)
    sys.exit(run_restore(source, data_dir or config.data_dir, config.genesis,
                         Console(soft_wrap=True), force=force))


def _load_or_exit(config_path: Path) -> NodeConfig:
    try:
        return load_config(config_path, env_overrides(os.environ))
    except ConfigError as exc:
        click.echo(f"ledger-node: configuration error: {exc}", err=True)
        sys.exit(2)


def _event_loop_runner(config: NodeConfig) -> Callable[[Coroutine[Any, Any, int]], int]:
    """``uvloop.run`` or ``asyncio.run``, as ``node.event_loop`` says."""
    if config.settings.node.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run
    return asyncio.run


def _log_event_loop(config: NodeConfig) -> None:
    loop = type(asyncio.get_running_loop())
    name = f"{loop.__module__}.{loop.__qualname__}"
    if config.settings.node.event_loop == "uvloop" and not loop.__module__.startswith("uvloop"):
        log.warning("event loop: uvloop is not installed; running on %s", name)
    else:
        log.info("event loop: %s", name)


def _tune_malloc(config: NodeConfig) -> None:
    """glibc's malloc settings (node/memtune.py), before any thread starts
    (the verify executor, LevelDB's, sync's): a thread takes its malloc
    arena at its first allocation."""
    arenas = config.settings.limits.malloc_arenas
    threshold = config.settings.limits.malloc_mmap_threshold_bytes
    done = []
    if limit_malloc_arenas(arenas):
        done.append(f"arenas capped at {arenas}")
    if fix_mmap_threshold(threshold):
        done.append(f"blocks from {threshold} bytes mapped on their own")
    if done:
        log.info("malloc: %s", ", ".join(done))
    elif arenas or threshold:
        log.info("malloc: this C library has no arena cap or mmap threshold; left as is")


def _warn_retired(config: NodeConfig) -> None:
    """One warning per retired key node.toml still sets (node.config.RETIRED):
    the node starts, and the operator learns the key does nothing now."""
    for name in config.retired:
        log.warning("config: %s is ignored: %s", name, RETIRED[name])


def _check(config_path: Path, signatures: bool) -> int:
    from rich.console import Console

    from .check import run_check

    # soft_wrap: a path or key is never broken in two (the terminal wraps).
    return run_check(load_config(config_path, env_overrides(os.environ)),
                     Console(soft_wrap=True), signatures=signatures)


if __name__ == "__main__":
    main()
