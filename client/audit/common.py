"""Helpers shared by ``ledger-audit`` commands: reading input files with the
CLI's exit-status contract, and printing results.

Exit status: 0 valid, 1 invalid (a :class:`~ledger.errors.VerificationError`
names the failed step), 2 usage errors and input that cannot be read as a
document at all: unreadable, not UTF-8, not JSON, nested too deeply, a
malformed genesis (click's own usage errors already exit 2).  A document
that parses but is not what it should be is a failed verification (1).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from ledger.errors import GenesisError, VerificationError
from ledger.genesis import Genesis, parse_genesis

from .show import untrusted

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


def decode_json(raw: bytes) -> Any:
    """A JSON document from UTF-8 bytes; ``ValueError`` with a message when
    it is not one: not UTF-8, not JSON, an object with a duplicate key (two
    parsers could read two different documents from it), or nested deeper
    than the parser's recursion limit."""
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except RecursionError:
        # json raises it cleanly at its recursion limit; no document this CLI
        # reads is nested more than a few levels.
        raise ValueError("nested too deeply to be read") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"not valid JSON: {exc}") from None


def read_json(path: Path | str, param_hint: str) -> Any:
    """The JSON document at ``path`` (``-`` is stdin), or a usage error (exit 2)."""
    return _parse_file(path, _read_bytes(path, param_hint), param_hint)


def _read_bytes(path: Path | str, param_hint: str) -> bytes:
    try:
        if str(path) == "-":
            return sys.stdin.buffer.read()
        return Path(path).read_bytes()
    except OSError as exc:
        raise click.BadParameter(untrusted(f"cannot read {path}: {exc.strerror or exc}").plain,
                                 param_hint=param_hint) from None


def _parse_file(path: Path | str, raw: bytes, param_hint: str) -> Any:
    try:
        return decode_json(raw)
    except ValueError as exc:
        raise click.BadParameter(untrusted(f"{path} is {exc}").plain, param_hint=param_hint) from None


@dataclass(frozen=True)
class GenesisFile:
    """The auditor's genesis file: parsed, and the SHA-256 of its bytes (the
    digest to compare with the one the chain's operators publish)."""

    genesis: Genesis
    sha256: str


def load_genesis_file(path: Path | str, param_hint: str = "'--genesis'") -> GenesisFile:
    """The parsed genesis file, or a usage error (exit 2): without a genesis
    the auditor has nothing to check against."""
    raw = _read_bytes(path, param_hint)
    doc = _parse_file(path, raw, param_hint)
    try:
        genesis = parse_genesis(doc)
    except GenesisError as exc:
        raise click.BadParameter(untrusted(f"{path} is not a valid genesis file: {exc}").plain,
                                 param_hint=param_hint) from None
    return GenesisFile(genesis, hashlib.sha256(raw).hexdigest())


def iso8601_ms(ms: int) -> str:
    """Milliseconds since the Unix epoch as ISO-8601 UTC, e.g. ``2023-11-14T22:13:21.000Z``."""
    try:
        moment = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return f"{ms} ms after the epoch"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def console() -> Console:
    """A console on the current stdout: no wrapping, no markup guessing.

    Markup is off: a string printed here is shown as it is, so text from a
    record or a node can never be read as markup, even by mistake.  Styled
    output is built as :class:`~rich.text.Text`, with what others wrote
    inside it through :func:`~client.audit.show.untrusted`.  Piped output
    gets a wide fixed width, so trees and tables are not cropped at 80
    columns in logs and files.
    """
    width = None if sys.stdout.isatty() else 400
    return Console(soft_wrap=True, highlight=False, emoji=False, markup=False, width=width)


def print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, sort_keys=False))


def fail_invalid(exc: VerificationError, as_json: bool, **extra: Any) -> NoReturn:
    """Report a failed verification and exit 1."""
    if as_json:
        print_json({"valid": False, "step": exc.step, "error": exc.code,
                    "message": exc.message, **extra})
    else:
        console().print(Text.assemble(("INVALID", "bold red"), f" at step '{exc.step}': ",
                                      untrusted(exc.message)))
    click.get_current_context().exit(EXIT_INVALID)
    raise AssertionError("unreachable")  # ctx.exit raises
