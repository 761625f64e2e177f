"""SIGKILL validators at random moments under load: every restart reopens its
LevelDB (integrity check of the tip), restores its consensus state, catches
up, and in the end all nodes hold the same chain and nobody equivocated."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from test_cluster import Submitter, b64

from harness.localnet import LocalCluster, until

pytestmark = pytest.mark.cluster


async def _feed(c: LocalCluster, sub: Submitter, stop: asyncio.Event) -> list[str]:
    """Submit batches to node 0 (never killed) until told to stop."""
    last: list[str] = []
    while not stop.is_set():
        envs = [sub.envelope() for _ in range(150)]
        status, doc = await c.post(0, "/v1/records", json=b64(envs))
        if status == 202:
            assert all("status" in r for r in doc["results"]), doc["results"][:3]
            last.append(envs[-1].id.hex())
        else:
            assert status in (429, 503), (status, doc)
        await asyncio.sleep(0.05)
    return last


@pytest.mark.parametrize("kills", [3, pytest.param(15, marks=pytest.mark.slow)])
async def test_sigkill_at_random_moments(tmp_path: Path, kills: int) -> None:
    c = LocalCluster(tmp_path / "cluster", 4)
    rng = random.Random(kills)
    try:
        everyone = await c.start_all()
        sub = Submitter(c)
        stop = asyncio.Event()
        feeding = asyncio.create_task(_feed(c, sub, stop))
        for k in range(kills):
            victim = 1 + k % 3
            await asyncio.sleep(rng.uniform(0.1, 1.5))  # picks the moment; decides nothing
            c.kill(victim)
            c.start(victim)
            await c.wait_connected(everyone, timeout=30)
        stop.set()
        last = await feeding
        assert last, "nothing was submitted"
        await c.wait_committed(everyone, last[-1], timeout=90)
        height = min([(await c.status(i))["height"] for i in everyone])  # type: ignore[index]
        reference = await c.header_hashes(0, height)
        for i in everyone:
            assert await c.header_hashes(i, height) == reference, f"node{i} diverged"
            status, doc = await c.get(i, "/v1/evidence")
            assert status == 200 and doc["evidence"] == [], f"node{i} saw equivocation"

        async def logs_clean() -> bool:
            return not any("Traceback" in c.log_path(i).read_text() for i in everyone)

        await until(logs_clean, 1, "logs free of tracebacks")
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")
