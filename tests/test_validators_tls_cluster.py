"""Validator-set changes with TLS and request signatures on (issues 23 and
24; node/tls.py): a validator added by governance whose certificate comes
from its own organisation's CA - a CA no other node's ``tls.ca_file`` holds
- is linked to by every running validator without a restart, because peer
links are authenticated by the validator key the membership lists, bound to
the certificate; then a validator's key is rotated and the others dial it
under the new key, again without a restart of theirs.  Each step is shown
by a block that needs the changed validator's vote."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_governance_cluster import Quorum, Signer, submit
from test_validators_cluster import (
    _is_validator,
    _links,
    _rotated_everywhere,
    validators_everywhere,
)

from harness.localnet import LocalCluster, until
from ledger.crypto import SigningKey
from ledger.keys import load_key_file, write_key_file

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 4, members=True, spare=1, tls=True, auth=True)
    try:
        yield c
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 20)}")


async def test_join_and_rotation_with_tls_need_no_restart_of_the_others(
        cluster: LocalCluster) -> None:
    c = cluster
    chain = c.genesis.chain
    keys = c.dir / "keys"
    quorum = Quorum(c)
    gov = quorum.envelope
    demo = Signer(chain, load_key_file(keys / "demo.json").key)
    await c.start_all()
    started = {i: c.procs[i].pid for i in range(4)}

    async def commit(node: int, on: list[int], blocks: int = 1) -> None:
        for _ in range(blocks):
            env = demo.envelope()
            assert await submit(c, node, [env]) == ["accepted"]
            await c.wait_committed(on, env.id.hex(), 120.0)

    await commit(0, [0, 1, 2, 3])
    # 1. node4, certified by its own organisation's CA, joins.
    index, new_key, address = c.add_validator()
    org_ca = (c.dir / "tls" / f"org{index}" / "ca.pem").read_bytes()
    assert org_ca not in (c.dir / "tls" / "ca.pem").read_bytes()
    add = gov(1, "gov.validator.add", name=f"node{index}", pubkey=new_key.public_key,
              address=address)
    assert await submit(c, 1, [add]) == ["accepted"]
    await c.wait_committed([0, 1, 2, 3], add.id.hex())
    await commit(2, [0, 1, 2, 3], blocks=3)
    await validators_everywhere(c, [0, 1, 2, 3], 5)
    c.start(index)
    await until(lambda: _links(c, [0, 1, 2, 3, 4], 4), 120.0,
                "every validator linked to node4 and back")
    await until(lambda: _is_validator(c, index, 4), 120.0, "node4 signing as validator 4")
    # With node3 down, 4 of 5 is the quorum: the block needs node4's vote.
    c.kill(3)
    await commit(4, [0, 1, 2, 4])
    c.start(3)
    await until(lambda: _links(c, [0, 1, 2, 3, 4], 4), 120.0, "node3 back")

    # 2. Rotate node2's key: node2 restarts to hold both keys; no one else does.
    new2 = SigningKey.generate()
    write_key_file(keys / "node2-next.json", "node2", new2)
    toml = c.config(2).read_text()
    c.config(2).write_text(toml.replace('data_dir = "data"',
                                        'data_dir = "data"\n'
                                        'rotation_key_files = "../keys/node2-next.json"'))
    c.kill(2)
    c.start(2)
    await until(lambda: _links(c, [0, 1, 2, 3, 4], 4), 120.0, "node2 back")
    rotate = gov(2, "gov.validator.rotate", pubkey=c.genesis.validators[2].pubkey,
                 new_pubkey=new2.public_key)
    assert await submit(c, 0, [rotate]) == ["accepted"]
    await c.wait_committed([0, 1, 2, 3, 4], rotate.id.hex())
    await commit(0, [0, 1, 2, 3, 4], blocks=2)
    await until(lambda: _rotated_everywhere(c, new2.public_key.hex()), 120.0,
                "the rotation in force")
    await until(lambda: _links(c, [0, 1, 3, 4], 4), 120.0, "links to node2's new key")
    c.kill(3)
    await commit(2, [0, 1, 2, 4])  # needs node2's votes under its new key
    c.start(3)
    await until(lambda: _links(c, [0, 1, 2, 3, 4], 4), 120.0, "node3 back again")

    # Nodes 0 and 1 ran throughout: no restart took in node4's CA or node2's key.
    assert all(c.procs[i].pid == started[i] and c.procs[i].poll() is None for i in (0, 1))
    tip = (await c.status(0) or {})["height"]
    await c.wait_height([0, 1, 2, 3, 4], tip, 60.0)
    assert len({tuple(await c.header_hashes(i, tip)) for i in range(5)}) == 1
