"""Which C accelerators this process uses.

``ledger._native`` (ledger/_native.c, built by setup.py where a C compiler
is present) speeds up the two per-record hot spots of a node: decoding a
canonical record and checking a batch of signatures.  The Python code it
replaces stays the reference and the fallback: without the module, or with
``AUDITLEDGER_PURE_PYTHON=1`` in the environment (read once, at import, as
msgpack's ``MSGPACK_PUREPYTHON``), every path is pure Python and behaves the
same, only slower.
"""

from __future__ import annotations

import os
from types import ModuleType

PURE_PYTHON_ENV = "AUDITLEDGER_PURE_PYTHON"


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None, f"pure Python ({PURE_PYTHON_ENV} is set)"
    try:
        from . import _native
    except ImportError as exc:
        return None, f"pure Python (ledger._native is not built: {exc})"
    return _native, "C (ledger._native)"


native, description = _load()
"""The C module, or None; and one line saying which, for logs and reports."""
