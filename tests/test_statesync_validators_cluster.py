"""State sync after a validator-set change, on a live cluster (PROTOCOL
§6 "State sync", §9.9; docs/operators.md "Adding a validator"): a
validator added by governance, started with ``sync.mode = "snapshot"`` and
an empty data directory, starts from a snapshot whose header names the
new set of five - checked with the governance records the snapshot carries,
walked from genesis - signs as the new validator (a block needs its vote),
back-fills the history below and holds the same chain."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_governance_cluster import Quorum, Signer, submit
from test_validators_cluster import _is_validator, validators_everywhere

from harness.localnet import LocalCluster, until
from ledger.keys import load_key_file

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 4, members=True, spare=1)
    try:
        yield c
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 20)}")


def log_lines(c: LocalCluster, i: int, msg: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in c.log_path(i).read_text().splitlines()
            if f'"msg":"{msg}' in line]


async def test_an_added_validator_joins_by_snapshot_after_the_set_changed(
        cluster: LocalCluster) -> None:
    c = cluster
    chain = c.genesis.chain
    keys = c.dir / "keys"
    quorum = Quorum(c)
    gov = quorum.envelope
    demo = Signer(chain, load_key_file(keys / "demo.json").key)
    await c.start_all()

    first = demo.envelope()
    assert await submit(c, 0, [first]) == ["accepted"]
    await c.wait_committed([0, 1, 2, 3], first.id.hex())
    index, new_key, address = c.add_validator()
    add = gov(1, "gov.validator.add", name=f"node{index}", pubkey=new_key.public_key,
              address=address)
    assert await submit(c, 1, [add]) == ["accepted"]
    await c.wait_committed([0, 1, 2, 3], add.id.hex())
    for _ in range(4):  # blocks into the new epoch, so the tips name the new set
        env = demo.envelope()
        assert await submit(c, 2, [env]) == ["accepted"]
        await c.wait_committed([0, 1, 2, 3], env.id.hex())
    await validators_everywhere(c, [0, 1, 2, 3], 5)

    toml = c.config(index).read_text()
    assert "batch_blocks = 64" in toml
    c.config(index).write_text(toml.replace("batch_blocks = 64",
                                            'batch_blocks = 4\nmode = "snapshot"'))
    c.start(index)
    await until(lambda: _is_validator(c, index, 4), 60.0, "node4 signing as validator 4")
    started = log_lines(c, index, "state sync: started from the snapshot")
    assert started, c.tail(index)
    assert started[0]["snapshot_height"] >= 5 and started[0]["snapshot_governance"] == 1
    assert not log_lines(c, index, "state sync: the validator set has changed")

    # It signs: with node3 down, 4 of 5 is the quorum.
    c.kill(3)
    late = demo.envelope()
    assert await submit(c, index, [late]) == ["accepted"]
    await c.wait_committed([0, 1, 2, index], late.id.hex(), 60.0)

    async def backfilled() -> bool:
        got = await c.try_get(index, "/health")
        return got is not None and "backfilling" not in got[1]
    await until(backfilled, 60, "node4 back-filled")
    for env in (first, add):  # history below the snapshot, back-filled
        status, _ = await c.get(index, f"/v1/records/{env.id.hex()}/proof")
        assert status == 200
    status, doc = await c.get(index, "/v1/membership")
    assert status == 200 and len(doc["validators"]) == 5, doc
    tip = (await c.status(0) or {})["height"]
    await c.wait_height([index], tip, 60.0)
    assert await c.header_hashes(index, tip) == await c.header_hashes(0, tip)
