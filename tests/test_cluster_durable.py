"""Issue 21 item 1 on a real 4-node cluster: records node0 answered
``accepted`` survive a SIGKILL of node0 the moment its 202 arrives, and all
commit on every node once it is back (``scripts/faults acks`` runs the kill
loop version under load)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_cluster import Submitter, b64

from harness.localnet import LocalCluster, until

pytestmark = pytest.mark.cluster

# node0 gossips only every 10 s while it accepts the records, so nothing it
# accepted can have left it by gossip before the SIGKILL: what commits
# afterwards came back from its disk.
SLOW_GOSSIP = ("interval_ms = 20", "interval_ms = 10000")


async def test_accepted_records_survive_sigkill_after_202(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "cluster", 4, toml_edits={0: [SLOW_GOSSIP]})
    everyone = list(range(4))
    try:
        await c.start_all()
        sub = Submitter(c)
        envs = [sub.envelope() for _ in range(200)]
        status, doc = await c.post(0, "/v1/records", json=b64(envs))
        c.kill(0)  # the moment the 202 is read
        assert status == 202, doc
        assert [r.get("status") for r in doc["results"]] == ["accepted"] * 200

        config = c.config(0)
        config.write_text(config.read_text().replace(SLOW_GOSSIP[1], SLOW_GOSSIP[0]))
        c.start(0)
        await c.wait_connected(everyone, timeout=60)
        for env in (envs[0], envs[-1]):
            await c.wait_committed(everyone, env.id.hex(), timeout=60)
        for i in everyone:
            for env in envs:
                got = await c.get(i, f"/v1/records/{env.id.hex()}")
                assert got[0] == 200 and got[1]["status"] == "committed", (i, got)

        restored = re.findall(r"restored (\d+) acknowledged records", c.log_path(0).read_text())
        assert restored and int(restored[-1]) > 0, restored

        async def logs_clean() -> bool:
            return not any("Traceback" in c.log_path(i).read_text() for i in everyone)

        await until(logs_clean, 1, "logs free of tracebacks")
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 12)}")
