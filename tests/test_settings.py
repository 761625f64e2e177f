"""node/settings.py: the settings classes are the one definition of every
node.toml key, and a node's configuration is an instance of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from node import settings
from node.cluster import init_cluster
from node.config import ConfigError, load_config, parse_settings


def test_the_schema_is_derived_from_the_fields() -> None:
    port = next(f for f in dataclasses.fields(settings.HttpSettings) if f.name == "port")
    assert settings.SCHEMA["http"]["port"] == (int, None, 1, 65535)
    assert port.metadata["lo"] == 1 and port.metadata["hi"] == 65535
    assert settings.DESCRIPTIONS["http.port"] == port.metadata["doc"]
    assert list(settings.SCHEMA) == [f.name for f in dataclasses.fields(settings.Settings)]
    assert settings.REQUIRED == {"node.name", "node.key_file", "http.port"}
    for section, cls in settings.SECTION_CLASSES.items():
        assert list(settings.SCHEMA[section]) == [f.name for f in dataclasses.fields(cls)]


def test_a_config_holds_typed_frozen_sections(tmp_path: Path) -> None:
    init_cluster(tmp_path, 1, base_port=27000)
    cfg = load_config(tmp_path / "node0" / "node.toml", {"limits": {"max_mempool": 777}})
    assert isinstance(cfg.settings.limits, settings.LimitsSettings)
    assert cfg.settings.limits.max_mempool == 777
    assert cfg.settings.gossip.batch == settings.SCHEMA["gossip"]["batch"][1]
    assert cfg.settings.consensus.timeout_propose_ms is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.settings.limits.max_mempool = 1  # type: ignore[misc]


def test_required_keys_and_ranges_keep_their_messages() -> None:
    with pytest.raises(ConfigError, match=r"^node\.name: is required$"):
        parse_settings({"http": {"port": 1}})
    with pytest.raises(ConfigError, match=r"^http\.port: must be in 1\.\.65535, got 0$"):
        parse_settings({"node": {"name": "a", "key_file": "k"}, "http": {"port": 0}})
