"""Benchmark suite: ``scripts/bench`` (``python -m node.bench``).

Scenarios, each against real ``ledger-node`` processes of a
:class:`node.localnet.LocalCluster` on 127.0.0.1 (4 validators, LevelDB with
every commit synced, every record signed and its signature checked by every
validator), records signed before any clock starts:

* ``ceiling``    one core's Ed25519 verify rate (PyNaCl, through
                 ``ledger.crypto.verify_signature``) measured in this run;
                 ceiling = rate x cores / validators.
* ``latency``    fresh cluster, open-loop offer at ``--rate`` records/s;
                 submit -> commit (observed on node 0) percentiles.
* ``throughput`` fresh cluster, offer as fast as admission takes it for
                 ``--duration`` s; committed records/s (steady window after
                 a warm-up) and its fraction of the ceiling.
* ``proofs``     inclusion proofs over HTTP from node 0 at the log size the
                 throughput run left (``--proof-records`` tops the log up).
* ``catchup``    node 3 killed, ``--catchup-records`` committed without it,
                 restarted: records/s until it holds the tip again.
* ``memory``     resident memory (VmRSS) of every node at the end.

The machine may be shared: the 1-minute load average is recorded at the
start and end of every scenario, and the ceiling is measured in the same
run, so figures are comparable as fractions.  JSON (``results.json``) and
PNG plots go to ``--out`` (default ``bench-out/``).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import click
import msgpack
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledger.crypto import RECORD_DOMAIN, verify_signature
from ledger.keys import load_key_file
from ledger.records import decode_envelope

from .localnet import LocalCluster, until

console = Console(stderr=True)

# The consensus parameters the issue fixes (DEFAULT_PARAMS of node.cluster).
BENCH_PARAMS = {"timeout_propose_ms": 3000, "timeout_prevote_ms": 1000,
                "timeout_precommit_ms": 1000, "timeout_delta_ms": 500}

ORIGINS = [{"account": f"acct-{i:04d}", "country": c, "system": s}
           for i, (c, s) in enumerate((c, s) for c in ("DE", "FR", "NL", "US")
                                      for s in ("pos-terminal", "web-shop", "atm-network"))]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- signed load ------------------------------------------------------------


class Signer:
    """Pre-signed payment envelopes, built directly in canonical form.

    Maps are written with their keys already in canonical order, so a plain
    ``msgpack.packb`` is canonical; the first envelope is checked with
    :func:`ledger.records.decode_envelope` to be sure.
    """

    def __init__(self, key_path: Path, chain: str) -> None:
        self.key = load_key_file(key_path).key
        self.chain = chain
        self.nonce = time.time_ns() // 1000
        self.rng = random.Random(1)
        self.checked = False

    def envelopes(self, n: int) -> list[tuple[bytes, bytes]]:
        """``n`` (record id, envelope bytes) pairs."""
        out = []
        pk, chain, sign, rng = self.key.public_key, self.chain, self.key.sign, self.rng
        packb = msgpack.packb
        for _ in range(n):
            self.nonce += 1
            rec = packb({"body": {"amount": rng.randrange(50, 20_000), "currency": "EUR"},
                         "chain": chain, "kind": "payment", "nonce": self.nonce,
                         "origin": rng.choice(ORIGINS), "parents": [], "submitter": pk,
                         "ts": int(time.time() * 1000), "v": 1}, use_bin_type=True)
            env = packb({"record": rec, "sig": sign(RECORD_DOMAIN, rec)}, use_bin_type=True)
            out.append((hashlib.sha256(rec).digest(), env))
        if not self.checked and out:
            decode_envelope(out[0][1])
            self.checked = True
        return out


def pack_batches(envs: list[tuple[bytes, bytes]], size: int) -> list[tuple[list[bytes], bytes]]:
    """(ids, MessagePack body) per batch of ``size``."""
    return [([i for i, _ in envs[k:k + size]],
             msgpack.packb([e for _, e in envs[k:k + size]], use_bin_type=True))
            for k in range(0, len(envs), size)]


def sign_with_progress(signer: Signer, n: int, progress: Progress, what: str
                       ) -> list[tuple[bytes, bytes]]:
    task = progress.add_task(f"signing {what}", total=n)
    out: list[tuple[bytes, bytes]] = []
    while len(out) < n:
        out += signer.envelopes(min(5000, n - len(out)))
        progress.update(task, completed=len(out))
    progress.remove_task(task)
    return out


# -- HTTP helpers -------------------------------------------------------------


async def post_batch(session: aiohttp.ClientSession, url: str, body: bytes,
                     envs: list[bytes] | None = None) -> int:
    """POST one MessagePack batch until every envelope is admitted; returns retries."""
    retries = 0
    while True:
        try:
            async with session.post(url + "/v1/records", data=body,
                                    headers={"Content-Type": "application/msgpack"}) as r:
                if r.status == 202:
                    doc = await r.json(content_type=None)
                    bad = [k for k, x in enumerate(doc["results"]) if "error" in x]
                    if not bad:
                        return retries
                    codes = {doc["results"][k]["error"] for k in bad}
                    if codes - {"rate_limited", "unavailable"}:
                        raise RuntimeError(f"records refused: {sorted(codes)}")
                    if envs is None:
                        envs = msgpack.unpackb(body)
                    envs = [envs[k] for k in bad]
                    body = msgpack.packb(envs, use_bin_type=True)
                else:
                    await r.read()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            pass
        retries += 1
        await asyncio.sleep(0.05)


async def status(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url + "/v1/status") as r:
            return await r.json() if r.status == 200 else None
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
        return None


def new_cluster(root: Path, name: str, block_records: int) -> LocalCluster:
    params: dict[str, Any] = dict(BENCH_PARAMS, max_block_records=block_records)
    edits = {i: [("max_block_records = 1000", f"max_block_records = {block_records}")]
             for i in range(4)} if block_records != 1000 else None
    return LocalCluster(root / name, 4, params=params, toml_edits=edits)


async def start_cluster(c: LocalCluster) -> None:
    for i in range(4):
        c.start(i)
    await c.wait_connected([0, 1, 2, 3], timeout=60)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and its parts: RssAnon is the process's own memory (Python heap,
    LevelDB's block cache and memtables); RssFile is mostly LevelDB's
    memory-mapped table files - clean pages the kernel drops under pressure,
    which grow with how much of the store reads have touched."""
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
    """Every node's memory, each read once: VmRSS alone and its parts."""
    detail = {f"node{i}": memory_mb(c.procs[i].pid) for i in range(c.n)}
    return {"rss_mb": {node: parts.get("VmRSS", 0.0) for node, parts in detail.items()},
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
COUNTERS = [("ledger_proposal_assembly", "outcome",
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


# -- scenarios ----------------------------------------------------------------


def measure_ceiling(seconds: float) -> dict[str, Any]:
    """One core's verify rate through the node's own verify call."""
    from ledger.crypto import SigningKey

    key = SigningKey.generate()
    msgs = [os.urandom(200) for _ in range(64)]
    sigs = [key.sign(RECORD_DOMAIN, m) for m in msgs]
    pk = key.public_key
    la0 = loadavg()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for m, s in zip(msgs, sigs):
            verify_signature(pk, RECORD_DOMAIN, m, s)
        n += len(msgs)
    rate = n / (time.perf_counter() - t0)
    cores = os.cpu_count() or 1
    return {"verify_per_s_one_core": round(rate), "cores": cores, "validators": 4,
            "ceiling_records_per_s": round(rate * cores / 4),
            "load_start": la0, "load_end": loadavg()}


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


@dataclass
class Opts:
    quick: bool
    duration: float
    warmup: float
    rate: float
    low_rate: float
    latency_seconds: float
    proof_seconds: float
    proof_records: int
    catchup_records: int
    block_records: int
    batch: int
    inflight: int
    profile: bool
    out: Path


async def scenario_latency(root: Path, o: Opts, progress: Progress, rate: float,
                           name: str = "latency") -> dict[str, Any]:
    c = new_cluster(root, name, o.block_records)
    try:
        await start_cluster(c)
        signer = Signer(c.dir / "keys" / "demo.json", c.genesis.chain)
        tick = 0.05
        per_tick = max(1, int(rate * tick))
        ticks = int(o.latency_seconds / tick)
        envs = sign_with_progress(signer, per_tick * ticks, progress, "latency load")
        batches = pack_batches(envs, per_tick)
        quiet_collector()
        la0 = loadavg()
        sent: dict[str, float] = {}
        lat: list[float] = []
        session = c.http()
        done = asyncio.Event()
        task = progress.add_task(f"latency @ {rate:.0f}/s", total=len(envs))

        async def watch() -> None:
            seen = (await c.status(0))["height"]  # type: ignore[index]
            while not (done.is_set() and len(lat) >= len(envs)):
                st = await status(session, c.url(0))
                now = time.perf_counter()
                if st is not None and st["height"] > seen:
                    for h in range(seen + 1, st["height"] + 1):
                        code, doc = await c.get(0, f"/v1/blocks/{h}")
                        if code != 200:
                            break
                        for rid in doc["records"]:
                            t = sent.pop(rid, None)
                            if t is not None:
                                lat.append(now - t)
                        seen = h
                    progress.update(task, completed=len(lat))
                if done.is_set() and time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.01)

        deadline = float("inf")
        prof = Profiler(c.procs[0].pid, int(o.latency_seconds), o.out / f"profile-node0-{name}.raw") \
            if o.profile else None
        watcher = asyncio.create_task(watch())
        t0 = time.perf_counter()
        posts = []
        for k, (ids, body) in enumerate(batches):
            target = t0 + k * tick
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            for rid in ids:
                sent[rid.hex()] = now
            posts.append(asyncio.create_task(post_batch(session, c.url(k % 4), body)))
        offered_secs = time.perf_counter() - t0
        await asyncio.gather(*posts)
        deadline = time.perf_counter() + 30
        done.set()
        await watcher
        progress.remove_task(task)
        counters = await node_counters(c)
        profile_top = prof.finish() if prof is not None else []
        ms = [x * 1000 for x in lat]
        return {"offered_per_s": rate, "offered_records": len(envs),
                "offer_seconds": round(offered_secs, 2),
                "achieved_offer_per_s": round(len(envs) / offered_secs),
                "committed_seen": len(lat),
                "not_seen_committed_30s_after_offer": len(envs) - len(lat),
                "p50_ms": round(pct(ms, 50), 1), "p90_ms": round(pct(ms, 90), 1),
                "p99_ms": round(pct(ms, 99), 1), "max_ms": round(max(ms, default=0), 1),
                "samples_ms": [round(x, 1) for x in ms],
                "node_counters": counters, "profile_node0_top": profile_top,
                "load_start": la0, "load_end": loadavg()}
    finally:
        await c.stop_all()


async def scenario_throughput_etc(root: Path, o: Opts, progress: Progress,
                                  ceiling: dict[str, Any]) -> dict[str, Any]:
    """throughput, then proofs, catch-up and memory on the same loaded cluster."""
    c = new_cluster(root, "throughput", o.block_records)
    out: dict[str, Any] = {}
    try:
        await start_cluster(c)
        signer = Signer(c.dir / "keys" / "demo.json", c.genesis.chain)
        est = int(ceiling["ceiling_records_per_s"] * 1.25 * (o.duration + o.warmup)) + o.batch
        n_main = max(est, o.proof_records)
        envs = sign_with_progress(signer, n_main, progress, "throughput load")
        batches = pack_batches(envs, o.batch)
        catch_envs = sign_with_progress(signer, o.catchup_records, progress, "catch-up load")
        quiet_collector()
        session = c.http()

        # -- throughput ------------------------------------------------------
        la0 = loadavg()
        samples: list[tuple[float, int, int, int]] = []
        stop = asyncio.Event()
        t0 = time.perf_counter()
        base = (await c.status(0))["log_size"]  # type: ignore[index]
        task = progress.add_task("throughput", total=o.duration + o.warmup)

        async def sample() -> None:
            while not stop.is_set():
                st = await status(session, c.url(0))
                if st is not None:
                    samples.append((time.perf_counter() - t0, st["log_size"] - base,
                                    st["height"], st["mempool"]))
                    progress.update(task, completed=min(samples[-1][0], o.duration + o.warmup),
                                    description=f"throughput: {samples[-1][1]} committed")
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        pids = [c.procs[i].pid for i in range(4)]
        cpu0 = sum(cpu_seconds(p) for p in pids)
        prof = Profiler(c.procs[0].pid, int(o.duration), o.out / "profile-node0.raw") \
            if o.profile else None
        queue = list(enumerate(batches))
        submitted = 0
        retries = 0

        async def feeder(w: int) -> None:
            nonlocal submitted, retries
            while queue and time.perf_counter() - t0 < o.duration + o.warmup:
                k, (ids, body) = queue.pop(0)
                retries += await post_batch(session, c.url(k % 4), body)
                submitted += len(ids)

        await asyncio.gather(*(feeder(w) for w in range(o.inflight)))
        t_end = time.perf_counter() - t0
        await asyncio.sleep(0.6)
        stop.set()
        await sampler
        cpu1 = sum(cpu_seconds(p) for p in pids)
        progress.remove_task(task)
        counters = await node_counters(c)
        profile_top = prof.finish() if prof is not None else []
        steady = [s for s in samples if o.warmup <= s[0] <= t_end]
        if len(steady) >= 2:
            rate = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
        else:
            rate = float("nan")
        total_secs = samples[-1][0] if samples else t_end
        done_n = samples[-1][1] if samples else 0
        # Load-independent efficiency: CPU the four nodes spent per committed
        # record and validator, against one Ed25519 verify on this machine.
        cpu_us = (cpu1 - cpu0) / max(done_n, 1) / 4 * 1e6
        verify_us = 1e6 / ceiling["verify_per_s_one_core"]
        out["throughput"] = {
            "offered_records": submitted, "post_retries": retries,
            "seconds": round(t_end, 1), "warmup_s": o.warmup,
            "committed": samples[-1][1] if samples else 0,
            "records_per_s_steady": round(rate),
            "records_per_s_overall": round((samples[-1][1] if samples else 0) / total_secs),
            "ceiling_records_per_s": ceiling["ceiling_records_per_s"],
            "fraction_of_ceiling": round(rate / ceiling["ceiling_records_per_s"], 3),
            "block_records": o.block_records,
            "node_cpu_s": round(cpu1 - cpu0, 1),
            "cpu_us_per_record_per_node": round(cpu_us, 1),
            "verify_us": round(verify_us, 1),
            "verify_share_of_node_cpu": round(verify_us / cpu_us, 3) if cpu_us else None,
            "samples": [{"t": round(t, 2), "committed": n, "height": h, "mempool": m}
                        for t, n, h, m in samples],
            "profile_node0_top": profile_top,
            "node_counters": counters,
            "load_start": la0, "load_end": loadavg()}

        # top up the log for the proof scenario if asked, then drain
        rest = [b for _, b in queue]
        if o.proof_records and submitted < o.proof_records:
            task = progress.add_task("topping up the log for proofs", total=len(rest))
            sem = asyncio.Semaphore(o.inflight)

            async def one(k: int, body: bytes) -> None:
                async with sem:
                    await post_batch(session, c.url(k % 4), body)
                    progress.advance(task)

            await asyncio.gather(*(one(k, b) for k, (_, b) in enumerate(rest)))
            submitted += sum(len(ids) for ids, _ in batches[len(batches) - len(rest):])
            progress.remove_task(task)

        async def drained() -> bool:
            st = await c.status(0)
            return st is not None and st["log_size"] - base >= submitted

        await until(drained, 900, "the offered records to commit", 0.5)
        committed_ids = [rid for ids, _ in batches[:len(batches) - (len(queue) if not
                                                                    o.proof_records else 0)]
                         for rid in ids]

        # -- proofs ------------------------------------------------------------
        out["memory_before_proofs"] = {
            f"node{i}": memory_mb(c.procs[i].pid) for i in range(4)}
        await settle(c, progress)
        out["proofs"] = await proofs(c, o, progress, committed_ids)
        out["memory_after_proofs"] = {
            "log_size": out["proofs"]["log_size"], **nodes_memory(c)}

        # -- catch-up ----------------------------------------------------------
        out["catchup"] = await catchup(c, o, progress, catch_envs)
        st = await c.status(0)
        out["memory"] = {
            "log_size": st["log_size"] if st else None, **nodes_memory(c),
            "load": loadavg()}
        return out
    finally:
        await c.stop_all()


async def settle(c: LocalCluster, progress: Progress, max_s: float = 60.0) -> float:
    """Wait until the nodes are idle (after a big load LevelDB compacts for a
    while in background threads): all four together under 10% of a core over
    a second, or ``max_s``.  Returns the seconds waited."""
    task = progress.add_task("settling: waiting for the nodes to go idle", total=None)
    pids = [c.procs[i].pid for i in range(4)]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_s:
        before = sum(cpu_seconds(p) for p in pids)
        await asyncio.sleep(1.0)
        if sum(cpu_seconds(p) for p in pids) - before < 0.1:
            break
    progress.remove_task(task)
    return round(time.perf_counter() - t0, 1)


WRK_SCRIPT = """
local ids = {}
for line in io.lines(os.getenv("PROOF_IDS")) do ids[#ids + 1] = line end
math.randomseed(2)
request = function()
  return wrk.format("GET", "/v1/records/" .. ids[math.random(#ids)] .. "/proof")
end
"""


async def proofs_wrk(c: LocalCluster, o: Opts, ids: list[bytes], wrk: str) -> dict[str, Any]:
    """The proof load from wrk (C, one thread, 32 connections): the node, not
    a Python client sharing its 2 cores, sets the rate."""
    with tempfile.TemporaryDirectory() as tmp:
        script, id_file = Path(tmp) / "proofs.lua", Path(tmp) / "ids.txt"
        script.write_text(WRK_SCRIPT)
        id_file.write_text("\n".join(i.hex() for i in ids) + "\n")
        proc = await asyncio.create_subprocess_exec(
            wrk, "-t1", "-c32", f"-d{int(o.proof_seconds)}s", "--latency", "-s", str(script),
            c.url(0), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PROOF_IDS": str(id_file)})
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    rate = requests = non_2xx = 0.0
    latency: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            rate = float(parts[1])
        elif "requests in" in line:
            requests = float(parts[0])
        elif line.strip().startswith("Non-2xx"):
            non_2xx = float(parts[-1])
        elif len(parts) == 2 and parts[0] in ("50%", "90%", "99%"):
            latency[parts[0]] = parts[1]
    return {"client": "wrk -t1 -c32", "proofs": int(requests - non_2xx),
            "errors": int(non_2xx), "proofs_per_s": round(rate), "latency": latency,
            "seconds": o.proof_seconds, "wrk_output": text[-2000:]}


async def proofs(c: LocalCluster, o: Opts, progress: Progress, ids: list[bytes]
                 ) -> dict[str, Any]:
    la0 = loadavg()
    st = await c.status(0)
    wrk = shutil.which("wrk")
    if wrk is not None:
        task = progress.add_task("proofs from node0 (wrk)", total=None)
        res = await proofs_wrk(c, o, ids, wrk)
        progress.remove_task(task)
        return {"log_size": st["log_size"] if st else None, **res,
                "load_start": la0, "load_end": loadavg()}
    rng = random.Random(2)
    conn = aiohttp.TCPConnector(limit=32)
    per_sec: Counter[int] = Counter()
    ok = errors = 0
    task = progress.add_task("proofs from node0", total=o.proof_seconds)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()

        async def worker() -> None:
            nonlocal ok, errors
            while (el := time.perf_counter() - t0) < o.proof_seconds:
                rid = rng.choice(ids).hex()
                async with session.get(f"{c.url(0)}/v1/records/{rid}/proof") as r:
                    await r.read()
                    if r.status == 200:
                        ok += 1
                        per_sec[int(el)] += 1
                    else:
                        errors += 1
                progress.update(task, completed=min(el, o.proof_seconds))

        await asyncio.gather(*(worker() for _ in range(32)))
        secs = time.perf_counter() - t0
    progress.remove_task(task)
    return {"log_size": st["log_size"] if st else None,
            "seconds": round(secs, 1), "proofs": ok, "errors": errors,
            "proofs_per_s": round(ok / secs), "concurrency": 32,
            "per_second": [per_sec[k] for k in range(int(o.proof_seconds))],
            "load_start": la0, "load_end": loadavg()}


async def catchup(c: LocalCluster, o: Opts, progress: Progress,
                  envs: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    la0 = loadavg()
    c.kill(3)
    base = (await c.status(0))["log_size"]  # type: ignore[index]
    batches = pack_batches(envs, o.batch)
    session = c.http()
    task = progress.add_task("catch-up: committing without node3", total=len(envs))
    sem = asyncio.Semaphore(o.inflight)

    async def one(k: int, body: bytes, n: int) -> None:
        async with sem:
            await post_batch(session, c.url(k % 3), body)
            progress.advance(task, n)

    t = time.perf_counter()
    await asyncio.gather(*(one(k, b, len(ids)) for k, (ids, b) in enumerate(batches)))

    async def drained() -> bool:
        st = await c.status(0)
        return st is not None and st["log_size"] - base >= len(envs)

    await until(drained, 900, "records to commit without node3", 0.5)
    degraded = len(envs) / (time.perf_counter() - t)
    progress.remove_task(task)
    target = (await c.status(0))["height"]  # type: ignore[index]
    behind_log = (await c.status(0))["log_size"]  # type: ignore[index]
    task = progress.add_task("catch-up: node3 restarting", total=None)
    log_before = len(c.log_path(3).read_text().splitlines())  # only this restart counts
    t1 = time.perf_counter()
    c.start(3)
    prof = Profiler(c.procs[3].pid, 20, o.out / "profile-node3-catchup.raw") \
        if o.profile else None
    await c.wait_height([3], target, timeout=900)
    wall = time.perf_counter() - t1
    progress.remove_task(task)
    profile_top = prof.finish() if prof is not None else []
    def caught_up_lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in c.log_path(3).read_text().splitlines()[log_before:]
                if '"msg":"caught up' in line]

    async def logged_yet() -> bool:  # the node logs it just after reaching the height
        return bool(caught_up_lines())

    try:
        await until(logged_yet, 10, "node3 to log its catch-up", 0.1)
    except TimeoutError:
        pass  # reported as no sync figures
    logged = caught_up_lines()
    synced = sum(d.get("sync_records", 0) for d in logged)
    busy = sum(d.get("sync_seconds", 0) for d in logged)
    return {"records_behind": len(envs), "log_size": behind_log,
            "commit_without_node3_per_s": round(degraded),
            "wall_s_process_start_to_tip": round(wall, 2),
            "records_per_s_wall": round(len(envs) / wall),
            "synced_records_logged": synced, "sync_busy_s": round(busy, 2),
            "records_per_s_sync": round(synced / busy) if busy else None,
            "profile_node3_top": profile_top,
            "load_start": la0, "load_end": loadavg()}


# -- report -------------------------------------------------------------------


def table(res: dict[str, Any]) -> Table:
    t = Table(title="auditledger benchmark (4 validators, synced commits, signed records)")
    for col in ("scenario", "result", "target", "ceiling / peer", "ok", "load 1m start→end"):
        t.add_column(col)

    def la(d: dict[str, Any]) -> str:
        return f"{d['load_start'][0]:.2f}→{d['load_end'][0]:.2f}"

    def ok(b: bool) -> str:
        return "[green]yes[/]" if b else "[red]no[/]"

    ce = res["ceiling"]
    t.add_row("Ed25519 ceiling", f"{ce['verify_per_s_one_core']:,} verifies/s/core",
              "", f"{ce['ceiling_records_per_s']:,} rec/s (x{ce['cores']} cores / 4)", "", la(ce))
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
                  ">= 3,000/s at 1M rec",
                  f"{pr['errors']} errors; client {pr.get('client', 'aiohttp -c32')}",
                  ok(pr["proofs_per_s"] >= 3000) + ("" if (pr["log_size"] or 0) >= 1_000_000
                                                    else " (small log)"), la(pr))
    if "catchup" in res:
        cu = res["catchup"]
        t.add_row("catch-up", f"{cu['records_per_s_wall']:,} rec/s wall "
                  f"({cu['records_behind']:,} behind; sync {cu['records_per_s_sync']}/s)",
                  ">= 20,000 rec/s", f"healthy-3 commit {cu['commit_without_node3_per_s']:,}/s",
                  ok(cu["records_per_s_wall"] >= 20000), la(cu))
    if "memory" in res:
        me = res["memory"]
        peak = max(me["rss_mb"].values())
        node = max(me["rss_mb"], key=lambda k: me["rss_mb"][k])
        parts = me.get("detail_mb", {}).get(node, {})
        split = (f"{node}: anon {parts['RssAnon']:.0f} MB + mapped files "
                 f"{parts['RssFile']:.0f} MB" if "RssAnon" in parts else "")
        t.add_row("memory (max node RSS)", f"{peak:.0f} MB at {me['log_size']:,} rec",
                  "<= 250 MB at 1M rec", split, ok(peak <= 250) + (
                      "" if (me["log_size"] or 0) >= 1_000_000 else " (small log)"),
                  f"{me['load'][0]:.2f}")
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
        ax.axhline(3000, color="grey", ls=":", label="target 3,000/s")
        ax.set_xlabel("s")
        ax.set_ylabel("proofs/s")
        ax.set_title(f"Inclusion proofs at {res['proofs']['log_size']:,} records")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "proofs.png", dpi=100)
        plt.close(fig)
        files.append("proofs.png")
    return files


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
                          f"on one core -> {res['ceiling']['ceiling_records_per_s']:,} records/s")
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
@click.option("--block-records", type=int, default=4000, show_default=True,
              help="max_block_records of the benchmark chain (the cluster default is 1000)")
@click.option("--batch", type=int, default=2000, show_default=True)
@click.option("--inflight", type=int, default=4, show_default=True)
@click.option("--only", type=click.Choice(["latency", "throughput"]), multiple=True,
              help="run only these scenario groups (throughput includes proofs, "
                   "catch-up, memory)")
@click.option("--profile", is_flag=True, help="py-spy node0 during the throughput window")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="run the clusters in this directory and keep it (logs)")
def main(quick: bool, out: Path, duration: float | None, rate: float, low_rate: float,
         latency_seconds: float | None, proof_seconds: float | None, proof_records: int,
         catchup_records: int | None, block_records: int, batch: int, inflight: int,
         only: tuple[str, ...], profile: bool, keep: Path | None) -> None:
    """Run the benchmark scenarios on fresh local 4-node clusters."""
    o = Opts(quick=quick,
             duration=duration or (15 if quick else 60), warmup=3 if quick else 5, rate=rate, low_rate=low_rate,
             latency_seconds=latency_seconds or (10 if quick else 30),
             proof_seconds=proof_seconds or (5 if quick else 15), proof_records=proof_records,
             catchup_records=catchup_records or (10_000 if quick else 100_000),
             block_records=block_records, batch=batch, inflight=inflight, profile=profile,
             out=out)
    out.mkdir(parents=True, exist_ok=True)
    res = asyncio.run(run(o, set(only) or {"latency", "throughput"}, keep))
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
