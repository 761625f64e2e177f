"""Node configuration: genesis.json plus one TOML file per node (PROTOCOL §7).

The TOML is parsed once at start into a frozen :class:`NodeConfig` that is
passed down to every component; nothing reads configuration globally.  Every
problem is a :class:`ConfigError` naming the offending key, so an operator
sees ``http.port: must be an integer in 1..65535`` rather than a traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import storage
from ledger.crypto import SigningKey
from ledger.errors import GenesisError
from ledger.genesis import Genesis, Validator, load_genesis
from ledger.keys import KeyFileError, load_key_file


class ConfigError(ValueError):
    """The configuration is unusable; ``key`` names the offending setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


# (section, key) -> (type, default, lower bound, upper bound).  One table keeps
# defaults, validation and the cluster writer in agreement.
_INT = int
_Spec = tuple[type, Any, int | None, int | None]
SCHEMA: dict[str, dict[str, _Spec]] = {
    "node": {
        "name": (str, None, None, None),
        "genesis": (str, "genesis.json", None, None),
        "key_file": (str, None, None, None),
        "data_dir": (str, "data", None, None),
        # The asyncio event loop: "uvloop" (libuv; falls back to "asyncio"
        # where uvloop is not installed) or "asyncio", the standard library's.
        # uvloop serves more proofs/s, where request handling is most of the
        # cost (docs/performance.md).
        "event_loop": (str, "uvloop", None, None),
    },
    "http": {
        "host": (str, "127.0.0.1", None, None),
        "port": (_INT, None, 1, 65535),
        "max_body_bytes": (_INT, 16 * 1024 * 1024, 1024, 1 << 30),
        "max_inflight_requests": (_INT, 256, 1, 100_000),
        # A request body must arrive within this (slow-loris clients).
        "body_timeout_ms": (_INT, 30_000, 100, 600_000),
        # A connection must deliver a complete request head within this from
        # when it opens or from a request's first byte (slow-loris heads);
        # otherwise it is closed (node/httpconn.py).
        "header_timeout_ms": (_INT, 10_000, 100, 600_000),
        # An idle keep-alive connection is closed after this.  Keep it above
        # clients' keep-alive (aiohttp: 15 s) so none reuses a closing socket.
        "idle_timeout_ms": (_INT, 60_000, 100, 3_600_000),
        # A client that takes none of an answer's bytes for this long (its
        # connection's output stays stalled) is disconnected (node/httpconn.py).
        "write_timeout_ms": (_INT, 30_000, 100, 600_000),
        # Connections one client address may hold open; more are answered
        # 429 and closed at once.  Each holds at most one answer being written.
        "max_connections_per_client": (_INT, 128, 1, 100_000),
        # Requests one client address may have in progress at once (on all
        # its connections); more are answered 429 rate_limited.
        "max_requests_per_client": (_INT, 64, 1, 100_000),
        # Large answers (block sync) are written in pieces of this size, each
        # after the previous one has been taken by the kernel.
        "stream_chunk_bytes": (_INT, 64 * 1024, 4096, 16 * 1024 * 1024),
    },
    "consensus": {
        # Overrides of the genesis params; every validator should agree on them
        # but a mismatch only costs liveness, never safety.
        "timeout_propose_ms": (_INT, None, 10, 600_000),
        "timeout_prevote_ms": (_INT, None, 10, 600_000),
        "timeout_precommit_ms": (_INT, None, 10, 600_000),
        "timeout_delta_ms": (_INT, None, 0, 600_000),
    },
    "limits": {
        "max_mempool": (_INT, 20_000, 1, 10_000_000),
        # Peers' records received but not yet admitted here; above this,
        # clients get rate_limited so that admission keeps up with gossip
        # (a proposal whose records are still queued here must wait for them).
        "max_peer_backlog": (_INT, 4000, 1, 10_000_000),
        "max_request_envelopes": (_INT, 5000, 1, 5000),
        "max_block_records": (_INT, 1000, 1, 100_000),
        "max_orphans": (_INT, 10_000, 0, 1_000_000),
        "max_trace_depth": (_INT, 64, 1, 10_000),
        "max_trace_nodes": (_INT, 1000, 1, 100_000),
        # glibc malloc arenas the node's threads share (0: glibc's default,
        # eight per core; each arena keeps its own high-water mark), and the
        # size from which blocks are mapped on their own and returned when
        # freed (0: glibc's default, which moves up to 32 MiB).  See
        # node/memtune.py.
        "malloc_arenas": (_INT, 2, 0, 64),
        "malloc_mmap_threshold_bytes": (_INT, 256 * 1024, 0, 32 * 1024 * 1024),
    },
    "gossip": {
        "batch": (_INT, 500, 1, 5000),
        "interval_ms": (_INT, 20, 1, 10_000),
        # A proposal names its records by leaf hash; those not admitted here
        # this long after it arrived are fetched from its sender.
        "fetch_after_ms": (_INT, 200, 1, 60_000),
        "refetch_ms": (_INT, 500, 10, 60_000),
    },
    "peers": {
        "queue_size": (_INT, 4096, 16, 1_000_000),
        # Bytes waiting for one peer; above it new frames are dropped and
        # counted (a peer that is down catches up by block sync instead).
        "queue_bytes": (_INT, 16 * 1024 * 1024, 64 * 1024, 1 << 34),
        # Frames that waited longer for their peer are dropped, not sent.
        "max_age_ms": (_INT, 5000, 100, 3_600_000),
        "reconnect_initial_ms": (_INT, 100, 1, 60_000),
        "reconnect_max_ms": (_INT, 3000, 1, 600_000),
        "heartbeat_ms": (_INT, 5000, 100, 600_000),
        "handshake_timeout_ms": (_INT, 3000, 100, 600_000),
        "max_frame_bytes": (_INT, 32 * 1024 * 1024, 1024, 1 << 30),
        # Inbound handshakes per remote address (node/handshake_limit.py): a
        # bucket of handshake_burst, refilled at handshake_rate_per_s; the
        # excess gets 429 before the node signs anything.  A restarted
        # validator dials each peer once, and a failing link retries at most
        # every reconnect_max_ms, so even a dozen validators behind one
        # address stay far below the defaults.
        "handshake_burst": (_INT, 64, 1, 1_000_000),
        "handshake_rate_per_s": (_INT, 8, 1, 1_000_000),
    },
    "storage": {
        # LevelDB's uncompressed block cache and memtable (anonymous memory).
        "block_cache_bytes": (_INT, storage.DEFAULT_LRU_CACHE_BYTES, 1024 * 1024, 1 << 36),
        "write_buffer_bytes": (_INT, storage.DEFAULT_WRITE_BUFFER_BYTES, 1024 * 1024, 1 << 30),
        # Bytes per LevelDB table block, the unit of a read: small for the
        # random lookups proofs make (ledger/storage.py has the figures).
        "block_size_bytes": (_INT, storage.DEFAULT_BLOCK_BYTES, 256, 4 * 1024 * 1024),
        # LevelDB keeps this many table files open (each memory-mapped, as
        # LevelDB reads tables on 64-bit Linux); lower bounds the mapped
        # pages at the cost of reopening tables on reads.  LevelDB raises
        # anything below 74.
        "max_open_files": (_INT, storage.DEFAULT_MAX_OPEN_FILES, 74, 50_000),
        # Nice value of LevelDB's flush/compaction thread once the node is at
        # the tip (Linux; 0 = as the node).  Flushes then use CPU the node
        # leaves idle instead of stalling commits on a busy host
        # (docs/operators.md).
        "compaction_nice": (_INT, storage.DEFAULT_COMPACTION_NICE, 0,
                            storage.MAX_COMPACTION_NICE),
    },
    "sync": {
        "batch_blocks": (_INT, 64, 1, 10_000),
        "max_response_bytes": (_INT, 8 * 1024 * 1024, 1024, 1 << 30),
        "lag_blocks": (_INT, 2, 1, 1_000_000),
        # A signed sync request is accepted this long either side of its
        # timestamp (validators' clocks differ; a replay is only good this long).
        "auth_window_ms": (_INT, 60_000, 1000, 3_600_000),
        # How a node with an empty store joins: "blocks" replays every block,
        # "snapshot" starts from a peer's certified snapshot and back-fills
        # history behind it (node/statesync.py; docs/operators.md says when).
        "mode": (str, "blocks", None, None),
    },
    "log": {
        "level": (str, "info", None, None),
    },
}
LOG_LEVELS = ("debug", "info", "warning", "error")
# Keys a node once read and now ignores, with why: an old node.toml that
# still sets one starts, and the node logs a warning naming the key
# (node/main.py), instead of refusing to start over a setting that no longer
# does anything.
RETIRED: dict[str, str] = {
    "storage.table_reads": "retired: LevelDB reads its table files its own way (memory-mapped); "
                           "remove the key from node.toml (docs/operators.md, LevelDB table files)",
}
EVENT_LOOPS = ("uvloop", "asyncio")
SYNC_MODES = ("blocks", "snapshot")

# Consensus timeouts when neither genesis params nor node.toml set them.
DEFAULT_TIMEOUTS_MS = {
    "timeout_propose_ms": 3000,
    "timeout_prevote_ms": 1000,
    "timeout_precommit_ms": 1000,
    "timeout_delta_ms": 500,
}


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs, validated.  Paths are absolute."""

    path: Path
    name: str
    genesis: Genesis
    genesis_path: Path
    key: SigningKey
    data_dir: Path
    validator: Validator | None
    peers: tuple[Validator, ...]
    settings: Mapping[str, Mapping[str, Any]]
    # RETIRED keys node.toml still sets (ignored; the node warns at start).
    retired: tuple[str, ...] = ()

    def get(self, section: str, key: str) -> Any:
        return self.settings[section][key]

    @property
    def host(self) -> str:
        return str(self.get("http", "host"))

    @property
    def port(self) -> int:
        return int(self.get("http", "port"))

    def timeout_ms(self, key: str) -> int:
        """A consensus timeout: node.toml, else genesis params, else the default."""
        own = self.settings["consensus"].get(key)
        if own is not None:
            return int(own)
        param = self.genesis.params.get(key)
        if isinstance(param, int) and not isinstance(param, bool) and param >= 0:
            return param
        return DEFAULT_TIMEOUTS_MS[key]

    def param_int(self, key: str, default: int) -> int:
        value = self.genesis.params.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default


def _check_value(section: str, key: str, value: Any, spec: _Spec) -> Any:
    return check_value(f"{section}.{key}", value, spec)


def check_value(name: str, value: Any, spec: _Spec) -> Any:
    """``value`` if it fits ``spec``, else :class:`ConfigError` naming ``name``."""
    kind, _default, lo, hi = spec
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(name, f"must be an integer, got {type(value).__name__}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(name, f"must be in {lo}..{hi}, got {value}")
    elif kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(name, "must be a non-empty string")
    return value


def parse_settings(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate the TOML document against :data:`SCHEMA`, filling defaults."""
    out: dict[str, dict[str, Any]] = {}
    for section in doc:
        if section not in SCHEMA:
            raise ConfigError(section, f"unknown section (known: {', '.join(SCHEMA)})")
        if not isinstance(doc[section], dict):
            raise ConfigError(section, "must be a table")
    for section, keys in SCHEMA.items():
        given = doc.get(section, {})
        for key in given:
            if key not in keys and f"{section}.{key}" not in RETIRED:
                raise ConfigError(f"{section}.{key}", "unknown key")
        values: dict[str, Any] = {}
        for key, spec in keys.items():
            if key in given:
                values[key] = _check_value(section, key, given[key], spec)
            elif spec[1] is None and section not in ("consensus",):
                raise ConfigError(f"{section}.{key}", "is required")
            else:
                values[key] = spec[1]
        out[section] = values
    if out["log"]["level"] not in LOG_LEVELS:
        raise ConfigError("log.level", f"must be one of {', '.join(LOG_LEVELS)}")
    if out["sync"]["mode"] not in SYNC_MODES:
        raise ConfigError("sync.mode", f"must be one of {', '.join(SYNC_MODES)}")
    if out["node"]["event_loop"] not in EVENT_LOOPS:
        raise ConfigError("node.event_loop", f"must be one of {', '.join(EVENT_LOOPS)}")
    peers = out["peers"]
    if peers["reconnect_max_ms"] < peers["reconnect_initial_ms"]:
        raise ConfigError("peers.reconnect_max_ms", "must be >= peers.reconnect_initial_ms")
    return out


def retired_keys(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The :data:`RETIRED` keys the TOML document sets."""
    return tuple(name for name in RETIRED
                 if name.partition(".")[2] in doc.get(name.partition(".")[0], {}))


def load_config(path: str | Path,
                overrides: Mapping[str, Mapping[str, Any]] | None = None) -> NodeConfig:
    """Read ``node.toml`` and everything it points to; raise :class:`ConfigError`.

    ``overrides`` (``{section: {key: value}}``, from the environment:
    node/config_env.py) replace the file's values before validation."""
    cfg_path = Path(path).resolve()
    try:
        doc = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("config", f"cannot read {cfg_path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{cfg_path} is not valid TOML: {exc}") from None
    for section, values in (overrides or {}).items():
        given = doc.get(section, {})
        if isinstance(given, dict):  # else parse_settings names the section
            doc[section] = {**given, **values}
    settings = parse_settings(doc)
    base = cfg_path.parent
    node = settings["node"]
    genesis_path = (base / node["genesis"]).resolve()
    try:
        genesis = load_genesis(genesis_path)
    except OSError as exc:
        raise ConfigError("node.genesis", f"cannot read {genesis_path}: {exc.strerror}") from None
    except GenesisError as exc:
        raise ConfigError("node.genesis", f"{genesis_path}: {exc}") from None
    try:
        key = load_key_file(base / node["key_file"]).key
    except KeyFileError as exc:
        raise ConfigError("node.key_file", str(exc)) from None
    index = genesis.validator_index(key.public_key)
    validator = genesis.validators[index] if index is not None else None
    if validator is None:
        # Observers are not part of the contract yet: a node is a validator.
        raise ConfigError("node.key_file", "the key is not one of the genesis validators")
    peers = []
    for v in genesis.validators:
        if v.index == index:
            continue
        _split_address(v.address, f"genesis validator {v.name!r} address")
        peers.append(v)
    return NodeConfig(
        path=cfg_path,
        name=node["name"],
        genesis=genesis,
        genesis_path=genesis_path,
        key=key,
        data_dir=(base / node["data_dir"]).resolve(),
        validator=validator,
        peers=tuple(peers),
        settings=settings,
        retired=retired_keys(doc),
    )


def _split_address(address: str, what: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(what, f"must be host:port, got {address!r}")
    return host, int(port)


def peer_url(validator: Validator, path: str) -> str:
    """``http://host:port/path`` for a validator's genesis address."""
    host, port = _split_address(validator.address, f"validator {validator.name!r} address")
    return f"http://{host}:{port}{path}"
