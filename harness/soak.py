"""Soak test: a 4-node cluster under steady load for a long time, with faults.

``scripts/soak`` (:func:`soak`) posts signed batches at a target rate
(default 2,000 records/s) to the validators in turn for ``--duration``
seconds, and on a schedule drawn from ``--seed`` SIGKILLs and restarts a
validator or partitions the cluster (one node isolated, or a 2|2 split) for
a while and heals it.  Meanwhile it samples every node's memory (RssAnon and
RssFile, every 10 s) with its thread count and its store's table files, and,
for 1 in 50 acknowledged records, the time from the 202 to the record
reading ``committed`` (GET /v1/records/{id}).

In the end, with every node up and connected and every mempool drained:
``lost`` counts records some node acknowledged (202 ``accepted`` or
``duplicate``) that are not in the chain - nothing is resubmitted, so this
counts what nodes acknowledged, as ``scripts/faults acks`` does; ``forks``
counts nodes whose header hash differs from node0's at any height both hold.
Results go to ``<out>/summary.json`` and ``<out>/soak.png``.

Partitions need network namespaces (root and iproute2, node/netns.py): the
runner re-executes itself inside the lab's hub namespace.  Without them the
soak runs on loopback with kills only and says why in the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .bench_measure import memory_mb, pct
from .faults_acks import HELD, _Signer
from .localnet import LocalCluster, until

SAMPLE_EVERY = 50      # 1 in 50 acknowledged records is followed to its commit
MEMORY_EVERY = 10.0    # seconds between memory samples


@dataclass
class Fault:
    at: float              # seconds after the load started
    kind: str              # "kill", "isolate" or "split"
    nodes: list[int]       # the victim, the isolated node, or one side of the split
    hold: float            # seconds down / partitioned


def schedule(seed: int, duration: float, every: float, n: int = 4) -> list[Fault]:
    """The faults of a run: one every ``every`` seconds (jittered by a
    quarter), alternating kill and partition, the first a kill; nothing in
    the last ``every / 2`` seconds, so the cluster is whole when load stops."""
    rng = random.Random(seed)
    out: list[Fault] = []
    k = 1
    while True:
        at = k * every + rng.uniform(-every / 4, every / 4)
        if at > duration - every / 2:
            return out
        if k % 2:
            out.append(Fault(round(at, 2), "kill", [rng.randrange(n)],
                             round(rng.uniform(0.5, 3), 2)))
        elif rng.random() < 0.5:
            out.append(Fault(round(at, 2), "isolate", [rng.randrange(n)],
                             round(rng.uniform(5, 15), 2)))
        else:
            side = rng.sample(range(n), n // 2)
            out.append(Fault(round(at, 2), "split", sorted(side), round(rng.uniform(5, 15), 2)))
        k += 1


@dataclass
class SoakReport:
    duration_s: float = 0.0
    target_rate: float = 0.0
    achieved_rate: float = 0.0      # acknowledged records per second of load
    posts: int = 0
    posts_refused: dict[str, int] = field(default_factory=dict)  # status -> count
    acked: int = 0
    committed: int = 0
    lost: int = 0
    height: int = 0
    forks: int = 0
    evidence: int = 0
    kills: int = 0
    partitions: int = 0
    partitions_skipped: str = ""
    latency_samples: int = 0
    latency_unresolved: int = 0     # samples still not seen committed when load stopped
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_per_minute: list[dict[str, float]] = field(default_factory=list)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    memory_samples: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not self.failures and self.lost == 0 and self.forks == 0


class _Run:
    def __init__(self, c: LocalCluster, lab: Any, rate: float, seed: int, batch: int,
                 say: Any) -> None:
        self.c, self.lab, self.rate, self.batch, self.say = c, lab, rate, batch, say
        self.rng = random.Random(seed)
        self.signer = _Signer(c, random.Random(seed + 1))
        self.acked: set[str] = set()
        self.pending: dict[str, float] = {}          # sampled id -> monotonic time of its 202
        self.latencies: list[tuple[float, float]] = []  # (seconds into the run, ms)
        self.down: set[int] = set()
        self.stop = asyncio.Event()
        self.t0 = time.monotonic()
        self.report = SoakReport(target_rate=rate)
        self.acks_seen = 0
        self.acked_at_progress = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def live(self) -> list[int]:
        return [i for i in range(self.c.n) if i not in self.down]

    async def post(self, node: int) -> None:
        envs = self.signer.batch(self.batch)
        body = {"envelopes": [base64.b64encode(e.envelope_bytes).decode() for e in envs]}
        self.report.posts += 1
        try:
            status, doc = await self.c.post(node, "/v1/records", json=body)
        except Exception as exc:  # noqa: BLE001 - killed, cut off, timed out: nothing acknowledged
            key = type(exc).__name__
            self.report.posts_refused[key] = self.report.posts_refused.get(key, 0) + 1
            return
        if status != 202:
            refused = self.report.posts_refused
            refused[str(status)] = refused.get(str(status), 0) + 1
            return
        at = time.monotonic()
        for r in doc["results"]:
            if r.get("status") in HELD:
                self.acked.add(r["id"])
                self.acks_seen += 1
                if self.acks_seen % SAMPLE_EVERY == 0:
                    self.pending.setdefault(r["id"], at)

    async def load(self, worker: int, workers: int) -> None:
        """Post a batch every ``batch * workers / rate`` seconds; a worker that
        falls behind posts at once and does not try to catch up later."""
        interval = self.batch * workers / self.rate
        node = worker
        due = time.monotonic()
        while not self.stop.is_set():
            live = self.live() or [0]
            node = (node + 1) % self.c.n
            target = node if node in live else live[node % len(live)]
            await self.post(target)
            due = max(due + interval, time.monotonic() - interval)
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                except TimeoutError:
                    pass

    async def follow(self) -> None:
        """Poll the sampled records until each reads committed on a live node."""
        while not self.stop.is_set() or self.pending:
            if self.stop.is_set() and self.report.duration_s and \
                    self.now() > self.report.duration_s + 120:
                break
            # Concurrently, so that the resolution of a figure does not grow
            # with the number of samples in flight.
            batch = list(self.pending)[:200]
            await asyncio.gather(*(self._check(rid, i) for i, rid in enumerate(batch)))
            await asyncio.sleep(0.2)

    async def _check(self, rid: str, k: int) -> None:
        live = self.live()
        if not live:
            return
        got = await self.c.try_get(live[k % len(live)], f"/v1/records/{rid}")
        if got is not None and got[0] == 200 and got[1].get("status") == "committed":
            acked_at = self.pending.pop(rid, None)
            if acked_at is not None:
                self.latencies.append((acked_at - self.t0, (time.monotonic() - acked_at) * 1000))

    def sample_memory(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": round(self.now(), 1)}
        for i in range(self.c.n):
            proc = self.c.procs.get(i)
            alive = proc is not None and proc.poll() is None
            mem = memory_mb(proc.pid) if alive and proc is not None else {}
            row[f"node{i}"] = {"anon": mem.get("RssAnon"), "file": mem.get("RssFile"),
                               "threads": _threads(proc.pid) if alive and proc is not None else None,
                               "tables": _table_files(self.c.config(i).parent / "data" / "chain")}
        self.report.memory_samples.append(row)
        return row

    async def memory(self) -> None:
        while not self.stop.is_set():
            self.sample_memory()
            try:
                await asyncio.wait_for(self.stop.wait(), MEMORY_EVERY)
            except TimeoutError:
                pass

    async def progress(self, every: float) -> None:
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), every)
                return
            except TimeoutError:
                pass
            heights, mempools = [], []
            for i in range(self.c.n):
                st = await self.c.status(i) if i not in self.down else None
                heights.append(st["height"] if st else "-")
                mempools.append(st.get("mempool", "-") if st else "-")
            committed = await self._committed_count()
            mem = self.report.memory_samples[-1] if self.report.memory_samples else {}
            rss = " ".join(f"n{i}={(mem.get(f'node{i}') or {}).get('anon')}/"
                           f"{(mem.get(f'node{i}') or {}).get('file')}" for i in range(self.c.n))
            tables = [(mem.get(f"node{i}") or {}).get("tables") for i in range(self.c.n)]
            recent = [ms for t, ms in self.latencies if t > self.now() - every]
            rate = (len(self.acked) - self.acked_at_progress) / every
            self.acked_at_progress = len(self.acked)
            line = (f"t={self.now():.0f}s height={heights} committed={committed} "
                    f"acked={len(self.acked)} rate={rate:.0f}/s "
                    f"kills={self.report.kills} partitions={self.report.partitions} "
                    f"mempool={mempools} lat_p50/p99_ms(last {every:.0f}s)="
                    f"{pct(recent, 50):.0f}/{pct(recent, 99):.0f} rss_anon/file_mb {rss} "
                    f"table_files={tables}")
            self.report.progress.append(line)
            self.say(line)

    async def _committed_count(self) -> int | str:
        """Records in the chain of some live node (``log_size`` of its tip)."""
        for i in self.live():
            got = await self.c.try_get(i, "/v1/blocks/latest")
            if got is not None and got[0] == 200:
                return int(got[1]["fields"].get("log_size", 0))
        return "-"

    async def inject(self, f: Fault) -> None:
        rec = asdict(f)
        rec["started"] = round(self.now(), 1)
        if f.kind == "kill":
            victim = f.nodes[0]
            self.down.add(victim)
            self.c.kill(victim)
            self.report.kills += 1
            self.say(f"t={self.now():.0f}s fault: SIGKILL node{victim} for {f.hold}s")
            await asyncio.sleep(f.hold)
            self.c.start(victim)
            try:
                await self.c.wait_connected(list(range(self.c.n)), timeout=120)
            except TimeoutError as exc:
                self.report.failures.append(f"after the kill of node{victim}: {exc}")
            self.down.discard(victim)
        elif self.lab is None:
            rec["skipped"] = self.report.partitions_skipped
        else:
            if f.kind == "isolate":
                self.lab.isolate(f.nodes[0])
            else:
                self.lab.partition(f.nodes, [i for i in range(self.c.n) if i not in f.nodes])
            self.report.partitions += 1
            self.say(f"t={self.now():.0f}s fault: {f.kind} {f.nodes} for {f.hold}s")
            await asyncio.sleep(f.hold)
            self.lab.heal()
            try:
                await self.c.wait_connected(list(range(self.c.n)), timeout=120)
            except TimeoutError as exc:
                self.report.failures.append(f"after healing {f.kind} {f.nodes}: {exc}")
        rec["ended"] = round(self.now(), 1)
        self.report.faults.append(rec)


async def soak(directory: Path, out: Path, *, duration: float, rate: float, seed: int,
               fault_every: float, batch: int = 50, workers: int = 4,
               progress_every: float = 60.0, lab: Any = None, no_netns_reason: str = "",
               say: Any = None) -> SoakReport:
    """Run the soak; see the module doc.  ``lab`` is a :class:`harness.netns.NetnsLab`
    this process runs inside (partitions), or None (kills only)."""
    from .faults import _chain_ids

    say = say or (lambda msg: None)
    if lab is not None:
        from .netns import _cluster

        c: LocalCluster = _cluster(directory, lab)
        # The lab shortens peer heartbeats to 500 ms so that its short tests
        # see a cut at once; that leaves 250 ms for a pong, which a node
        # under an hour of load misses, closing healthy links again and
        # again.  The soak runs the nodes' default instead.
        for i in range(c.n):
            cfg = c.config(i)
            cfg.write_text(re.sub(r"(?m)^heartbeat_ms = 500$", "heartbeat_ms = 5000",
                                  cfg.read_text()))
    else:
        c = LocalCluster(directory, 4)
    run = _Run(c, lab, rate, seed, batch, say)
    rep = run.report
    rep.partitions_skipped = "" if lab is not None else no_netns_reason or "no netns lab"
    faults = schedule(seed, duration, fault_every)
    say(f"schedule (seed {seed}): " + ", ".join(f"{f.kind}{f.nodes}@{f.at:.0f}s" for f in faults))
    try:
        await c.start_all(timeout=120)
        run.t0 = time.monotonic()
        tasks = [asyncio.create_task(run.load(w, workers)) for w in range(workers)]
        tasks += [asyncio.create_task(run.memory()),
                  asyncio.create_task(run.progress(progress_every))]
        follower = asyncio.create_task(run.follow())
        for f in faults:
            wait = f.at - run.now()
            if wait > 0:
                await asyncio.sleep(wait)
            await run.inject(f)
        await asyncio.sleep(max(0.0, duration - run.now()))
        rep.duration_s = round(run.now(), 1)
        run.stop.set()
        await asyncio.gather(*tasks)
        rep.acked = len(run.acked)
        rep.achieved_rate = round(rep.acked / max(rep.duration_s, 1e-9), 1)
        say(f"load stopped after {rep.duration_s}s: {rep.acked} acknowledged; draining")
        await until(lambda: _drained(c), 600, "every mempool to drain", interval=1.0)
        await follower
        rep.latency_unresolved = len(run.pending)
        run.sample_memory()
        await _verify(c, rep, run.acked, _chain_ids)
        if any("Traceback" in c.log_path(i).read_text(errors="replace") for i in range(c.n)):
            rep.failures.append("a node logged a traceback")
    except Exception as exc:  # noqa: BLE001 - reported with whatever was measured so far
        rep.failures.append(f"{type(exc).__name__}: {exc}")
        rep.duration_s = rep.duration_s or round(run.now(), 1)
        rep.acked = len(run.acked)
    finally:
        run.stop.set()
        if lab is not None:
            lab.heal()
        await c.stop_all()
    _latency(rep, run.latencies)
    _memory_summary(rep)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(asdict(rep), indent=2) + "\n")
    from .soak_plot import plot

    plot(rep, out / "soak.png")
    return rep


async def _drained(c: LocalCluster) -> bool:
    for i in range(c.n):
        st = await c.status(i)
        if st is None or st.get("mempool") != 0:
            return False
    return True


async def _verify(c: LocalCluster, rep: SoakReport, acked: set[str], chain_ids: Any) -> None:
    heights = [st["height"] for i in range(c.n) if (st := await c.status(i)) is not None]
    rep.height = max(heights)
    await c.wait_height(list(range(c.n)), rep.height, timeout=120)
    reference = await c.header_hashes(0, rep.height)
    for i in range(1, c.n):
        if await c.header_hashes(i, rep.height) != reference:
            rep.forks += 1
            rep.failures.append(f"node{i} header hashes differ from node0's")
    chain: set[str] = set()
    for h in range(1, rep.height + 1):
        status, doc = await c.get(0, f"/v1/blocks/{h}")
        chain.update(doc["records"])
    rep.committed = len(chain)
    lost = sorted(acked - chain)
    rep.lost = len(lost)
    if lost:
        rep.failures.append(f"{len(lost)} acknowledged records never committed, e.g. {lost[:3]}")
    for i in range(c.n):
        status, doc = await c.get(i, "/v1/evidence")
        rep.evidence += len(doc.get("evidence", [])) if status == 200 else 0


def _latency(rep: SoakReport, samples: list[tuple[float, float]]) -> None:
    rep.latency_samples = len(samples)
    rep.latency_p50_ms = round(pct([ms for _, ms in samples], 50), 1)
    rep.latency_p99_ms = round(pct([ms for _, ms in samples], 99), 1)
    minutes: dict[int, list[float]] = {}
    for t, ms in samples:
        minutes.setdefault(int(t // 60), []).append(ms)
    rep.latency_per_minute = [{"minute": m, "n": len(v), "p50_ms": round(pct(v, 50), 1),
                               "p99_ms": round(pct(v, 99), 1)} for m, v in sorted(minutes.items())]


def _threads(pid: int) -> int | None:
    """The process's thread count (/proc), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _table_files(chain: Path) -> int | None:
    """LevelDB table files in a node's store: LevelDB keeps each open table's
    index in anonymous memory (up to ``storage.max_open_files`` tables), so
    RssAnon follows this count (docs/operators.md, memory)."""
    try:
        return sum(1 for name in chain.iterdir() if name.suffix == ".ldb")
    except OSError:
        return None


def _memory_summary(rep: SoakReport) -> None:
    for node in (f"node{i}" for i in range(4)):
        for part in ("anon", "file", "threads", "tables"):
            vals = [s[node][part] for s in rep.memory_samples
                    if node in s and s[node].get(part) is not None]
            if vals:
                key = f"{node}_{part}_mb" if part in ("anon", "file") else f"{node}_{part}"
                rep.memory[key] = {"start": vals[0], "end": vals[-1],
                                                   "max": max(vals),
                                                   "growth": round(vals[-1] - vals[0], 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3600.0, help="seconds of load (default 3600)")
    p.add_argument("--rate", type=float, default=2000.0, help="target records/s (default 2000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and the load")
    p.add_argument("--fault-every", type=float, default=120.0,
                   help="seconds between faults, alternating kill and partition (default 120)")
    p.add_argument("--batch", type=int, default=50, help="records per POST (default 50)")
    p.add_argument("--workers", type=int, default=4, help="concurrent posting clients")
    p.add_argument("--progress-every", type=float, default=60.0)
    p.add_argument("--out", type=Path, default=Path("soak-out"), help="summary.json, soak.png")
    p.add_argument("--dir", type=Path, default=None,
                   help="cluster directory (default <out>/cluster)")
    p.add_argument("--no-partitions", action="store_true", help="loopback, kills only")
    p.add_argument("--inside", nargs=2, metavar=("TAG", "SUBNET"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = args.out.resolve()
    directory = (args.dir or out / "cluster").resolve()

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    kw = dict(duration=args.duration, rate=args.rate, seed=args.seed,
              fault_every=args.fault_every, batch=args.batch, workers=args.workers,
              progress_every=args.progress_every, say=say)
    from .netns import NetnsLab, unavailable_reason

    if args.inside:  # the re-executed runner, inside the lab's hub namespace
        lab = NetnsLab(4, tag=args.inside[0], subnet=int(args.inside[1]))
        rep = asyncio.run(soak(directory, out, lab=lab, **kw))
    else:
        reason = "--no-partitions" if args.no_partitions else unavailable_reason()
        if reason is None:
            lab = NetnsLab(4)
            lab.up()
            try:
                argv2 = [a for a in (argv if argv is not None else sys.argv[1:])]
                cmd = ["ip", "netns", "exec", lab.hub, sys.executable, "-m", "harness.soak", *argv2,
                       "--out", str(out), "--dir", str(directory),
                       "--inside", lab.tag, str(lab.subnet)]
                return subprocess.run(cmd, stdin=subprocess.DEVNULL,
                                      cwd=str(Path(__file__).resolve().parent.parent)).returncode
            finally:
                lab.down()
        say(f"partitions skipped: {reason}")
        rep = asyncio.run(soak(directory, out, no_netns_reason=reason, **kw))
    say(json.dumps({k: v for k, v in asdict(rep).items()
                    if k not in ("memory_samples", "progress", "latency_per_minute")}, indent=2))
    say(f"summary: {out / 'summary.json'}  plot: {out / 'soak.png'}  "
        f"{'PASS' if rep.ok() else 'FAIL'}")
    return 0 if rep.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
