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

from consensus.params import ConsensusConfig
from ledger.crypto import SigningKey
from ledger.errors import GenesisError
from ledger.genesis import Genesis, Validator, load_genesis
from ledger.keys import KeyFileError, load_key_file, parse_key_file
from ledger.witness import Witness, parse_vkey

from .settings import REQUIRED, Settings, Spec, build_settings
from .tls import NodeTls
from .settings import SCHEMA as SCHEMA


class ConfigError(ValueError):
    """The configuration is unusable; ``key`` names the offending setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


# The keys, types, defaults, ranges and descriptions: node/settings.py.
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
    settings: Settings
    # RETIRED keys node.toml still sets (ignored; the node warns at start).
    retired: tuple[str, ...] = ()
    # The TLS contexts node/startup.py loaded; None serves plain HTTP.
    tls: NodeTls | None = None
    # [witness] keys, parsed (PROTOCOL §13).
    witnesses: tuple[Witness, ...] = ()
    # node.rotation_key_files, loaded (PROTOCOL §9.9): with ``key``, every
    # validator key this node may sign with.
    rotation_keys: tuple[SigningKey, ...] = ()

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """``key`` then the rotation keys."""
        return (self.key,) + self.rotation_keys

    @property
    def host(self) -> str:
        return self.settings.http.host

    @property
    def port(self) -> int:
        return self.settings.http.port

    def timeout_ms(self, key: str) -> int:
        """A consensus timeout: node.toml, else genesis params, else the default."""
        return _timeout_ms(key, self.genesis.params, self.settings.consensus)

    def consensus_config(self, params: Mapping[str, Any]) -> ConsensusConfig:
        """The timeouts under the chain ``params`` in force at a height."""
        return consensus_timeouts(params, self.settings.consensus)

    def param_int(self, key: str, default: int) -> int:
        value = self.genesis.params.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default


def _timeout_ms(key: str, params: Mapping[str, Any], own: object) -> int:
    mine = getattr(own, key, None)
    if mine is not None:
        return int(mine)
    param = params.get(key)
    if isinstance(param, int) and not isinstance(param, bool) and param >= 0:
        return param
    return DEFAULT_TIMEOUTS_MS[key]


def consensus_timeouts(params: Mapping[str, Any], own: object = None) -> ConsensusConfig:
    """The consensus timeouts: node.toml's ``[consensus]`` (``own``; unset
    keys are None), else the chain ``params`` (genesis, or those in force at
    a height after ``gov.params.set``, PROTOCOL §9), else the defaults."""
    t = {key: _timeout_ms(key, params, own) for key in DEFAULT_TIMEOUTS_MS}
    return ConsensusConfig(timeout_propose_ms=t["timeout_propose_ms"],
                           timeout_prevote_ms=t["timeout_prevote_ms"],
                           timeout_precommit_ms=t["timeout_precommit_ms"],
                           timeout_delta_ms=t["timeout_delta_ms"])


def _check_value(section: str, key: str, value: Any, spec: Spec) -> Any:
    return check_value(f"{section}.{key}", value, spec)


def check_value(name: str, value: Any, spec: Spec) -> Any:
    """``value`` if it fits ``spec``, else :class:`ConfigError` naming ``name``."""
    kind, _default, lo, hi = spec
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {type(value).__name__}")
    elif kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(name, f"must be an integer, got {type(value).__name__}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(name, f"must be in {lo}..{hi}, got {value}")
    elif kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(name, "must be a non-empty string")
    return value


def parse_settings(doc: Mapping[str, Any]) -> Settings:
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
            elif f"{section}.{key}" in REQUIRED:
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
    return build_settings(out)


def retired_keys(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The :data:`RETIRED` keys the TOML document sets."""
    return tuple(name for name in RETIRED
                 if name.partition(".")[2] in doc.get(name.partition(".")[0], {}))


def load_config(path: str | Path,
                overrides: Mapping[str, Mapping[str, Any]] | None = None,
                key_fd: int | None = None) -> NodeConfig:
    """Read ``node.toml`` and everything it points to; raise :class:`ConfigError`.

    ``overrides`` (``{section: {key: value}}``, from the environment:
    node/config_env.py) replace the file's values before validation.  With
    ``key_fd`` the validator key file's text is read from that open file
    descriptor (``LEDGER_KEY_SEED_FD``) instead of ``node.key_file``."""
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
    node = settings.node
    genesis_path = (base / node.genesis).resolve()
    try:
        genesis = load_genesis(genesis_path)
    except OSError as exc:
        raise ConfigError("node.genesis", f"cannot read {genesis_path}: {exc.strerror}") from None
    except GenesisError as exc:
        raise ConfigError("node.genesis", f"{genesis_path}: {exc}") from None
    try:
        key = (load_key_file(base / node.key_file).key if key_fd is None
               else parse_key_file(read_fd(key_fd), f"the key from file descriptor {key_fd}").key)
    except KeyFileError as exc:
        raise ConfigError("node.key_file", str(exc)) from None
    rotation_keys = []
    for name in node.rotation_key_files.split():
        try:
            rotation_keys.append(load_key_file(base / name).key)
        except KeyFileError as exc:
            raise ConfigError("node.rotation_key_files", str(exc)) from None
    own = {k.public_key for k in [key, *rotation_keys]}
    if len(own) != 1 + len(rotation_keys):
        raise ConfigError("node.rotation_key_files", "a key is listed twice")
    # The genesis validator holding one of our keys; none: a validator that
    # governance added (or will add), which joins the running chain.
    validator = next((v for v in genesis.validators if v.pubkey in own), None)
    if validator is None and (key.public_key in genesis.submitters
                              or key.public_key in genesis.members):
        raise ConfigError("node.key_file", "the key is a genesis submitter's or member's, "
                          "not a validator's")
    peers = []
    for v in genesis.validators:
        if v.pubkey in own:
            continue
        _split_address(v.address, f"genesis validator {v.name!r} address")
        peers.append(v)
    return NodeConfig(
        path=cfg_path,
        name=node.name,
        genesis=genesis,
        genesis_path=genesis_path,
        key=key,
        data_dir=(base / node.data_dir).resolve(),
        validator=validator,
        peers=tuple(peers),
        settings=settings,
        retired=retired_keys(doc),
        witnesses=parse_witnesses(settings.witness.keys),
        rotation_keys=tuple(rotation_keys),
    )


def parse_witnesses(text: str) -> tuple[Witness, ...]:
    """``witness.keys``: verifier keys separated by whitespace, distinct names."""
    try:
        witnesses = tuple(parse_vkey(k) for k in text.split())
    except ValueError as exc:
        raise ConfigError("witness.keys", str(exc)) from None
    if len({w.name for w in witnesses}) != len(witnesses):
        raise ConfigError("witness.keys", "two witness keys have one name")
    return witnesses


def read_fd(fd: int) -> str:
    """All of an inherited file descriptor's text (then closed)."""
    try:
        with open(fd, "r", encoding="utf-8", closefd=True) as fh:
            return fh.read()
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read the key from file descriptor {fd}: {exc}") from None


def _split_address(address: str, what: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(what, f"must be host:port, got {address!r}")
    return host, int(port)


def split_address(address: str, what: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``; :class:`ConfigError` naming ``what``."""
    return _split_address(address, what)


def peer_url(validator: Validator, path: str, tls: bool = False) -> str:
    """``http(s)://host:port/path`` for a validator's genesis address."""
    host, port = _split_address(validator.address, f"validator {validator.name!r} address")
    return f"{'https' if tls else 'http'}://{host}:{port}{path}"
