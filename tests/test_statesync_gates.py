"""What a node still back-filling after state sync refuses (node/statesync.py):
submissions, proposals holding records, and reads below its snapshot - each
with 503 ``unavailable`` - while new blocks are served and proved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers import certify, make_envelope
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode, b64, call

from ledger.chain import ChainStore
from ledger.statesync import Snapshot, install_snapshot
from ledger.storage import MemoryStore
from ledger.verify import verify_bundle
from node.api import build_app
from node.chainapp import HistoryIncomplete, NodeApplication
from node.mempool import Mempool


class SyncedNode(StubNode):
    """A StubNode whose chain of 3 blocks was joined by snapshot at height 3."""

    def __init__(self) -> None:
        super().__init__()
        self.old = [make_envelope(self.submitter, "test", n) for n in range(3)]
        for env in self.old:  # three blocks on the source chain
            header = self.chain.next_header([env], self.clock + env.record.nonce, 0)
            self.chain.commit_block(header, [env], certify(header, self.validator_keys,
                                                           self.genesis))
        self.source = self.chain
        tip = self.source.tip()
        assert tip is not None
        cert = self.source.certificate(tip.height)
        assert cert is not None
        size, tails = self.source.log.frontier()
        store = MemoryStore()
        install_snapshot(store, Snapshot(tip.header_bytes, cert.to_bytes(), size, tails),
                         self.genesis)
        self.chain = ChainStore(store, self.genesis)
        self.clock += 10
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=1000,
                               clock=lambda: self.clock)

    def unavailable_reason(self) -> str | None:
        from ledger.statesync import history_reason
        gap = self.chain.history_gap
        return history_reason(gap) if gap else None


@pytest.fixture
def node() -> SyncedNode:
    return SyncedNode()


@pytest.fixture
async def client(node: SyncedNode) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_reads_below_the_snapshot_and_submissions_answer_503(
        client: TestClient[Any, Any], node: SyncedNode) -> None:
    old = node.old[0].id.hex()
    for url, template in ((f"/v1/records/{old}", "/v1/records/{id}"),
                          (f"/v1/records/{old}/proof", "/v1/records/{id}/proof"),
                          (f"/v1/records/{old}/trace", "/v1/records/{id}/trace"),
                          ("/v1/blocks/2", "/v1/blocks/{height}"),
                          ("/v1/blocks/3", "/v1/blocks/{height}"),
                          ("/v1/blocks/latest", "/v1/blocks/latest"),
                          ("/v1/consistency?from=1&to=3", "/v1/consistency"),
                          ("/v1/membership", "/v1/membership")):
        err = await call(client, "GET", url, template, 503)
        assert err["error"] == "unavailable" and "back-filling blocks 1..3" in err["message"]
    # A reused nonce of an old record cannot be told from a new one: refused.
    reuse = make_envelope(node.submitter, "test", 0, body={"amount": 1})
    err = await call(client, "POST", "/v1/records", "/v1/records", 503,
                     json={"envelopes": [b64(reuse)]})
    assert err["error"] == "unavailable" and "nonce" in err["message"]
    # A block above the snapshot is served and proved at once.
    new = make_envelope(node.submitter, "test", 50)
    header = node.chain.next_header([new], node.clock, 0)
    node.chain.commit_block(header, [new], certify(header, node.validator_keys, node.genesis))
    bundle = await call(client, "GET", f"/v1/records/{new.id.hex()}/proof",
                        "/v1/records/{id}/proof", 200)
    verify_bundle(bundle, node.genesis)
    await call(client, "GET", "/v1/blocks/4", "/v1/blocks/{height}", 200)


def test_no_vote_for_records_and_no_proposal_while_backfilling(node: SyncedNode) -> None:
    app = NodeApplication(node.genesis, node.chain, node.mempool, max_block_records=10,
                          max_clock_skew_ms=10_000)
    reuse = make_envelope(node.submitter, "test", 0, body={"amount": 1})
    header = node.chain.next_header([reuse], node.clock, 0)
    with pytest.raises(HistoryIncomplete, match="nonce"):
        app.validate(header, [reuse], now_ms=node.clock, certified=False)
    # A certified block naming a parent below the snapshot is applied: a
    # quorum checked it, and the node cannot (it has no parent yet).
    child = make_envelope(node.submitter, "test", 60, parents=[node.old[0].id])
    header = node.chain.next_header([child], node.clock, 0)
    app.validate(header, [child], now_ms=node.clock, certified=True)
    assert app.build_block(4, 0, node.clock, 0) is None
