"""Real ``ledger-node`` processes on loopback: commit, SIGKILL, restart, catch-up,
every documented error code from a real request, and forged peer frames.

Each test starts its own 4-node cluster on free ports and stops every process
it started (by pid) on the way out; every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from consensus import proposer_for
from ledger.encoding import canonical
from ledger.keys import load_key_file
from ledger.records import Envelope, make_record, sign_record
from ledger.verify import verify_bundle
from node import frames
from harness.localnet import LocalCluster, until
from node.openapi import ERROR_CODES

pytestmark = pytest.mark.cluster


class Submitter:
    """Signs records with the cluster's demo key; nonces count up."""

    def __init__(self, cluster: LocalCluster, name: str = "demo") -> None:
        self.key = load_key_file(cluster.dir / "keys" / f"{name}.json").key
        self.chain = cluster.genesis.chain
        self.nonce = int(time.time() * 1000) * 1000

    def envelope(self, kind: str = "payment", parents: list[bytes] | None = None,
                 chain: str | None = None, ts: int | None = None, **body: Any) -> Envelope:
        self.nonce += 1
        record = make_record(chain=chain or self.chain, submitter=self.key.public_key,
                             nonce=self.nonce, ts=int(time.time() * 1000) if ts is None else ts,
                             kind=kind,
                             origin={"system": "pytest", "country": "DE"},
                             body=body or {"amount": self.nonce % 10_000, "currency": "EUR"},
                             parents=parents or [])
        return sign_record(record, self.key)

    def lineage(self, payments: int) -> list[Envelope]:
        """Payments, a settlement of up to 16 of them, a refund of the first."""
        pays = [self.envelope() for _ in range(payments)]
        settle = self.envelope("settlement", [p.id for p in pays[:16]], amount=1)
        refund = self.envelope("refund", [pays[0].id], amount=2)
        return [*pays, settle, refund]


def b64(envs: list[Envelope]) -> dict[str, list[str]]:
    return {"envelopes": [base64.b64encode(e.envelope_bytes).decode() for e in envs]}


async def submit(c: LocalCluster, node: int, envs: list[Envelope]) -> list[dict[str, Any]]:
    status, doc = await c.post(node, "/v1/records", json=b64(envs))
    assert status == 202, doc
    assert all("status" in r for r in doc["results"]), doc["results"][:3]
    return doc["results"]  # type: ignore[no-any-return]


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LocalCluster]:
    edits = getattr(request, "param", None)
    # "auditor" is a genesis submitter without the submit role (forbidden_role).
    c = LocalCluster(tmp_path / "cluster", 4, toml_edits=edits, submitters={"auditor": ["read"]})
    try:
        yield c
    finally:
        await c.stop_all()
        # Shown by pytest only when the test failed.
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")


def catch_ups(log: str) -> list[tuple[int, float]]:
    """(records, records/s) of every catch-up the node logged."""
    out = []
    for line in log.splitlines():
        if '"msg":"caught up' in line:
            doc = json.loads(line)
            out.append((doc["sync_records"], doc["sync_rate"]))
    return out


async def test_commit_survive_kills_and_catch_up(cluster: LocalCluster) -> None:
    c = cluster
    everyone = await c.start_all()
    sub = Submitter(c)

    # 1. Four nodes commit records with lineage; every node serves the proof.
    batch = sub.lineage(40)
    await submit(c, 0, batch)
    await c.wait_committed(everyone, batch[-1].id.hex())
    for i in everyone:
        status, bundle = await c.get(i, f"/v1/records/{batch[-2].id.hex()}/proof")
        assert status == 200
        verify_bundle(bundle, c.genesis.raw)

    # 2. SIGKILL a validator in the middle of a stream of submissions.
    victim = 3
    feeding = asyncio.create_task(_feed(c, sub, 0, batches=6, size=300))
    await asyncio.sleep(0.3)
    c.kill(victim)
    last = await feeding
    alive = [0, 1, 2]
    await c.wait_committed(alive, last)

    # 3. Kill the proposer of the next height too: the remaining quorum
    #    changes round and keeps committing.
    c.start(victim)
    await c.wait_connected(everyone)
    height = (await c.status(0))["height"]  # type: ignore[index]
    await c.wait_height(everyone, height)
    proposer = proposer_for(4, height + 1, 0)
    c.kill(proposer)
    alive = [i for i in everyone if i != proposer]
    changes_before = await c.metric(alive[0], "ledger_consensus_round_changes_total")
    more = sub.lineage(60)
    await submit(c, alive[0], more)
    await c.wait_committed(alive, more[-1].id.hex())
    assert await c.metric(alive[0], "ledger_consensus_round_changes_total") > changes_before

    # 4. While it is down the others commit thousands of records; restarted,
    #    it catches up to the same header hashes, then commits with the rest.
    for _ in range(4):
        envs = [sub.envelope() for _ in range(1000)]
        await submit(c, alive[0], envs)
    await c.wait_committed(alive, envs[-1].id.hex(), timeout=60)
    target = (await c.status(alive[0]))["height"]  # type: ignore[index]
    c.start(proposer)
    await c.wait_height([proposer], target, timeout=60)
    reference = await c.header_hashes(alive[0], target)
    for i in everyone:
        assert await c.header_hashes(i, target) == reference, f"node{i} diverged"
    # Most of the gap is fetched in bulk (the last block or two may arrive as
    # consensus decisions instead, depending on timing).
    episodes = catch_ups(c.log_path(proposer).read_text())
    assert sum(n for n, _ in episodes) >= 2000, episodes
    records, rate = max(episodes)
    print(f"\ncatch-up: node{proposer} applied {records} records at {rate:.0f} records/s")
    final = sub.lineage(10)
    await submit(c, proposer, final)
    await c.wait_committed(everyone, final[-1].id.hex())
    for i in everyone:
        assert await c.metric(i, "ledger_records_committed_total") >= 0


async def _feed(c: LocalCluster, sub: Submitter, node: int, batches: int, size: int) -> str:
    """Submit ``batches`` batches to ``node``; returns the last record id."""
    last = ""
    for _ in range(batches):
        envs = [sub.envelope() for _ in range(size)]
        await submit(c, node, envs)
        last = envs[-1].id.hex()
        await asyncio.sleep(0.05)
    return last


# Node 3 gets a tiny mempool (so rate_limited is reachable), a small body
# limit and batch size, and a slow heartbeat (a frozen peer still looks connected).
SMALL_NODE3 = {3: [("max_mempool = 20000", "max_mempool = 50"),
                   ("max_body_bytes = 16777216", "max_body_bytes = 200000"),
                   ("max_request_envelopes = 5000", "max_request_envelopes = 100"),
                   ("heartbeat_ms = 5000", "heartbeat_ms = 60000")]}


@pytest.mark.parametrize("cluster", [SMALL_NODE3], indirect=True)
async def test_every_error_code_from_real_requests(cluster: LocalCluster) -> None:
    c = cluster
    await c.start_all()
    sub = Submitter(c)
    seen: dict[str, int] = {}

    def saw(code: str, status: int) -> None:
        seen.setdefault(code, status)

    async def request(method: str, path: str, node: int = 3, **kw: Any) -> tuple[int, Any]:
        async with c.http().request(method, c.url(node) + path, **kw) as resp:
            doc = await resp.json(content_type=None)
            # 503 unavailable is a documented answer; any other 5xx is a bug.
            assert resp.status < 500 or (resp.status, doc["error"]) == (503, "unavailable"), doc
            if resp.status >= 400:
                assert set(doc) == {"error", "message"}, doc
                saw(doc["error"], resp.status)
            elif isinstance(doc, dict) and "results" in doc:
                for r in doc["results"]:
                    if "error" in r:
                        saw(r["error"], resp.status)
            return resp.status, doc

    good = sub.envelope()
    committed = sub.lineage(3)
    await submit(c, 3, [good, *committed])
    await c.wait_committed([3], committed[-1].id.hex())
    fresh = sub.envelope()  # never submitted: a known record id is answered from state
    tampered = canonical({"record": fresh.record.record_bytes, "sig": bytes(64)})
    non_canonical = b"\x82\xa3sig" + msgpack.packb(good.sig) + b"\xa6record" + \
        msgpack.packb(good.record.record_bytes)
    saved, sub.nonce = sub.nonce, committed[-1].record.nonce - 1
    reused = sub.envelope(amount=999_999)  # a committed record's nonce, another body
    sub.nonce = saved
    envs = [b"\xc1", non_canonical, tampered, sub.envelope(chain="elsewhere"),
            sub.envelope(parents=[b"\x42" * 32]), reused.envelope_bytes,
            canonical({"record": b"\x00" * 9000, "sig": bytes(64)})]
    stranger = Submitter(c, "node0")  # a validator key is no submitter
    envs.append(stranger.envelope().envelope_bytes)
    envs.append(Submitter(c, "auditor").envelope().envelope_bytes)
    envs.append(sub.envelope(ts=0).envelope_bytes)
    status, doc = await request("POST", "/v1/records", json={"envelopes": [
        base64.b64encode(e if isinstance(e, bytes) else e.envelope_bytes).decode()
        for e in envs]})
    assert status == 202
    assert [r.get("error") for r in doc["results"]] == [
        "bad_encoding", "non_canonical", "bad_signature", "wrong_chain", "unknown_parent",
        "nonce_reused", "too_large", "unknown_submitter", "forbidden_role", "bad_timestamp"]
    await request("POST", "/v1/records", json={"nope": 1})
    await request("POST", "/v1/records", data=b"x" * 300_000,
                  headers={"Content-Type": "application/json"})
    await request("POST", "/v1/records", json={"envelopes": ["AA=="] * 101})
    await request("POST", "/v1/records", data=b"hello", headers={"Content-Type": "text/plain"})
    await request("GET", "/v1/records/" + "00" * 32)
    assert {"bad_request", "too_large", "too_many", "unsupported_media_type",
            "not_found"} <= set(seen)
    # Block sync is for validators: unsigned is 401, a stranger's index 403.
    status, _ = await request("GET", "/v1/sync/blocks?from=1")
    assert status == 401
    stranger = {"X-Ledger-Validator": "99", "X-Ledger-Timestamp": str(int(time.time() * 1000)),
                "X-Ledger-Signature": "00" * 64}
    status, _ = await request("GET", "/v1/sync/blocks?from=1", headers=stranger)
    assert status == 403

    # Freeze two validators (SIGSTOP: their sockets stay open and node 3's
    # heartbeat is slow, so it still counts them as connected): from now on
    # nothing can commit, deterministically.
    c.signal(0, signal.SIGSTOP)
    c.signal(1, signal.SIGSTOP)
    fill = [sub.envelope() for _ in range(60)]
    status, doc = await request("POST", "/v1/records", json=b64(fill))
    assert status == 202
    statuses = [r.get("status", r.get("error")) for r in doc["results"]]
    assert statuses == ["accepted"] * 50 + ["rate_limited"] * 10, statuses
    pending = fill[0].id.hex()
    status, _ = await request("GET", f"/v1/records/{pending}/proof")
    assert status == 409
    status, _ = await request("POST", "/v1/records", json=b64([sub.envelope()]))
    assert status == 429
    # Now really lose them: their sockets close and node 3 sees 2 of 4 validators.
    c.kill(0)
    c.kill(1)

    async def unavailable() -> bool:
        st, _ = await request("POST", "/v1/records", json=b64([sub.envelope()]))
        return st == 503

    await until(unavailable, 20, "node3 to notice it lost the quorum")
    c.start(0)
    c.start(1)
    await c.wait_committed([3], pending, timeout=60)
    status, bundle = await request("GET", f"/v1/records/{pending}/proof")
    verify_bundle(bundle, c.genesis.raw)
    assert {"rate_limited", "not_committed", "unavailable"} <= set(seen)
    assert await c.metric(3, "ledger_inputs_rejected_total", code="bad_signature") >= 1
    # This cluster runs without request authentication (auth.insecure_open):
    # unauthenticated is seen from real requests in tests/test_auth_cluster.py.
    assert set(seen) == set(ERROR_CODES) - {"unauthenticated"}, set(ERROR_CODES) - set(seen)


async def test_forged_peer_frames_are_dropped_and_counted(cluster: LocalCluster) -> None:
    c = cluster
    await c.start_all()
    me = load_key_file(c.dir / "keys" / "node1.json").key
    other = load_key_file(c.dir / "keys" / "node2.json").key
    target = c.genesis.validators[0].pubkey
    before = await c.metric(0, "ledger_peer_frames_dropped_total", reason="bad_signature")
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(c.url(0) + frames.PEER_PATH)
        nonce = frames.fresh_nonce()
        await ws.send_bytes(frames.hello(c.genesis, me, target, nonce))
        theirs = frames.check_challenge(c.genesis, me, target, nonce, (await ws.receive()).data)
        await ws.send_bytes(frames.auth(c.genesis, me, target, theirs))
        assert (await ws.receive()).data == frames.READY
        sid = frames.session_id(nonce, theirs)
        status_msg = msgpack.packb({"t": "s", "h": 0})
        await ws.send_bytes(frames.seal(other, sid, 1, status_msg))  # signed by someone else
        await ws.send_bytes(frames.seal(me, sid, 1, status_msg))     # genuine
        await ws.send_bytes(frames.seal(me, sid, 1, status_msg))     # replayed

        async def counted() -> bool:
            bad = await c.metric(0, "ledger_peer_frames_dropped_total", reason="bad_signature")
            replay = await c.metric(0, "ledger_peer_frames_dropped_total", reason="replay")
            return bad == before + 1 and replay >= 1

        await until(counted, 10, "the forged and replayed frames to be counted")
        await ws.close()
        # A stranger cannot even finish the handshake.
        stranger = load_key_file(c.dir / "keys" / "demo.json").key
        ws = await session.ws_connect(c.url(0) + frames.PEER_PATH)
        await ws.send_bytes(frames.hello(c.genesis, stranger, target, frames.fresh_nonce()))
        msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert await c.metric(0, "ledger_peer_handshakes_failed_total", reason="unknown_peer") == 1
    # The real links were untouched: the cluster still commits.
    sub = Submitter(c)
    envs = sub.lineage(5)
    await submit(c, 0, envs)
    await c.wait_committed([0, 1, 2, 3], envs[-1].id.hex())


def test_log_lines_are_json_with_node_height_round(tmp_path: Path) -> None:
    """Unit check of the formatter used by every node (cheap; no processes)."""
    import io
    import logging

    from node.logs import LogContext, setup_logging

    ctx = LogContext(node="node7", height=12, round=3)
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging(ctx, "info", stream)
        logging.getLogger("node.test").info("hello %s", "world", extra={"block": "ab"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    doc = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert doc["node"] == "node7" and doc["height"] == 12 and doc["round"] == 3
    assert doc["msg"] == "hello world" and doc["block"] == "ab"
    assert re.match(r"^\d+(\.\d+)?$", str(doc["ts"]))
