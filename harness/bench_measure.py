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


# Per-node counters worth keeping next to a throughput figure: how proposals
# were assembled (node/assembly.py), where records came from, what was refused.
COUNTERS = [("ledger_proposal_assembly_total", "outcome",
             ("immediate", "parked", "completed", "dropped", "fetches", "fetched")),
            ("ledger_records_admitted_total", "source", ("api", "gossip")),
            ("ledger_inputs_rejected_total", "code", ("rate_limited", "nonce_reused",
                                                      "unknown_parent", "bad_signature")),
            ("ledger_consensus_rounds_total", "", ("",)),
            ("ledger_consensus_round_changes_total", "", ("",)),
            ("ledger_gc_seconds_total", "generation", ("0", "1", "2")),
            ("ledger_gc_collections_total", "generation", ("0", "1", "2"))]


async def node_counters(c: LocalCluster) -> list[dict[str, float]]:
    out = []
    for i in range(c.n):
        row: dict[str, float] = {}
        for name, label, values in COUNTERS:
            for v in values:
                labels = {label: v} if label else {}
                row[f"{name}{{{v}}}" if label else name] = await c.metric(i, name, **labels)
        out.append(row)
    return out


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
