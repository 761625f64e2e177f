"""Nothing accepted is lost on the client side (issue 21 item 1): the SDK
keeps every signed envelope until it sees it committed and only ever resends
those exact bytes - after per-envelope refusals, failed requests, and nodes
that forget what they accepted.  Fake nodes (tests/sdk_fakes.py); the
backoff sleep is injected, so nothing here depends on timing."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from client import LedgerClient, SyncLedgerClient
from client.errors import BatchSubmitError, OutboxFull, SpoolError, SubmitIncomplete, SubmitUnavailable
from ledger.records import decode_envelope
from sdk_fakes import CHAIN, FakeNode, key_file, nonces, serve

PAYMENTS = [{"kind": "payment", "origin": {"system": "pos"}, "body": {"amount": 100 + i}} for i in range(5)]


class Sleeps:
    """Records the backoff asked for instead of waiting it out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def client(urls: list[str], tmp_path: Path, sleeps: Sleeps, **options: object) -> LedgerClient:
    return LedgerClient(urls, key_file(tmp_path), sleep=sleeps, rng=random.Random(1), **options)  # type: ignore[arg-type]


async def test_rate_limited_items_are_retried_with_identical_bytes(tmp_path: Path) -> None:
    node = FakeNode(rate_limit=2)  # the first two envelopes of the batch are pushed back
    sleeps = Sleeps()
    async with serve(node) as urls, client(urls, tmp_path, sleeps) as lc:
        ids = await lc.submit_many(PAYMENTS)
    assert sorted(ids) == sorted(node.records)
    first_try, second_try = node.received[:5], node.received[5:]
    assert second_try == first_try[:2]  # the same bytes, not re-signed records
    assert len(set(node.received)) == 5 and sorted(set(nonces(node.received))) == sorted(nonces(first_try))
    assert len(sleeps.delays) == 1


async def test_refusals_fail_over_to_another_node(tmp_path: Path) -> None:
    down = FakeNode(fail_requests=10**6)  # every request answered 503
    busy = FakeNode(rate_limit=10**6)  # every envelope pushed back
    good = FakeNode()
    sleeps = Sleeps()
    async with serve(down, busy, good) as urls, client(urls, tmp_path, sleeps) as lc:
        # Whole-request failures and per-envelope refusals both move on to the next node.
        lc._preferred = 0
        ids = await lc.submit_many(PAYMENTS)
    assert sorted(ids) == sorted(good.records)
    assert busy.received == good.received  # the busy node saw exactly the bytes the good one took
    assert down.posts >= 1 and len(set(good.received)) == 5
    # Exponential backoff with jitter between the tries.
    assert len(sleeps.delays) == 2 and 0.025 <= sleeps.delays[0] < 0.075 and 0.05 <= sleeps.delays[1] < 0.15


async def test_a_garbled_answer_is_retried_not_taken_as_a_refusal(tmp_path: Path) -> None:
    node = FakeNode(garble=1)
    async with serve(node) as urls, client(urls, tmp_path, Sleeps()) as lc:
        ids = await lc.submit_many(PAYMENTS[:2])
    assert sorted(ids) == sorted(node.records) and node.posts == 2 and len(node.received) == 2


async def test_exhausted_retries_carry_the_unaccepted_envelopes(tmp_path: Path) -> None:
    node = FakeNode(capacity=3)  # takes three, then pushes back for good (until we lift it)
    sleeps = Sleeps()
    async with serve(node) as urls, client(urls, tmp_path, sleeps, retries=2) as lc:
        with pytest.raises(SubmitUnavailable) as caught:
            await lc.submit_many(PAYMENTS)
        exc = caught.value
        assert isinstance(exc, SubmitIncomplete)
        assert exc.accepted == exc.ids[:3] and sorted(exc.accepted) == sorted(node.records)
        assert [decode_envelope(e).id.hex() for e in exc.unaccepted] == exc.ids[3:]
        assert exc.unaccepted == node.received[3:5]  # exactly the bytes that were sent
        assert [(p.id, p.accepted) for p in lc.pending()] == [(i, i in exc.accepted) for i in exc.ids]
        signed = node.received[:5]
        node.capacity = None
        results = await lc.submit_envelopes(exc.unaccepted)
        assert [r["status"] for r in results] == ["accepted", "accepted"]
    assert sorted(node.records) == sorted(exc.ids)  # five records, none twice
    assert set(node.received) == set(signed)  # nothing was ever re-signed


async def test_permanent_refusals_are_reported_per_item_and_not_retried(tmp_path: Path) -> None:
    node = FakeNode(rate_limit=1)  # the first envelope is pushed back once, then taken
    async with serve(node) as urls, client(urls, tmp_path, Sleeps()) as lc:
        envelopes = [lc.sign(**p) for p in PAYMENTS[:3]]  # type: ignore[arg-type]
        node.refuse_codes[envelopes[1].id.hex()] = "nonce_reused"
        results = await lc.submit_envelopes([e.envelope_bytes for e in envelopes])
        assert [r.get("status", r.get("error")) for r in results] == ["accepted", "nonce_reused", "accepted"]
        assert node.received.count(envelopes[1].envelope_bytes) == 1  # refused for good: sent once
        assert [p.id for p in lc.pending()] == [envelopes[0].id.hex(), envelopes[2].id.hex()]


async def test_batch_error_lists_refused_and_accepted(tmp_path: Path) -> None:
    node = FakeNode()
    async with serve(node) as urls, client(urls, tmp_path, Sleeps()) as lc:
        first_nonce = lc.sign(kind="probe").record.nonce
        node.refuse_nonces[first_nonce + 2] = "unknown_submitter"  # the second record of the batch
        with pytest.raises(BatchSubmitError) as caught:
            await lc.submit_many(PAYMENTS[:3])
    exc = caught.value
    assert [(i, code) for i, code, _ in exc.refused] == [(1, "unknown_submitter")]
    assert exc.accepted == [exc.ids[0], exc.ids[2]] and exc.unaccepted == []
    assert len(node.received) == 3


async def test_wait_committed_resubmits_what_a_node_forgot(tmp_path: Path) -> None:
    forgetful = FakeNode(forget=True)  # answers accepted, then was "killed before gossip"
    good = FakeNode(commit_after=2)
    sleeps = Sleeps()
    async with serve(forgetful, good) as urls, client(urls, tmp_path, sleeps) as lc:
        lc._preferred = 0
        rid = await lc.submit(kind="payment", body={"amount": 7})
        assert forgetful.received and not good.received
        assert [p.id for p in lc.pending()] == [rid]
        doc = await lc.wait_committed(rid, timeout=30)
        assert doc["status"] == "committed"
        assert lc.pending() == []  # released once seen committed
    assert good.received == forgetful.received  # the same envelope bytes, to the other node
    assert good.records == {rid: "committed"}


async def test_wait_committed_asks_the_node_to_answer_at_the_commit(tmp_path: Path) -> None:
    """A long poll (wait_ms, PROTOCOL §6) within the time left and the
    request timeout; a pending answer is asked again."""
    node = FakeNode(commit_after=2)
    async with serve(node) as urls, client(urls, tmp_path, Sleeps()) as lc:
        rid = await lc.submit(kind="payment", body={"amount": 7})
        assert (await lc.wait_committed(rid, timeout=30))["status"] == "committed"
        assert (await lc.record(rid))["status"] == "committed"
    assert node.waits == ["5000", "5000", None]


async def test_confirm_committed_releases_by_reading_blocks(tmp_path: Path) -> None:
    node = FakeNode()
    async with serve(node) as urls, client(urls, tmp_path, Sleeps()) as lc:
        ids = await lc.submit_many(PAYMENTS)
        assert len(lc.pending()) == 5
        assert await lc.confirm_committed() == 5  # nothing committed yet
        node.commit_all()
        assert await lc.confirm_committed() == 0
        assert len(node.received) == 5  # read from blocks, nothing resent
    assert sorted(ids) == sorted(node.blocks[0])


async def test_outbox_bound_refuses_before_signing(tmp_path: Path) -> None:
    node = FakeNode()
    async with serve(node) as urls, client(urls, tmp_path, Sleeps(), max_pending=4) as lc:
        await lc.submit_many(PAYMENTS[:3])
        before = lc.sign(kind="probe").record.nonce
        lc.forget([decode_envelope(node.received[0]).id.hex()])
        with pytest.raises(OutboxFull):
            await lc.submit_many(PAYMENTS[:3])
        assert lc.sign(kind="probe").record.nonce == before + 1  # no nonce spent on the refusal
        assert len(node.received) == 3


async def test_spool_lets_a_restarted_client_finish(tmp_path: Path) -> None:
    spool = tmp_path / "svc.spool"
    forgetful = FakeNode(forget=True)
    async with serve(forgetful) as urls, client(urls, tmp_path, Sleeps(), spool_file=spool) as lc:
        ids = await lc.submit_many(PAYMENTS)
        with pytest.raises(SpoolError):
            LedgerClient(urls, spool_file=spool)  # one process per spool
    # The process "restarts"; a crash mid-append left a torn entry at the end.
    with spool.open("ab") as fh:
        fh.write(b"\x93\x01\xc4\x20")
    good = FakeNode()
    async with serve(good) as urls, client(urls, tmp_path, Sleeps(), spool_file=spool) as lc:
        assert [p.id for p in lc.pending()] == ids
        results = await lc.resubmit_pending()
        assert [r["status"] for r in results] == ["accepted"] * 5
        good.commit_all()
        await lc.resubmit_pending()  # answered "committed": released
        assert lc.pending() == []
    assert good.received[:5] == forgetful.received  # the bytes signed before the restart
    assert LedgerClient(urls, spool_file=spool).pending() == []


def test_sync_client_keeps_what_it_could_not_send(tmp_path: Path) -> None:
    sleeps = Sleeps()
    with SyncLedgerClient(["http://127.0.0.1:9"], key_file(tmp_path), chain=CHAIN, retries=2,
                          sleep=sleeps, rng=random.Random(1)) as lc:
        with pytest.raises(SubmitUnavailable) as caught:
            lc.submit(kind="payment", body={"amount": 3})
        assert [p.envelope for p in lc.pending()] == caught.value.unaccepted
        with pytest.raises(SubmitUnavailable):
            lc.resubmit_pending()
        assert len(sleeps.delays) == 4


async def test_demo_feeder_retries_pushback_through_the_sdk(tmp_path: Path) -> None:
    """The live demo's feeder used to raise on rate_limited inside a 202 (a
    lost batch and a 'Task exception was never retrieved' traceback)."""
    from helpers import SUBMITTER_SEED_BASE, genesis_doc, make_keys

    from ledger.keys import write_key_file
    from harness.feeder import Feeder

    node = FakeNode(rate_limit=7)
    async with serve(node) as urls:
        port = int(urls[0].rsplit(":", 1)[1])
        submitter = make_keys(1, SUBMITTER_SEED_BASE)[0]
        doc = genesis_doc(make_keys(1), [submitter], CHAIN, base_port=port)
        (tmp_path / "genesis.json").write_text(json.dumps(doc))
        write_key_file(tmp_path / "keys" / "demo.json", "demo", submitter)
        feeder = Feeder(tmp_path, batch=20, seed=7)
        feeder.client._sleep = Sleeps()
        async with feeder.client:
            await feeder.submit(feeder.work.batch(20))
    assert feeder.submitted == 20 and len(node.records) == 20
    assert len(set(node.received)) == 20  # the 7 pushed back were resent as they were
