"""A validator SIGKILLed while it catches up (docs/design.md, "Catch-up
syncs every block") restarts on a store that passes ``fsck``, catches up the
rest, and holds the same chain as the others.  Slow (about 33 s): the kill
loops (tests/test_faults_killloop.py) restart killed validators that catch
up in every CI run; this one aims the kill inside a fetched batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_cluster import Submitter, b64

from harness.localnet import LocalCluster
from ledger.fsck import fsck
from ledger.storage import LevelDBStore

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

JOINER = 3
BEHIND = 60  # blocks the joiner misses while it is down


async def _height(c: LocalCluster, i: int) -> int:
    doc = await c.status(i)
    return int(doc["height"]) if doc is not None else -1


async def test_sigkill_mid_catch_up(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "cluster", 4)
    try:
        everyone = await c.start_all()
        c.kill(JOINER)
        others = [i for i in everyone if i != JOINER]
        sub = Submitter(c)
        start = await _height(c, 0)
        last = ""
        while await _height(c, 0) < start + BEHIND:
            envs = [sub.envelope() for _ in range(50)]
            status, doc = await c.post(0, "/v1/records", json=b64(envs))
            assert status in (202, 429, 503), (status, doc)
            if status == 202:
                last = envs[-1].id.hex()
            await asyncio.sleep(0.02)
        assert last
        await c.wait_committed(others, last, timeout=60)
        target = await _height(c, 0)

        # Fetched batches start at one block and double (1, 2, 4, 8, ...), so
        # from 9 blocks on it is most likely inside the batch of 8.  Where
        # exactly decides nothing: every moment must leave a prefix.
        c.start(JOINER)
        for _ in range(3000):
            if await _height(c, JOINER) >= start + 9:
                break
            await asyncio.sleep(0.01)
        c.kill(JOINER)

        c.start(JOINER)
        await c.wait_committed(everyone, last, timeout=90)
        reference = await c.header_hashes(0, target)
        assert await c.header_hashes(JOINER, target) == reference
        log = c.log_path(JOINER).read_text()
        assert "Traceback" not in log
    finally:
        await c.stop_all()
        print(f"---- node{JOINER} log tail ----\n{c.tail(JOINER, 20)}")
    store = LevelDBStore(str(c.dir / f"node{JOINER}" / "data" / "chain"))
    try:
        assert fsck(store, c.genesis).clean
    finally:
        store.close()
