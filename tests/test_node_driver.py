"""The consensus driver writes in its writer thread while the event loop runs.

A real :class:`node.driver.Driver` (real machine, mempool and chain) on a
store whose writes wait at a gate the test opens: an fsync that takes as
long as the test says.  While a block's write is held, the loop goes on,
the block's records read as not committed, and a block fed meanwhile waits
in the machine; once the gate opens both are applied, in order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from helpers import certify, make_envelopes, make_genesis

from consensus import CommittedBlock, ConsensusConfig
from consensus.params import proposer_for
from ledger import schema
from ledger.blocks import Header
from ledger.chain import ChainStore
from ledger.genesis import Genesis, parse_genesis
from ledger.records import Envelope
from ledger.storage import MemoryStore, WriteBatch
from node.chainapp import NodeApplication
from node.driver import Driver, now_ms
from node.logs import LogContext
from node.mempool import Mempool
from node.metrics import Metrics
from node.sync import BlockSync


class GatedStore(MemoryStore):
    """Block writes (those that move the tip) wait for ``gate`` while
    ``held``; each block write notes its thread."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.gate = threading.Event()
        self.waiting = threading.Event()
        self.writer_threads: list[str] = []

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        if not any(key == schema.META_TIP for key, _ in batch.ops):
            return super().write(batch, sync)
        self.writer_threads.append(threading.current_thread().name)
        if self.held:
            self.waiting.set()
            assert self.gate.wait(10), "the test never opened the gate"
        super().write(batch, sync)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (at most 10 s) for ``condition``; the deadline only catches a hang."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


def certified_blocks(genesis: Genesis, keys: Sequence, envelope_lists: Sequence[list[Envelope]]
                     ) -> list[CommittedBlock]:
    """Consecutive certified blocks from height 1, built on a scratch chain."""
    scratch = ChainStore(MemoryStore(), genesis)
    out = []
    for envs in envelope_lists:
        header = scratch.next_header(envs, time=now_ms(), 
                                     proposer=proposer_for(genesis.n, scratch.height + 1, 0))
        cert = certify(header, keys, genesis)
        scratch.commit_block(header, envs, cert)
        out.append(CommittedBlock(header, tuple(envs), cert, now_ms()))
    return out


async def test_block_write_runs_off_the_loop_and_blocks_apply_in_order() -> None:
    doc, keys, submitter = make_genesis(4, "test")
    genesis = parse_genesis(doc)
    store = GatedStore()
    chain = ChainStore(store, genesis)
    metrics = Metrics()
    mempool = Mempool(genesis, chain, metrics, max_size=1000)
    committed: list[int] = []

    def on_committed(header: Header, envelopes: Sequence[Envelope], how: str) -> None:
        committed.append(header.height)
        mempool.committed(envelopes)

    driver = Driver(
        genesis=genesis, me=3, key=keys[3], chain=chain, mempool=mempool,
        app=NodeApplication(genesis, chain, mempool, max_block_records=1000,
                            max_clock_skew_ms=10_000),
        sync=BlockSync(chain, [], metrics), metrics=metrics, log_ctx=LogContext("n3"),
        config=ConsensusConfig(), send=lambda peer, data: None, on_committed=on_committed,
    )
    first, second = certified_blocks(genesis, keys, [make_envelopes(submitter, "test", 5),
                                                     make_envelopes(submitter, "test", 3, 5)])
    await driver.start()
    try:
        store.held = True
        driver.feed(first)
        await until(store.waiting.is_set, "block 1's write started")
        # The loop is free (this coroutine runs) while the write is held.
        driver.feed(second)
        for _ in range(20):
            await asyncio.sleep(0)
        assert chain.height == 0 and committed == []
        assert chain.record_location(first.envelopes[0].id) is None  # not committed yet
        assert store.writer_threads == ["ledger-writer_0"]
        store.gate.set()
        await until(lambda: chain.height == 2, "both blocks are applied")
        assert committed == [1, 2]
        assert chain.record_location(second.envelopes[-1].id) == (2, 7)
        assert store.writer_threads == ["ledger-writer_0"] * 2
    finally:
        store.gate.set()
        await driver.stop()
