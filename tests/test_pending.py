"""Acknowledged records are durable (ledger/pending.py, node/durable.py).

An envelope a client is told is held (``accepted``, or ``duplicate`` of a
record pending here) is in the ``p`` keyspace, synced, before the answer;
reopening the store admits those envelopes again in their original order;
the commit batch of a block deletes its records' entries, and a record the
mempool drops for good loses its entry.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from helpers import FIXED_TS, World, certify, make_envelope

from ledger import schema
from ledger.chain import ChainStore
from ledger.fsck import fsck
from ledger.pending import PendingRecords
from ledger.records import Envelope
from ledger.storage import KeyValueStore, LevelDBStore, MemoryStore, WriteBatch
from node.durable import PendingWriter
from node.mempool import Mempool
from node.metrics import Metrics


class RecordingStore:
    """A store that logs each write (its ops and whether it was synced) and
    can hold writes at a gate, as a slow disk would."""

    def __init__(self, inner: KeyValueStore) -> None:
        self.inner = inner
        self.writes: list[tuple[bool, list[tuple[bytes, bytes | None]]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        self.inner.write(batch, sync)
        self.writes.append((sync, list(batch.ops)))

    def iterate(self, prefix: bytes, reverse: bool = False,
                start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.iterate(prefix, reverse, start)

    def close(self) -> None:
        self.inner.close()


class Node:
    """A chain store, a pending writer and a mempool over one store."""

    def __init__(self, store: KeyValueStore, world: World, *, threaded: bool = False) -> None:
        self.chain = ChainStore(store, world.genesis)
        self.writer = PendingWriter(PendingRecords(store), threaded=threaded)
        self.writer.start()
        self.mempool = Mempool(world.genesis, self.chain, Metrics(), max_size=1000,
                               durable=self.writer, clock=lambda: FIXED_TS)

    async def stop(self) -> None:
        await self.writer.stop()


def pending(store: KeyValueStore) -> list[bytes]:
    """The envelopes in the pending keyspace, in key order."""
    return [value for _, value in store.iterate(schema.PENDING)]


async def api(node: Node, envs: list[Envelope]) -> list[str | None]:
    results = await node.mempool.admit([e.envelope_bytes for e in envs], "api")
    return [r.status if r.error is None else r.error.code for r in results]


def commit(node: Node, world: World, envs: list[Envelope]) -> None:
    """Commit ``envs`` as the next block the way the consensus driver does."""
    height = node.chain.height + 1
    header = node.chain.next_header(envs, 1_700_000_000_000 + height, 0)
    done = node.mempool.take_durable(envs)
    node.chain.commit_block(header, envs, certify(header, world.validators, world.genesis),
                            pending_done=done)
    node.mempool.committed(envs)


async def settled(store: KeyValueStore, expected: list[bytes]) -> None:
    """Wait (with a deadline) until the pending keyspace holds ``expected``."""
    for _ in range(500):
        if pending(store) == expected:
            return
        await asyncio.sleep(0.01)
    assert pending(store) == expected


@pytest.fixture
async def memnode(world: World) -> AsyncIterator[tuple[MemoryStore, Node]]:
    store = MemoryStore()
    node = Node(store, world)
    yield store, node
    await node.stop()


async def test_accepted_is_synced_before_the_answer(tmp_path: Path, world: World) -> None:
    store = RecordingStore(LevelDBStore(str(tmp_path / "db")))
    node = Node(store, world, threaded=True)  # as in a node: the write on its own thread
    try:
        envs = [make_envelope(world.submitter, world.genesis.chain, n) for n in range(3)]
        store.gate.clear()
        store.entered.clear()
        answer = asyncio.create_task(api(node, envs))
        for _ in range(500):  # until the writer is inside the held write
            if store.entered.is_set():
                break
            await asyncio.sleep(0.01)
        assert store.entered.is_set()
        await asyncio.sleep(0.05)
        assert not answer.done(), "answered before the envelopes were on disk"
        store.gate.set()
        assert await answer == ["accepted"] * 3
        synced, ops = store.writes[-1]
        assert synced
        assert ops == [(schema.pending_key(n), e.envelope_bytes) for n, e in enumerate(envs)]
        # All three in one synced write, not one per record.
        assert node.writer.writes == 1
        assert pending(store) == [e.envelope_bytes for e in envs]
        # A resubmission is answered from memory: nothing more is written.
        assert await api(node, envs[:1]) == ["duplicate"]
        assert node.writer.writes == 1
    finally:
        store.gate.set()
        await node.stop()
        store.close()


async def test_duplicate_of_a_peers_record_is_made_durable(
        world: World, memnode: tuple[MemoryStore, Node]) -> None:
    store, node = memnode
    env = make_envelope(world.submitter, world.genesis.chain, 1)
    await node.mempool.admit([env.envelope_bytes], "gossip")
    assert env.id in node.mempool and pending(store) == []  # nobody was told anything
    assert await api(node, [env]) == ["duplicate"]  # a client is told it is held here
    assert pending(store) == [env.envelope_bytes]


async def test_restored_in_original_order_on_reopen(world: World) -> None:
    store = MemoryStore()
    chain_id = world.genesis.chain
    first = Node(store, world)
    parent = make_envelope(world.submitter, chain_id, 1)
    children = [make_envelope(world.submitter, chain_id, n, parents=[parent.id])
                for n in (2, 3)]
    other = make_envelope(world.submitter, chain_id, 4)
    # A peer's record a client's child names, then is itself resubmitted by a
    # client: its entry is numbered after the child's.
    peer = make_envelope(world.submitter, chain_id, 5)
    late_child = make_envelope(world.submitter, chain_id, 6, parents=[peer.id])
    assert await api(first, [parent, *children]) == ["accepted"] * 3
    assert await api(first, [other]) == ["accepted"]
    await first.mempool.admit([peer.envelope_bytes], "gossip")
    assert await api(first, [late_child, peer]) == ["accepted", "duplicate"]
    order = [parent, *children, other, late_child, peer]
    assert pending(store) == [e.envelope_bytes for e in order]
    await first.stop()  # the process dies: only the store is left

    second = Node(store, world)
    try:
        assert await second.mempool.restore() == (6, 0)
        admitted = [parent, *children, other, peer, late_child]  # parents first
        assert [e.id for e in second.mempool.select(100)] == [e.id for e in admitted]
        # Restored records are gossiped (a peer may need them to commit) ...
        assert second.mempool.take_gossip(100) == [e.envelope_bytes for e in admitted]
        # ... and stay where they were: nothing rewritten, nothing lost.
        assert pending(store) == [e.envelope_bytes for e in order]
        assert await api(second, [parent]) == ["duplicate"]
        # New entries are numbered after the restored ones.
        new = make_envelope(world.submitter, chain_id, 7)
        assert await api(second, [new]) == ["accepted"]
        assert [k for k, _ in store.iterate(schema.PENDING)][-1] == schema.pending_key(6)
    finally:
        await second.stop()


async def test_commit_batch_deletes_the_blocks_entries(world: World) -> None:
    store = RecordingStore(MemoryStore())
    node = Node(store, world)
    try:
        envs = [make_envelope(world.submitter, world.genesis.chain, n) for n in range(4)]
        assert await api(node, envs) == ["accepted"] * 4
        block = node.mempool.select(2)
        commit(node, world, block)
        synced, ops = store.writes[-1]
        assert synced and (schema.META_TIP, schema.pack_u64(1)) in ops  # the block's batch
        assert [(schema.pending_key(n), None) for n in (0, 1)] == \
            [op for op in ops if op[0].startswith(schema.PENDING)]
        assert pending(store) == [e.envelope_bytes for e in envs[2:]]
        commit(node, world, node.mempool.select(10))
        assert pending(store) == [] and len(node.mempool) == 0
    finally:
        await node.stop()


async def test_dropped_for_good_loses_its_entry(
        world: World, memnode: tuple[MemoryStore, Node]) -> None:
    store, node = memnode
    chain_id = world.genesis.chain
    mine = make_envelope(world.submitter, chain_id, 9)
    child = make_envelope(world.submitter, chain_id, 10, parents=[mine.id])
    keep = make_envelope(world.submitter, chain_id, 11)
    assert await api(node, [mine, child, keep]) == ["accepted"] * 3
    # Another node's record with the same nonce commits: ours never can, nor its child.
    rival = make_envelope(world.submitter, chain_id, 9, body={"amount": 1})
    commit(node, world, [rival])
    assert mine.id not in node.mempool and child.id not in node.mempool
    await settled(store, [keep.envelope_bytes])


async def test_restore_drops_what_committed_meanwhile(world: World) -> None:
    store = MemoryStore()
    chain_id = world.genesis.chain
    first = Node(store, world)
    a, b = (make_envelope(world.submitter, chain_id, n) for n in (1, 2))
    rival = make_envelope(world.submitter, chain_id, 3)
    nonce_rival = make_envelope(world.submitter, chain_id, 3, body={"amount": 7})
    assert await api(first, [a, b, rival]) == ["accepted"] * 3
    # A block commits a, and another record with rival's nonce, and the node
    # dies before its mempool hears of it (the entries' deletes never land).
    chain = first.chain
    header = chain.next_header([a, nonce_rival], 1_700_000_000_001, 0)
    chain.commit_block(header, [a, nonce_rival], certify(header, world.validators, world.genesis))
    await first.stop()

    second = Node(store, world)
    try:
        assert await second.mempool.restore() == (1, 2)
        assert [e.id for e in second.mempool.select(10)] == [b.id]
        await settled(store, [b.envelope_bytes])
    finally:
        await second.stop()



async def test_fsck_accepts_pending_entries(
        world: World, memnode: tuple[MemoryStore, Node]) -> None:
    store, node = memnode
    envs = [make_envelope(world.submitter, world.genesis.chain, n) for n in range(3)]
    assert await api(node, envs) == ["accepted"] * 3
    commit(node, world, envs[:1])
    assert len(pending(store)) == 2
    report = fsck(store, world.genesis)
    assert report.clean, report.summary()


async def test_stop_waits_for_a_write_under_way(tmp_path: Path, world: World) -> None:
    """The store is closed right after stop(): a write still running on the
    writer's thread would then use a closed LevelDB."""
    store = RecordingStore(LevelDBStore(str(tmp_path / "db")))
    writer = PendingWriter(PendingRecords(store))
    writer.start()
    store.gate.clear()
    seq = writer.add(make_envelope(world.submitter, world.genesis.chain, 1).envelope_bytes)
    waiting = asyncio.create_task(writer.wait(seq))
    for _ in range(500):
        if store.entered.is_set():
            break
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(writer.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done(), "stop() returned while a write was under way"
    store.gate.set()
    await stopping
    assert len(store.writes) == 1
    waiting.cancel()
    store.close()
