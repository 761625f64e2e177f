"""Validator-set changes on a live cluster (issue 23 items 4, 6, 7; PROTOCOL §9.9).

Under a steady trickle of records: a fifth validator is added by a record
signed by a quorum of members and joins from an empty data directory
(catching up across the epoch change); with one genesis validator down the
chain still commits, so the new one signs; a validator's key is rotated
(the node holds both keys, ``node.rotation_key_files``) and the chain again
needs its new key's votes; then a genesis validator is removed (back to
four) and follows without signing.  Nothing acknowledged is
lost, and an auditor holding only the original genesis verifies a bundle
from each epoch with ``ledger-audit verify``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from client.audit.cli import main as audit_main
from client.sdk import LedgerClient
from client.witness import latest_checkpoint
from harness.localnet import LocalCluster, until
from ledger.crypto import SigningKey
from ledger.keys import load_key_file, write_key_file
from ledger.records import Envelope
from test_governance_cluster import Quorum, Signer, submit

pytestmark = pytest.mark.cluster

class Trickle:
    """A few records a second to the nodes in ``targets``; remembers the
    acknowledged ones."""

    def __init__(self, c: LocalCluster, signer: Signer, targets: list[int]) -> None:
        self.c, self.signer, self.targets = c, signer, targets
        self.acked: list[str] = []
        self.running = True

    async def run(self) -> None:
        turn = 0
        while self.running:
            envs = [self.signer.envelope() for _ in range(3)]
            node = self.targets[turn % len(self.targets)]
            turn += 1
            try:
                answers = await submit(self.c, node, envs)
            except (AssertionError, OSError, asyncio.TimeoutError, aiohttp.ClientError):
                answers = []  # no acknowledgement (a node just killed...): nothing to keep
            self.acked += [e.id.hex() for e, a in zip(envs, answers)
                           if a in ("accepted", "duplicate", "committed")]
            await asyncio.sleep(0.1)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 4, members=True, spare=1)
    try:
        yield c
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 20)}")


async def validators_everywhere(c: LocalCluster, nodes: list[int], count: int) -> None:
    async def ok() -> bool:
        for i in nodes:
            got = await c.try_get(i, "/v1/membership")
            if got is None or got[0] != 200 or len(got[1]["validators"]) != count:
                return False
        return True

    await until(ok, 30.0, f"{count} validators in force on {nodes}")


async def status_of(c: LocalCluster, i: int) -> dict[str, Any]:
    st = await c.status(i)
    assert st is not None, f"node{i} does not answer"
    return st


async def test_add_and_remove_validators_under_load(cluster: LocalCluster,
                                                    tmp_path: Path) -> None:
    c = cluster
    chain = c.genesis.chain
    keys = c.dir / "keys"
    quorum = Quorum(c)
    gov = quorum.envelope
    demo = Signer(chain, load_key_file(keys / "demo.json").key)
    await c.start_all()

    async def commit_one(node: int, on: list[int]) -> Envelope:
        env = demo.envelope()
        assert await submit(c, node, [env]) == ["accepted"]
        await c.wait_committed(on, env.id.hex(), 60.0)
        return env

    trickle = Trickle(c, demo, [0, 1, 2, 3])
    loader = asyncio.create_task(trickle.run())
    epoch_records: list[Envelope] = []
    try:
        epoch_records.append(await commit_one(0, [0, 1, 2, 3]))          # epoch 1: 4 validators

        # 1. Add node4; it starts from an empty data directory and catches up.
        index, new_key, address = c.add_validator()
        add = gov(1, "gov.validator.add", name=f"node{index}", pubkey=new_key.public_key,
                  address=address)
        assert await submit(c, 1, [add]) == ["accepted"]
        await c.wait_committed([0, 1, 2, 3], add.id.hex())
        await validators_everywhere(c, [0, 1, 2, 3], 5)
        c.start(index)
        await c.wait_connected([0, 1, 2, 3, 4], 60.0)
        height = (await status_of(c, 0))["height"]
        await c.wait_height([4], height, 60.0)
        await until(lambda: _is_validator(c, 4, 4), 30.0, "node4 signing as validator 4")
        trickle.targets[:] = [0, 1, 2, 3, 4]

        # With node3 down, 4 of 5 is the quorum: blocks commit only if node4 signs.
        c.kill(3)
        trickle.targets[:] = [0, 1, 2, 4]
        epoch_records.append(await commit_one(4, [0, 1, 2, 4]))          # epoch 2: 5 validators
        c.start(3)
        await c.wait_connected([0, 1, 2, 3, 4], 60.0)
        trickle.targets[:] = [0, 1, 2, 3, 4]

        # 2. Rotate node2's key: it holds both (node.rotation_key_files) and
        # signs with the new one from the height the rotation is in force.
        new2 = SigningKey.generate()
        write_key_file(keys / "node2-next.json", "node2", new2)
        toml = c.config(2).read_text()
        c.config(2).write_text(toml.replace('data_dir = "data"',
                                            'data_dir = "data"\n'
                                            'rotation_key_files = "../keys/node2-next.json"'))
        c.kill(2)
        c.start(2)
        await c.wait_connected([0, 1, 2, 3, 4], 60.0)
        rotate = gov(3, "gov.validator.rotate", pubkey=c.genesis.validators[2].pubkey,
                     new_pubkey=new2.public_key)
        assert await submit(c, 0, [rotate]) == ["accepted"]
        await c.wait_committed([0, 1, 2, 3, 4], rotate.id.hex())
        await until(lambda: _rotated_everywhere(c, new2.public_key.hex()), 30.0,
                    "the rotation in force")
        await until(lambda: _links(c, [0, 1, 3, 4], 4), 30.0, "links to node2's new key")
        # With node3 down node2 is needed again: its votes must carry the new key.
        c.kill(3)
        trickle.targets[:] = [0, 1, 2, 4]
        epoch_records.append(await commit_one(2, [0, 1, 2, 4]))          # epoch 3: re-keyed
        c.start(3)
        trickle.targets[:] = [0, 1, 2, 3, 4]
        await until(lambda: _links(c, [0, 1, 2, 3, 4], 4), 60.0, "node3 back")

        # 3. Remove node1: back to four; node1 follows, signing nothing.
        remove = gov(2, "gov.validator.remove", pubkey=c.genesis.validators[1].pubkey)
        assert await submit(c, 2, [remove]) == ["accepted"]
        await c.wait_committed([0, 1, 2, 3, 4], remove.id.hex())
        trickle.targets[:] = [0, 2, 3, 4]
        await validators_everywhere(c, [0, 2, 3, 4], 4)
        await until(lambda: _is_validator(c, 1, None), 30.0, "node1 following")
        late = demo.envelope()
        status, doc = await c.post(1, "/v1/records", json={"envelopes": [
            base64.b64encode(late.envelope_bytes).decode()]})
        assert status == 503 and doc["error"] == "unavailable", doc
        # With node2 down the three left (0, 3, 4) are the quorum of four.
        c.kill(2)
        trickle.targets[:] = [0, 3, 4]
        epoch_records.append(await commit_one(3, [0, 1, 3, 4]))          # epoch 4: 0, 2, 3, 4
        c.start(2)
        trickle.targets[:] = [0, 2, 3, 4]
        await until(lambda: _links(c, [0, 2, 3, 4], 3), 60.0, "node2 back")
        # The joined node restarts like any other (genesis does not list its
        # key): index 3 of the set in force now.
        c.kill(4)
        c.start(4)
        await until(lambda: _is_validator(c, 4, 3), 60.0, "node4 back as validator 3")
        await until(lambda: _links(c, [0, 2, 3, 4], 3), 60.0, "node4's links back")
        epoch_records.append(await commit_one(4, [0, 2, 3, 4]))
    finally:
        trickle.running = False
        await loader

    assert len(trickle.acked) > 30, "the trickle must have run alongside"
    for rid in trickle.acked:  # nothing acknowledged is lost, on any node
        await c.wait_committed([0, 1, 2, 3, 4], rid, 60.0)
    tip = (await status_of(c, 0))["height"]
    await c.wait_height([0, 1, 2, 3, 4], tip, 60.0)
    assert len({tuple(await c.header_hashes(i, tip)) for i in range(5)}) == 1

    # The latest C2SP checkpoint is signed by the set in force at its height
    # (the fourth epoch's: 0, 2, node2's new key, 4), as derived from genesis.
    async with LedgerClient([c.url(4)], retries=1) as client:
        cp_height, checkpoint = await latest_checkpoint(client, c.genesis)
    assert cp_height > (await c.get(0, f"/v1/records/{remove.id.hex()}"))[1]["height"] + 1
    keys = await _keys_at(c, cp_height)
    assert c.genesis.validators[1].pubkey.hex() not in keys and new2.public_key.hex() in keys
    assert len(checkpoint.signers) >= 3

    # An auditor holding only the original genesis verifies each epoch's record.
    genesis = c.dir / "genesis.json"
    for n, record in enumerate(epoch_records):
        status, bundle = await c.get(4, f"/v1/records/{record.id.hex()}/proof")
        assert status == 200, bundle
        assert bundle["format"] == ("auditledger-proof/1" if n == 0 else "auditledger-proof/2")
        path = tmp_path / f"epoch{n + 1}.json"
        path.write_text(json.dumps(bundle))
        result = CliRunner().invoke(audit_main, ["verify", str(path), "--genesis", str(genesis)])
        assert result.exit_code == 0, result.output

    # ledger-audit export --format tlog-proof checks the latest checkpoint
    # against the set in force at its block (the fourth epoch's, derived from
    # genesis through that block's epoch proof), not genesis's.
    out = tmp_path / "last.tlog-proof"
    result = await asyncio.to_thread(CliRunner().invoke, audit_main, [
        "export", epoch_records[-1].id.hex(), "--genesis", str(genesis), "--node", c.url(4),
        "--format", "tlog-proof", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"c2sp.org/tlog-proof@v1\nindex ")

    # A full audit from block 1 walks the four validator sets from genesis;
    # the head it stores is checked again by checkpoint, across the changes.
    cp_file = tmp_path / "checkpoints.json"
    result = await asyncio.to_thread(CliRunner().invoke, audit_main, [
        "audit", "--node", c.url(0), "--genesis", str(genesis), "--json",
        "--checkpoint-file", str(cp_file)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["valid"] is True and len(doc["validator_sets"]) == 4, doc["validator_sets"]
    result = await asyncio.to_thread(CliRunner().invoke, audit_main, [
        "checkpoint", "--node", c.url(3), "--genesis", str(genesis),
        "--checkpoint-file", str(cp_file)])
    assert result.exit_code == 0, result.output


async def _keys_at(c: LocalCluster, height: int) -> list[str]:
    """The validator keys in force at ``height`` (hex), as node0 says."""
    status, doc = await c.get(0, f"/v1/membership?height={height}")
    assert status == 200, doc
    return [v["pubkey"] for v in doc["validators"]]


async def _rotated_everywhere(c: LocalCluster, key_hex: str) -> bool:
    for i in range(c.n):
        got = await c.try_get(i, "/v1/membership")
        if got is None or got[0] != 200 or \
                got[1]["validators"][2]["pubkey"] != key_hex:
            return False
    return True


async def _links(c: LocalCluster, nodes: list[int], count: int) -> bool:
    """Each of ``nodes`` has ``count`` peer links up (peer ids move with keys:
    count them rather than name them)."""
    for i in nodes:
        st = await c.status(i)
        if st is None or sum(1 for p in st["peers"] if p["connected"]) < count:
            return False
    return True


async def _is_validator(c: LocalCluster, i: int, index: int | None) -> bool:
    st = await c.status(i)
    return st is not None and st.get("validator") == index
