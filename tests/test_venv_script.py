"""``source scripts/_venv.sh`` leaves the caller's shell options alone.

Operators source it in an interactive shell; it used to leave ``set -euo
pipefail`` behind, so the next failing command closed the terminal.  The
script runs here against a scratch root whose ``.venv/bin/python`` is a stub
(the "install" is a no-op), so no real virtualenv is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")

# What the shell's options look like, printed between markers.
SHOW = 'echo "flags=$-"; set +o; shopt -p'


def _scratch_root(tmp_path: Path, python_exit: int) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_venv.sh", root / "scripts" / "_venv.sh")
    (root / "ledger").mkdir()
    for name in ("setup.cfg", "pyproject.toml", "setup.py", "ledger/_native.c"):
        (root / name).write_text("# stub\n")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\nexit {python_exit}\n")
    python.chmod(0o755)
    return root


def _run(script: str) -> subprocess.CompletedProcess[str]:
    assert BASH is not None
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_EXTRAS"}
    return subprocess.run([BASH, "-c", script], capture_output=True, text=True, env=env,
                          timeout=60)


def _options(output: str, marker: str) -> str:
    return output.split(f"--{marker}--\n", 1)[1].split("--end--\n", 1)[0]


@pytest.mark.parametrize("setup", ["", "set -u", "set -e -o pipefail", "set -o noclobber"])
def test_sourcing_keeps_the_callers_options(tmp_path: Path, setup: str) -> None:
    root = _scratch_root(tmp_path, python_exit=0)
    result = _run(
        f"{setup}\n"
        f"echo --before--; {SHOW}; echo --end--\n"
        f"source {root}/scripts/_venv.sh\n"
        f"echo --after--; {SHOW}; echo --end--\n"
        'echo "PATH0=${PATH%%:*}"\n'
    )
    assert result.returncode == 0, result.stderr
    before = _options(result.stdout, "before")
    after = _options(result.stdout, "after")
    assert before == after
    assert f"PATH0={root}/.venv/bin" in result.stdout
    # The stub "install" ran and left its stamp, so the work really happened.
    assert list((root / ".venv").glob(".auditledger-*"))


def test_a_failed_install_returns_an_error_and_keeps_the_shell(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path, python_exit=3)
    result = _run(
        f"echo --before--; {SHOW}; echo --end--\n"
        f"source {root}/scripts/_venv.sh; echo \"status=$?\"\n"
        "false\n"
        f"echo --after--; {SHOW}; echo --end--\n"
    )
    assert result.returncode == 0, result.stderr
    assert "status=1" in result.stdout
    assert "could not prepare" in result.stderr
    assert _options(result.stdout, "before") == _options(result.stdout, "after")


def test_scripts_set_their_own_strict_mode() -> None:
    """The scripts that run it as a program still stop at the first error."""
    sourcing = [p for p in sorted((ROOT / "scripts").iterdir())
                if p.is_file() and '/_venv.sh"' in p.read_text(errors="replace")]
    assert {p.name for p in sourcing} >= {"demo", "test"}
    for path in sourcing:
        lines = path.read_text().splitlines()
        source_at = next(i for i, line in enumerate(lines) if "_venv.sh" in line
                         and line.lstrip().startswith("source"))
        assert "set -euo pipefail" in lines[:source_at], path.name
