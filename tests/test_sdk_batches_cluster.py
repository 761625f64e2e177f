"""The SDK's signed batches (issue 28 item 1) through a real 4-node cluster:
``submit_many`` signs a batch per request, every record commits, and each
record's bundle verifies on its own, offline and with ``ledger-audit``;
resubmission sends the same bytes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client import LedgerClient
from ledger.encoding import from_b64
from ledger.records import BatchedEnvelope, Envelope, decode_envelope
from ledger.verify import verify_bundle
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


async def test_batches_round_trip_and_every_bundle_verifies(cluster: LocalCluster,
                                                            tmp_path: Path) -> None:
    c = cluster
    urls = [c.url(i) for i in range(4)]
    async with LedgerClient(urls, key_file=c.dir / "keys" / "demo.json", batch_size=64) as lc:
        specs = [{"kind": "payment", "body": {"amount": i}} for i in range(150)]
        batched = await lc.submit_many(specs)
        kept = {p.id: p.envelope for p in lc.pending()}
        singles = await lc.submit_many(specs[:3], batch_sign=False)
        # resubmitting what is kept sends the same bytes: answered from state
        again = await lc.resubmit_pending()
        assert {r["status"] for r in again} <= {"duplicate", "committed"}
        for rid in batched + singles:
            await lc.wait_committed(rid, timeout=60)
        sigs = set()
        for rid in batched + singles:
            bundle = await lc.proof(rid)
            env = decode_envelope(from_b64(bundle["envelope"]))
            if rid in kept:
                assert env.envelope_bytes == kept[rid]
            verified = verify_bundle(json.loads(json.dumps(bundle)), c.genesis)
            assert verified.envelope.id.hex() == rid
            if rid in batched:
                assert isinstance(env, BatchedEnvelope)
                sigs.add(env.sig)
            else:
                assert type(env) is Envelope
        assert len(sigs) == 3  # 64 + 64 + 22 records: one signature per request
        (tmp_path / "bundle.json").write_text(json.dumps(bundle := await lc.proof(batched[70])))
    proc = await asyncio.create_subprocess_exec(
        AUDIT, "verify", str(tmp_path / "bundle.json"), "--genesis", str(c.dir / "genesis.json"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    assert bundle["record_id"] == batched[70]
