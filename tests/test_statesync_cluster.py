"""A wiped validator rejoins a running 4-node cluster by state sync
(sync.mode = "snapshot"): serving new blocks at once, old ones after
back-fill, and never admitting a reused nonce."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_cluster import Submitter, b64, submit

from ledger.verify import verify_bundle
from harness.localnet import LocalCluster, until

pytestmark = pytest.mark.cluster

JOINER = 3


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 4,
                     toml_edits={JOINER: [("batch_blocks = 64", "batch_blocks = 4\nmode = "
                                           '"snapshot"')]})
    try:
        yield c
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")


def log_lines(c: LocalCluster, i: int, msg: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in c.log_path(i).read_text().splitlines()
            if f'"msg":"{msg}' in line]


async def test_wiped_validator_joins_by_snapshot(cluster: LocalCluster) -> None:
    c = cluster
    await c.start_all()
    sub = Submitter(c)
    old = sub.envelope()
    await submit(c, 0, [old])
    await c.wait_committed([0, 1, 2, 3], old.id.hex())
    for _ in range(12):  # several blocks, so back-fill takes batches
        batch = [sub.envelope() for _ in range(5)]
        await submit(c, 0, batch)
        await c.wait_committed([0, 1, 2], batch[-1].id.hex())
    # Wipe node 3's store and restart it: it joins from a snapshot.
    c.kill(JOINER)
    shutil.rmtree(c.dir / f"node{JOINER}" / "data")
    c.start(JOINER)

    async def synced() -> bool:
        got = await c.try_get(JOINER, "/health")
        return got is not None and got[1].get("synced") is True
    await until(synced, 30, "node3 synced")
    started = log_lines(c, JOINER, "state sync: started from the snapshot")
    assert started, c.tail(JOINER)
    snapshot_height = started[-1]["snapshot_height"]
    assert isinstance(snapshot_height, int) and snapshot_height >= 13

    # A record committed after the join: node 3 proves it as soon as it has the block.
    recent = sub.envelope()
    await submit(c, 0, [recent])
    await c.wait_committed([JOINER], recent.id.hex())
    status, bundle = await c.get(JOINER, f"/v1/records/{recent.id.hex()}/proof")
    assert status == 200, bundle
    verify_bundle(bundle, c.genesis)

    # Back-fill ends; then the oldest record is provable here too.
    async def backfilled() -> bool:
        got = await c.try_get(JOINER, "/health")
        return got is not None and "backfilling" not in got[1]
    await until(backfilled, 30, "node3 back-filled")
    assert log_lines(c, JOINER, "state sync: history back-filled")
    status, bundle = await c.get(JOINER, f"/v1/records/{old.id.hex()}/proof")
    assert status == 200, bundle
    verify_bundle(bundle, c.genesis)
    status, block = await c.get(JOINER, "/v1/blocks/1")
    assert status == 200 and block["records"] == [old.id.hex()]

    # A new record reusing the old record's nonce is refused by node 3.
    sub.nonce = old.record.nonce - 1
    reuse = sub.envelope(amount=7)
    assert reuse.record.nonce == old.record.nonce and reuse.id != old.id
    status, doc = await c.post(JOINER, "/v1/records", json=b64([reuse]))
    assert status == 202, doc
    assert doc["results"][0]["error"] == "nonce_reused", doc
    # The same header hashes as the validators that replayed every block.
    tip = (await c.status(0) or {})["height"]
    assert await c.header_hashes(JOINER, tip) == await c.header_hashes(0, tip)
