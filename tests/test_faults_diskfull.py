"""Issue 21 item 5, short: a validator whose disk fills exits (fail-stop)
naming ENOSPC, and after the disk grows it restarts and catches up with
nothing acknowledged lost.  The long version is ``scripts/faults diskfull``
(harness/faults_disk.py); this one uses a smaller tmpfs and loads only the
other three nodes (what node3 itself acknowledged is the durability of
accepted records, tested on its own)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from node.failstop import EXIT_STORAGE_WRITE
from harness.faults_disk import disk_full


def _can_mount_tmpfs(tmp_path: Path) -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs under node3's data directory"
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot mount a tmpfs here: {done.stderr.strip()}"
    subprocess.run(["umount", str(probe)], check=False)
    return None


async def test_a_node_whose_disk_fills_exits_and_recovers_on_restart(tmp_path: Path) -> None:
    if (why := _can_mount_tmpfs(tmp_path)) is not None:
        pytest.skip(why)
    report = await disk_full(tmp_path / "cluster", size_mb=8, grow_mb=256,
                             load_nodes=(0, 1, 2), batch=100, exit_timeout_s=120)
    assert report.victim_exit_code == EXIT_STORAGE_WRITE, report
    assert "No space left on device" in report.critical_line
    assert "[ENOSPC]" in report.critical_line
    assert report.acknowledged > 0
    assert report.catch_up_s is not None and report.caught_up_to > report.victim_height_at_stop
    assert report.lost == 0 and report.forks == 0, report.failures
    assert report.ok, report.failures
