"""Online backup (node/backup.py) and restore (node/restore.py): the copy is
one LevelDB snapshot, restore checks before it replaces anything and never
puts a validator's vote memory back in time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import commit_envelopes, make_envelope
from rich.console import Console

from consensus.params import Step
from consensus.state import PersistedState
from ledger import schema
from ledger.chain import ChainStore
from ledger.fsck import fsck
from ledger.keys import load_key_file
from ledger.storage import LevelDBStore, WriteBatch
from node.backup import MANIFEST, BackupRefused, check_target, make_backup
from node.cluster import init_cluster
from node.config import NodeConfig, load_config
from node.restore import restore


class Built:
    def __init__(self, tmp_path: Path, blocks: int = 4, per_block: int = 5) -> None:
        init_cluster(tmp_path, 4, base_port=7900, tls=False, auth=False)
        self.toml = tmp_path / "node0" / "node.toml"
        self.config: NodeConfig = load_config(self.toml)
        self.keys = [load_key_file(tmp_path / "keys" / f"node{i}.json").key for i in range(4)]
        self.submitter = load_key_file(tmp_path / "keys" / "demo.json").key
        self.config.data_dir.mkdir(parents=True)
        self.store = LevelDBStore(str(self.config.data_dir / "chain"))
        self.chain = ChainStore(self.store, self.config.genesis)
        self.nonce = 0
        for _ in range(blocks):
            self.block(per_block)

    def block(self, records: int) -> None:
        envs = [make_envelope(self.submitter, self.config.genesis.chain, self.nonce + i)
                for i in range(records)]
        self.nonce += records
        commit_envelopes(self.chain, envs, self.keys)

    def vote_state(self, height: int, round: int) -> None:
        self.chain.put_consensus_state(PersistedState(height, round, Step.PREVOTE).to_bytes())


def console() -> Console:
    return Console(width=200, force_terminal=False)


def test_backup_is_one_snapshot_while_blocks_commit(tmp_path: Path) -> None:
    b = Built(tmp_path)
    b.vote_state(5, 0)
    before = list(b.store.iterate(b""))
    commits = []

    def commit_meanwhile(keys: int, size: int) -> None:
        # Called between batches of the copy: the node keeps committing.
        b.block(3)
        commits.append(b.chain.height)

    target = tmp_path / "backup"
    target.mkdir()
    result = make_backup(b.store, target, chain=b.config.genesis.chain, node="node0")
    assert (result.height, result.records) == (4, 20)
    copy = LevelDBStore(str(target / "chain"), create=False)
    assert list(copy.iterate(b"")) == before
    copy.close()

    b.store.copy_snapshot(str(tmp_path / "small-batches"), batch_bytes=64,
                          progress=commit_meanwhile)
    assert len(commits) > 3 and b.chain.height == 4 + len(commits)
    copy = LevelDBStore(str(tmp_path / "small-batches"), create=False)
    assert list(copy.iterate(b"")) == before, "writes made during the copy leaked into it"
    assert fsck(copy, b.config.genesis).clean
    copy.close()
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["height"] == 4 and manifest["schema_version"] == schema.SCHEMA_VERSION


def test_backup_target_rules(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "chain").mkdir(parents=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for bad, code in [("relative/dir", "bad_request"), (None, "bad_request"),
                      (str(data / "b"), "bad_request"), (str(data), "bad_request"),
                      (str(tmp_path / "full"), "bad_request")]:
        with pytest.raises(BackupRefused) as err:
            check_target(bad, data)
        assert err.value.code == code, bad
    assert check_target(str(tmp_path / "new" / "b"), data) == tmp_path / "new" / "b"


def _backup(b: Built, target: Path) -> Path:
    target.mkdir()
    make_backup(b.store, target, chain=b.config.genesis.chain, node="node0")
    return target


def test_restore_into_an_empty_data_dir(tmp_path: Path) -> None:
    b = Built(tmp_path)
    backup = _backup(b, tmp_path / "backup")
    b.store.close()
    fresh = tmp_path / "fresh"
    assert restore(backup, fresh, b.config.genesis, console()) == 0
    store = LevelDBStore(str(fresh / "chain"), create=False)
    assert fsck(store, b.config.genesis).clean
    assert ChainStore(store, b.config.genesis).height == 4


def test_restore_refuses_to_replace_a_store_unless_told(tmp_path: Path) -> None:
    b = Built(tmp_path)
    backup = _backup(b, tmp_path / "backup")
    b.store.close()
    data = b.config.data_dir
    assert restore(backup, data, b.config.genesis, console()) == 2
    assert restore(backup, data, b.config.genesis, console(), force=True) == 0
    aside = [p.name for p in data.iterdir() if p.name.startswith("chain.replaced-")]
    assert len(aside) == 1, "the replaced store is kept, not deleted"


def test_restore_refuses_a_store_in_use(tmp_path: Path) -> None:
    b = Built(tmp_path)
    backup = _backup(b, tmp_path / "backup")
    out = subprocess.run(
        [sys.executable, "-m", "node.main", "restore", "--config", str(b.toml), "--from",
         str(backup), "--force"], capture_output=True, text=True, timeout=60, check=False)
    b.store.close()
    assert out.returncode == 2, out.stdout + out.stderr
    assert "in use by a running node" in " ".join(out.stdout.split())


def test_restore_never_puts_votes_back_in_time(tmp_path: Path) -> None:
    """The store to replace signed at height 6 round 2; a backup from height
    4 would make the validator forget those votes: refused even with --force."""
    b = Built(tmp_path)
    b.vote_state(5, 1)
    backup = _backup(b, tmp_path / "backup")
    b.block(3)
    b.vote_state(6, 2)
    b.store.close()
    data = b.config.data_dir
    assert restore(backup, data, b.config.genesis, console(), force=True) == 2
    store = LevelDBStore(str(data / "chain"), create=False)
    assert ChainStore(store, b.config.genesis).height == 5, "the store was left in place"
    # A later round of the same height is ahead too.
    batch = WriteBatch()
    batch.put(schema.META_CONSENSUS, PersistedState(5, 3, Step.PROPOSE).to_bytes())
    batch.put(schema.META_TIP, schema.pack_u64(4))  # only the position matters here
    store.write(batch)
    store.close()
    assert restore(backup, data, b.config.genesis, console(), force=True) == 2
    # A backup at least as far along replaces it.
    store = LevelDBStore(str(data / "chain"), create=False)
    batch = WriteBatch()
    batch.put(schema.META_CONSENSUS, PersistedState(5, 0, Step.PROPOSE).to_bytes())
    store.write(batch)
    store.close()
    assert restore(backup, data, b.config.genesis, console(), force=True) == 0


def test_restore_checks_the_backup_first(tmp_path: Path) -> None:
    b = Built(tmp_path)
    backup = _backup(b, tmp_path / "backup")
    b.store.close()
    copy = LevelDBStore(str(backup / "chain"), create=False)
    key = next(iter(copy.iterate(schema.NONCE)))[0]
    batch = WriteBatch()
    batch.delete(key)
    copy.write(batch)
    copy.close()
    fresh = tmp_path / "fresh"
    assert restore(backup, fresh, b.config.genesis, console()) == 1
    assert not (fresh / "chain").exists()
    (backup / MANIFEST).unlink()
    assert restore(backup, fresh, b.config.genesis, console()) == 2
