"""A real Byzantine validator process (harness/byzantine.py, started by the
harness as ``python -m harness.byzantine``, not by ``ledger-node``): it
splits its proposals and double-votes.  The three honest nodes keep
committing, never fork, and record and serve the double votes as evidence.
An unknown mode is refused (exit code 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_cluster import Submitter, submit

from consensus import proposer_for
from harness.byzantine import byzantine_command
from harness.localnet import LocalCluster, until
from ledger.verify import verify_bundle

pytestmark = pytest.mark.cluster

BYZ = 3
HONEST = [0, 1, 2]


def test_unknown_mode_refused(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "cluster", 4)
    argv = [sys.executable, "-m", "harness.byzantine", "--config", str(c.config(0)),
            "--mode", "bogus"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "bogus" in proc.stderr and "equivocate" in proc.stderr
    with pytest.raises(ValueError, match="bogus"):
        byzantine_command(c.config(0), "bogus")


async def test_equivocating_validator(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "cluster", 4)
    try:
        for i in HONEST:
            c.start(i)
        c.start(BYZ, byzantine_command(c.config(BYZ)))
        everyone = HONEST + [BYZ]
        await c.wait_connected(everyone)
        sub = Submitter(c)
        last = None
        # Enough blocks that the Byzantine node proposes several times.
        for _ in range(8):
            batch = sub.lineage(5)
            await submit(c, 0, batch)
            last = batch[-1]
            await c.wait_committed(HONEST, last.id.hex(), timeout=60)
        assert last is not None
        st = await c.status(0)
        assert st is not None
        height = st["height"]
        assert any(proposer_for(4, h, 0) == BYZ for h in range(1, height + 1))
        await c.wait_height(HONEST, height)
        reference = await c.header_hashes(0, height)
        for i in HONEST[1:]:
            assert await c.header_hashes(i, height) == reference, f"node{i} forked"

        async def evidence_everywhere() -> bool:
            for i in HONEST:
                status, doc = await c.get(i, "/v1/evidence")
                if status != 200 or not any(e.get("validator") == BYZ for e in doc["evidence"]):
                    return False
            return True

        await until(evidence_everywhere, 30, "every honest node to hold evidence against node3")
        for i in HONEST:
            _, doc = await c.get(i, "/v1/evidence")
            assert {e["validator"] for e in doc["evidence"]} == {BYZ}, doc  # nobody else
            for e in doc["evidence"]:
                blocks = [v["block"] for v in e["votes"]]
                assert blocks[0] != blocks[1]
            print(f"node{i}: {len(doc['evidence'])} pieces of evidence against node{BYZ}")
            status, bundle = await c.get(i, f"/v1/records/{last.id.hex()}/proof")
            assert status == 200
            verify_bundle(bundle, c.genesis.raw)
        assert "TEST-ONLY Byzantine mode" in c.log_path(BYZ).read_text()
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")


async def test_withheld_gossip_is_fetched_from_the_proposer(tmp_path: Path) -> None:
    """node3 never gossips its clients' records, so the only way its peers
    see them is by name, in node3's compact proposals: they must fetch the
    envelopes from it (node/assembly.py) and commit them."""
    c = LocalCluster(tmp_path / "cluster", 4)
    try:
        for i in HONEST:
            c.start(i)
        c.start(BYZ, byzantine_command(c.config(BYZ), "withhold-gossip"))
        everyone = HONEST + [BYZ]
        await c.wait_connected(everyone)
        sub = Submitter(c)
        batch = sub.lineage(20)
        await submit(c, BYZ, batch)
        await c.wait_committed(everyone, batch[-1].id.hex(), timeout=60)
        st = await c.status(BYZ)
        assert st is not None
        await c.wait_height(everyone, st["height"])
        reference = await c.header_hashes(BYZ, st["height"])
        fetched = 0.0
        for i in HONEST:
            assert await c.header_hashes(i, st["height"]) == reference, f"node{i} forked"
            fetched += await c.metric(i, "ledger_proposal_assembly_total", outcome="fetched")
        assert fetched >= len(batch), "honest nodes had the records without fetching them"
        assert await c.metric(BYZ, "ledger_envelopes_fetch_served_total") >= len(batch)
        assert "withholds gossip" in c.log_path(BYZ).read_text()
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")
