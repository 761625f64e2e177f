"""The etcd peer scenario's pieces (harness/bench_etcd.py), without etcd: member
command lines, request bodies, what counts as acknowledged, the figures and
the ratio, the skip where etcd is missing, and ``--only etcd`` on the
command line."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness import bench, bench_etcd
from harness.bench_etcd import (committed_ops, member_command, member_urls, ratio, steady_rate,
                                summarize, txn_body)
from harness.bench_setup import envelope_bytes


def test_members_listen_on_loopback_with_their_own_ports() -> None:
    urls = member_urls(20000)
    assert urls == [("http://127.0.0.1:20000", "http://127.0.0.1:20001"),
                    ("http://127.0.0.1:20002", "http://127.0.0.1:20003"),
                    ("http://127.0.0.1:20004", "http://127.0.0.1:20005")]


def test_member_command_forms_one_cluster_with_fsync_left_on(tmp_path: Path) -> None:
    urls = member_urls(20000)
    cmd = member_command("/usr/bin/etcd", tmp_path, 1, urls)
    args = dict(zip(cmd[1::2], cmd[2::2]))
    assert cmd[0] == "/usr/bin/etcd"
    assert args["--name"] == "m1" and args["--data-dir"] == str(tmp_path / "m1")
    assert args["--listen-client-urls"] == args["--advertise-client-urls"] == urls[1][0]
    assert args["--listen-peer-urls"] == args["--initial-advertise-peer-urls"] == urls[1][1]
    assert args["--initial-cluster"] == ("m0=http://127.0.0.1:20001,m1=http://127.0.0.1:20003,"
                                         "m2=http://127.0.0.1:20005")
    assert args["--initial-cluster-state"] == "new"
    assert not [a for a in cmd if "fsync" in a or "unsafe" in a]  # synced WAL, etcd's default


def test_txn_body_puts_unique_keys_of_the_given_value() -> None:
    value = base64.b64encode(b"v" * 300).decode()
    doc = json.loads(txn_body(3, 256, 128, value))
    puts = [op["request_put"] for op in doc["success"]]
    keys = [base64.b64decode(p["key"]) for p in puts]
    assert keys == [b"r/3/%d" % n for n in range(256, 384)]
    assert {p["value"] for p in puts} == {value}
    single = json.loads(txn_body(0, 7, 1, value))
    assert single == {"key": base64.b64encode(b"r/0/7").decode(), "value": value}


@pytest.mark.parametrize(("status", "doc", "count", "expected"), [
    (200, {"header": {"revision": "5"}, "succeeded": True}, 128, 128),
    (200, {"header": {"revision": "5"}}, 1, 1),
    (200, {"header": {}, "succeeded": False}, 128, 0),
    (200, {"error": "etcdserver: too many operations in txn request", "code": 3}, 128, 0),
    (503, {"error": "etcdserver: request timed out"}, 1, 0),
    (200, ["not", "a", "map"], 1, 0),
])
def test_only_committed_answers_count(status: int, doc: Any, count: int, expected: int) -> None:
    assert committed_ops(status, doc, count) == expected


def test_steady_rate_counts_the_window_only() -> None:
    completions = [(0.5, 100), (1.0, 128), (2.9, 128), (3.0, 128), (4.2, 50)]
    assert steady_rate(completions, 1.0, 3.0) == (128 + 128) / 2
    assert steady_rate(completions, 3.0, 3.0) == 0.0


def test_summary_and_ratio() -> None:
    results = [{"completions": [(0.5, 128), (1.5, 128), (2.5, 128)], "errors": 1, "cpu_s": 0.4},
               {"completions": [(1.2, 128), (9.0, 128)], "errors": 0, "cpu_s": 0.6}]
    out = summarize(results, warmup=1.0, duration=2.0, batch=128, value_bytes=260)
    assert out["puts_per_s_steady"] == 192  # 3 x 128 in [1, 3)
    assert out["acknowledged"] == 5 * 128 and out["errors"] == 1
    assert out["client_cpu_share"] == round(1.0 / (3.0 * 2), 3)
    assert ratio(96.0, out) == 0.5
    assert ratio(None, out) is None and ratio(100.0, {"skipped": "x"}) is None


def test_the_scenario_is_skipped_with_a_message_without_etcd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_etcd.shutil, "which", lambda name: None)
    out = asyncio.run(bench_etcd.scenario_etcd(tmp_path, 1.0, 0.5, 250, 128))
    assert out == {"skipped": bench_etcd.NOT_INSTALLED}
    assert "apt-get install etcd-server" in out["skipped"]
    assert not (tmp_path / "etcd").exists()


def test_the_values_have_our_envelope_size() -> None:
    assert 150 < envelope_bytes(20) < 600


def test_only_etcd_runs_the_peer_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def fake_run(o: Any, scenarios: set[str], keep: Any) -> dict[str, Any]:
        seen.update(scenarios=scenarios, etcd_batch=o.etcd_batch)
        return {"ceiling": {"verify_per_s_one_core": 1, "ceiling_records_per_s": 1, "cores": 2,
                            "load_start": [0.0], "load_end": [0.0]},
                "etcd": {"skipped": bench_etcd.NOT_INSTALLED}}

    monkeypatch.setattr(bench, "run", fake_run)
    result = CliRunner().invoke(bench.main, ["--only", "etcd", "--etcd-batch", "1",
                                             "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen == {"scenarios": {"etcd"}, "etcd_batch": 1}
    assert "skipped" in (tmp_path / "table.txt").read_text()
    result = CliRunner().invoke(bench.main, ["--etcd-batch", "129", "--out", str(tmp_path)])
    assert result.exit_code != 0
    CliRunner().invoke(bench.main, ["--out", str(tmp_path)])
    assert seen["scenarios"] == {"latency", "throughput", "etcd"}
