"""deploy/prometheus/alerts.yml and deploy/grafana/auditledger.json: promtool
accepts the rules and their unit tests pass, every alert carries a summary,
a description and a runbook note in docs/operators.md, and every metric the
dashboard and the rules name is one a live node exposes
(tests/test_metrics_live.py checks that part against a running cluster)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "auditledger.json"
OPERATORS = ROOT / "docs" / "operators.md"
METRIC_NAME = re.compile(r"\bledger_[a-z0-9_]+\b")


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def referenced_metrics() -> set[str]:
    """Every ledger_* name in the dashboard's and the rules' PromQL."""
    exprs = _dashboard_exprs() + [r["expr"] for r in _rules()]
    return {m for e in exprs for m in METRIC_NAME.findall(e)}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; scripts/test "
                    "installs it when run as root)")
    return path


def test_promtool_accepts_the_rules() -> None:
    out = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in out.stdout


def test_each_alert_fires_in_promtool_unit_tests() -> None:
    out = subprocess.run([_promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == {r["alert"] for r in _rules()}


def test_each_alert_has_a_summary_description_and_runbook() -> None:
    docs = OPERATORS.read_text()
    section = docs[docs.index("## Metrics, dashboard and alerts"):]
    section = section[:section.index("\n## ", 1)]
    for rule in _rules():
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], rule["alert"]
        assert rule["alert"] in ann["runbook"]
        assert f"`{rule['alert']}`" in section, f"no runbook note for {rule['alert']}"


def test_dashboard_is_grafana_json_with_the_panels_operators_need() -> None:
    doc = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"] for p in doc["panels"]).lower()
    for want in ("committed", "height", "submit-to-commit", "mempool", "peer lag",
                 "peers connected", "rejections", "http latency", "status", "health"):
        assert want in titles, want
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["targets"] for p in doc["panels"])


def test_every_named_metric_is_documented() -> None:
    docs = OPERATORS.read_text()
    for name in referenced_metrics():
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert f"`{base}`" in docs, f"{base} is not in docs/operators.md's metrics table"
