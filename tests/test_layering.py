"""Layers point one way (docs/design.md).  Five rules:

1. ``ledger/`` is pure: it imports none of ``consensus``, ``node``, ``client``,
   nor ``asyncio`` or ``aiohttp``.
2. ``consensus/`` is a sans-I/O state machine: it imports neither ``node`` nor
   ``client``, and no module outside ``consensus/simulation/`` imports I/O
   (``asyncio``, ``aiohttp``, ``socket``, ``plyvel``) or the clock and
   randomness (``time``, ``random``; the simulator seeds its own
   ``random.Random``).
3. ``client/`` (the SDK and the ``ledger-audit`` CLI) never imports ``node``.
4. Harness code (benchmarks, load, fault injection, network namespaces, the
   Byzantine validator, the local test cluster) lives in ``harness/`` and stays
   out of the runtime's import path: no module of ``node/``, ``ledger/``,
   ``consensus/``, ``client/`` or ``monitor/`` imports ``harness``.
5. ``monitor/`` (the risk monitor and fraudsim) never imports ``node`` nor
   ``consensus``: it reads the ledger through ``ledger`` and the SDK.

Every rule is checked on the source of every module with :mod:`ast`, so an
import inside a function (a lazy import) counts as much as one at the top,
relative imports are resolved, and ``__import__("x")`` /
``importlib.import_module("x")`` with a literal name count too.  Rules 1, 3, 4 and 5
are also checked at run time in a fresh interpreter, so indirect imports
count.
"""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEDGER_FORBIDDEN = frozenset({"consensus", "node", "client", "asyncio", "aiohttp"})
CONSENSUS_FORBIDDEN = frozenset({"node", "client"})
CONSENSUS_IO = frozenset({"asyncio", "aiohttp", "socket", "plyvel", "time", "random"})
CLIENT_FORBIDDEN = frozenset({"node"})
MONITOR_FORBIDDEN = frozenset({"node", "consensus"})
RUNTIME_PACKAGES = ("node", "ledger", "consensus", "client", "monitor")
HARNESS_FORBIDDEN = frozenset({"harness"})
# Names of harness modules (their last component): none may live in node/.
HARNESS_PATTERNS = ("bench", "bench_*", "byzantine", "faults", "faults_*", "feeder", "load", "load_*",
                    "localnet", "netns", "netns_*")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _literal_call_target(node: ast.Call) -> str | None:
    """``__import__("x")`` or ``importlib.import_module("x")`` with a literal name."""
    func = node.func
    is_import = (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")
    if (is_import and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return node.args[0].value
    return None


def imported_modules(path: Path, module: str | None = None) -> set[tuple[str, int]]:
    """Every module ``path`` imports anywhere in its body, as absolute dotted
    names with line numbers.  ``from a import b`` yields both ``a`` and
    ``a.b`` (``b`` may be a submodule); relative imports are resolved against
    ``module`` (the dotted name of ``path``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    package = (module or "").split(".") if module else []
    if module and not is_package:
        package = package[:-1]
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add((alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                keep = len(package) - (node.level - 1)
                if keep <= 0 and module is None:
                    continue  # a relative import of an unnamed file: nothing to resolve
                base = package[:max(keep, 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target:
                found.add((target, node.lineno))
            for alias in node.names:
                if alias.name != "*":
                    found.add((f"{target}.{alias.name}" if target else alias.name, node.lineno))
        elif isinstance(node, ast.Call):
            target = _literal_call_target(node)
            if target is not None:
                found.add((target, node.lineno))
    return found


def _roots(path: Path, module: str | None = None) -> set[tuple[str, int]]:
    return {(name.split(".")[0], line) for name, line in imported_modules(path, module)}


def _offenders(paths: list[Path], forbidden: frozenset[str]) -> list[str]:
    out = []
    for path in paths:
        for name, line in sorted(_roots(path, _module_name(path))):
            if name in forbidden:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


def _is_harness(module: str) -> bool:
    """A module named like harness code (HARNESS_PATTERNS) inside node/."""
    parts = module.split(".")
    return parts[0] == "node" and len(parts) >= 2 and any(
        fnmatch.fnmatchcase(parts[1], pattern) for pattern in HARNESS_PATTERNS)


# -- rule 1: ledger ----------------------------------------------------------


def test_ledger_modules_are_found() -> None:
    modules = [_module_name(p) for p in _sources("ledger")]
    for expected in ("ledger", "ledger.merkle", "ledger.verify", "ledger.proofs"):
        assert expected in modules


def test_ledger_sources_import_no_upper_layer_and_no_asyncio() -> None:
    offenders = _offenders(_sources("ledger"), LEDGER_FORBIDDEN)
    assert not offenders, "\n".join(offenders)


def _loaded_after_importing(package: str, forbidden: frozenset[str]) -> subprocess.CompletedProcess[str]:
    modules = [_module_name(p) for p in _sources(package)]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"bad = sorted(m for m in {sorted(forbidden)!r} if m in sys.modules)\n"
        + f"assert not bad, f'{package} loaded {{bad}}'\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)


def test_ledger_never_loads_an_upper_layer_or_asyncio() -> None:
    """At run time, so indirect imports count too."""
    result = _loaded_after_importing("ledger", LEDGER_FORBIDDEN)
    assert result.returncode == 0, result.stderr


# -- rule 2: consensus -------------------------------------------------------


def _consensus_machine_sources() -> list[Path]:
    base = ROOT / "consensus"
    return [p for p in _sources("consensus") if "simulation" not in p.relative_to(base).parts]


def test_consensus_imports_neither_node_nor_client() -> None:
    offenders = _offenders(_sources("consensus"), CONSENSUS_FORBIDDEN)
    assert not offenders, "\n".join(offenders)


def test_consensus_is_sans_io() -> None:
    sources = _consensus_machine_sources()
    assert ROOT / "consensus" / "__init__.py" in sources
    assert ROOT / "consensus" / "machine.py" in sources
    offenders = _offenders(sources, CONSENSUS_IO)
    assert not offenders, "\n".join(offenders)


# -- rule 3: client ----------------------------------------------------------


def test_client_sources_never_import_node() -> None:
    sources = _sources("client")
    assert ROOT / "client" / "audit" / "cli.py" in sources
    offenders = _offenders(sources, CLIENT_FORBIDDEN)
    assert not offenders, "\n".join(offenders)


def test_client_never_loads_node() -> None:
    result = _loaded_after_importing("client", CLIENT_FORBIDDEN)
    assert result.returncode == 0, result.stderr


# -- rule 5: monitor -------------------------------------------------------


def test_monitor_sources_never_import_node() -> None:
    sources = _sources("monitor")
    assert ROOT / "monitor" / "builtin.py" in sources
    offenders = _offenders(sources, MONITOR_FORBIDDEN)
    assert not offenders, "\n".join(offenders)


def test_monitor_never_loads_node() -> None:
    result = _loaded_after_importing("monitor", MONITOR_FORBIDDEN)
    assert result.returncode == 0, result.stderr


# -- rule 4: harness out of the runtime -------------------------------------


def test_harness_modules_live_in_harness() -> None:
    node_modules = {_module_name(p) for p in _sources("node")}
    misplaced = sorted(m for m in node_modules if _is_harness(m))
    assert not misplaced, f"harness code in the runtime package, move it to harness/: {misplaced}"
    harness = {_module_name(p) for p in _sources("harness")}
    assert {"harness.bench", "harness.faults", "harness.byzantine", "harness.localnet",
            "harness.netns", "harness.feeder"} <= harness
    assert {"node.main", "node.app", "node.api", "node.config", "node.cluster"} <= node_modules


def test_runtime_sources_never_import_harness() -> None:
    sources = [p for package in RUNTIME_PACKAGES for p in _sources(package)]
    assert ROOT / "node" / "main.py" in sources
    offenders = _offenders(sources, HARNESS_FORBIDDEN)
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("package", RUNTIME_PACKAGES)
def test_runtime_never_loads_harness(package: str) -> None:
    """At run time, so indirect imports count too."""
    result = _loaded_after_importing(package, HARNESS_FORBIDDEN)
    assert result.returncode == 0, result.stderr


# -- the scanner itself ------------------------------------------------------


@pytest.mark.parametrize(
    "source,module,expected",
    [
        ("import time\n", "pkg.x", {"time"}),
        ("import asyncio.events as ev\n", "pkg.x", {"asyncio"}),
        ("from random import Random\n", "pkg.x", {"random"}),
        ("def f():\n    import socket\n", "pkg.x", {"socket"}),
        ("class C:\n    def m(self):\n        from node import app\n", "pkg.x", {"node"}),
        ("x = __import__('aiohttp')\n", "pkg.x", {"aiohttp"}),
        ("import importlib\nm = importlib.import_module('plyvel')\n", "pkg.x", {"plyvel"}),
        ("from . import time\nfrom .random import x\nimport timeit\n", "pkg.x", set()),
        ("from .. import node\n", "pkg.sub.x", set()),
    ],
)
def test_the_import_scan_itself(tmp_path: Path, source: str, module: str,
                                expected: set[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    roots = {name for name, _ in _roots(path, module)}
    assert roots & (CONSENSUS_IO | LEDGER_FORBIDDEN) == expected


def test_relative_imports_resolve_to_the_harness(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("def run():\n    from . import byzantine\n    from .localnet import X\n")
    names = {name for name, _ in imported_modules(path, "harness.faults")}
    assert {"harness.byzantine", "harness.localnet"} <= names
    assert {name for name, _ in _roots(path, "harness.faults")} == {"harness"}
    assert all(_is_harness(n) for n in ("node.byzantine", "node.localnet", "node.bench_setup"))
    assert not any(_is_harness(n) for n in ("node.app", "node.config", "ledger.bench"))
