"""The benchmark table (harness/bench_report.py): memory is the node's own
(RssAnon), with mapped files (page cache) apart; the etcd peer's row gives
our throughput as a ratio of etcd's."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from harness.bench_report import table

CEILING = {"verify_per_s_one_core": 10_000, "ceiling_records_per_s": 5_000, "cores": 2,
           "load_start": [1.0], "load_end": [1.0]}


def render(res: dict[str, Any]) -> str:
    console = Console(record=True, width=400)
    console.print(table(res))
    return console.export_text()


def test_memory_is_rss_anon_with_page_cache_apart() -> None:
    memory = {"log_size": 1_000_000, "load": [1.0],
              "anon_mb": {"node0": 150.0, "node1": 120.0},
              "file_mb": {"node0": 300.0, "node1": 20.0},
              "rss_mb": {"node0": 450.0, "node1": 140.0}}
    text = render({"ceiling": CEILING, "memory": memory})
    row = next(line for line in text.splitlines() if "memory" in line)
    assert "max node RssAnon" in row and "150 MB at 1,000,000 rec" in row
    assert "mapped files (page cache) 300 MB" in row and "max VmRSS 450 MB" in row
    assert "<= 160 MB" in row and "yes" in row  # 450 MB of VmRSS does not fail it


def test_the_etcd_row_gives_the_ratio() -> None:
    etcd = {"puts_per_s_steady": 10_000, "batch": 128, "value_bytes": 273,
            "client_cpu_share": 0.07, "ratio_ours_to_etcd": 0.5,
            "load_start": [1.0], "load_end": [1.0]}
    text = render({"ceiling": CEILING, "etcd": etcd})
    assert "10,000 puts/s (txn of 128, 273 B values)" in text
    assert "ours / etcd = 0.5" in text
