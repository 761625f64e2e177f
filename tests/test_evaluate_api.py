"""POST /v1/evaluate (PROTOCOL §10.9): the verdict an envelope would get
now, nothing committed; bad input is a documented 4xx."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient
from helpers import make_envelope
from policy_fakes import LimitPolicy
from test_node_api import StubNode, b64, call, client, node  # noqa: F401 (fixtures)


async def test_evaluate_answers_the_verdict_and_commits_nothing(
        client: TestClient[Any, Any], node: StubNode) -> None:  # noqa: F811
    now = int(time.time() * 1000)
    env = make_envelope(node.submitter, "test", 1, ts=now)
    doc = await call(client, "POST", "/v1/evaluate", "/v1/evaluate", 200,
                     json={"envelope": b64(env)})
    assert doc["verdict"]["outcome"] == "allow" and doc["verdict"]["status"] == "allowed"
    assert doc["header_version"] == 1 and doc["height"] == 1 and doc["id"] == env.id.hex()
    node.chain.set_policy_engine(LimitPolicy())
    denied = make_envelope(node.submitter, "test", 2, kind="blocked", ts=now)
    doc = await call(client, "POST", "/v1/evaluate", "/v1/evaluate", 200,
                     json={"envelope": b64(denied)})
    assert (doc["verdict"]["outcome"], doc["verdict"]["rule"], doc["verdict"]["reason"],
            doc["header_version"]) == ("deny", "no_blocked", "blocked_kind", 2)
    big = make_envelope(node.submitter, "test", 3, body={"amount": 99_999}, ts=now)
    doc = await call(client, "POST", "/v1/evaluate", "/v1/evaluate", 200,
                     json={"envelope": b64(big)})
    assert doc["verdict"]["status"] == "held" and doc["verdict"]["approvals"] == 2
    assert node.chain.height == 0 and len(node.mempool) == 0


async def test_evaluate_refuses_bad_input(client: TestClient[Any, Any],
                                          node: StubNode) -> None:  # noqa: F811
    async def refused(status: int, code: str, **kwargs: Any) -> None:
        doc = await call(client, "POST", "/v1/evaluate", "/v1/evaluate", status, **kwargs)
        assert doc["error"] == code, doc

    await refused(415, "unsupported_media_type", data=b"x",
                  headers={"Content-Type": "text/plain"})
    await refused(400, "bad_encoding", data=b"{not json",
                  headers={"Content-Type": "application/json"})
    await refused(400, "bad_request", json={"envelopes": []})
    await refused(400, "bad_request", json={"envelope": 5})
    await refused(400, "bad_encoding", json={"envelope": "!!!"})
    await refused(400, "non_canonical", json={"envelope": "AAAA"})
    stranger = make_envelope(node.reader, "other", 1)
    await refused(400, "wrong_chain", json={"envelope": b64(stranger)})
    not_submitter = make_envelope(node.reader, "test", 1)
    await refused(400, "forbidden_role", json={"envelope": b64(not_submitter)})
