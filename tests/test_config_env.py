"""``LEDGER_CONFIG`` and ``LEDGER__SECTION__KEY`` (node/config_env.py): the
environment overrides node.toml's keys, validated like the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.cluster import init_cluster
from node.config import ConfigError, load_config
from node.config_env import env_overrides


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    init_cluster(tmp_path, 4, base_port=7800)
    return tmp_path


def test_overrides_replace_the_files_values(cluster: Path, tmp_path: Path) -> None:
    env = {"LEDGER__HTTP__HOST": "0.0.0.0", "LEDGER__HTTP__PORT": "7801",
           "LEDGER__LOG__LEVEL": "debug", "LEDGER__LIMITS__MAX_MEMPOOL": " 1234 ",
           "LEDGER__NODE__DATA_DIR": str(tmp_path / "store"),
           "LEDGER__CONSENSUS__TIMEOUT_PROPOSE_MS": "250",
           "PATH": "/usr/bin", "LEDGER_CONFIG": "ignored-here"}
    cfg = load_config(cluster / "node1" / "node.toml", env_overrides(env))
    assert cfg.host == "0.0.0.0" and cfg.port == 7801
    assert cfg.settings.log.level == "debug"
    assert cfg.settings.limits.max_mempool == 1234
    assert cfg.data_dir == tmp_path / "store"
    assert cfg.timeout_ms("timeout_propose_ms") == 250
    # Keys not overridden keep the file's values or the defaults.
    assert cfg.settings.gossip.batch == 500 and cfg.settings.storage.max_open_files == 4096


def test_no_variables_change_nothing(cluster: Path) -> None:
    path = cluster / "node2" / "node.toml"
    assert env_overrides({"HOME": "/root", "LEDGER_CONFIG": str(path)}) == {}
    assert load_config(path, {}).settings == load_config(path).settings


def test_a_relative_path_is_relative_to_the_file(cluster: Path) -> None:
    cfg = load_config(cluster / "node0" / "node.toml",
                      env_overrides({"LEDGER__NODE__DATA_DIR": "elsewhere"}))
    assert cfg.data_dir == (cluster / "node0" / "elsewhere").resolve()


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("LEDGER__HTTP__PORT", "x", "must be an integer, got 'x'"),
        ("LEDGER__HTTP__PORT", "1_000", "must be an integer"),
        ("LEDGER__HTTP__PORT", "7e3", "must be an integer"),
        ("LEDGER__HTTP__PORT", "", "must be an integer"),
        ("LEDGER__HTTP__PORT", "0", "must be in 1..65535, got 0"),
        ("LEDGER__LIMITS__MAX_MEMPOOL", "-1", "must be in 1..10000000"),
        ("LEDGER__LOG__LEVEL", "", "must be a non-empty string"),
        ("LEDGER__HTTP__PROT", "7801", "unknown key http.prot"),
        ("LEDGER__HTTTP__PORT", "7801", "unknown section 'htttp'"),
        ("LEDGER__HTTP", "7801", "must be LEDGER__SECTION__KEY"),
        ("LEDGER__HTTP__PORT__X", "7801", "must be LEDGER__SECTION__KEY"),
        ("LEDGER____PORT", "7801", "must be LEDGER__SECTION__KEY"),
    ],
)
def test_a_bad_variable_is_named(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        env_overrides({var: value})
    assert info.value.key == var
    assert message in str(info.value)


def test_choices_are_checked_after_merging(cluster: Path) -> None:
    """Enumerated values and cross-key rules are the file's own checks."""
    for env, key in [({"LEDGER__LOG__LEVEL": "loud"}, "log.level"),
                     ({"LEDGER__PEERS__RECONNECT_MAX_MS": "10"}, "peers.reconnect_max_ms")]:
        with pytest.raises(ConfigError) as info:
            load_config(cluster / "node1" / "node.toml", env_overrides(env))
        assert info.value.key == key


def _ledger_node(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER")}
    return subprocess.run([sys.executable, "-m", "node.main", *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_ledger_node_reads_the_environment(cluster: Path) -> None:
    """LEDGER_CONFIG stands for --config, and a bad override is exit 2 naming
    the variable (it stops before serving, so no port is taken)."""
    path = str(cluster / "node0" / "node.toml")
    proc = _ledger_node({"LEDGER_CONFIG": path, "LEDGER__HTTP__PORT": "none"})
    assert proc.returncode == 2, proc.stderr
    assert "LEDGER__HTTP__PORT: must be an integer, got 'none'" in proc.stderr
    proc = _ledger_node({"LEDGER__LOG__LEVLE": "debug"}, "--config", path)
    assert proc.returncode == 2 and "LEDGER__LOG__LEVLE: unknown key log.levle" in proc.stderr
    proc = _ledger_node({})
    assert proc.returncode == 2 and "LEDGER_CONFIG" in proc.stderr  # click's usage error


def test_check_sees_the_overridden_data_dir(cluster: Path, tmp_path: Path) -> None:
    """--check opens the store the node would serve from, not the file's."""
    store = tmp_path / "not-here"
    proc = _ledger_node({"LEDGER_CONFIG": str(cluster / "node0" / "node.toml"),
                         "LEDGER__NODE__DATA_DIR": str(store)}, "--check")
    assert proc.returncode == 2 and f"no store to check at {store}" in proc.stderr, proc.stderr
