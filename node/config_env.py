"""Configuration from the environment, for containers and service managers.

Two kinds of variable, both read only by ``ledger-node``:

* ``LEDGER_CONFIG=/path/node.toml``: the TOML file, where ``--config`` is
  not given.
* ``LEDGER__SECTION__KEY=value``: one key of the file, overridden; for
  example ``LEDGER__HTTP__HOST=0.0.0.0`` or ``LEDGER__LOG__LEVEL=debug``.
  The value is text; integer keys take a decimal integer.  Each override is
  checked against :data:`node.settings.SCHEMA` like the file, and an unknown
  section or key is refused, naming the variable, so a typo is not silently
  ignored.  Relative paths are relative to the TOML file, as in the file.

Variables are read once at start; :func:`env_overrides` takes the mapping
explicitly so that tests pass their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import ConfigError, check_value
from .settings import SCHEMA

CONFIG_VAR = "LEDGER_CONFIG"
PREFIX = "LEDGER__"
SEPARATOR = "__"


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``{section: {key: value}}`` from the ``LEDGER__SECTION__KEY`` variables.

    Raises :class:`ConfigError` whose ``key`` is the variable's name."""
    out: dict[str, dict[str, Any]] = {}
    for var in sorted(environ):
        if not var.upper().startswith(PREFIX):
            continue
        parts = var[len(PREFIX):].lower().split(SEPARATOR)
        if len(parts) != 2 or not all(parts):
            raise ConfigError(var, f"must be {PREFIX}SECTION{SEPARATOR}KEY")
        section, key = parts
        if section not in SCHEMA:
            raise ConfigError(var, f"unknown section {section!r} (known: {', '.join(SCHEMA)})")
        spec = SCHEMA[section].get(key)
        if spec is None:
            raise ConfigError(var, f"unknown key {section}.{key}")
        out.setdefault(section, {})[key] = check_value(var, _convert(var, environ[var], spec[0]),
                                                       spec)
    return out


def _convert(var: str, text: str, kind: type) -> Any:
    if kind is bool:
        if text.strip().lower() not in ("true", "false"):
            raise ConfigError(var, f"must be true or false, got {text!r}")
        return text.strip().lower() == "true"
    if kind is int:
        stripped = text.strip()
        # Decimal digits only: int() would also take "1_000" and other spellings
        # the TOML file refuses.
        digits = stripped[1:] if stripped[:1] in ("-", "+") else stripped
        if not digits.isascii() or not digits.isdigit():
            raise ConfigError(var, f"must be an integer, got {text!r}")
        return int(stripped)
    return text
