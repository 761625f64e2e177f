"""Governance on a live cluster (issue 23, phase 2a): under steady load, a
submitter is added by a record signed by a quorum of members, a scope is
paused and resumed, a submitter's key is rotated; nothing acknowledged is
lost, and an auditor holding only the original genesis verifies the new
submitter's bundles with ``ledger-audit verify``.  Validator-set changes:
tests/test_validators_cluster.py."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from client.audit.cli import main as audit_main
from ledger.crypto import SigningKey
from ledger.keys import load_key_file
from ledger.records import Envelope, make_record, sign_record
from govhelpers import gov_record
from harness.localnet import LocalCluster, until

pytestmark = pytest.mark.cluster

class Signer:
    """Signs records with one key; nonces count up from the clock."""

    def __init__(self, chain: str, key: SigningKey) -> None:
        self.chain, self.key = chain, key
        self.nonce = int(time.time() * 1000) * 1000

    def envelope(self, kind: str = "payment") -> Envelope:
        self.nonce += 1
        record = make_record(chain=self.chain, submitter=self.key.public_key, nonce=self.nonce,
                             ts=int(time.time() * 1000), kind=kind,
                             origin={"system": "pytest"},
                             body={"amount": self.nonce % 10_000, "currency": "EUR"})
        return sign_record(record, self.key)


class Quorum:
    """The quorum of genesis members of a cluster made with ``members=True``
    (``keys/member<i>.json``, one per node) and its governance records
    (:func:`govhelpers.gov_record` at the clock's time)."""

    def __init__(self, c: LocalCluster) -> None:
        keys = c.dir / "keys"
        members = [load_key_file(keys / f"member{i}.json").key for i in range(c.n)]
        self.chain = c.genesis.chain
        self.keys = members[:c.genesis.governance_threshold]

    def envelope(self, nonce: int, kind: str, **body: Any) -> Envelope:
        return gov_record(self.chain, self.keys, nonce, kind, body, ts=int(time.time() * 1000))


def b64(envs: list[Envelope]) -> dict[str, list[str]]:
    return {"envelopes": [base64.b64encode(e.envelope_bytes).decode() for e in envs]}


async def submit(c: LocalCluster, node: int, envs: list[Envelope],
                 patience: float = 30.0) -> list[str]:
    """Submits as the SDK does: a 503 (a node briefly catching up under
    load, say) is retried until ``patience`` runs out; any other answer
    stands."""
    deadline = time.monotonic() + patience
    while True:
        status, doc = await c.post(node, "/v1/records", json=b64(envs))
        if status != 503 or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    assert status == 202, doc
    return [r.get("status") or r["error"] for r in doc["results"]]


class Load:
    """Steady load from the demo submitter; remembers what was acknowledged."""

    def __init__(self, c: LocalCluster, signer: Signer) -> None:
        self.c, self.signer = c, signer
        self.acked: list[str] = []
        self.running = True

    async def run(self) -> None:
        turn = 0
        while self.running:
            envs = [self.signer.envelope() for _ in range(5)]
            node = turn % self.c.n
            turn += 1
            try:
                answers = await submit(self.c, node, envs, patience=0.0)
            except (AssertionError, OSError, asyncio.TimeoutError, aiohttp.ClientError):
                # A 503/429 is no acknowledgement, nor is a connection the
                # test's kill of node3 cuts mid-request: nothing to keep.
                answers = []
            self.acked += [e.id.hex() for e, a in zip(envs, answers)
                           if a in ("accepted", "duplicate", "committed")]
            await asyncio.sleep(0.1)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 4, members=True)
    try:
        yield c
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")


async def _same_membership(c: LocalCluster, i: int, height: int, expected: Any) -> bool:
    got = await c.try_get(i, f"/v1/membership?height={height}")
    return got is not None and got[0] == 200 and got[1] == expected


async def membership_everywhere(c: LocalCluster, cond: Any, what: str) -> None:
    async def ok() -> bool:
        for i in range(c.n):
            got = await c.try_get(i, "/v1/membership")
            if got is None or got[0] != 200 or not cond(got[1]):
                return False
        return True

    await until(ok, 30.0, what)


async def test_governance_under_load(cluster: LocalCluster, tmp_path: Path) -> None:
    c = cluster
    chain = c.genesis.chain
    keys = c.dir / "keys"
    quorum = Quorum(c)
    gov = quorum.envelope
    demo = Signer(chain, load_key_file(keys / "demo.json").key)
    await c.start_all()

    load = Load(c, demo)
    loader = asyncio.create_task(load.run())
    try:
        # 1. Add a submitter; its records commit once the addition is in force.
        newco = SigningKey.generate()
        add = gov(1, "gov.submitter.add", name="newco", pubkey=newco.public_key,
                  roles=["submit"])
        too_few = sign_record(add.record, quorum.keys[0])  # the proposer's signature alone
        assert await submit(c, 1, [too_few]) == ["too_few_signatures"]
        assert await submit(c, 1, [add]) == ["accepted"]
        await c.wait_committed(list(range(c.n)), add.id.hex())
        await membership_everywhere(
            c, lambda m: newco.public_key.hex() in [s["pubkey"] for s in m["submitters"]],
            "newco in force everywhere")
        signer = Signer(chain, newco)
        first = signer.envelope()
        assert await submit(c, 2, [first]) == ["accepted"]
        await c.wait_committed(list(range(c.n)), first.id.hex())

        # 2. Pause a kind: its records are refused; the load's kind goes on.
        pause = gov(2, "gov.scope.pause", scope="kind", value="incident")
        assert await submit(c, 0, [pause]) == ["accepted"]
        await membership_everywhere(c, lambda m: m["paused"] == [
            {"scope": "kind", "value": "incident"}], "pause in force everywhere")
        for i in range(c.n):
            assert await submit(c, i, [demo.envelope("incident")]) == ["paused"]
        resume = gov(3, "gov.scope.resume", scope="kind", value="incident")
        assert await submit(c, 3, [resume]) == ["accepted"]
        await membership_everywhere(c, lambda m: m["paused"] == [], "resume in force")
        after = demo.envelope("incident")
        assert await submit(c, 1, [after]) == ["accepted"]
        await c.wait_committed(list(range(c.n)), after.id.hex())

        # 3. Rotate newco's key: the old key's new records are refused.
        newco2 = SigningKey.generate()
        rotate = gov(4, "gov.submitter.rotate", pubkey=newco.public_key,
                     new_pubkey=newco2.public_key)
        assert await submit(c, 2, [rotate]) == ["accepted"]
        await membership_everywhere(
            c, lambda m: newco2.public_key.hex() in [s["pubkey"] for s in m["submitters"]],
            "rotation in force everywhere")
        assert await submit(c, 0, [signer.envelope()]) == ["key_rotated"]
        rotated = Signer(chain, newco2).envelope()
        assert await submit(c, 0, [rotated]) == ["accepted"]
        await c.wait_committed(list(range(c.n)), rotated.id.hex())

        # A restarted node rebuilds the same membership from its store.
        c.kill(3)
        c.start(3)
        await c.wait_connected(list(range(c.n)))
        height = (await c.status(0) or {})["height"]
        _, expected = await c.get(0, f"/v1/membership?height={height}")
        assert expected["made_by"] and not expected["paused"]
        await until(lambda: _same_membership(c, 3, height, expected), 30.0, "node3 back")
        later = Signer(chain, newco2).envelope()
        assert await submit(c, 3, [later]) == ["accepted"]
        await c.wait_committed(list(range(c.n)), later.id.hex())
    finally:
        load.running = False
        await loader
    assert len(load.acked) > 20, "the load must have run alongside"
    for rid in load.acked:  # nothing acknowledged is lost
        await c.wait_committed(list(range(c.n)), rid)

    # An auditor with only the original genesis verifies the bundles.
    for record in (first, rotated, after):
        status, bundle = await c.get(3, f"/v1/records/{record.id.hex()}/proof")
        assert status == 200
        expected = "auditledger-proof/1" if record is after else "auditledger-proof/2"
        assert bundle["format"] == expected, record
        path = tmp_path / f"{record.id.hex()[:8]}.json"
        path.write_text(json.dumps(bundle))
        result = CliRunner().invoke(audit_main, ["verify", str(path), "--genesis",
                                                 str(c.dir / "genesis.json")])
        assert result.exit_code == 0, result.output
