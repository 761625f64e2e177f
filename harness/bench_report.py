"""The benchmark's report (:mod:`harness.bench`): the results table against the
targets, and PNG plots of throughput, latency and proofs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .bench_measure import pct

# Progress and messages go to stderr (harness.bench shares it); the table to stdout.
console = Console(stderr=True)


def table(res: dict[str, Any]) -> Table:
    t = Table(title="auditledger benchmark (4 validators, synced commits, signed records)")
    for col in ("scenario", "result", "target", "ceiling / peer", "ok", "load 1m start→end"):
        t.add_column(col)

    def la(d: dict[str, Any]) -> str:
        return f"{d['load_start'][0]:.2f}→{d['load_end'][0]:.2f}"

    def ok(b: bool) -> str:
        return "[green]yes[/]" if b else "[red]no[/]"

    ce = res["ceiling"]
    node_ceiling = ""
    if "node_verify_ceiling_records_per_s" in ce:
        node_ceiling = (f"; node's verifier {ce['verify_per_s_batch']:,}/s/core -> "
                        f"{ce['node_verify_ceiling_records_per_s']:,} rec/s")
    t.add_row("Ed25519 ceiling", f"{ce['verify_per_s_one_core']:,} verifies/s/core (PyNaCl)",
              "", f"{ce['ceiling_records_per_s']:,} rec/s (x{ce['cores']} cores / 4)"
              f"{node_ceiling}", "", la(ce))
    if "throughput" in res:
        th = res["throughput"]
        t.add_row("throughput", f"{th['records_per_s_steady']:,} rec/s steady over "
                  f"{th['seconds'] - th['warmup_s']:.0f}s", ">= 5,000 rec/s",
                  f"{100 * th['fraction_of_ceiling']:.0f}% of {th['ceiling_records_per_s']:,}",
                  ok(th["records_per_s_steady"] >= 5000), la(th))
        t.add_row("node CPU per record", f"{th['cpu_us_per_record_per_node']:.0f} µs/record/node",
                  "", f"1 verify = {th['verify_us']:.0f} µs "
                  f"({100 * (th['verify_share_of_node_cpu'] or 0):.0f}% of it)", "", la(th))
    if "latency" in res:
        lt = res["latency"]
        t.add_row("latency", f"p50 {lt['p50_ms']:.0f} ms, p99 {lt['p99_ms']:.0f} ms "
                  f"({lt['committed_seen']:,} rec)",
                  "p50 <= 100, p99 <= 300 ms", f"offered {lt['achieved_offer_per_s']:,}/s",
                  ok(lt["p50_ms"] <= 100 and lt["p99_ms"] <= 300), la(lt))
    if "latency_low" in res:
        lt = res["latency_low"]
        t.add_row("latency (low rate)", f"p50 {lt['p50_ms']:.0f} ms, p99 {lt['p99_ms']:.0f} ms "
                  f"({lt['committed_seen']:,} rec)", "", f"offered {lt['achieved_offer_per_s']:,}/s",
                  "", la(lt))
    if "proofs" in res:
        pr = res["proofs"]
        t.add_row("proofs (node0)", f"{pr['proofs_per_s']:,}/s at {pr['log_size']:,} rec",
                  ">= 10,000/s at 1M rec",
                  f"{pr['errors']} errors; client {pr.get('client', 'aiohttp -c32')}"
                  + (f"; {pr['proofs_per_node_cpu_s']:,} per node0 CPU-second"
                     if pr.get("proofs_per_node_cpu_s") else ""),
                  ok(pr["proofs_per_s"] >= 10_000) + ("" if (pr["log_size"] or 0) >= 1_000_000
                                                      else " (small log)"), la(pr))
    if "catchup" in res:
        cu = res["catchup"]
        t.add_row("catch-up", f"{cu['records_per_s_wall']:,} rec/s wall "
                  f"({cu['records_behind']:,} behind; sync {cu['records_per_s_sync']}/s)",
                  ">= 20,000 rec/s", f"healthy-3 commit {cu['commit_without_node3_per_s']:,}/s",
                  ok(cu["records_per_s_wall"] >= 20000), la(cu))
    if "memory" in res:
        me = res["memory"]
        # The node's own (anonymous) memory is the figure; mapped files
        # (libraries, LevelDB's table pages: page cache) are reported apart.
        anon = me.get("anon_mb") or me["rss_mb"]
        peak = max(anon.values())
        node = max(anon, key=lambda k: anon[k])
        split = (f"{node}: + mapped files (page cache) {me['file_mb'][node]:.0f} MB; "
                 f"max VmRSS {max(me['rss_mb'].values()):.0f} MB" if "file_mb" in me else "")
        t.add_row("memory (max node RssAnon)", f"{peak:.0f} MB at {me['log_size']:,} rec",
                  "<= 160 MB at 1M rec", split, ok(peak <= 160) + (
                      "" if (me["log_size"] or 0) >= 1_000_000 else " (small log)"),
                  f"{me['load'][0]:.2f}")
    if "etcd" in res:
        et = res["etcd"]
        if "skipped" in et:
            t.add_row("etcd peer", "skipped", "", et["skipped"], "", "")
        else:
            r = et.get("ratio_ours_to_etcd")
            how = f"txn of {et['batch']}" if et["batch"] > 1 else "single puts"
            t.add_row("etcd peer (3 members, Raft, WAL fsync)",
                      f"{et['puts_per_s_steady']:,} puts/s ({how}, {et['value_bytes']} B values)",
                      "ours ahead", f"ours / etcd = {r}" if r is not None else
                      "ours not measured in this run",
                      "" if r is None else ok(r >= 1.0) + (
                          " (client busy)" if et["client_cpu_share"] > 0.8 else ""), la(et))
    return t


def plots(res: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]matplotlib missing: no plots (pip install -e .[bench])[/]")
        return []
    files = []
    if "throughput" in res and len(res["throughput"]["samples"]) >= 2:
        s = res["throughput"]["samples"]
        ts = [(a["t"] + b["t"]) / 2 for a, b in zip(s, s[1:])]
        rs = [(b["committed"] - a["committed"]) / max(b["t"] - a["t"], 1e-9) for a, b in zip(s, s[1:])]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot(ts, rs, label="committed records/s (node0)")
        ax.axhline(res["ceiling"]["ceiling_records_per_s"], color="red", ls="--",
                   label="Ed25519 ceiling (this run)")
        ax.axhline(5000, color="grey", ls=":", label="target 5,000/s")
        ax.set_xlabel("s")
        ax.set_ylabel("records/s")
        ax.set_title("Throughput over time")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=100)
        plt.close(fig)
        files.append("throughput.png")
    if "latency" in res and res["latency"]["samples_ms"]:
        ms = res["latency"]["samples_ms"]
        ps = [50, 75, 90, 95, 99, 99.9]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.bar([f"p{p:g}" for p in ps], [pct(ms, p) for p in ps])
        ax.axhline(100, color="grey", ls=":", label="p50 target")
        ax.axhline(300, color="red", ls="--", label="p99 target")
        ax.set_ylabel("submit → commit, ms")
        ax.set_title(f"Latency at {res['latency']['offered_per_s']:.0f} records/s offered")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=100)
        plt.close(fig)
        files.append("latency.png")
    if "proofs" in res and res["proofs"].get("per_second"):
        ps_ = res["proofs"]["per_second"]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot(range(len(ps_)), ps_, marker="o", label="proofs/s from node0")
        ax.axhline(10_000, color="grey", ls=":", label="target 10,000/s")
        ax.set_xlabel("s")
        ax.set_ylabel("proofs/s")
        ax.set_title(f"Inclusion proofs at {res['proofs']['log_size']:,} records")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "proofs.png", dpi=100)
        plt.close(fig)
        files.append("proofs.png")
    return files
