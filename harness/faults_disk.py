"""Disk-full campaign: one validator's data directory on a small tmpfs (root).

Four ``ledger-node`` processes; node3's data directory is a tmpfs of
``size_mb``.  Load goes to the cluster until node3's disk fills; then:

* node3 must exit on its own with the storage exit code and one CRITICAL
  log line naming ENOSPC (fail-stop, node/failstop.py) - rather than stay
  up, stuck at its height, answering 503 to clients and 200 to /health;
* the tmpfs is grown (``mount -o remount,size=...``) and node3 restarted;
  it must catch up with the others, and every record the cluster
  acknowledged (202 ``accepted``) must be committed on all four nodes, with
  the same header hashes everywhere.

Figures: height when node3 stopped and the others' height then, seconds
from the disk filling to the exit, seconds to catch up after the restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.failstop import EXIT_STORAGE_WRITE
from .localnet import LocalCluster, until

VICTIM = 3


@dataclass
class DiskFullReport:
    size_mb: int = 0
    acknowledged: int = 0              # records answered 202 accepted/duplicate
    acknowledged_by_victim: int = 0
    victim_exit_code: int | None = None
    critical_line: str = ""
    victim_height_at_stop: int = 0
    others_height_at_stop: int = 0
    full_to_exit_s: float | None = None  # disk first seen over 90% full -> process gone
    critical_to_exit_s: float | None = None  # its CRITICAL line -> process seen gone
    victim_health_while_stuck: Any = None  # only when it did not exit
    catch_up_s: float | None = None
    caught_up_to: int = 0
    lost: int = 0
    lost_acknowledged_by_victim: int = 0
    forks: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def mount_tmpfs(directory: Path, size_mb: int) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(directory)],
                   check=True, capture_output=True)


def resize_tmpfs(directory: Path, size_mb: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_mb}m", str(directory)],
                   check=True, capture_output=True)


def unmount(directory: Path) -> None:
    subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


def _disk_full(directory: Path) -> bool:
    # LevelDB fails a table or log write with space still free: "full" is
    # when less than a tenth is left.
    st = os.statvfs(directory)
    return st.f_bavail < st.f_blocks // 10


def _critical_line(log_path: Path) -> tuple[str, float | None]:
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("level") == "critical":
            return str(doc.get("msg", "")), float(doc.get("ts", 0))
    return "", None


async def disk_full(directory: Path, *, size_mb: int = 40, grow_mb: int = 512,
                    load_nodes: tuple[int, ...] = (0, 1, 2, 3), batch: int = 200,
                    exit_timeout_s: float = 300.0, seed: int = 1,
                    progress: Any = None) -> DiskFullReport:
    """Run the campaign in ``directory`` (see the module doc); needs root."""
    from client.sdk import LedgerClient  # late: the runtime does not need the SDK

    say = progress or (lambda msg: None)
    rng = random.Random(seed)
    report = DiskFullReport(size_mb=size_mb)
    c = LocalCluster(directory, 4)
    disk = c.dir / f"node{VICTIM}" / "data"
    disk.mkdir(parents=True, exist_ok=True)
    mount_tmpfs(disk, size_mb)
    acked: dict[str, int] = {}  # record id -> node that acknowledged it
    stop_load = asyncio.Event()

    async def load(node: int) -> None:
        async with LedgerClient([c.url(node)], c.dir / "keys" / "demo.json",
                                nonce_file=c.dir / f"nonce{node}", request_timeout=10,
                                retries=0) as lc:
            while not stop_load.is_set():
                envs = [lc.sign(kind="payment", origin={"system": "faults-disk"},
                                body={"amount": rng.randrange(10_000), "pad": "x" * 200})
                        for _ in range(batch)]
                try:
                    results = await lc.submit_envelopes([e.envelope_bytes for e in envs])
                except Exception:  # noqa: BLE001 - refused or the node is gone: not acknowledged
                    if node == VICTIM and c.procs[VICTIM].poll() is not None:
                        return
                    await asyncio.sleep(0.2)
                    continue
                for env, r in zip(envs, results):
                    if r.get("status") in ("accepted", "duplicate", "committed"):
                        acked[env.id.hex()] = node

    try:
        await c.start_all(timeout=60)
        say(f"cluster up; node{VICTIM}'s data on a {size_mb} MB tmpfs; loading")
        workers = [asyncio.create_task(load(i)) for i in load_nodes]
        full_at: float | None = None
        last_victim_height = 0
        started = time.monotonic()
        proc = c.procs[VICTIM]
        while proc.poll() is None and time.monotonic() - started < exit_timeout_s:
            if full_at is None and _disk_full(disk):
                full_at = time.monotonic()
                say(f"node{VICTIM}'s disk is full")
            st = await c.status(VICTIM)
            if st is not None:
                last_victim_height = st["height"]
            if full_at is not None and time.monotonic() - full_at > 30:
                break  # it should long have stopped
            await asyncio.sleep(0.05)
        gone_at, gone_wall = time.monotonic(), time.time()
        report.victim_height_at_stop = last_victim_height
        report.others_height_at_stop = max([(await c.status(i) or {}).get("height", 0)
                                            for i in range(3)])
        report.victim_exit_code = proc.poll()
        if report.victim_exit_code is None:
            got = await c.try_get(VICTIM, "/health")
            report.victim_health_while_stuck = got
            report.failures.append(f"node{VICTIM} did not exit after its disk filled "
                                   f"(health: {got})")
            say(f"node{VICTIM} still running; health {got}; stopping it")
            c.kill(VICTIM)
        else:
            report.full_to_exit_s = round(gone_at - full_at, 2) if full_at else None
            say(f"node{VICTIM} exited with {report.victim_exit_code}")
            if report.victim_exit_code != EXIT_STORAGE_WRITE:
                report.failures.append(f"exit code {report.victim_exit_code}, "
                                       f"wanted {EXIT_STORAGE_WRITE}")
        report.critical_line, critical_ts = _critical_line(c.log_path(VICTIM))
        if critical_ts is not None and report.victim_exit_code is not None:
            report.critical_to_exit_s = round(gone_wall - critical_ts, 2)
        if "ENOSPC" not in report.critical_line:
            report.failures.append("no CRITICAL log line naming ENOSPC")
        await asyncio.sleep(1.0)  # a little more load on the other three
        stop_load.set()
        for w in workers:
            await w

        resize_tmpfs(disk, grow_mb)
        say(f"tmpfs grown to {grow_mb} MB; restarting node{VICTIM}")
        target = max([(await c.status(i) or {}).get("height", 0) for i in range(3)])
        restarted = time.monotonic()
        c.start(VICTIM)
        await c.wait_height([VICTIM], target, timeout=300)
        report.catch_up_s = round(time.monotonic() - restarted, 2)
        report.caught_up_to = target

        report.acknowledged = len(acked)
        report.acknowledged_by_victim = sum(1 for n in acked.values() if n == VICTIM)
        say(f"checking {len(acked)} acknowledged records on all four nodes")

        async def drained() -> bool:
            sts = [await c.status(i) for i in range(4)]
            return all(s is not None and s.get("mempool") == 0 for s in sts) \
                and len({s["height"] for s in sts if s is not None}) == 1

        try:
            await until(drained, 120, "mempools to drain and heights to agree", interval=0.5)
        except TimeoutError as exc:
            report.failures.append(str(exc))
        for i in range(4):
            height = (await c.status(i) or {}).get("height", 0)
            in_chain: set[str] = set()
            for h in range(1, height + 1):
                status, doc = await c.get(i, f"/v1/blocks/{h}")
                if status == 200:
                    in_chain.update(doc["records"])
            missing = [rid for rid in acked if rid not in in_chain]
            if len(missing) > report.lost:
                report.lost = len(missing)
                report.lost_acknowledged_by_victim = sum(acked[r] == VICTIM for r in missing)
        if report.lost:
            report.failures.append(f"{report.lost} acknowledged records not committed "
                                   f"everywhere ({report.lost_acknowledged_by_victim} of them "
                                   f"acknowledged by node{VICTIM})")
        height = min([(await c.status(i) or {}).get("height", 0) for i in range(4)])
        reference = await c.header_hashes(0, height)
        for i in range(1, 4):
            if await c.header_hashes(i, height) != reference:
                report.forks += 1
                report.failures.append(f"node{i} header hashes differ from node0's")
    finally:
        stop_load.set()
        await c.stop_all()
        unmount(disk)
    return report
