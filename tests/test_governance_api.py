"""The node API under governance (issue 23, phase 2a): a multi-signed
governance record submitted over HTTP, ``GET /v1/membership``, and the proof
route's choice between version 1 and version 2 bundles (PROTOCOL §6, §9.6,
§9.7), each answer checked against the OpenAPI description."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from govhelpers import gov_genesis, gov_record
from helpers import make_envelope, make_keys
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode, call, submit

from ledger.chain import ChainStore
from ledger.storage import MemoryStore
from ledger.verify import verify_bundle
from ledger.verify_epochs import verify_bundle_v2
from node.api import build_app
from node.mempool import Mempool


class GovNode(StubNode):
    """The API test's stub node over a genesis with three members."""

    def __init__(self) -> None:
        super().__init__()
        self.genesis, self.validator_keys, self.members, self.submitter = gov_genesis()
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=1000,
                               clock=lambda: self.clock)


@pytest.fixture
def node() -> GovNode:
    return GovNode()


@pytest.fixture
async def client(node: GovNode) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                    max_trace_depth=64, max_trace_nodes=1000)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_membership_route_and_bundle_versions(client: TestClient[Any, Any],
                                                    node: GovNode) -> None:
    chain = node.genesis.chain
    new = make_keys(1, 3_400_000)[0]
    gov = gov_record(chain, node.members[:2], 1, "gov.submitter.add",
                     {"name": "newco", "pubkey": new.public_key, "roles": ["submit"]})
    old = make_envelope(node.submitter, chain, 1)
    alone = gov_record(chain, node.members[:1], 1, "gov.submitter.add",
                       {"name": "newco", "pubkey": new.public_key, "roles": ["submit"]})
    grow = gov_record(chain, node.members[:2], 2, "gov.validator.remove",  # not a validator
                      {"pubkey": new.public_key})
    results = await submit(client, [alone, grow, gov, old, make_envelope(new, chain, 1)])
    assert [r.get("status", r.get("error")) for r in results] \
        == ["too_few_signatures", "bad_governance", "accepted", "accepted", "unknown_submitter"]
    node.commit()
    fresh = make_envelope(new, chain, 1)
    assert (await submit(client, [fresh]))[0]["status"] == "accepted"
    node.commit()

    before = await call(client, "GET", "/v1/membership?height=1", "/v1/membership", 200)
    assert before["height"] == 1 and before["made_by"] == {}
    assert new.public_key.hex() not in [s["pubkey"] for s in before["submitters"]]
    now = await call(client, "GET", "/v1/membership", "/v1/membership", 200)
    assert now["height"] == 3
    assert {"name": "newco", "pubkey": new.public_key.hex(), "roles": ["submit"]} \
        in now["submitters"]
    assert now["made_by"] == {f"submitter/{new.public_key.hex()}": gov.id.hex()}
    assert now["threshold"] == 2 and len(now["members"]) == 3 and len(now["validators"]) == 4
    for bad in ("0", "4", "x"):
        doc = await call(client, "GET", f"/v1/membership?height={bad}", "/v1/membership", 400)
        assert doc["error"] == "bad_request"

    # A record governance did not touch: version 1, as on an unchanged chain.
    v1 = await call(client, "GET", f"/v1/records/{old.id.hex()}/proof",
                    "/v1/records/{id}/proof", 200)
    assert v1["format"] == "auditledger-proof/1"
    verify_bundle(v1, node.genesis)
    # The new submitter's record: version 2, verified from the first genesis.
    v2 = await call(client, "GET", f"/v1/records/{fresh.id.hex()}/proof",
                    "/v1/records/{id}/proof", 200)
    assert v2["format"] == "auditledger-proof/2"
    assert [g["record_id"] for g in v2["governance"]] == [gov.id.hex()]
    assert verify_bundle_v2(v2, node.genesis.raw).height == 2
    trace = await call(client, "GET", f"/v1/records/{fresh.id.hex()}/trace",
                       "/v1/records/{id}/trace", 200)
    assert trace["bundles"] == [v2]
    # With a height, the §5 bundle against that block, whatever the record.
    at = await call(client, "GET", f"/v1/records/{fresh.id.hex()}/proof?height=2",
                    "/v1/records/{id}/proof", 200)
    assert at["format"] == "auditledger-proof/1"
    # The governance record reads back whole, co-signatures included.
    doc = await call(client, "GET", f"/v1/records/{gov.id.hex()}", "/v1/records/{id}", 200)
    assert doc["status"] == "committed" and doc["record"]["kind"] == "gov.submitter.add"
