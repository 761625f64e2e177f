"""Measurement helpers of the benchmark (:mod:`harness.bench`): load average,
per-node memory and CPU time from /proc, the nodes' Prometheus counters,
percentiles, keeping this process's collector quiet, and a py-spy profiler.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .localnet import LocalCluster


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and its parts: RssAnon is the process's own memory (Python heap,
    LevelDB's block cache and memtables), the figure the memory target
    counts; RssFile is the mapped libraries (~16 MB) plus the pages of
    LevelDB's memory-mapped table files that reads have touched - page
    cache, clean pages the kernel drops under pressure, reported apart."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def nodes_memory(c: LocalCluster) -> dict[str, dict[str, Any]]:
    """Every node's memory, each read once: RssAnon (the memory figure: the
    node's own memory), RssFile (mapped libraries and table pages: page
    cache, reported apart), VmRSS (their sum) and all three per node."""
    detail = {f"node{i}": memory_mb(c.procs[i].pid) for i in range(c.n)}
    return {"anon_mb": {node: parts.get("RssAnon", 0.0) for node, parts in detail.items()},
            "file_mb": {node: parts.get("RssFile", 0.0) for node, parts in detail.items()},
            "rss_mb": {node: parts.get("VmRSS", 0.0) for node, parts in detail.items()},
            "detail_mb": detail}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# Per-node counters worth keeping next to a throughput or latency figure:
# how proposals were assembled (node/assembly.py), where records came from,
# what was refused and why, rounds lost, messages to and from peers dropped,
# the collector's time.  Every sample of these families is kept.
COUNTERS = ("ledger_proposal_assembly", "ledger_records_admitted", "ledger_inputs_rejected",
            "ledger_consensus_rounds", "ledger_consensus_round_changes",
            "ledger_envelopes_fetch_served", "ledger_peer_frames_dropped",
            "ledger_peer_outbound_dropped", "ledger_http_client_limited",
            "ledger_gc_seconds", "ledger_gc_collections")


async def node_counters(c: LocalCluster) -> list[dict[str, float]]:
    """Each node's :data:`COUNTERS` samples, read from one ``/metrics`` each
    and keyed ``name{label=value,...}`` (a ``peer`` label summed over);
    an empty dict for a node that does not answer."""
    out = []
    for i in range(c.n):
        row: dict[str, float] = {}
        got = await c.try_get(i, "/metrics")
        if got is not None and got[0] == 200:
            text = got[1] if isinstance(got[1], str) else bytes(got[1]).decode()
            for family in text_string_to_metric_families(text):
                if family.name not in COUNTERS:
                    continue
                for sample in family.samples:
                    if sample.name.endswith("_created"):
                        continue
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())
                                      if k != "peer")
                    key = sample.name + (f"{{{labels}}}" if labels else "")
                    row[key] = row.get(key, 0.0) + sample.value
        out.append(row)
    return out


def counters_by_name(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """:func:`node_counters`' rows as one list per sample (a value per
    node), the samples that are 0 on every node left out."""
    names = sorted({key for row in rows for key in row})
    return {key: [round(row.get(key, 0.0), 3) for row in rows] for key in names
            if any(row.get(key) for row in rows)}


def gc_seconds(rows: list[dict[str, float]]) -> float:
    """The collector's seconds over every node and generation."""
    return sum(v for row in rows for k, v in row.items() if k.startswith("ledger_gc_seconds"))


def quiet_collector() -> None:
    """Keep this process's own garbage collector from pausing a measurement:
    the signed load is hundreds of thousands of live objects, and a full
    collection over them stalls the event loop that timestamps commits."""
    gc.collect()
    gc.freeze()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Profiler:
    """py-spy on node 0 while a scenario runs (``--profile``)."""

    def __init__(self, pid: int, seconds: int, out: Path) -> None:
        self.out = out
        exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.proc = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
                 "--format", "raw", "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            self.proc = None

    def finish(self, top: int = 15) -> list[dict[str, Any]]:
        if self.proc is None:
            return []
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.out.exists():
            return []
        own: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            c = int(count)
            total += c
            frames = stack.split(";")
            own[frames[-1]] += c
            for f in set(frames):
                incl[f] += c
        return [{"frame": f, "self_pct": round(100 * c / total, 1),
                 "total_pct": round(100 * incl[f] / total, 1)}
                for f, c in own.most_common(top)]
