"""Layers point one way (docs/DESIGN.md).

* ``ledger/`` is pure: importing every module of it, in a fresh interpreter,
  loads neither asyncio nor aiohttp (checked at run time, so indirect imports
  count too).
* ``consensus/`` is a sans-I/O state machine: no module outside
  ``consensus/simulation/`` imports asyncio, aiohttp, time, random or socket
  (checked on the source, so it holds while consensus/ is being written; the
  simulator seeds its own ``random.Random``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEDGER_FORBIDDEN = ("asyncio", "aiohttp")
CONSENSUS_FORBIDDEN = frozenset({"asyncio", "aiohttp", "time", "random", "socket"})


def _modules(package: str) -> list[str]:
    base = ROOT / package
    names = []
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _imported_roots(path: Path) -> set[tuple[str, int]]:
    """Top-level module names imported by ``path`` (absolute imports only), with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add((alias.name.split(".")[0], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "__import__" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add((node.args[0].value.split(".")[0], node.lineno))
    return found


def test_ledger_modules_are_found() -> None:
    modules = _modules("ledger")
    for expected in ("ledger", "ledger.merkle", "ledger.verify", "ledger.proofs"):
        assert expected in modules


def test_ledger_never_loads_asyncio_or_aiohttp() -> None:
    modules = _modules("ledger")
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"bad = [m for m in {LEDGER_FORBIDDEN!r} if m in sys.modules]\n"
        + "assert not bad, f'ledger imported {bad}'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_ledger_sources_do_not_import_asyncio_or_aiohttp() -> None:
    """The same rule on the source, so a lazy import inside a function counts too."""
    offenders = []
    for path in sorted((ROOT / "ledger").rglob("*.py")):
        for name, line in _imported_roots(path):
            if name in LEDGER_FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, "\n".join(offenders)


def _consensus_sources() -> list[Path]:
    base = ROOT / "consensus"
    return [p for p in sorted(base.rglob("*.py"))
            if "simulation" not in p.relative_to(base).parts]


def test_consensus_is_sans_io() -> None:
    sources = _consensus_sources()
    assert ROOT / "consensus" / "__init__.py" in sources
    offenders = []
    for path in sources:
        for name, line in sorted(_imported_roots(path)):
            if name in CONSENSUS_FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize(
    "source,bad",
    [
        ("import time\n", {"time"}),
        ("import asyncio.events as ev\n", {"asyncio"}),
        ("from random import Random\n", {"random"}),
        ("def f():\n    import socket\n", {"socket"}),
        ("x = __import__('aiohttp')\n", {"aiohttp"}),
        ("from . import time\nfrom .random import x\nimport timeit\n", set()),
    ],
)
def test_the_import_scan_itself(tmp_path: Path, source: str, bad: set[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert {name for name, _ in _imported_roots(path)} & CONSENSUS_FORBIDDEN == bad
