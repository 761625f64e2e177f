"""Node configuration: defaults, validation naming the bad key, exit code 2."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from node.cluster import init_cluster
from node.config import ConfigError, load_config


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    init_cluster(tmp_path, 4, base_port=7800)
    return tmp_path


def test_cluster_node_config_loads(cluster: Path) -> None:
    cfg = load_config(cluster / "node2" / "node.toml")
    assert cfg.name == "node2" and cfg.port == 7802 and cfg.host == "127.0.0.1"
    assert cfg.validator is not None and cfg.validator.index == 2
    assert [p.index for p in cfg.peers] == [0, 1, 3]
    assert cfg.data_dir == (cluster / "node2" / "data").resolve()
    assert cfg.settings.limits.max_mempool == 20_000
    assert cfg.timeout_ms("timeout_propose_ms") == 3000  # from genesis params
    assert cfg.settings.http.header_timeout_ms == 10_000
    assert cfg.settings.storage.max_open_files == 4096
    assert cfg.settings.storage.block_size_bytes == 1024
    assert cfg.settings.storage.compaction_nice == 19
    assert cfg.settings.limits.malloc_arenas == 2
    assert cfg.settings.limits.malloc_mmap_threshold_bytes == 256 * 1024
    assert cfg.settings.peers.max_age_ms == 5000


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (("port = 7801", "port = 0"), "http.port"),
        (("port = 7801", 'port = "x"'), "http.port"),
        (('level = "info"', 'level = "loud"'), "log.level"),
        (("[limits]", "[limits]\nmax_mempol = 3"), "limits.max_mempol"),
        (("[limits]", "[bogus]\n[limits]"), "bogus"),
        (("[limits]", "[storage]\nmax_open_files = 10\n[limits]"), "storage.max_open_files"),
        (("[limits]", "[storage]\ncompaction_nice = 20\n[limits]"), "storage.compaction_nice"),
        (("[limits]", "[storage]\nblock_size_bytes = 100\n[limits]"), "storage.block_size_bytes"),
        (("[limits]", "[limits]\nmalloc_arenas = -1"), "limits.malloc_arenas"),
        (("[limits]", "[limits]\nmalloc_mmap_threshold_bytes = 1e6"),
         "limits.malloc_mmap_threshold_bytes"),
        (('key_file = "../keys/node1.json"', 'key_file = "../keys/nope.json"'), "node.key_file"),
        (('key_file = "../keys/node1.json"', 'key_file = "../keys/demo.json"'), "node.key_file"),
        (('genesis = "../genesis.json"', 'genesis = "../keys/node0.json"'), "node.genesis"),
        (('name = "node1"\n', ""), "node.name"),
        (("[http]", "[http"), "config"),
        (("[http]", "[http]\nheader_timeout_ms = 0"), "http.header_timeout_ms"),
        (("[http]", '[http]\nheader_timeout_ms = "10s"'), "http.header_timeout_ms"),
        (('name = "node1"\n', 'name = "node1"\nevent_loop = "trio"\n'), "node.event_loop"),
    ],
)
def test_bad_config_names_the_key(cluster: Path, edit: tuple[str, str], key: str) -> None:
    path = cluster / "node1" / "node.toml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key, str(info.value)


@pytest.mark.parametrize("value", ['"pread"', '"mmap"', "3"])
def test_a_retired_key_is_ignored_with_a_warning(cluster: Path, value: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """storage.table_reads (retired with node/tablereads.py): an old node.toml
    that still sets it, to any value, starts; the node warns, naming it."""
    from node.main import _warn_retired

    path = cluster / "node1" / "node.toml"
    text = path.read_text()
    assert "[storage]" not in text
    path.write_text(text + f"\n[storage]\ntable_reads = {value}\n")
    cfg = load_config(path)
    assert cfg.retired == ("storage.table_reads",)
    assert not hasattr(cfg.settings.storage, "table_reads")
    with caplog.at_level(logging.WARNING, logger="node.main"):
        _warn_retired(cfg)
    assert "storage.table_reads is ignored: retired" in caplog.text
    assert load_config(cluster / "node2" / "node.toml").retired == ()


def test_ledger_node_exits_2_on_bad_config(cluster: Path) -> None:
    path = cluster / "node0" / "node.toml"
    path.write_text(path.read_text().replace("max_mempool = 20000", "max_mempool = -1"))
    proc = subprocess.run([sys.executable, "-m", "node.main", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "limits.max_mempool" in proc.stderr


@pytest.mark.parametrize(("setting", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_event_loop_follows_the_setting(cluster: Path, setting: str, module: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    from node.main import _event_loop_runner, _log_event_loop

    path = cluster / "node1" / "node.toml"
    path.write_text(path.read_text().replace('name = "node1"\n',
                                             f'name = "node1"\nevent_loop = "{setting}"\n', 1))
    cfg = load_config(path)
    assert cfg.settings.node.event_loop == setting

    async def which() -> str:
        _log_event_loop(cfg)
        return type(asyncio.get_running_loop()).__module__

    with caplog.at_level(logging.INFO, logger="node.main"):
        assert _event_loop_runner(cfg)(which()).split(".")[0] == module
    assert f"event loop: {module}" in caplog.text


def test_event_loop_falls_back_to_asyncio_without_uvloop(
        cluster: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from node.main import _event_loop_runner, _log_event_loop

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    cfg = load_config(cluster / "node1" / "node.toml")
    assert cfg.settings.node.event_loop == "uvloop"  # the default

    async def which() -> str:
        _log_event_loop(cfg)
        return type(asyncio.get_running_loop()).__module__

    with caplog.at_level(logging.INFO, logger="node.main"):
        assert _event_loop_runner(cfg)(which()).startswith("asyncio")
    assert "uvloop is not installed" in caplog.text


def test_compaction_is_reniced_once_at_the_first_consensus_commit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks applied while catching up leave LevelDB's flushes at full
    priority; the first block committed by consensus renices them, once."""
    import node.app
    from node.app import Node

    calls: list[int] = []
    monkeypatch.setattr(node.app, "set_background_nice", lambda n: calls.append(n) or True)

    def fake(nice: int) -> Any:
        return SimpleNamespace(_compaction_reniced=False,
                               config=SimpleNamespace(settings=SimpleNamespace(
                                   storage=SimpleNamespace(compaction_nice=nice))))

    at = fake(19)
    Node._renice_compaction_at_tip(at, "sync")  # type: ignore[arg-type]
    assert calls == []
    Node._renice_compaction_at_tip(at, "consensus")  # type: ignore[arg-type]
    Node._renice_compaction_at_tip(at, "consensus")  # type: ignore[arg-type]
    assert calls == [19]
    Node._renice_compaction_at_tip(fake(0), "consensus")  # type: ignore[arg-type]
    assert calls == [19]  # 0: left alone


# A fresh interpreter per case: a thread takes its malloc arena at its first
# allocation, and glibc's arena count never goes down within a process.
_ARENA_PROBE = """
import ctypes, sys, threading
from node.memtune import limit_malloc_arenas
print(limit_malloc_arenas(int(sys.argv[1])), flush=True)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
start = threading.Barrier(6)
def churn():
    start.wait()
    for _ in range(2000):
        libc.free(libc.malloc(4096))
threads = [threading.Thread(target=churn) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()  # one "Arena N:" paragraph per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas")
@pytest.mark.parametrize(("arenas", "took"), [(1, True), (0, False)])
def test_malloc_arenas_cap_what_threads_share(arenas: int, took: bool) -> None:
    """limits.malloc_arenas caps glibc's arenas; 0 leaves six allocating
    threads their own (the control: the probe can tell them apart)."""
    proc = subprocess.run([sys.executable, "-c", _ARENA_PROBE, str(arenas)],
                          capture_output=True, text=True, timeout=60)
    if "malloc_stats" in proc.stderr:
        pytest.skip("not glibc: no malloc_stats arenas")
    assert proc.returncode == 0, proc.stderr
    assert "Arena 0:" in proc.stderr, proc.stderr
    assert proc.stdout.strip() == str(took)
    count = proc.stderr.count("Arena ")
    if took:
        assert count == 1, proc.stderr
    else:
        assert count > 1, proc.stderr


_THRESHOLD_PROBE = """
import ctypes, sys
from node.memtune import fix_mmap_threshold
print(fix_mmap_threshold(int(sys.argv[1])))
libc = ctypes.CDLL(None)
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(4 << 20))  # glibc's moving threshold follows this up to 4 MiB
mapped = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblks - mapped)  # 1: the 1 MiB block was mapped on its own
libc.free(block)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
@pytest.mark.parametrize(("threshold", "took", "mapped"), [(256 * 1024, "True", "1"),
                                                           (0, "False", "0")])
def test_malloc_mmap_threshold_stays_fixed(threshold: int, took: str, mapped: str) -> None:
    """With limits.malloc_mmap_threshold_bytes a 1 MiB block is still mapped
    (and so returned when freed) after a 4 MiB one was freed; with 0, glibc
    has moved its threshold above it and carves it from the heap."""
    proc = subprocess.run([sys.executable, "-c", _THRESHOLD_PROBE, str(threshold)],
                          capture_output=True, text=True, timeout=60)
    if "mallinfo2" in proc.stderr:
        pytest.skip("no glibc mallinfo2 (glibc < 2.33 or another C library)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [took, mapped]


def test_rotation_keys_and_a_validator_not_in_genesis(cluster: Path) -> None:
    """node.rotation_key_files (PROTOCOL §9.9): further keys, loaded; a key
    listed twice is refused; a key genesis does not list makes a joining
    validator (no genesis index, every genesis validator a peer)."""
    from ledger.crypto import SigningKey
    from ledger.keys import write_key_file

    path = cluster / "node1" / "node.toml"
    text = path.read_text()
    nxt = SigningKey.generate()
    write_key_file(cluster / "keys" / "next.json", "node1", nxt)
    path.write_text(text.replace('data_dir = "data"',
                                 'data_dir = "data"\nrotation_key_files = "../keys/next.json"'))
    cfg = load_config(path)
    assert [k.public_key for k in cfg.keys] == [cfg.key.public_key, nxt.public_key]
    assert cfg.validator is not None and cfg.validator.index == 1 and len(cfg.peers) == 3
    path.write_text(text.replace('data_dir = "data"',
                                 'data_dir = "data"\nrotation_key_files = '
                                 '"../keys/next.json ../keys/next.json"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "node.rotation_key_files"
    path.write_text(text.replace('key_file = "../keys/node1.json"',
                                 'key_file = "../keys/next.json"'))
    joining = load_config(path)
    assert joining.validator is None and [p.index for p in joining.peers] == [0, 1, 2, 3]
