"""Checkpoint signatures a node missed (killed while the others committed)
are gathered after its restart: it asks its peers (peer message ``want
sigs``) for the signatures of recent blocks short of a quorum, checks each
relayed one against its validator's key, and then serves every checkpoint
with at least a quorum (protocol §6 "Checkpoints (C2SP)")."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cluster import Submitter, submit

from ledger import note
from harness.localnet import LocalCluster, until

pytestmark = pytest.mark.cluster
# Frames for a peer that is down go stale after 100 ms instead of 5 s: the
# cosign messages node3 misses are dropped, not delivered when it returns.
STALE_FAST = {i: [("max_age_ms = 5000", "max_age_ms = 100")] for i in range(4)}


async def test_a_restarted_node_gathers_the_signatures_it_missed(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "cluster", 4, toml_edits=STALE_FAST)
    everyone = await c.start_all()
    try:
        sub = Submitter(c)
        c.kill(3)
        before = (await c.status(0) or {})["height"]
        for _ in range(3):  # a few blocks without node3
            env = sub.envelope()
            await submit(c, 0, [env])
            await c.wait_committed([0, 1, 2], env.id.hex())
        missed = range(before + 1, (await c.status(0) or {})["height"] + 1)
        assert len(missed) >= 3

        async def stale() -> bool:  # the frames queued for node3 were dropped
            return await c.metric(0, "ledger_peer_outbound_dropped_total", peer="node3",
                                  reason="stale") > 0
        c.start(3)
        await c.wait_connected(everyone)
        tip = max(missed)
        await c.wait_height([3], tip)
        await until(stale, 30, "node0 dropped its stale frames for node3")

        async def served() -> bool:
            for h in missed:
                got = await c.try_get(3, f"/v1/checkpoints/{h}")
                if got is None or got[0] != 200:
                    return False
            return True
        await until(served, 30, "node3 serves every checkpoint it missed")
        keys = note.verifiers(note.origin(c.genesis.chain), list(c.genesis.validator_keys))
        for h in missed:
            _, body = await c.get(3, f"/v1/checkpoints/{h}")
            signed = note.open_note(body if isinstance(body, bytes) else body.encode(), keys, 3)
            assert {0, 1, 2} <= set(signed.signers), signed.signers  # relayed: node3 was down
    finally:
        await c.stop_all()
