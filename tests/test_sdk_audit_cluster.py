"""The SDK and the ledger-audit tools against a real 4-node cluster on loopback:
submit with lineage, wait, prove, trace; audit the chain; checkpoints that
advance, and a forged (quorum-signed) fork that the auditor catches.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from client import LedgerClient
from client.errors import LedgerAPIError, NodesUnavailable
from ledger.blocks import Certificate, Header, Vote, decode_header
from ledger.checkpoint import CertifiedHead, genesis_digest
from ledger.encoding import from_b64
from ledger.keys import load_key_file
from harness.localnet import LocalCluster

pytestmark = pytest.mark.cluster

AUDIT = str(Path(sys.executable).with_name("ledger-audit"))


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 4)
    try:
        await c.start_all()
        yield c
    finally:
        await c.stop_all()


async def audit_cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        AUDIT, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


def forged_head(c: LocalCluster, real: dict[str, Any]) -> CertifiedHead:
    """A different block at the same height, signed by a colluding quorum
    (the test holds every validator's key): what an auditor must catch."""
    h = decode_header(from_b64(real["header"]))
    fake = Header(chain=h.chain, height=h.height, prev=h.prev, time=h.time + 1, proposer=h.proposer,
                  tx_count=h.tx_count, tx_root=h.tx_root, log_size=h.log_size,
                  log_root=bytes(32), validators=h.validators)
    keys = [load_key_file(c.dir / "keys" / f"{v.name}.json").key for v in c.genesis.validators]
    vote = Vote("precommit", h.chain, h.height, 0, fake.hash)
    sigs = tuple((i, vote.sign(keys[i])) for i in range(c.genesis.quorum))
    return CertifiedHead(fake, Certificate(h.height, 0, fake.hash, sigs))


async def test_sdk_submit_prove_trace_and_audit(cluster: LocalCluster, tmp_path: Path) -> None:
    c = cluster
    genesis = str(c.dir / "genesis.json")
    urls = [c.url(i) for i in range(4)]
    checkpoints = tmp_path / "checkpoints.json"
    # A dead node first in the list: the SDK fails over.
    async with LedgerClient(["http://127.0.0.1:9"] + urls, key_file=c.dir / "keys" / "demo.json") as lc:
        assert lc.chain == c.genesis.chain
        pays = await lc.submit_many(
            [{"kind": "payment", "origin": {"system": "pos", "country": cc}, "body": {"amount": 100 + i}}
             for i, cc in enumerate(["DE", "FR", "SG", "US"])])
        settle = await lc.submit(kind="settlement", origin={"system": "clearing"},
                                 body={"amount": 406}, parents=pays)
        refund = await lc.submit(kind="refund", origin={"system": "pos"}, body={"amount": 100},
                                 parents=[pays[0]])
        doc = await lc.wait_committed(settle, timeout=30)
        assert doc["status"] == "committed"
        await lc.wait_committed(refund, timeout=30)
        verified = lc.verify_bundle(await lc.proof(settle), c.genesis)
        assert verified.envelope.record.kind == "settlement"
        trace = await lc.trace(settle)
        assert {b["record_id"] for b in trace["bundles"]} == {settle, *pays}
        with pytest.raises(LedgerAPIError) as info:
            await lc.record("00" * 32)
        assert info.value.code == "not_found" and info.value.status == 404

    # ledger-audit trace: every hop verified, provenance printed.
    code, out = await audit_cli("trace", settle, "--node", urls[1], "--genesis", genesis, "--json")
    assert code == 0, out
    hops = {h["id"]: h for h in json.loads(out)["hops"]}
    assert set(hops) == {settle, *pays} and hops[settle]["parents"] == pays
    assert {hops[p]["origin"]["country"] for p in pays} == {"DE", "FR", "SG", "US"}

    # ledger-audit audit: whole chain recomputed; sets the first checkpoint.
    code, out = await audit_cli("audit", "--node", urls[2], "--genesis", genesis,
                                "--checkpoint-file", str(checkpoints), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["records"] == report["signatures_checked"] == 6 and report["valid"]

    # More records, then the checkpoint advances consistently.
    async with LedgerClient(urls, key_file=c.dir / "keys" / "demo.json") as lc:
        last = (await lc.submit_many([{"kind": "payment", "body": {"amount": i}} for i in range(50)]))[-1]
        await lc.wait_committed(last, timeout=30)
    code, out = await audit_cli("checkpoint", "--node", urls[3], "--genesis", genesis,
                                "--checkpoint-file", str(checkpoints), "--json")
    assert code == 0, out
    assert json.loads(out)["previous_height"] == report["height"]
    code, out = await audit_cli("consistency", "1", "latest", "--node", urls[0], "--genesis", genesis)
    assert code == 0 and "CONSISTENT" in out, out

    # A fork: the stored checkpoint is a different certified block at a height
    # the node also has. Both heads are printed as evidence; exit 1.
    _, real = await c.get(0, "/v1/blocks/1")
    fake = forged_head(c, real)
    doc = json.loads(checkpoints.read_text())
    doc[f"genesis:{genesis_digest(c.genesis)}"] = fake.to_json()  # keyed by the genesis digest
    checkpoints.write_text(json.dumps(doc))
    code, out = await audit_cli("checkpoint", "--node", urls[0], "--genesis", genesis,
                                "--checkpoint-file", str(checkpoints), "--json")
    assert code == 1, out
    evidence = json.loads(out)["evidence"]
    assert {evidence["first"]["hash"], evidence["second"]["hash"]} == {fake.header.hash.hex(), real["hash"]}

    # A tampered bundle is rejected offline; an unreachable node is exit 2.
    async with LedgerClient(urls) as lc:
        bundle = await lc.proof(pays[1])
    bundle["leaf_index"] += 1
    (tmp_path / "bad.json").write_text(json.dumps(bundle))
    code, out = await audit_cli("verify", str(tmp_path / "bad.json"), "--genesis", genesis)
    assert code == 1 and "INVALID" in out, out
    code, out = await audit_cli("audit", "--node", "http://127.0.0.1:9", "--genesis", genesis,
                                "--no-checkpoint")
    assert code == 2, out


async def test_sdk_reports_unreachable_cluster(tmp_path: Path) -> None:
    async with LedgerClient(["http://127.0.0.1:9"], retries=1) as lc:
        with pytest.raises(NodesUnavailable):
            await lc.status()
