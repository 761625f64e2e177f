"""ledger/fsck.py and ``ledger-node --check``: every index damaged in every
way (deleted, value altered, stray key added, key altered) is reported by
index and problem, on MemoryStore and LevelDB; a sound chain is clean; damaged
index values read by lookups are StorageCorruption, never a quiet 404."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import World, commit_envelopes, make_envelope, three_blocks

from ledger import fsck as F
from ledger import fsck_report as R
from ledger import schema
from ledger.chain import ChainStore
from ledger.errors import StorageCorruption
from ledger.genesis import Genesis
from ledger.keys import load_key_file
from ledger.storage import KeyValueStore, LevelDBStore, MemoryStore, WriteBatch
from node.cluster import init_cluster
from node.config import load_config

OTHER_ID = bytes(range(32))


@pytest.fixture(params=["memory", "leveldb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyValueStore]:
    s: KeyValueStore = MemoryStore() if request.param == "memory" \
        else LevelDBStore(str(tmp_path / "db"))
    yield s
    s.close()


@pytest.fixture
def chain(store: KeyValueStore, world: World) -> ChainStore:
    chain = ChainStore(store, world.genesis)
    three_blocks(chain, world)  # parents too: block 2 and 3 records name block 1's
    return chain


def first_key(store: KeyValueStore, prefix: bytes) -> tuple[bytes, bytes]:
    return next(iter(store.iterate(prefix)))


def apply(store: KeyValueStore, puts: dict[bytes, bytes] | None = None,
          deletes: tuple[bytes, ...] = ()) -> None:
    batch = WriteBatch()
    for key, value in (puts or {}).items():
        batch.put(key, value)
    for key in deletes:
        batch.delete(key)
    store.write(batch)


def problems(store: KeyValueStore, genesis: Genesis) -> set[tuple[str, str]]:
    report = F.fsck(store, genesis)
    assert report.clean == (not report.ranges)
    return set(report.ranges)


def flip(data: bytes, at: int = -1) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def test_sound_chain_is_clean(chain: ChainStore, store: KeyValueStore, world: World) -> None:
    phases: list[tuple[str, int, int | None]] = []
    report = F.fsck(store, world.genesis, progress=lambda *a: phases.append(a))
    assert report.clean, report.summary()
    assert (report.blocks, report.records, report.height, report.log_size) == (3, 8, 3, 8)
    assert report.summary()[1] == "no damage found"
    assert ("blocks", 3, 3) in phases and phases[-1][0] == "keys"
    report.raise_if_damaged()


INDEXES = {
    schema.RECORD_LOCATION: R.LOCATIONS,
    schema.NONCE: R.NONCES,
    schema.CHILD: R.CHILDREN,
    schema.SUBMITTER: R.SUBMITTERS,
}


@pytest.mark.parametrize("prefix", list(INDEXES), ids=lambda p: p.decode())
def test_deleted_index_entry(chain: ChainStore, store: KeyValueStore, world: World,
                             prefix: bytes) -> None:
    key, _ = first_key(store, prefix)
    apply(store, deletes=(key,))
    report = F.fsck(store, world.genesis)
    assert set(report.ranges) == {(INDEXES[prefix], R.MISSING)}
    assert [d.key for d in report.listed] == [key]
    with pytest.raises(StorageCorruption):
        report.raise_if_damaged()


def altered_value(prefix: bytes, value: bytes) -> list[bytes]:
    """Wrong values of an index entry: well-formed and not."""
    if prefix == schema.RECORD_LOCATION:
        height, leaf = schema.unpack_location(value)
        return [schema.pack_location(height, leaf + 1), b"\x01", flip(value, 0)]
    if prefix == schema.CHILD:
        return [b"x"]
    return [OTHER_ID, flip(value), b"short"]


@pytest.mark.parametrize("prefix", list(INDEXES), ids=lambda p: p.decode())
def test_altered_index_value(chain: ChainStore, store: KeyValueStore, world: World,
                             prefix: bytes) -> None:
    key, value = first_key(store, prefix)
    for wrong in altered_value(prefix, value):
        apply(store, {key: wrong})
        found = problems(store, world.genesis)
        assert (INDEXES[prefix], R.WRONG) in found or (INDEXES[prefix], R.STRAY) in found, \
            (wrong, found)
        assert {index for index, _ in found} == {INDEXES[prefix]}, found
    apply(store, {key: value})
    assert problems(store, world.genesis) == set()


def stray_entries(chain: ChainStore, world: World) -> dict[bytes, tuple[bytes, bytes]]:
    env = chain.envelope_at(0)
    from ledger.records import decode_envelope

    record = decode_envelope(env).record
    sub = record.submitter
    return {
        schema.RECORD_LOCATION: (schema.record_location_key(OTHER_ID),
                                 schema.pack_location(1, 0)),
        schema.NONCE: (schema.nonce_key(sub, 999), record.id),
        schema.CHILD: (schema.child_key(OTHER_ID, record.id), b""),
        schema.SUBMITTER: (schema.submitter_key(sub, 999), record.id),
    }


@pytest.mark.parametrize("prefix", list(INDEXES), ids=lambda p: p.decode())
def test_stray_index_entry(chain: ChainStore, store: KeyValueStore, world: World,
                           prefix: bytes) -> None:
    key, value = stray_entries(chain, world)[prefix]
    apply(store, {key: value})
    report = F.fsck(store, world.genesis)
    assert set(report.ranges) == {(INDEXES[prefix], R.STRAY)}, report.summary()
    assert [d.key for d in report.listed] == [key]


@pytest.mark.parametrize("prefix", list(INDEXES), ids=lambda p: p.decode())
def test_altered_index_key(chain: ChainStore, store: KeyValueStore, world: World,
                           prefix: bytes) -> None:
    """A flipped byte in a key: the real entry is missing and a stray appears."""
    key, value = first_key(store, prefix)
    apply(store, {flip(key, 5): value}, deletes=(key,))
    found = problems(store, world.genesis)
    assert found == {(INDEXES[prefix], R.MISSING), (INDEXES[prefix], R.STRAY)}, found


def test_blocks_envelopes_and_strays_elsewhere(chain: ChainStore, store: KeyValueStore,
                                               world: World) -> None:
    env_key, env = first_key(store, schema.ENVELOPE)
    apply(store, {env_key: flip(env)})
    found = problems(store, world.genesis)
    assert (R.ENVELOPES, R.WRONG) in found and (R.BLOCKS, R.WRONG) in found, found
    apply(store, {env_key: env})

    header2 = chain.header_bytes(2) or b""
    apply(store, deletes=(schema.header_key(2),))
    assert (R.BLOCKS, R.MISSING) in problems(store, world.genesis)
    apply(store, {schema.header_key(2): header2})

    apply(store, {schema.envelope_key(50): env, schema.header_key(9): b"h", b"zz": b"?",
                  schema.META + b"bogus": b""})
    report = F.fsck(store, world.genesis)
    assert set(report.ranges) == {(R.ENVELOPES, R.STRAY), (R.BLOCKS, R.STRAY),
                                  (R.UNKNOWN, R.STRAY), (R.META, R.STRAY)}, report.summary()
    assert any("e/50" in line for line in report.summary())


def test_damaged_tree_is_reported(chain: ChainStore, store: KeyValueStore,
                                  world: World) -> None:
    """Tree values belong to the log's layout; fsck judges them through the
    log's reads (leaf hashes, the root at each block) and names the damage."""
    for key, value in list(store.iterate(schema.TILE)):
        apply(store, {key: flip(value, len(value) // 2)})
        report = F.fsck(store, world.genesis)
        assert not report.clean, describe(key)
        assert {i for i, _ in report.ranges} <= {R.TREE, R.ENVELOPES, R.BLOCKS}, \
            report.summary()
        apply(store, {key: value})
    assert F.fsck(store, world.genesis).clean


def describe(key: bytes) -> str:
    return R.describe_key(key)


def test_damage_later_in_the_chain_is_still_found(store: KeyValueStore, world: World) -> None:
    """After a damaged block the walk carries on: damage in later blocks is named too."""
    chain = ChainStore(store, world.genesis)
    for b in range(6):
        commit_envelopes(chain, world.envelopes(10 * b, 3), world.validators)
    cert = schema.certificate_key(2)
    apply(store, {cert: flip(store.get(cert) or b"")})
    later = schema.submitter_key(world.submitter.public_key, 16)
    apply(store, deletes=(later,))
    report = F.fsck(store, world.genesis)
    keys = {d.key for d in report.listed}
    assert cert in keys and later in keys, report.summary()


def test_lookups_on_damaged_values_raise(chain: ChainStore, store: KeyValueStore,
                                         world: World) -> None:
    sub = world.submitter.public_key
    apply(store, {schema.nonce_key(sub, 0): b"short"})
    with pytest.raises(StorageCorruption):
        chain.id_for_nonce(sub, 0)
    key, _ = first_key(store, schema.SUBMITTER)
    apply(store, {key: b"short"})
    with pytest.raises(StorageCorruption):
        chain.records_by_submitter(sub)
    key, _ = first_key(store, schema.CHILD)
    parent = key[1:33]
    apply(store, {key[:-1]: b""}, deletes=(key,))
    with pytest.raises(StorageCorruption):
        chain.children(parent)
    key, value = first_key(store, schema.RECORD_LOCATION)
    apply(store, {key: value[:-1]})
    with pytest.raises(StorageCorruption):
        chain.record_location(key[1:])


# ---------------------------------------------------------------- the CLI


def built_node(tmp_path: Path, blocks: int, per_block: int) -> tuple[Path, LevelDBStore]:
    init_cluster(tmp_path, 4, base_port=7900, tls=False, auth=False)
    toml = tmp_path / "node0" / "node.toml"
    config = load_config(toml)
    keys = [load_key_file(tmp_path / "keys" / f"node{i}.json").key for i in range(4)]
    submitter = load_key_file(tmp_path / "keys" / "demo.json").key
    config.data_dir.mkdir(parents=True)
    store = LevelDBStore(str(config.data_dir / "chain"))
    chain = ChainStore(store, config.genesis)
    nonce = 0
    for _ in range(blocks):
        envs = [make_envelope(submitter, config.genesis.chain, nonce + i) for i in range(per_block)]
        nonce += per_block
        commit_envelopes(chain, envs, keys)
    return toml, store


def run_check(toml: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.main", "--config", str(toml), "--check",
                           *extra], capture_output=True, text=True, timeout=120, check=False)


def test_cli_exit_codes(tmp_path: Path) -> None:
    toml, store = built_node(tmp_path, 5, 4)
    key, _ = first_key(store, schema.NONCE)
    store.close()

    clean = run_check(toml)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "clean" in clean.stdout and "20 records" in clean.stdout

    damaged_store = LevelDBStore(str(toml.parent / "data" / "chain"))
    apply(damaged_store, deletes=(key,))
    damaged_store.close()
    damaged = run_check(toml, "--signatures")
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    out = " ".join(damaged.stdout.split())
    assert "DAMAGED" in out and R.NONCES in out and "missing" in out
    assert "fresh data dir that re-syncs from peers" in out

    assert run_check(tmp_path / "nope.toml").returncode == 2
    usage = subprocess.run([sys.executable, "-m", "node.main", "--config", str(toml),
                            "--signatures"], capture_output=True, text=True, timeout=60,
                           check=False)
    assert usage.returncode == 2


def test_cli_on_a_store_in_use_says_so(tmp_path: Path) -> None:
    """The LevelDB lock held by another process (here this one, as a running
    node would) is not damage: exit 2 naming the lock, not "damaged"."""
    toml, store = built_node(tmp_path, 2, 3)
    try:
        result = run_check(toml)
    finally:
        store.close()
    out = " ".join(result.stdout.split())
    assert result.returncode == 2, out + result.stderr
    assert "in use by a running node" in out and "LOCK" in out
    assert "damaged" not in out.lower()


def test_cli_refuses_another_schema_version(tmp_path: Path) -> None:
    toml, store = built_node(tmp_path, 2, 3)
    apply(store, {schema.META_SCHEMA_VERSION: schema.pack_u64(schema.SCHEMA_VERSION + 1)})
    store.close()
    result = run_check(toml)
    out = " ".join(result.stdout.split())
    assert result.returncode == 2, out + result.stderr
    assert f"schema version {schema.SCHEMA_VERSION + 1}" in out and "newer release" in out


def test_cli_refuses_a_missing_store(tmp_path: Path) -> None:
    init_cluster(tmp_path, 4, base_port=7900, tls=False, auth=False)
    result = run_check(tmp_path / "node1" / "node.toml")
    assert result.returncode == 2 and "no store to check" in result.stderr


@pytest.mark.slow
def test_fsck_speed(tmp_path: Path) -> None:
    """Figures for docs/performance.md: ``pytest --runslow -s -k fsck_speed``."""
    toml, store = built_node(tmp_path, 200, 100)
    store.close()
    started = time.monotonic()
    result = run_check(toml)
    print(result.stdout, f"wall {time.monotonic() - started:.1f}s")
    assert result.returncode == 0

