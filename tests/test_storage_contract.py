"""One contract for every KeyValueStore: MemoryStore and LevelDBStore behave alike."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

import ledger.storage as storage_module

from ledger.storage import (
    KeyValueStore,
    LevelDBStore,
    MemoryStore,
    StoreClosed,
    StoreError,
    StoreLocked,
    WriteBatch,
    prefix_successor,
)

Factory = Callable[[], KeyValueStore]


@pytest.fixture(params=["memory", "leveldb"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[KeyValueStore] = []

    def factory() -> KeyValueStore:
        store: KeyValueStore
        if request.param == "memory":
            store = MemoryStore()
        else:
            store = LevelDBStore(str(tmp_path / "db"))
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def put(store: KeyValueStore, *items: tuple[bytes, bytes]) -> None:
    batch = WriteBatch()
    for key, value in items:
        batch.put(key, value)
    store.write(batch)


def keys(store: KeyValueStore, prefix: bytes, **kw: object) -> list[bytes]:
    return [k for k, _ in store.iterate(prefix, **kw)]  # type: ignore[arg-type]


def test_is_a_key_value_store(make_store: Factory) -> None:
    assert isinstance(make_store(), KeyValueStore)


def test_get_missing_is_none(make_store: Factory) -> None:
    assert make_store().get(b"nope") is None


def test_put_get_overwrite_delete(make_store: Factory) -> None:
    store = make_store()
    put(store, (b"k", b"v1"))
    assert store.get(b"k") == b"v1"
    put(store, (b"k", b"v2"))
    assert store.get(b"k") == b"v2"
    batch = WriteBatch()
    batch.delete(b"k")
    store.write(batch)
    assert store.get(b"k") is None
    assert keys(store, b"") == []


def test_delete_missing_key_is_harmless(make_store: Factory) -> None:
    store = make_store()
    batch = WriteBatch()
    batch.delete(b"ghost")
    store.write(batch)
    assert store.get(b"ghost") is None


def test_empty_value_is_not_missing(make_store: Factory) -> None:
    store = make_store()
    put(store, (b"empty", b""))
    assert store.get(b"empty") == b""
    assert list(store.iterate(b"emp")) == [(b"empty", b"")]


def test_binary_keys_and_values(make_store: Factory) -> None:
    store = make_store()
    rng = random.Random(7)
    items = {bytes([0]) + rng.randbytes(rng.randrange(0, 40)): rng.randbytes(rng.randrange(0, 300))
             for _ in range(200)}
    items[b"\x00"] = b"\x00\xff"
    items[b"\xff\xff"] = b"\xff"
    put(store, *items.items())
    for key, value in items.items():
        assert store.get(key) == value
    assert [k for k, _ in store.iterate(b"")] == sorted(items)


def test_batch_is_ordered_last_write_wins(make_store: Factory) -> None:
    store = make_store()
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.delete(b"a")
    batch.put(b"b", b"1")
    batch.put(b"b", b"2")
    batch.put(b"c", b"1")
    batch.delete(b"c")
    batch.put(b"c", b"3")
    assert len(batch) == 7
    store.write(batch)
    assert (store.get(b"a"), store.get(b"b"), store.get(b"c")) == (None, b"2", b"3")


def test_batch_put_many(make_store: Factory) -> None:
    store = make_store()
    batch = WriteBatch()
    batch.put_many((bytes([i]), bytes([i, i])) for i in range(10))
    assert len(batch) == 10 and bool(batch)
    store.write(batch, sync=False)
    assert store.get(bytes([9])) == bytes([9, 9])


def test_empty_batch(make_store: Factory) -> None:
    store = make_store()
    batch = WriteBatch()
    assert len(batch) == 0 and not batch
    store.write(batch)
    assert keys(store, b"") == []


def test_bad_batch_is_rejected_whole(make_store: Factory) -> None:
    store = make_store()
    put(store, (b"keep", b"1"))
    batch = WriteBatch()
    batch.put(b"new", b"2")
    batch.ops.append((b"bad", "not bytes"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.write(batch)
    assert store.get(b"new") is None
    assert store.get(b"keep") == b"1"


def _populate(store: KeyValueStore) -> None:
    put(store, *[(k, k.upper()) for k in
                 [b"a", b"ab", b"abc", b"abd", b"ab\xff", b"ab\xff\xff", b"ac", b"b", b"\xff"]])


def test_prefix_iteration_forward_and_reverse(make_store: Factory) -> None:
    store = make_store()
    _populate(store)
    expected = [b"ab", b"abc", b"abd", b"ab\xff", b"ab\xff\xff"]
    assert keys(store, b"ab") == expected
    assert keys(store, b"ab", reverse=True) == expected[::-1]
    assert list(store.iterate(b"abc")) == [(b"abc", b"ABC")]
    assert keys(store, b"zz") == []
    assert keys(store, b"ab\xff") == [b"ab\xff", b"ab\xff\xff"]
    assert keys(store, b"\xff") == [b"\xff"]
    assert keys(store, b"") == sorted(keys(store, b""))
    assert len(keys(store, b"", reverse=True)) == 9


def test_iteration_with_start(make_store: Factory) -> None:
    store = make_store()
    _populate(store)
    assert keys(store, b"ab", start=b"abd") == [b"abd", b"ab\xff", b"ab\xff\xff"]
    assert keys(store, b"ab", start=b"abcc") == [b"abd", b"ab\xff", b"ab\xff\xff"]
    assert keys(store, b"ab", start=b"a") == keys(store, b"ab")  # below the prefix
    assert keys(store, b"ab", start=b"b") == []  # above the prefix
    assert keys(store, b"ab", reverse=True, start=b"abd") == [b"abd", b"abc", b"ab"]
    assert keys(store, b"ab", reverse=True, start=b"zzz") == keys(store, b"ab", reverse=True)
    assert keys(store, b"ab", reverse=True, start=b"a") == []
    assert keys(store, b"", start=b"b") == [b"b", b"\xff"]


def test_iteration_is_a_snapshot(make_store: Factory) -> None:
    store = make_store()
    _populate(store)
    it = store.iterate(b"a")
    first = next(it)
    put(store, (b"aa", b"new"))
    rest = [k for k, _ in it]
    assert first[0] == b"a"
    assert b"aa" not in rest


def test_many_keys_stay_sorted(make_store: Factory) -> None:
    store = make_store()
    rng = random.Random(3)
    expected: dict[bytes, bytes] = {}
    for _ in range(20):
        batch = WriteBatch()
        for _ in range(rng.choice([1, 5, 50])):
            key = rng.randbytes(3)
            if expected and rng.random() < 0.2:
                victim = rng.choice(sorted(expected))
                batch.delete(victim)
                expected.pop(victim)
            else:
                batch.put(key, key)
                expected[key] = key
        store.write(batch)
    assert keys(store, b"") == sorted(expected)
    assert keys(store, b"", reverse=True) == sorted(expected, reverse=True)


def test_use_after_close_raises(make_store: Factory) -> None:
    store = make_store()
    store.close()
    with pytest.raises(StoreClosed):
        store.get(b"k")
    with pytest.raises(StoreClosed):
        store.write(WriteBatch())
    with pytest.raises(StoreClosed):
        store.iterate(b"")
    store.close()  # idempotent


def test_prefix_successor() -> None:
    assert prefix_successor(b"ab") == b"ac"
    assert prefix_successor(b"a\xff") == b"b"
    assert prefix_successor(b"\xff\xff") is None
    assert prefix_successor(b"") is None


# ---------------------------------------------------------------- LevelDB only


def test_leveldb_persists_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    store = LevelDBStore(path)
    put(store, (b"k1", b"v1"), (b"k2", b""))
    store.close()
    again = LevelDBStore(path)
    try:
        assert again.get(b"k1") == b"v1"
        assert again.get(b"k2") == b""
        assert keys(again, b"k") == [b"k1", b"k2"]
    finally:
        again.close()


def test_leveldb_counts_its_table_files(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = LevelDBStore(str(path))
    assert store.table_files() == 0  # everything still in the memtable
    put(store, *((b"k%04d" % i, b"v" * 100) for i in range(1000)))
    store.close()
    assert store.table_files() is None
    again = LevelDBStore(str(path))  # reopening writes the recovered log to a table
    try:
        files = again.table_files()
        assert files is not None and files >= 1
        assert files == len(list(path.glob("*.ldb")))
    finally:
        again.close()


def test_leveldb_second_handle_is_locked(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    store = LevelDBStore(path)
    try:
        with pytest.raises(StoreLocked):
            LevelDBStore(path)
    finally:
        store.close()
    LevelDBStore(path).close()  # released on close


def test_leveldb_locked_by_another_process(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    store = LevelDBStore(path)
    try:
        code = (
            "import sys\n"
            "from ledger.storage import LevelDBStore, StoreLocked\n"
            "try:\n"
            f"    LevelDBStore({path!r})\n"
            "except StoreLocked as exc:\n"
            "    print('locked', exc.code)\n"
            "    sys.exit(0)\n"
            "sys.exit(1)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "locked unavailable"
    finally:
        store.close()


def test_leveldb_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        LevelDBStore(str(tmp_path / "absent"), create=False)
    assert not isinstance(info.value, StoreLocked)


def test_leveldb_with_few_open_files_reads_every_table(tmp_path: Path) -> None:
    """``storage.max_open_files`` at LevelDB's floor: with more table files
    than it keeps open, every key still reads back (tables reopen on demand)."""
    store = LevelDBStore(str(tmp_path / "db"), write_buffer_size=1 << 20, max_open_files=74)
    rng = random.Random(7)
    values = {}
    for b in range(160):  # 80 MiB of incompressible values: ~80 tables of 1-2 MiB
        batch = WriteBatch()
        for i in range(64):
            key = b"k%04d%03d" % (b, i)
            values[key] = rng.randbytes(8192)
            batch.put(key, values[key])
        store.write(batch, sync=False)
    store.close()
    store = LevelDBStore(str(tmp_path / "db"), create=False, max_open_files=74)
    tables = [p for p in (tmp_path / "db").iterdir() if p.suffix == ".ldb"]
    assert len(tables) > 74 - 10  # more than its table cache holds
    for key in rng.sample(sorted(values), len(values)):
        assert store.get(key) == values[key]
    store.close()


def _table_bytes(path: Path, block_size: int) -> int:
    """On-disk size of the same 16,000 incompressible records written with
    ``block_size`` (the reopen's log recovery writes them into tables)."""
    store = LevelDBStore(str(path), block_size=block_size)
    rng = random.Random(11)
    for b in range(16):
        batch = WriteBatch()
        for i in range(1000):
            batch.put(b"k%02d%04d" % (b, i), rng.randbytes(100))
        store.write(batch, sync=False)
    store.close()
    LevelDBStore(str(path), block_size=block_size).close()  # recovery writes the tables
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix == ".ldb")


def test_leveldb_block_size_reaches_the_tables(tmp_path: Path) -> None:
    """``storage.block_size_bytes``: smaller blocks mean one index entry per
    ~1 KiB instead of per 64 KiB, so the same data takes more table bytes
    (and every record still reads back)."""
    small = _table_bytes(tmp_path / "small", 1024)
    large = _table_bytes(tmp_path / "large", 64 * 1024)
    assert small > large + 1000 * 8  # ~1,600 index entries more
    store = LevelDBStore(str(tmp_path / "small"), create=False)
    assert len(store.get(b"k150999") or b"") == 100
    store.close()


_NICE_PROBE = """
import os, sys, threading
from ledger.storage import LevelDBStore, WriteBatch, set_background_nice

def native_nices():
    python = {t.native_id for t in threading.enumerate()}
    out = []
    for tid in sorted(os.listdir("/proc/self/task")):
        if int(tid) not in python:
            stat = open(f"/proc/self/task/{tid}/stat").read()
            out.append(int(stat[stat.rindex(")") + 2:].split()[16]))
    return out

store = LevelDBStore(sys.argv[1], write_buffer_size=1 << 20)
print("opened", native_nices())
for b in range(8):  # a few memtable flushes: the background thread has work
    batch = WriteBatch()
    for i in range(256):
        batch.put(b"k%02d%04d" % (b, i), os.urandom(1024))
    store.write(batch, sync=False)
print("renice", set_background_nice(int(sys.argv[2])), set_background_nice(20))
print("after", native_nices())
store.close()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_leveldb_background_thread_is_found_at_open_and_reniced(tmp_path: Path) -> None:
    """``storage.compaction_nice``: the store finds LevelDB's one background
    thread when it opens (making LevelDB start it then), at the process's
    priority; ``set_background_nice`` then renices that thread alone.  A
    fresh interpreter: the thread is per process."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    nice = min(base + 7, 19)
    for _ in ("a new store", "the same store reopened, with tables to compact"):
        out = subprocess.run([sys.executable, "-c", _NICE_PROBE, str(tmp_path / "db"), str(nice)],
                             capture_output=True, text=True, check=True).stdout
        lines = dict(line.split(" ", 1) for line in out.splitlines())
        assert lines["opened"] == f"[{base}]"  # started at open, not yet reniced
        assert lines["renice"] == "True False"  # 20 is out of range
        assert lines["after"] == f"[{nice}]"


def test_set_background_nice_without_a_known_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_module, "_background_tid", None)
    assert storage_module.set_background_nice(19) is False


def test_leveldb_flipped_table_byte_is_an_error_not_a_wrong_value(tmp_path: Path) -> None:
    """LevelDB's default read does not check block checksums: a byte flipped
    inside an incompressible value came back as a wrong value with no error
    (a certificate that then failed an auditor's check).  Every read path of
    the store must raise instead."""
    import plyvel

    rng = random.Random(7)
    values = {i.to_bytes(4, "big"): rng.randbytes(64) for i in range(2000)}
    store = LevelDBStore(str(tmp_path / "db"))
    batch = WriteBatch()
    for key, value in values.items():
        batch.put(key, value)
    store.write(batch)
    store.close()
    db = plyvel.DB(str(tmp_path / "db"))
    db.compact_range()
    db.close()
    table = sorted((tmp_path / "db").glob("*.ldb"))[0]
    data = bytearray(table.read_bytes())
    data[len(data) // 3] ^= 0xFF
    table.write_bytes(bytes(data))

    store = LevelDBStore(str(tmp_path / "db"), create=False)
    try:
        wrong, errors = 0, 0
        for key, value in values.items():
            try:
                wrong += store.get(key) != value
            except plyvel.CorruptionError:
                errors += 1
        assert (wrong, errors > 0) == (0, True)
        with pytest.raises(plyvel.CorruptionError):
            for _ in store.iterate(b""):
                pass
    finally:
        store.close()
