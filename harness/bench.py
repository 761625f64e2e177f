"""Benchmark suite: ``scripts/bench`` (``python -m harness.bench``).

Scenarios, each against real ``ledger-node`` processes of a
:class:`harness.localnet.LocalCluster` on 127.0.0.1 (4 validators, LevelDB with
every commit synced, every record signed and its signature checked by every
validator), records signed before any clock starts:

* ``ceiling``    one core's Ed25519 verify rate measured in this run with
                 PyNaCl, one call per signature
                 (``ledger.crypto.verify_signature``): the issue's ceiling =
                 rate x cores / validators.  The node's own verifier
                 (``ledger.crypto.verify_many``, several times faster) is
                 measured too, and reported beside it.
* ``latency``    fresh cluster, open-loop offer at ``--rate`` records/s;
                 submit -> commit percentiles, the commit as node 0 pushes
                 it on ``GET /v1/stream`` (before 2026-12-07: a 10 ms status
                 poll and a block read, which added 5 ms or more).
* ``throughput`` fresh cluster, offer as fast as admission takes it for
                 ``--duration`` s; committed records/s (steady window after
                 a warm-up) and its fraction of the ceiling.
* ``proofs``     inclusion proofs over HTTP from node 0 at the log size the
                 throughput run left (``--proof-records`` tops the log up).
* ``catchup``    node 3 killed, ``--catchup-records`` committed without it,
                 restarted: records/s until it holds the tip again.
* ``memory``     memory of every node at the end: RssAnon (the node's own
                 memory, the figure the target counts) and RssFile (mapped
                 libraries and LevelDB table pages: page cache) apart.
* ``etcd``       the peer: a 3-member etcd cluster (Raft, crash-tolerant
                 only, no signatures, WAL fsync on every commit) on loopback
                 loaded with puts of our envelope size for ``--duration`` s
                 (:mod:`harness.bench_etcd`); our committed records/s is
                 reported as a ratio of its puts/s.  Skipped, saying so,
                 where etcd is not installed.

The machine may be shared: the 1-minute load average is recorded at the
start and end of every scenario, and the ceiling is measured in the same
run, so figures are comparable as fractions.  JSON (``results.json``) and
PNG plots go to ``--out`` (default ``bench-out/``).

Layout: this module is the command line and the run; the scenarios are
:mod:`harness.bench_scenarios` and :mod:`harness.bench_proofs`, the options,
clusters and signed load :mod:`harness.bench_setup`, the measurements
:mod:`harness.bench_measure`, the table and plots :mod:`harness.bench_report`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .bench_etcd import ratio, scenario_etcd
from .bench_measure import loadavg
from .bench_report import console, plots, table
from .bench_scenarios import measure_ceiling, scenario_latency, scenario_throughput_etc
from .bench_setup import BENCH_PARAMS, DEFAULT_BLOCK_RECORDS, Opts, envelope_bytes

SCENARIOS = ("latency", "throughput", "etcd")


async def run(o: Opts, scenarios: set[str], keep: Path | None) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ledger-bench-")) if keep is None else keep
    res: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "quick": o.quick, "load_start": loadavg(),
                           "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                           "params": dict(BENCH_PARAMS, max_block_records=o.block_records)}
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            t = progress.add_task("Ed25519 ceiling", total=None)
            res["ceiling"] = measure_ceiling(1.0 if o.quick else 3.0)
            progress.remove_task(t)
            console.print(f"ceiling: {res['ceiling']['verify_per_s_one_core']:,} verifies/s "
                          f"on one core with PyNaCl -> {res['ceiling']['ceiling_records_per_s']:,} "
                          f"records/s; the node's verifier {res['ceiling']['verify_per_s_batch']:,}"
                          f"/s -> {res['ceiling']['node_verify_ceiling_records_per_s']:,}; "
                          f"records: {res['ceiling']['records_path']}")
            if "latency" in scenarios:
                res["latency"] = await scenario_latency(root, o, progress, o.rate)
                console.print(f"latency: p50 {res['latency']['p50_ms']} ms, "
                              f"p99 {res['latency']['p99_ms']} ms")
                if o.low_rate:
                    res["latency_low"] = await scenario_latency(root, o, progress, o.low_rate,
                                                                "latency-low")
                    console.print(f"latency at {o.low_rate:.0f}/s: p50 "
                                  f"{res['latency_low']['p50_ms']} ms, "
                                  f"p99 {res['latency_low']['p99_ms']} ms")
            if "throughput" in scenarios:
                res.update(await scenario_throughput_etc(root, o, progress, res["ceiling"]))
                console.print(f"throughput: {res['throughput']['records_per_s_steady']:,} "
                              "records/s steady")
            if "etcd" in scenarios:
                t = progress.add_task("etcd peer (3 members)", total=None)
                res["etcd"] = await scenario_etcd(root, o.duration, o.warmup, envelope_bytes(),
                                                  o.etcd_batch)
                progress.remove_task(t)
                if "skipped" in res["etcd"]:
                    console.print(f"[yellow]{res['etcd']['skipped']}[/]")
                else:
                    ours = res.get("throughput", {}).get("records_per_s_steady")
                    res["etcd"]["ratio_ours_to_etcd"] = ratio(ours, res["etcd"])
                    console.print(f"etcd: {res['etcd']['puts_per_s_steady']:,} puts/s steady"
                                  + (f"; ours / etcd = {res['etcd']['ratio_ours_to_etcd']}"
                                     if res["etcd"]["ratio_ours_to_etcd"] is not None else ""))
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    res["load_end"] = loadavg()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return res


@click.command()
@click.option("--quick", is_flag=True, help="short version (about 2-3 minutes)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-out"),
              show_default=True)
@click.option("--duration", type=float, help="throughput window, s [60; quick 15]")
@click.option("--rate", type=float, default=2500, show_default=True,
              help="offered records/s for the latency scenario")
@click.option("--low-rate", type=float, default=500, show_default=True,
              help="a second latency point below saturation (0: skip)")
@click.option("--latency-seconds", type=float, help="[30; quick 10]")
@click.option("--proof-seconds", type=float, help="[15; quick 5]")
@click.option("--proof-records", type=int, default=0,
              help="top the log up to at least this many records before proofs "
                   "(1000000 for the issue's figure; slow)")
@click.option("--catchup-records", type=int, help="[100000; quick 10000]")
@click.option("--block-records", type=int, default=DEFAULT_BLOCK_RECORDS, show_default=True,
              help="max_block_records of the benchmark chain (the cluster default)")
@click.option("--batch", type=int, default=2000, show_default=True)
@click.option("--inflight", type=int, default=4, show_default=True)
@click.option("--only", type=click.Choice(SCENARIOS), multiple=True,
              help="run only these scenario groups (throughput includes proofs, "
                   "catch-up, memory; etcd is the peer, compared with throughput "
                   "when both run)")
@click.option("--etcd-batch", type=click.IntRange(1, 128), default=128, show_default=True,
              help="puts per etcd transaction in the peer scenario (1: single puts; "
                   "etcd allows at most 128)")
@click.option("--profile", is_flag=True,
              help="py-spy node0 during the throughput window and node3 during catch-up "
                   "(never the latency scenario)")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="run the clusters in this directory and keep it (logs)")
def main(quick: bool, out: Path, duration: float | None, rate: float, low_rate: float,
         latency_seconds: float | None, proof_seconds: float | None, proof_records: int,
         catchup_records: int | None, block_records: int, batch: int, inflight: int,
         only: tuple[str, ...], etcd_batch: int, profile: bool, keep: Path | None) -> None:
    """Run the benchmark scenarios on fresh local 4-node clusters."""
    o = Opts(quick=quick,
             duration=duration or (15 if quick else 60), warmup=3 if quick else 5, rate=rate, low_rate=low_rate,
             latency_seconds=latency_seconds or (10 if quick else 30),
             proof_seconds=proof_seconds or (5 if quick else 15), proof_records=proof_records,
             catchup_records=catchup_records or (10_000 if quick else 100_000),
             block_records=block_records, batch=batch, inflight=inflight, profile=profile,
             out=out, etcd_batch=etcd_batch)
    out.mkdir(parents=True, exist_ok=True)
    res = asyncio.run(run(o, set(only) or set(SCENARIOS), keep))
    res["plots"] = plots(res, out)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    Console().print(table(res))
    rec = Console(record=True, width=140, file=open(os.devnull, "w"))
    rec.print(table(res))
    (out / "table.txt").write_text(rec.export_text())
    console.print(f"wrote {out}/results.json, {out}/table.txt"
                  + "".join(f", {out}/{p}" for p in res["plots"]))


if __name__ == "__main__":
    main()
