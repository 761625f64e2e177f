"""A running validator under load is backed up (``ledger-node backup``), the
backup is restored into a new data dir (``ledger-node restore``), ``--check``
passes on it, and the restored node rejoins and catches up with the others."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_cluster import Submitter, b64

from harness.localnet import LocalCluster

pytestmark = pytest.mark.cluster


def ledger_node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.main", *args], capture_output=True,
                          text=True, timeout=120, check=False)


async def _feed(c: LocalCluster, sub: Submitter, stop: asyncio.Event) -> list[str]:
    """Submit batches to node 0 until told to stop; the last id of each accepted batch."""
    last: list[str] = []
    while not stop.is_set():
        envs = [sub.envelope() for _ in range(100)]
        status, doc = await c.post(0, "/v1/records", json=b64(envs))
        if status == 202:
            last.append(envs[-1].id.hex())
        else:
            assert status in (429, 503), (status, doc)
        await asyncio.sleep(0.05)
    return last


async def test_backup_restore_rejoin(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "cluster", 4)
    try:
        everyone = await c.start_all()
        sub = Submitter(c)
        stop = asyncio.Event()
        feeding = asyncio.create_task(_feed(c, sub, stop))
        await c.wait_height(everyone, 3, timeout=60)
        sock = c.config(3).parent / "data" / "admin.sock"
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        # The node is running (it holds the lock): --check says so, exit 2.
        busy = await asyncio.to_thread(ledger_node, "--config", str(c.config(3)), "--check")
        assert busy.returncode == 2 and "in use by a running node" in busy.stdout, busy.stdout

        backup = tmp_path / "backup"
        made = await asyncio.to_thread(ledger_node, "backup", "--config", str(c.config(3)),
                                       "--to", str(backup))
        assert made.returncode == 0, made.stdout + made.stderr
        manifest = json.loads((backup / "backup.json").read_text())
        print("backup:", manifest)
        assert manifest["height"] >= 3 and manifest["records"] > 0
        again = await asyncio.to_thread(ledger_node, "backup", "--config", str(c.config(3)),
                                        "--to", str(backup))
        assert again.returncode == 2 and "not an empty directory" in again.stderr
        await c.wait_height(everyone, manifest["height"] + 2, timeout=60)

        # Node 3 loses its disk: it comes back on a new data dir from the backup.
        c.kill(3)
        toml = c.config(3)
        toml.write_text(toml.read_text().replace('data_dir = "data"', 'data_dir = "restored"'))
        restored = await asyncio.to_thread(ledger_node, "restore", "--config", str(toml),
                                           "--from", str(backup))
        assert restored.returncode == 0, restored.stdout + restored.stderr
        check = await asyncio.to_thread(ledger_node, "--config", str(toml), "--check")
        assert check.returncode == 0 and "clean" in check.stdout, check.stdout
        c.start(3)
        await c.wait_connected(everyone, timeout=30)

        stop.set()
        last = await feeding
        assert last
        await c.wait_committed(everyone, last[-1], timeout=90)
        top = max([(await c.status(i))["height"] for i in everyone])  # type: ignore[index]
        assert top > manifest["height"]
        await c.wait_height(everyone, top, timeout=60)
        reference = await c.header_hashes(0, top)
        for i in everyone:
            assert await c.header_hashes(i, top) == reference, f"node{i} diverged"
            status, doc = await c.get(i, "/v1/evidence")
            assert status == 200 and doc["evidence"] == [], f"node{i} saw equivocation"
        for record_id in last:
            await c.wait_committed([3], record_id, timeout=10)
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")
