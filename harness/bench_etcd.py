"""The benchmark's peer (:mod:`harness.bench`, ``--only etcd``): a 3-member etcd
cluster on this machine, loaded like our cluster, so our committed records/s
can be reported as a ratio of etcd's measured in the same run.

etcd is Raft: crash-tolerant only, no signatures, no Merkle log.  Its
members run on loopback ports with their defaults, so every write is
fsynced to the write-ahead log before it is acknowledged (``--unsafe-no-fsync``
is not given), as our validators sync every commit.  Debian packages no
etcd load tool (``benchmark`` is not in ``etcd-server`` or
``etcd-client``), so the load comes from :data:`WORKERS` client processes,
each keeping :data:`CONCURRENCY` keep-alive HTTP requests in flight against
etcd's JSON gateway: ``/v3/kv/txn`` with ``batch`` puts per transaction
(our bench posts batches too; etcd caps a transaction at 128 operations),
or ``/v3/kv/put`` one record at a time with ``batch`` 1.  Keys are unique
(``r/<worker>/<n>``, like record ids) and values are random bytes of the
size of the envelopes our benchmark submits.

The clients report their own CPU time: ``client_cpu_share`` near 1.0 (each
worker process busy all the time) would mean the clients, not etcd, set the
rate, and the report says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bench_measure import cpu_seconds, loadavg
from .localnet import free_base_port

MEMBERS = 3
WORKERS = 2
CONCURRENCY = 16
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
NOT_INSTALLED = ("etcd is not installed: the peer scenario is skipped "
                 "(Debian: apt-get install etcd-server; scripts/bench installs it as root)")


def etcd_binary() -> str | None:
    """The ``etcd`` server on PATH (Debian's is /usr/bin/etcd), or None."""
    return shutil.which("etcd")


def member_urls(base_port: int, members: int = MEMBERS) -> list[tuple[str, str]]:
    """(client URL, peer URL) per member: ports base, base+1, ... pairwise."""
    return [(f"http://127.0.0.1:{base_port + 2 * i}", f"http://127.0.0.1:{base_port + 2 * i + 1}")
            for i in range(members)]


def member_command(etcd: str, root: Path, i: int, urls: Sequence[tuple[str, str]]) -> list[str]:
    """The command line of member ``i``: loopback only, WAL fsync as by
    default, a fresh data directory under ``root``."""
    client, peer = urls[i]
    initial = ",".join(f"m{k}={p}" for k, (_, p) in enumerate(urls))
    return [etcd, "--name", f"m{i}", "--data-dir", str(root / f"m{i}"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", "auditledger-bench",
            "--logger", "zap", "--log-level", "warn"]


def txn_body(worker: int, first: int, count: int, value_b64: str) -> bytes:
    """A JSON ``/v3/kv/txn`` request putting ``count`` unique keys
    ``r/<worker>/<first + k>``, or a ``/v3/kv/put`` request when count is 1."""
    def key(n: int) -> str:
        return base64.b64encode(b"r/%d/%d" % (worker, n)).decode()

    if count == 1:
        return json.dumps({"key": key(first), "value": value_b64}).encode()
    ops = [{"request_put": {"key": key(first + k), "value": value_b64}} for k in range(count)]
    return json.dumps({"success": ops}).encode()


def committed_ops(status: int, doc: Any, count: int) -> int:
    """Puts a gateway answer acknowledges: all ``count`` on a 200 with a
    header (etcd answers after the write is committed and its WAL synced),
    none otherwise (an error document carries ``error``/``code``)."""
    if status != 200 or not isinstance(doc, dict) or "header" not in doc:
        return 0
    if count > 1 and doc.get("succeeded") is False:
        return 0
    return count


def steady_rate(completions: Sequence[tuple[float, int]], start: float, end: float) -> float:
    """Ops/s acknowledged with a completion time in [start, end)."""
    if end <= start:
        return 0.0
    return sum(n for t, n in completions if start <= t < end) / (end - start)


def summarize(results: Sequence[dict[str, Any]], warmup: float, duration: float,
              batch: int, value_bytes: int) -> dict[str, Any]:
    """The scenario's figures from the workers' reports (completion times
    relative to the moment the workers were told to go)."""
    completions = [(t, n) for r in results for t, n in r["completions"]]
    rate = steady_rate(completions, warmup, warmup + duration)
    wall = warmup + duration
    client_cpu = sum(r["cpu_s"] for r in results)
    return {"puts_per_s_steady": round(rate), "batch": batch, "value_bytes": value_bytes,
            "workers": len(results), "concurrency_per_worker": CONCURRENCY,
            "acknowledged": sum(n for _, n in completions),
            "errors": sum(r["errors"] for r in results),
            "client_cpu_s": round(client_cpu, 2),
            "client_cpu_share": round(client_cpu / (wall * max(len(results), 1)), 3),
            "seconds": duration, "warmup_s": warmup}


def ratio(ours: float | None, etcd: dict[str, Any] | None) -> float | None:
    """Our committed records/s over etcd's acknowledged puts/s."""
    if not ours or not etcd or not etcd.get("puts_per_s_steady"):
        return None
    return round(ours / float(etcd["puts_per_s_steady"]), 3)


# -- load ----------------------------------------------------------------------


def _worker(worker: int, urls: list[str], batch: int, value_bytes: int, go_at: float,
            stop_at: float, out: Any) -> None:
    """One client process: CONCURRENCY request loops until ``stop_at``
    (wall clock), reporting completion times relative to ``go_at``."""
    import aiohttp

    value_b64 = base64.b64encode(os.urandom(value_bytes)).decode()
    path = "/v3/kv/put" if batch == 1 else "/v3/kv/txn"
    completions: list[tuple[float, int]] = []
    errors = 0
    counter = 0

    async def loop(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors, counter
        url = urls[k % len(urls)] + path
        while time.time() < stop_at:
            first = counter
            counter += batch
            body = txn_body(worker, first, batch, value_b64)
            try:
                async with session.post(url, data=body) as r:
                    doc = await r.json(content_type=None)
                    n = committed_ops(r.status, doc, batch)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError):
                n = 0
            if n:
                completions.append((time.time() - go_at, n))
            else:
                errors += 1
                await asyncio.sleep(0.01)

    async def main() -> None:
        await asyncio.sleep(max(0.0, go_at - time.time()))
        conn = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=conn,
                                         timeout=aiohttp.ClientTimeout(total=30)) as session:
            await asyncio.gather(*(loop(k, session) for k in range(CONCURRENCY)))

    asyncio.run(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put({"worker": worker, "completions": completions, "errors": errors,
             "cpu_s": usage.ru_utime + usage.ru_stime})


# -- the scenario ----------------------------------------------------------------


async def _healthy(client_url: str) -> bool:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
            async with s.post(client_url + "/v3/kv/range",
                              data=json.dumps({"key": base64.b64encode(b"x").decode()})) as r:
                return r.status == 200
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
        return False


async def scenario_etcd(root: Path, duration: float, warmup: float, value_bytes: int,
                        batch: int) -> dict[str, Any]:
    """Start 3 members, load them for ``warmup + duration`` s, stop them.
    Returns ``{"skipped": reason}`` where etcd is not installed."""
    etcd = etcd_binary()
    if etcd is None:
        return {"skipped": NOT_INSTALLED}
    batch = max(1, min(batch, MAX_TXN_OPS))
    base = free_base_port(2 * MEMBERS)
    urls = member_urls(base)
    (root / "etcd").mkdir(parents=True, exist_ok=True)
    procs = []
    logs = []
    try:
        for i in range(MEMBERS):
            log = open(root / "etcd" / f"m{i}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen(member_command(etcd, root / "etcd", i, urls),
                                          stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while not all([await _healthy(c) for c, _ in urls]):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"etcd did not start (logs in {root / 'etcd'})")
            await asyncio.sleep(0.2)
        la0 = loadavg()
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        go_at = time.time() + 2.0  # the workers import aiohttp first
        stop_at = go_at + warmup + duration
        clients = [c for c, _ in urls]
        workers = [ctx.Process(target=_worker, args=(w, clients, batch, value_bytes, go_at,
                                                     stop_at, queue)) for w in range(WORKERS)]
        for w in workers:
            w.start()
        results = []
        for _ in workers:
            results.append(await asyncio.to_thread(queue.get, True, warmup + duration + 120))
        for w in workers:
            w.join(timeout=10)
        cpu1 = sum(cpu_seconds(p.pid) for p in procs)
        out = summarize(results, warmup, duration, batch, value_bytes)
        out.update({"members": MEMBERS, "version": _version(etcd), "fsync": "WAL fsync (default)",
                    "etcd_cpu_us_per_put_per_member": round(
                        (cpu1 - cpu0) / max(out["acknowledged"], 1) / MEMBERS * 1e6, 1),
                    "load_start": la0, "load_end": loadavg()})
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def _version(etcd: str) -> str:
    try:
        out = subprocess.run([etcd, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"
