"""deploy/systemd/ledger-node@.service: hardened, restarted with a limit, and
accepted by ``systemd-analyze verify`` (and ``security --offline``) where
systemd-analyze is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node.config_env import env_overrides

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "ledger-node@.service"
SYSUSERS = ROOT / "deploy" / "systemd" / "auditledger.sysusers.conf"
INSTALLED = "/opt/auditledger/bin/ledger-node"
# Exposure as systemd-analyze prints it, 0.0 (locked down) to 10.0.
MAX_EXPOSURE = 2.0


def _directives() -> dict[str, list[str]]:
    """{Section.Key: [values]}; systemd allows a key more than once."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def _one(unit: dict[str, list[str]], key: str) -> str:
    values = unit[f"Service.{key}"] if f"Service.{key}" in unit else unit[f"Unit.{key}"]
    assert len(values) == 1, (key, values)
    return values[0]


def test_unit_is_hardened() -> None:
    unit = _directives()
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("PrivateTmp", "yes"), ("ProtectHome", "yes"),
                       ("CapabilityBoundingSet", ""),
                       ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
                       ("User", "auditledger"), ("Group", "auditledger")]:
        assert _one(unit, key) == value, key
    assert int(_one(unit, "LimitNOFILE")) >= 4096
    # The only writable path is the instance's store, and the node uses it.
    store = "/var/lib/auditledger/%i"
    assert _one(unit, "ReadWritePaths") == store
    assert _one(unit, "StateDirectory") == "auditledger/%i"
    env = dict(v.partition("=")[::2] for v in unit["Service.Environment"])
    assert env_overrides(env) == {"node": {"data_dir": store}}
    # The account the sysusers file creates is the one the unit runs as.
    assert SYSUSERS.read_text().split("\n")[-2].split()[:2] == ["u", "auditledger"]


def test_unit_restarts_on_failure_with_a_limit() -> None:
    """A node that fail-stops (say, on a full disk) is restarted after a
    pause, a bounded number of times; a configuration error (exit 2, which a
    restart cannot fix) is not restarted at all."""
    unit = _directives()
    assert _one(unit, "Restart") == "on-failure"
    assert _one(unit, "RestartSec") == "10s"
    assert _one(unit, "RestartPreventExitStatus") == "2"
    assert int(_one(unit, "StartLimitIntervalSec")) >= 60
    assert 1 <= int(_one(unit, "StartLimitBurst")) <= 10
    # The status ledger-node exits with on a configuration error.
    proc = subprocess.run([sys.executable, "-m", "node.main", "--config", "/nonexistent.toml"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "configuration error" in proc.stderr, proc.stderr
    assert _one(unit, "ExecStart") == f"{INSTALLED} --config /etc/auditledger/%i/node.toml"


def _instance(tmp_path: Path) -> Path:
    """The template as instance ``org-a``, with ExecStart pointing at this
    venv's ledger-node instead of /opt/auditledger (verify checks that the
    program exists); nothing else is changed."""
    exe = Path(sys.executable).parent / "ledger-node"
    if not exe.exists():
        pytest.skip(f"no ledger-node next to {sys.executable}")
    path = tmp_path / "ledger-node@org-a.service"
    path.write_text(UNIT.read_text().replace(INSTALLED, str(exe)))
    return path


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    return tool


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = _analyze()
    proc = subprocess.run([tool, "verify", str(_instance(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_systemd_analyze_security_exposure(tmp_path: Path) -> None:
    tool = _analyze()
    proc = subprocess.run([tool, "security", "--offline=yes", "--no-pager",
                           f"--threshold={round(MAX_EXPOSURE * 10)}", str(_instance(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("this systemd-analyze cannot review a unit file offline (systemd < 250)")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    assert proc.returncode == 0 and float(found.group(1)) <= MAX_EXPOSURE, proc.stdout
