"""LevelDB table reads with pread instead of mmap (node/tablereads.py).

Each case runs in a fresh interpreter: LevelDB reads its mmap limit once,
when the process first opens a database, and the switch is process-wide.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import ConfigError, parse_settings
from node.tablereads import TableReadsUnchanged, _symbol_offset, loaded_leveldb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="/proc/self/maps and glibc's dynamic linker")

# Writes ~6 MB through a 1 MiB memtable (so LevelDB flushes table files),
# reopens the store and reads every key back: each table is opened by a read.
_PROBE = """
import os, sys
from node.tablereads import TableReadsUnchanged, mapped_table_files, read_tables_with_pread
if sys.argv[2] == "pread":
    try:
        read_tables_with_pread()
        read_tables_with_pread()  # a second call finds it done
    except TableReadsUnchanged as exc:
        print("unchanged:", exc)
        sys.exit(0)
from ledger.storage import LevelDBStore, WriteBatch
path = sys.argv[1]
store = LevelDBStore(path, write_buffer_size=1 << 20)
for j in range(20):
    batch = WriteBatch()
    for i in range(1000):
        batch.put(os.urandom(16), os.urandom(300))
    store.write(batch, sync=False)
store.close()
store = LevelDBStore(path, create=False)
keys = sum(1 for _ in store.iterate(b""))
tables = sum(1 for name in os.listdir(path) if name.endswith(".ldb"))
print(keys, tables, mapped_table_files(path))
"""


def _probe(tmp_path: Path, mode: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / mode), mode],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_pread_leaves_no_table_file_mapped(tmp_path: Path) -> None:
    """The control maps its tables (so the probe can tell); after the switch
    the same reads map none, and every key still reads back."""
    keys, tables, mapped = (int(v) for v in _probe(tmp_path, "mmap"))
    assert keys == 20_000 and tables >= 2 and mapped >= 2
    out = _probe(tmp_path, "pread")
    if out[0] == "unchanged:":
        pytest.skip(" ".join(out))  # a libleveldb without the symbol (e.g. a system build)
    keys, tables, mapped = (int(v) for v in out)
    assert keys == 20_000 and tables >= 2 and mapped == 0


_UNKNOWN_VALUE = """
from node.tablereads import (TableReadsUnchanged, loaded_leveldb, mmap_limit,
                             read_tables_with_pread)
limit = mmap_limit(loaded_leveldb())
print(limit.value)
limit.value = 7  # not LevelDB's default: some other build
try:
    read_tables_with_pread()
except TableReadsUnchanged as exc:
    print("refused:", exc)
print(limit.value)
"""


def test_an_unexpected_value_is_left_alone() -> None:
    """The variable must hold LevelDB's default (1000) before it is changed:
    this also checks that the address computed is the variable's."""
    try:
        _symbol_offset(loaded_leveldb())
    except TableReadsUnchanged as exc:
        pytest.skip(str(exc))
    proc = subprocess.run([sys.executable, "-c", _UNKNOWN_VALUE], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "1000"
    assert lines[1].startswith("refused:") and "holds 7" in lines[1]
    assert lines[2] == "7"


def test_a_stripped_or_foreign_library_is_refused(tmp_path: Path) -> None:
    not_elf = tmp_path / "libleveldb.so"
    not_elf.write_bytes(b"not an ELF file at all")
    with pytest.raises(TableReadsUnchanged, match="cannot read"):
        _symbol_offset(not_elf)
    with pytest.raises(TableReadsUnchanged, match="cannot read"):
        _symbol_offset(tmp_path / "missing.so")
    strip = shutil.which("strip")
    if strip is None:
        pytest.skip("no strip(1) to make a stripped copy")
    copy = tmp_path / "libleveldb-stripped.so"
    shutil.copy(loaded_leveldb(), copy)
    subprocess.run([strip, "--strip-all", str(copy)], check=True)
    with pytest.raises(TableReadsUnchanged, match="stripped"):
        _symbol_offset(copy)


def test_config_table_reads() -> None:
    base = {"node": {"name": "n", "key_file": "k"}, "http": {"port": 1}}
    assert parse_settings(base)["storage"]["table_reads"] == "pread"
    assert parse_settings({**base, "storage": {"table_reads": "mmap"}})["storage"][
        "table_reads"] == "mmap"
    for bad in ("madvise", "", 1):
        with pytest.raises(ConfigError, match="storage.table_reads"):
            parse_settings({**base, "storage": {"table_reads": bad}})
