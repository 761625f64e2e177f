"""docs/operators.md lists every ``node.toml`` key, as generated from the schema.

A key added to ``node.config.SCHEMA`` fails these tests until it has a
description in ``node/config_reference.py`` and the reference is regenerated:
``python -m node.config_reference --write docs/operators.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

from node import config, config_reference

ROOT = Path(__file__).resolve().parent.parent
OPERATORS = ROOT / "docs" / "operators.md"


def _schema_keys() -> list[str]:
    return [f"{section}.{key}" for section, keys in config.SCHEMA.items() for key in keys]


def test_every_schema_key_is_in_operators_md() -> None:
    text = OPERATORS.read_text(encoding="utf-8")
    missing = [name for name in _schema_keys() if f"`{name}`" not in text]
    assert not missing, f"not in docs/operators.md: {missing}"


def test_every_schema_key_has_a_description() -> None:
    keys = _schema_keys()
    undescribed = [name for name in keys if name not in config_reference.DESCRIPTIONS]
    stale = sorted(set(config_reference.DESCRIPTIONS) - set(keys))
    assert not undescribed, f"describe in node/config_reference.py: {undescribed}"
    assert not stale, f"described but not in the schema: {stale}"
    assert set(config_reference.SECTIONS) == set(config.SCHEMA)


def test_operators_md_holds_the_current_reference() -> None:
    text = OPERATORS.read_text(encoding="utf-8")
    assert config_reference.replace_in(text) == text, (
        "stale: run python -m node.config_reference --write docs/operators.md")


def test_the_reference_states_each_default_and_range() -> None:
    """Spot checks against the schema itself, so the generator cannot print nonsense."""
    doc = config_reference.render()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_.]+)` \|.*$", doc, re.M)}
    assert set(rows) == set(_schema_keys())
    assert "| integer 1..65535 | **required** |" in rows["http.port"]
    assert '| `"uvloop"` \\| `"asyncio"` | `"uvloop"` |' in rows["node.event_loop"]
    assert "storage.table_reads" not in rows  # retired (node.config.RETIRED)
    cache = config.SCHEMA["storage"]["block_cache_bytes"][1]
    assert f"| {cache} (" in rows["storage.block_cache_bytes"]
    assert "chain param `timeout_propose_ms` in force, else 3000" \
        in rows["consensus.timeout_propose_ms"]


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "operators.md"
    stale.write_text(f"intro\n{config_reference.BEGIN}\nOLD-REFERENCE\n{config_reference.END}\nafter\n")
    assert config_reference.main(["--check", str(stale)]) == 1
    assert config_reference.main(["--write", str(stale)]) == 0
    assert config_reference.main(["--check", str(stale)]) == 0
    text = stale.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "OLD-REFERENCE" not in text
