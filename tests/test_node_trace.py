"""Trace answers are bounded (PROTOCOL §6): children come in pages from a
cursor, the ancestry stops at the node's bounds and names where to go on,
and the SDK and ``ledger-audit trace`` follow both to the whole lineage.

Anyone may name any committed record as a parent; the issue's reproduction
attached 40,000 children to one record.  Here 2,000 (the pages are what
matters, not the count).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from helpers import commit_envelopes, make_envelope
from test_node_api import MAX_BODY, MAX_ENVELOPES, StubNode, call

from client.audit.cli import main as cli
from client.audit.remote import trace_and_verify
from client.sdk import LedgerClient
from client.trace import follow_trace
from ledger.records import Envelope
from ledger.verify import verify_bundle
from ledger.chain import ChainStore
from ledger.proofs import build_bundle
from ledger.storage import LevelDBStore, MemoryStore
from node import trace
from node.api import build_app

TRACE = "/v1/records/{id}/trace"
FAN_OUT = 2000


def lineage(node: StubNode, length: int, first_nonce: int, parent: bytes | None = None
            ) -> list[Envelope]:
    """``length`` records, each the child of the one before, committed in one
    block (a parent before its children)."""
    envs: list[Envelope] = []
    for i in range(length):
        parents = [envs[-1].id] if envs else ([parent] if parent is not None else [])
        envs.append(make_envelope(node.submitter, "test", first_nonce + i, parents=parents))
    commit_envelopes(node.chain, envs, node.validator_keys)
    return envs


def fan_out(node: StubNode, parent: bytes, count: int, first_nonce: int) -> list[bytes]:
    children = [make_envelope(node.submitter, "test", first_nonce + i, parents=[parent],
                              kind="spam") for i in range(count)]
    for start in range(0, count, 1000):
        commit_envelopes(node.chain, children[start:start + 1000], node.validator_keys)
    return sorted(c.id for c in children)


def app_for(node: StubNode, max_trace_nodes: int = 1000) -> web.Application:
    return build_app(node, max_body_bytes=MAX_BODY, max_inflight=64, max_envelopes=MAX_ENVELOPES,
                     max_trace_depth=64, max_trace_nodes=max_trace_nodes)


@pytest.fixture(scope="module")
def fanned() -> tuple[StubNode, bytes, list[bytes]]:
    node = StubNode()
    root = lineage(node, 1, 1)[0].id
    return node, root, fan_out(node, root, FAN_OUT, 100)


@pytest.fixture
async def fan_client(fanned: tuple[StubNode, bytes, list[bytes]]
                     ) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(app_for(fanned[0]))) as c:
        yield c


async def test_first_page_of_children_has_the_default_size(
        fan_client: TestClient[Any, Any], fanned: tuple[StubNode, bytes, list[bytes]]) -> None:
    node, root, children = fanned
    doc = await call(fan_client, "GET", f"/v1/records/{root.hex()}/trace", TRACE, 200)
    assert doc["children"] == [c.hex() for c in children[:trace.CHILDREN_DEFAULT]]
    assert doc["children_next"] == doc["children"][-1]
    assert [b["record_id"] for b in doc["bundles"]] == [root.hex()]
    assert doc["edges"] == [] and doc["frontier"] == [] and "truncated" not in doc


async def test_the_cursor_walks_every_page_without_gaps_or_repeats(
        fan_client: TestClient[Any, Any], fanned: tuple[StubNode, bytes, list[bytes]]) -> None:
    node, root, children = fanned
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        url = f"/v1/records/{root.hex()}/trace?depth=0&children_limit=333"
        doc = await call(fan_client, "GET", url + (f"&children_after={cursor}" if cursor else ""),
                         TRACE, 200)
        pages += 1
        assert 1 <= len(doc["children"]) <= 333
        seen.extend(doc["children"])
        cursor = doc.get("children_next")
        if cursor is None:
            break
        assert cursor == doc["children"][-1]
    assert seen == [c.hex() for c in children] and pages == -(-FAN_OUT // 333)
    # The largest page, and a cursor that is not a child: the page starts after it.
    doc = await call(fan_client, "GET", f"/v1/records/{root.hex()}/trace?children_limit="
                     f"{trace.CHILDREN_MAX}&children_after={'00' * 32}", TRACE, 200)
    assert len(doc["children"]) == trace.CHILDREN_MAX and doc["children"][0] == children[0].hex()
    doc = await call(fan_client, "GET", f"/v1/records/{root.hex()}/trace?children_after="
                     f"{'ff' * 32}", TRACE, 200)
    assert doc["children"] == [] and "children_next" not in doc


async def test_bad_cursors_and_limits_are_bad_requests(
        fan_client: TestClient[Any, Any], fanned: tuple[StubNode, bytes, list[bytes]]) -> None:
    root = fanned[1].hex()
    for query in ("children_limit=0", f"children_limit={trace.CHILDREN_MAX + 1}",
                  "children_limit=-1", "children_limit=ten", "children_limit=",
                  "children_after=xyz", "children_after=" + "AB" * 32,
                  "children_after=" + "ab" * 31, "children_after=" + "ab" * 33,
                  "children_after="):
        doc = await call(fan_client, "GET", f"/v1/records/{root}/trace?{query}", TRACE, 400)
        assert doc["error"] == "bad_request", query


async def test_ancestors_truncate_name_a_frontier_and_continue_from_it() -> None:
    node = StubNode()
    chain = lineage(node, 12, 1)
    ids = [e.id.hex() for e in reversed(chain)]  # nearest first, from the tip
    async with TestClient(TestServer(app_for(node, max_trace_nodes=5))) as client:
        collected: list[str] = []
        start = ids[0]
        while True:
            doc = await call(client, "GET", f"/v1/records/{start}/trace", TRACE, 200)
            got = [b["record_id"] for b in doc["bundles"]]
            assert len(got) <= 5
            for b in doc["bundles"]:
                verify_bundle(b, node.genesis.raw)
            collected.extend(got)
            # Every edge's child has its bundle here; the frontier is exactly
            # the parents named by an edge without one.
            assert {c for c, _ in doc["edges"]} <= set(got)
            assert doc["frontier"] == [p for _, p in doc["edges"] if p not in got]
            if not doc.get("truncated"):
                assert doc["frontier"] == []
                break
            assert len(doc["frontier"]) == 1
            start = doc["frontier"][0]
        assert collected == ids
        # A depth cut is not a truncation: the frontier names the next generation.
        doc = await call(client, "GET", f"/v1/records/{ids[0]}/trace?depth=2", TRACE, 200)
        assert [b["record_id"] for b in doc["bundles"]] == ids[:3]
        assert doc["frontier"] == [ids[3]] and "truncated" not in doc


async def test_bundle_bytes_bound_the_answer() -> None:
    node = StubNode()
    chain = lineage(node, 10, 1)
    # One record of the lineage: its bundle and the edge to its parent.
    one = len(json.dumps(build_bundle(node.chain, chain[-1].id), separators=(",", ":")))
    one += trace.EDGE_BYTES
    query = trace.TraceQuery(chain[-1].id, depth=64)
    doc = await trace.build_trace(node.chain, query,
                                  trace.TraceLimits(max_nodes=1000, max_bytes=3 * one + one // 2))
    assert len(doc["bundles"]) == 3 and doc["truncated"] is True
    assert doc["frontier"] == [chain[-4].id.hex()]
    # The record's own bundle is always there, however small the bound.
    doc = await trace.build_trace(node.chain, query, trace.TraceLimits(max_nodes=1000, max_bytes=1))
    assert len(doc["bundles"]) == 1 and doc["truncated"] is True


async def test_a_long_trace_lets_the_event_loop_run_between_slices() -> None:
    node = StubNode()
    chain = lineage(node, 4 * trace.SLICE_BUNDLES, 1)
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    doc = await trace.build_trace(node.chain, trace.TraceQuery(chain[-1].id, depth=64),
                                  trace.TraceLimits(max_nodes=1000))
    during = ticks - before
    done = True
    await task
    assert len(doc["bundles"]) == len(chain)
    assert during >= 3  # one turn of the loop per slice of bundles


# -- the consumers ----------------------------------------------------------


@pytest.fixture
async def deep_server() -> AsyncIterator[tuple[StubNode, list[Envelope], list[bytes], str]]:
    """A lineage deeper than the node's depth bound (64) and bigger than its
    node bound (here 25), whose root has more children than one page."""
    node = StubNode()
    chain = lineage(node, 150, 1)
    children = fan_out(node, chain[-1].id, 250, 1000)
    async with TestServer(app_for(node, max_trace_nodes=25)) as server:
        yield node, chain, children, str(server.make_url("")).rstrip("/")


async def test_sdk_trace_follows_pages_and_frontiers_to_the_whole_lineage(
        deep_server: tuple[StubNode, list[Envelope], list[bytes], str]) -> None:
    node, chain, children, url = deep_server
    tip = chain[-1].id.hex()
    async with LedgerClient([url]) as lc:
        doc = await lc.trace(tip)
        assert [b["record_id"] for b in doc["bundles"]] == [e.id.hex() for e in reversed(chain)]
        assert doc["frontier"] == [] and "truncated" not in doc
        assert doc["children"] == [c.hex() for c in children] and "children_next" not in doc
        # Depth counts from the record across continued answers.
        doc = await lc.trace(tip, 70)
        assert len(doc["bundles"]) == 71 and doc["frontier"] == [chain[-72].id.hex()]
        assert "truncated" not in doc
        # The caps stop it, and the answer says so.
        doc = await lc.trace(tip, max_records=40, max_children=100)
        assert len(doc["bundles"]) == 50 and doc["truncated"] is True and doc["frontier"]
        assert doc["children"] == [c.hex() for c in children[:100]]
        assert doc["children_next"] == children[99].hex()


async def test_auditor_verifies_the_whole_lineage_past_the_node_bounds(
        deep_server: tuple[StubNode, list[Envelope], list[bytes], str]) -> None:
    node, chain, children, url = deep_server
    async with LedgerClient([url]) as lc:
        report = await trace_and_verify(lc, chain[-1].id.hex(), node.genesis, None)
        assert set(report.hops) == {e.id.hex() for e in chain}
        assert not report.stopped and not report.missing and not report.more_children
        assert len(report.children) == len(children)
        report = await trace_and_verify(lc, chain[-1].id.hex(), node.genesis, None, max_records=30)
        assert report.stopped and report.missing and len(report.hops) < len(chain)


@pytest.fixture
def threaded_server() -> Iterator[tuple[StubNode, list[Envelope], str]]:
    """The deep lineage served from a thread, for the CLI (which runs its own loop)."""
    node = StubNode()
    chain = lineage(node, 150, 1)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app_for(node, max_trace_nodes=25))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield node, chain, f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_ledger_audit_trace_shows_the_full_lineage_and_says_when_it_stops(
        threaded_server: tuple[StubNode, list[Envelope], str], tmp_path: Any) -> None:
    node, chain, url = threaded_server
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(node.genesis.raw))
    tip = chain[-1].id.hex()
    runner = CliRunner()
    result = runner.invoke(cli, ["trace", tip, "--node", url, "--genesis", str(genesis), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert {h["id"] for h in doc["hops"]} == {e.id.hex() for e in chain}
    assert doc["stopped_at_max_records"] is False and doc["missing_beyond_depth"] == []
    result = runner.invoke(cli, ["trace", tip, "--node", url, "--genesis", str(genesis),
                                 "--max-records", "30"])
    assert result.exit_code == 0, result.output
    assert "INCOMPLETE" in result.output and "stopped after 30 records" in result.output


async def test_the_sdk_stops_on_answers_that_never_end() -> None:
    """A node that names the same frontier and the same children page again
    and again cannot keep the SDK asking."""
    root, parent = "aa" * 32, "bb" * 32
    calls = 0

    async def fetch(rid: str, depth: int | None, limit: int, after: str | None) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"record": rid, "bundles": [], "edges": [[root, parent]],
                "frontier": [parent], "children": ["cc" * 32], "children_next": "cc" * 32}

    doc = await follow_trace(fetch, root)
    assert calls == 3  # the first answer, the frontier once, one more children page
    assert doc["bundles"] == [] and doc["children"] == ["cc" * 32, "cc" * 32]


async def test_long_walks_share_the_gate_and_short_traces_do_not_wait() -> None:
    node = StubNode()
    chain = lineage(node, 3 * trace.SLICE_BUNDLES, 1)
    gate = asyncio.Semaphore(1)
    finished: list[str] = []

    async def walk(name: str, depth: int) -> None:
        doc = await trace.build_trace(node.chain, trace.TraceQuery(chain[-1].id, depth=depth),
                                      trace.TraceLimits(max_nodes=1000), gate)
        assert len(doc["bundles"]) == min(depth + 1, len(chain))
        finished.append(name)

    await asyncio.gather(walk("long1", 64), walk("long2", trace.SLICE_BUNDLES),
                         walk("short", 0))
    # long1 holds the slot after its first slice; long2, shorter, would end
    # first if they interleaved, but waits for it; the one-bundle trace
    # never needs it.
    assert finished == ["short", "long1", "long2"]
    assert not gate.locked()


@pytest.mark.parametrize("kind", ["memory", "leveldb"])
def test_the_chain_reads_one_page_of_children_from_a_cursor(kind: str, tmp_path: Any) -> None:
    node = StubNode()
    store = MemoryStore() if kind == "memory" else LevelDBStore(str(tmp_path / "db"))
    chain = ChainStore(store, node.genesis)
    root = make_envelope(node.submitter, "test", 1)
    other = make_envelope(node.submitter, "test", 2)
    kids = [make_envelope(node.submitter, "test", 10 + i, parents=[root.id, other.id])
            for i in range(50)]
    commit_envelopes(chain, [root, other, *kids], node.validator_keys)
    ids = sorted(k.id for k in kids)
    try:
        assert chain.children(root.id) == ids == chain.children(other.id)
        assert chain.children(root.id, limit=7) == ids[:7]
        assert chain.children(root.id, limit=7, after=ids[6]) == ids[7:14]
        assert chain.children(root.id, after=ids[-1]) == []
        assert chain.children(root.id, limit=0) == []
        between = ids[9][:-1] + bytes([ids[9][-1] ^ 1])  # a cursor that is no child's id
        assert chain.children(root.id, limit=3, after=between) == [
            i for i in ids if i > between][:3]
        pages: list[bytes] = []
        cursor = None
        while page := chain.children(root.id, limit=8, after=cursor):
            pages.extend(page)
            cursor = page[-1]
        assert pages == ids
    finally:
        chain.close()


async def test_a_governance_record_and_its_children_trace() -> None:
    """A governance record's envelope is multi-signed (PROTOCOL §9.2): the
    trace decoded stored envelopes as admission does, which refuses those,
    so the trace of a governance record, or of any record descending from
    one, answered 400 bad_encoding (the explorer could not show it)."""
    from govhelpers import gov_genesis, gov_record

    genesis, validators, members, submitter = gov_genesis(chain="test")
    node = StubNode()
    node.genesis, node.validator_keys = genesis, validators
    node.chain = ChainStore(MemoryStore(), genesis)
    gov = gov_record("test", members[:2], 1, "gov.params.set", {"params": {"x": 1}})
    child = make_envelope(submitter, "test", 5, parents=[gov.id])
    commit_envelopes(node.chain, [gov, child], validators)
    async with TestClient(TestServer(app_for(node))) as c:
        for rid, lineage_ids in ((gov.id, {gov.id}), (child.id, {child.id, gov.id})):
            answer = await c.get(TRACE.format(id=rid.hex()))
            doc = await answer.json()
            assert answer.status == 200, doc
            assert {b["record_id"] for b in doc["bundles"]} == {i.hex() for i in lineage_ids}
            for bundle in doc["bundles"]:
                verify_bundle(bundle, genesis.raw)
