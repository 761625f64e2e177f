"""The production consensus driver (node/driver.py), four of them in-process.

Each validator is a real :class:`Driver` over a real ChainStore, mempool and
application; only the transport (frames handed straight to the other drivers,
decoded as a node decodes them) and the clock (virtual time: timers fire
when the test advances it) are fakes.  Results are decided by the virtual
clock and by the drivers' queues running empty, never by a sleep.

The fault tests are the fail-stop promise: an error in a commit or in a
persist of the consensus state stops the validator (its exit code and one
CRITICAL log line naming the cause) - never a validator that keeps running
without committing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from helpers import FIXED_TS, make_envelope, make_genesis

from consensus import ConsensusConfig, received
from ledger import schema
from ledger.chain import ChainStore
from ledger.crypto import SigningKey
from ledger.errors import HeaderError, StorageWriteFailed
from ledger.genesis import Genesis, parse_genesis
from ledger.storage import MemoryStore, WriteBatch
from node.chainapp import NodeApplication
from node.config import consensus_timeouts
from node.driver import Driver
from node.failstop import EXIT_INTERNAL, EXIT_STORAGE_WRITE, FailStop, FailStopStore
from node.logs import LogContext
from node.mempool import Mempool
from node.metrics import Metrics
from node.sync import BlockSync
from node.wire import decode_consensus

N = 4
VIRTUAL_LIMIT_MS = 60_000  # a test that needs more virtual time than this has failed
ENOSPC_TEXT = "IO error: chain/000007.log: No space left on device"


class Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeClock:
    """Virtual milliseconds; ``advance`` fires the timers that fall due, in order."""

    now: int = FIXED_TS
    _heap: list[tuple[int, int, Timer, Callable[[], None]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def now_ms(self) -> int:
        return self.now

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer()
        heapq.heappush(self._heap, (self.now + round(delay_s * 1000), next(self._seq), timer,
                                    callback))
        return timer

    def advance(self, ms: int) -> None:
        until = self.now + ms
        while self._heap and self._heap[0][0] <= until:
            due, _, timer, callback = heapq.heappop(self._heap)
            self.now = max(self.now, due)
            if not timer.cancelled:
                callback()
        self.now = until


class FlakyStore(MemoryStore):
    """A MemoryStore whose writes fail once ``fail_when`` says so for a batch
    (as LevelDB does when the disk is full: every write from then on)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_when: Callable[[WriteBatch], bool] | None = None
        self.failed = False

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        if self.failed or (self.fail_when is not None and self.fail_when(batch)):
            self.failed = True
            raise StorageWriteFailed(f"LevelDB write at chain failed: {ENOSPC_TEXT}")
        super().write(batch, sync)


def writes(key: bytes) -> Callable[[WriteBatch], bool]:
    return lambda batch: any(k == key for k, _ in batch.ops)


class Exits:
    """Stands in for ``os._exit``: records the code, the process 'ends'."""

    def __init__(self) -> None:
        self.codes: list[int] = []

    def __call__(self, code: int) -> None:
        self.codes.append(code)


@dataclass
class Validator:
    index: int
    store: FlakyStore
    chain: ChainStore
    mempool: Mempool
    driver: Driver
    fail: FailStop
    exits: Exits
    sent: int = 0


class Cluster:
    def __init__(self, genesis: Genesis, keys: list, submitter: SigningKey,
                 clock: FakeClock, *, follow_params: bool = False) -> None:
        """``follow_params``: timeouts from the chain params in force at each
        height, as a node takes them (node/app.py), instead of fixed ones."""
        self.genesis = genesis
        self.submitter = submitter
        self.clock = clock
        self.keys = keys
        self.down: set[int] = set()  # nodes taken out: nothing is delivered to them
        self.nodes: list[Validator] = []
        for i in range(len(keys)):
            store = FlakyStore()
            exits = Exits()
            fail = FailStop(exit=exits)
            chain = ChainStore(FailStopStore(store, fail), genesis)
            metrics = Metrics()
            mempool = Mempool(genesis, chain, metrics, max_size=10_000, clock=clock.now_ms)
            app = NodeApplication(genesis, chain, mempool, max_block_records=100,
                                  max_clock_skew_ms=10_000)
            node = Validator(i, store, chain, mempool, None, fail, exits)  # type: ignore[arg-type]
            node.driver = Driver(
                genesis=genesis, keys=[keys[i]], chain=chain, mempool=mempool, app=app,
                sync=BlockSync(chain, [], metrics), metrics=metrics,
                log_ctx=LogContext(node=f"node{i}"),
                config=ConsensusConfig(timeout_propose_ms=1000, timeout_prevote_ms=500,
                                       timeout_precommit_ms=500, timeout_delta_ms=250),
                send=self._sender(i), on_committed=self._committed(mempool), fail=fail,
                clock=clock,
                config_at=(lambda h, chain=chain: consensus_timeouts(chain.membership.at(h).params))
                if follow_params else None)
            self.nodes.append(node)

    def _sender(self, me: int) -> Callable[[bytes | None, bytes], None]:
        def send(peer: bytes | None, message: bytes) -> None:
            self.nodes[me].sent += 1
            for node in self.nodes:
                key = self.keys[node.index].public_key
                if node.index != me and node.index not in self.down and peer in (None, key):
                    decoded = decode_consensus(message, node.mempool.by_leaf)
                    node.driver.feed_peer(received(decoded, self.clock.now_ms()))
        return send

    @staticmethod
    def _committed(mempool: Mempool) -> Callable[..., None]:
        def on_committed(header: object, envelopes: list, source: str) -> None:
            mempool.committed(envelopes)
        return on_committed

    async def settle(self) -> None:
        """Yield until every driver has handled every event it was fed."""
        idle = 0
        while idle < 3:
            await asyncio.sleep(0)
            busy = any(n.driver._events for n in self.nodes
                       if n.fail.stopped is None and n.index not in self.down)
            idle = 0 if busy else idle + 1

    async def run_until(self, done: Callable[[], bool], step_ms: int = 10) -> None:
        start = self.clock.now
        await self.settle()
        while not done():
            assert self.clock.now - start < VIRTUAL_LIMIT_MS, "no progress in virtual time"
            self.clock.advance(step_ms)
            await self.settle()

    async def submit(self, envelopes: list) -> None:
        raw = [e.envelope_bytes for e in envelopes]
        for node in self.nodes:
            results = await node.mempool.admit(raw, "api")
            assert all(r.error is None for r in results), results


@pytest.fixture
def world() -> tuple[Genesis, list, object]:
    doc, keys, submitter = make_genesis(N, "test")
    return parse_genesis(doc), keys, submitter


async def started(world: tuple[Genesis, list, object]) -> Cluster:
    genesis, keys, submitter = world
    cluster = Cluster(genesis, keys, submitter, FakeClock())
    for node in cluster.nodes:
        await node.driver.start()
    return cluster


async def stop(cluster: Cluster) -> None:
    for node in cluster.nodes:
        await node.driver.stop()


def critical_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]


async def test_four_drivers_commit_blocks_over_the_fake_transport(world) -> None:
    cluster = await started(world)
    try:
        submitter = world[2]
        first = [make_envelope(submitter, "test", n) for n in range(10)]
        await cluster.submit(first)
        await cluster.run_until(lambda: all(n.chain.height >= 1 for n in cluster.nodes))
        second = [make_envelope(submitter, "test", n) for n in range(10, 25)]
        await cluster.submit(second)
        await cluster.run_until(
            lambda: all(n.chain.tip() is not None and n.chain.tip().log_size == 25  # type: ignore[union-attr]
                        for n in cluster.nodes))
        height = cluster.nodes[0].chain.height
        assert height >= 2
        hashes = {tuple(n.chain.header(h).hash for h in range(1, height + 1))
                  for n in cluster.nodes}
        assert len(hashes) == 1  # all four hold the same chain
        for env in first + second:
            assert all(n.chain.record_location(env.id) is not None for n in cluster.nodes)
        assert all(n.fail.stopped is None and n.exits.codes == [] for n in cluster.nodes)
    finally:
        await stop(cluster)


async def _one_faulty(world, caplog: pytest.LogCaptureFixture,
                      arm: Callable[[Validator], None]) -> tuple[Cluster, Validator]:
    caplog.set_level(logging.INFO)
    cluster = await started(world)
    faulty = cluster.nodes[1]
    arm(faulty)
    await cluster.submit([make_envelope(world[2], "test", n) for n in range(10)])
    await cluster.run_until(lambda: faulty.fail.stopped is not None
                            and all(n.chain.height >= 1 for n in cluster.nodes
                                    if n is not faulty))
    return cluster, faulty


async def _assert_stopped_for_good(cluster: Cluster, faulty: Validator) -> None:
    """The stopped validator does nothing more; the other three go on."""
    sent, height = faulty.sent, faulty.chain.height
    await cluster.submit([make_envelope(cluster.submitter, "test", n) for n in range(10, 15)])
    others = [n for n in cluster.nodes if n is not faulty]
    target = max(n.chain.height for n in others) + 1
    await cluster.run_until(lambda: all(n.chain.height >= target for n in others))
    assert faulty.sent == sent and faulty.chain.height == height
    assert len(faulty.exits.codes) == 1


async def test_a_failed_persist_stops_the_validator(world, caplog) -> None:
    cluster, faulty = await _one_faulty(
        world, caplog, lambda v: setattr(v.store, "fail_when", writes(schema.META_CONSENSUS)))
    try:
        assert faulty.exits.codes == [EXIT_STORAGE_WRITE]
        [line] = critical_lines(caplog)
        assert "write to the store failed" in line and "No space left on device" in line
        assert "[ENOSPC]" in line
        await _assert_stopped_for_good(cluster, faulty)
    finally:
        await stop(cluster)


async def test_a_failed_block_write_stops_the_validator(world, caplog) -> None:
    cluster, faulty = await _one_faulty(
        world, caplog, lambda v: setattr(v.store, "fail_when", writes(schema.META_TIP)))
    try:
        assert faulty.exits.codes == [EXIT_STORAGE_WRITE]
        assert faulty.chain.height == 0
        [line] = critical_lines(caplog)
        assert "No space left on device" in line
        await _assert_stopped_for_good(cluster, faulty)
    finally:
        await stop(cluster)


async def test_a_commit_that_raises_stops_the_validator(world, caplog, monkeypatch) -> None:
    """Issue 22: a raising commit_block used to be logged and swallowed, and
    the machine waited for BlockApplied for ever."""

    def arm(v: Validator) -> None:
        def broken(*args: object, **kwargs: object) -> None:
            raise HeaderError("tip moved under the commit")
        monkeypatch.setattr(v.chain, "commit_block", broken)

    cluster, faulty = await _one_faulty(world, caplog, arm)
    try:
        assert faulty.exits.codes == [EXIT_INTERNAL]
        [line] = critical_lines(caplog)
        assert "committing block 1 failed" in line and "tip moved under the commit" in line
        await _assert_stopped_for_good(cluster, faulty)
    finally:
        await stop(cluster)


async def test_an_added_validator_signs_from_its_epoch_in_process() -> None:
    """PROTOCOL §9.9 through the production driver: a fifth node, not in
    genesis, follows from block 1 (signing nothing); a gov.validator.add
    makes it validator 4 two blocks after its commit, and then, with a
    genesis validator stopped, the five-validator quorum (4) needs its votes."""
    from govhelpers import gov_genesis, gov_record
    from helpers import make_keys

    genesis, vkeys, members, submitter = gov_genesis()
    extra = make_keys(1, 3_900_000)[0]
    cluster = Cluster(genesis, vkeys + [extra], submitter, FakeClock())
    for node in cluster.nodes:
        await node.driver.start()
    try:
        fifth = cluster.nodes[4]
        assert fifth.driver.machine.me is None
        add = gov_record(genesis.chain, members[:2], 1, "gov.validator.add",
                         {"name": "v4", "pubkey": extra.public_key, "address": "127.0.0.1:1"})
        await cluster.submit([add])
        await cluster.run_until(lambda: all(n.chain.record_location(add.id) is not None
                                            for n in cluster.nodes))
        committed = cluster.nodes[0].chain.record_location(add.id)
        assert committed is not None
        nonce = 100
        while fifth.chain.height < committed[0] + 2:
            nonce += 1
            await cluster.submit([make_envelope(submitter, genesis.chain, nonce)])
            await cluster.run_until(lambda: fifth.chain.height >= cluster.nodes[0].chain.height)
        assert fifth.driver.machine.me == 4 and fifth.driver.machine.n == 5
        await cluster.nodes[3].driver.stop()
        cluster.down.add(3)
        live = [n for n in cluster.nodes if n.index != 3]
        late = make_envelope(submitter, genesis.chain, 999)
        await cluster.submit([late])
        await cluster.run_until(lambda: all(n.chain.record_location(late.id) is not None
                                            for n in live))
        height = live[0].chain.record_location(late.id)[0]  # type: ignore[index]
        cert = live[0].chain.certificate(height)
        assert cert is not None and 4 in {i for i, _ in cert.signatures}
        assert len({n.chain.header(height).hash for n in live}) == 1  # type: ignore[union-attr]
    finally:
        for node in cluster.nodes:
            await node.driver.stop()
