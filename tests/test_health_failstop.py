"""``GET /health`` per capability (stub backend), the fail-stop store wrapper,
and a LevelDB write error surfacing as one typed error."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers import make_genesis

from ledger.chain import ChainStore
from ledger.errors import StorageWriteFailed
from ledger.genesis import parse_genesis
from ledger.storage import LevelDBStore, MemoryStore, WriteBatch
from node.api import build_app
from node.failstop import EXIT_STORAGE_WRITE, FailStop, FailStopStore, describe
from node.health import STALL_MS, Health
from node.mempool import Mempool
from node.metrics import Metrics


class HealthStub:
    """The ApiBackend surface /health reads, with the health figures set by the test."""

    def __init__(self) -> None:
        doc, _, _ = make_genesis(4, "test")
        self.genesis = parse_genesis(doc)
        self.chain = ChainStore(MemoryStore(), self.genesis)
        self.metrics = Metrics()
        self.mempool = Mempool(self.genesis, self.chain, self.metrics, max_size=10)
        self.name = "stub0"
        self.validator_index = 0
        self.state = Health("stub0", 10, 10, 100, False)

    def health(self) -> Health:
        return self.state


async def get_health(stub: HealthStub) -> tuple[int, dict[str, Any]]:
    app = build_app(stub, max_body_bytes=1024, max_inflight=8,  # type: ignore[arg-type]
                    max_envelopes=10, max_trace_depth=8, max_trace_nodes=100)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/health")
        return resp.status, await resp.json()


@pytest.mark.parametrize("state, status, serving, synced, committing", [
    (Health("stub0", 10, 10, 100, False), 200, True, True, True),
    # one block behind: the next status message brings it
    (Health("stub0", 9, 10, 100, False), 200, True, True, True),
    # catching up: serves reads, is not synced
    (Health("stub0", 3, 10, 100, True), 200, True, False, True),
    # peers ahead and no commit for long: the stuck validator of issue 21
    (Health("stub0", 112, 179, STALL_MS + 1, False), 200, True, False, False),
    # an idle cluster: nobody ahead, no commits - still committing
    (Health("stub0", 10, 10, 10 * STALL_MS, False), 200, True, True, True),
    # stopped by a fault, or stopping: 503
    (Health("stub0", 10, 12, 0, False, stopped="a write to the store failed"),
     503, False, False, False),
    (Health("stub0", 0, 0, 0, False, store_open=False), 503, False, False, False),
])
async def test_health_answers_per_capability(state: Health, status: int, serving: bool,
                                             synced: bool, committing: bool) -> None:
    stub = HealthStub()
    stub.state = state
    code, doc = await get_health(stub)
    assert code == status
    assert (doc["serving"], doc["synced"], doc["committing"]) == (serving, synced, committing)
    assert doc["ok"] == (serving and synced and committing)
    assert doc["height"] == state.height and doc["peers_height"] == state.peers_height
    assert doc["behind"] == max(0, state.peers_height - state.height)
    assert ("reason" in doc) == (not doc["ok"])
    if status == 503:
        assert doc["error"] == "unavailable" and doc["message"] == doc["reason"]


def test_health_names_a_stuck_validator() -> None:
    doc = Health("node3", 112, 179, 60_000, False).as_json()
    assert doc["reason"] == "no commit for 60000 ms while peers are at height 179 (this node: 112)"


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []

    def __call__(self, code: int) -> None:
        self.codes.append(code)


class BrokenStore(MemoryStore):
    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        raise StorageWriteFailed("LevelDB write at x failed: IO error: x/000003.log: "
                                 "No space left on device")


def test_a_failed_write_through_the_wrapper_stops_once(caplog: pytest.LogCaptureFixture) -> None:
    exits = Exits()
    fail = FailStop(exit=exits)
    store = FailStopStore(BrokenStore(), fail)
    batch = WriteBatch()
    batch.put(b"k", b"v")
    for _ in range(2):
        with pytest.raises(StorageWriteFailed):
            store.write(batch)
    assert exits.codes == [EXIT_STORAGE_WRITE]  # the first fault is the cause
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and "[ENOSPC]" in critical[0]
    assert fail.stopped is not None and fail.stopped[0] == EXIT_STORAGE_WRITE


def test_reads_pass_through_the_wrapper() -> None:
    inner = MemoryStore()
    store = FailStopStore(inner, FailStop(exit=Exits()))
    batch = WriteBatch()
    batch.put(b"a1", b"x")
    batch.put(b"a2", b"y")
    store.write(batch)
    assert store.get(b"a1") == b"x"
    assert list(store.iterate(b"a")) == [(b"a1", b"x"), (b"a2", b"y")]


def test_describe_names_the_errno() -> None:
    assert describe(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))).endswith("[ENOSPC]")
    assert "[EIO]" in describe(StorageWriteFailed("IO error: x: Input/output error"))
    assert "[" not in describe(ValueError("plain"))


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MiB tmpfs at ``tmp_path/disk`` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root; the disk-full path is covered "
                    "by the injected failing stores above")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    fs = os.statvfs(disk)
    if fs.f_blocks * fs.f_frsize > 4 * 1024 * 1024:  # the mount did not take effect here
        subprocess.run(["umount", "-l", str(disk)], check=False)
        pytest.skip(f"mount reported success but {disk} is not a 1 MiB filesystem")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_leveldb_on_a_full_disk_raises_storage_write_failed(tiny_tmpfs: Path) -> None:
    store = LevelDBStore(str(tiny_tmpfs / "db"), write_buffer_size=64 * 1024)
    try:
        with pytest.raises(StorageWriteFailed) as raised:
            for i in range(10_000):
                batch = WriteBatch()
                batch.put(i.to_bytes(8, "big"), os.urandom(4096))
                store.write(batch)
        assert "No space left on device" in str(raised.value)
        assert "[ENOSPC]" in describe(raised.value)
        # Not asserted: that LevelDB then refuses every later write.  It keeps
        # an error only from a failed sync or compaction; a failed log append
        # is not kept, and a later small write may succeed once a compaction
        # has freed space (one full-suite run saw exactly that).  That is why
        # the node stops at the first StorageWriteFailed (failstop.py)
        # instead of relying on the store to keep refusing.
    finally:
        store.close()
