"""Helpers shared by ``ledger-audit`` commands: reading input files with the
CLI's exit-status contract, and printing results.

Exit status: 0 valid, 1 invalid (a :class:`~ledger.errors.VerificationError`
names the failed step), 2 usage errors and unreadable or malformed input
files (click's own usage errors already exit 2).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from ledger.errors import GenesisError, VerificationError
from ledger.genesis import Genesis, parse_genesis

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_json(path: Path | str, param_hint: str) -> Any:
    """The JSON document at ``path`` (``-`` is stdin), or a usage error (exit 2).

    Objects with a duplicate key are refused: two parsers could read two
    different documents from them.
    """
    try:
        if str(path) == "-":
            raw = sys.stdin.buffer.read()
        else:
            raw = Path(path).read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}",
                                 param_hint=param_hint) from None
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text", param_hint=param_hint) from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise click.BadParameter(f"{path} is not valid JSON: {exc}",
                                 param_hint=param_hint) from None


def load_genesis_file(path: Path | str, param_hint: str = "'--genesis'") -> Genesis:
    """The parsed genesis file, or a usage error (exit 2): without a genesis
    the auditor has nothing to check against."""
    doc = read_json(path, param_hint)
    try:
        return parse_genesis(doc)
    except GenesisError as exc:
        raise click.BadParameter(f"{path} is not a valid genesis file: {exc}",
                                 param_hint=param_hint) from None


def iso8601_ms(ms: int) -> str:
    """Milliseconds since the Unix epoch as ISO-8601 UTC, e.g. ``2023-11-14T22:13:21.000Z``."""
    try:
        moment = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return f"{ms} ms after the epoch"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def console() -> Console:
    """A console on the current stdout: no wrapping, no markup guessing.

    Piped output gets a wide fixed width, so trees and tables are not
    cropped at 80 columns in logs and files.
    """
    width = None if sys.stdout.isatty() else 400
    return Console(soft_wrap=True, highlight=False, emoji=False, width=width)


def print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, sort_keys=False))


def fail_invalid(exc: VerificationError, as_json: bool, **extra: Any) -> NoReturn:
    """Report a failed verification and exit 1."""
    if as_json:
        print_json({"valid": False, "step": exc.step, "error": exc.code,
                    "message": exc.message, **extra})
    else:
        line = Text()
        line.append("INVALID", style="bold red")
        line.append(f" at step '{exc.step}': {exc.message}")
        console().print(line)
    click.get_current_context().exit(EXIT_INVALID)
    raise AssertionError("unreachable")  # ctx.exit raises
