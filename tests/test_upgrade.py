"""Upgrades: a store written by the previous release opens and verifies
(tests/fixtures/store-schema2.tar.gz, written by make_store_fixture.py at
the release before this check), a store of a future schema version is
refused with exit 2 and left as it was, and a rolling restart of the whole
cluster under load loses nothing."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ledger import schema
from ledger.chain import ChainStore, upgrade_schema
from ledger.fsck import fsck
from ledger.genesis import load_genesis
from ledger.storage import LevelDBStore, WriteBatch
from node.cluster import init_cluster
from harness.faults import kill_loop

FIXTURE = Path(__file__).parent / "fixtures" / "store-schema2.tar.gz"


def unpack_fixture(into: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(into, filter="data")
    return into


def test_previous_release_store_opens_and_verifies(tmp_path: Path) -> None:
    root = unpack_fixture(tmp_path)
    genesis = load_genesis(root / "genesis.json")
    store = LevelDBStore(str(root / "chain"), create=False)
    assert store.get(schema.META_SCHEMA_VERSION) == schema.pack_u64(2)
    report = fsck(store, genesis, verify_signatures=True)
    assert report.clean, report.summary()
    chain = ChainStore(store, genesis)  # re-checks the tip on open
    assert (chain.height, chain.tip().log_size) == (3, 8)  # type: ignore[union-attr]
    assert chain.get_consensus_state() == b"\x01fixture"
    chain.close()
    # What a node does before it opens the store: mark it this release's
    # version (only the marker changes); it still checks clean and opens.
    store = LevelDBStore(str(root / "chain"), create=False)
    assert upgrade_schema(store) == 2
    assert store.get(schema.META_SCHEMA_VERSION) == schema.schema_version_value()
    assert fsck(store, genesis, verify_signatures=True).clean
    ChainStore(store, genesis).close()


def _node_with_store_version(tmp_path: Path, version: int) -> Path:
    """node0 of a fresh cluster over the fixture's store marked ``version``."""
    init_cluster(tmp_path, 4, base_port=7900, tls=False, auth=False)
    toml = tmp_path / "node0" / "node.toml"
    unpack_fixture(tmp_path / "fixture")
    (tmp_path / "node0" / "data").mkdir()
    (tmp_path / "fixture" / "chain").rename(tmp_path / "node0" / "data" / "chain")
    store = LevelDBStore(str(tmp_path / "node0" / "data" / "chain"), create=False)
    batch = WriteBatch()
    batch.put(schema.META_SCHEMA_VERSION, schema.pack_u64(version))
    store.write(batch)
    store.close()
    return toml


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.main", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_future_schema_version_is_refused(tmp_path: Path) -> None:
    future = schema.SCHEMA_VERSION + 1
    toml = _node_with_store_version(tmp_path, future)
    started = _run("--config", str(toml))
    out = started.stdout + started.stderr
    assert started.returncode == 2, out
    assert f"schema version {future}" in out and "newer release" in out
    checked = _run("--config", str(toml), "--check")
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert f"schema version {future}" in " ".join(checked.stdout.split())
    store = LevelDBStore(str(toml.parent / "data" / "chain"), create=False)
    assert store.get(schema.META_SCHEMA_VERSION) == schema.pack_u64(future), "left untouched"
    store.close()


@pytest.mark.cluster
async def test_rolling_restart_loses_nothing(tmp_path: Path) -> None:
    report = await kill_loop(tmp_path / "cluster", duration=0, every=(0.5, 1.5), seed=29,
                             progress=print, rolling=True)
    print(report)
    assert report.kills == 4 and report.restarts_caught_up == 4
    assert report.seen_committed > 0
    assert report.records_lost == 0, report.failures
    assert report.duplicates_in_chain == 0
    assert report.forks == 0 and report.evidence == 0
    assert report.proofs_verified == 4 * report.seen_committed
    assert report.committed_in_chain == report.submitted
    assert not report.failures, report.failures
