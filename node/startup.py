"""Start-up checks: mistakes ``ledger-node`` refuses to start with (exit 2).

Each names what to fix.  They run before anything listens or dials, after
node/config.py has parsed the files; a message never quotes key material.
"""

from __future__ import annotations

import stat
from pathlib import Path

from .config import ConfigError, NodeConfig, split_address
from .tls import NodeTls, TlsConfigError, load_node_tls

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def check_private_file(path: Path, key: str) -> None:
    """A secret file must be readable by its owner only."""
    path = path.resolve()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(key, f"{path} is readable by group or others (mode "
                          f"{stat.S_IMODE(mode):04o}): run `chmod 600 {path}`")


def check_identity(config: NodeConfig) -> None:
    """The key must be the one genesis lists for this node's name."""
    if config.validator is None:
        return  # a validator added by governance: genesis does not name it
    named = [v for v in config.genesis.validators if v.name == config.name]
    if named and named[0].index != config.validator.index:
        raise ConfigError("node.key_file", f"node {config.name!r} is validator "
                          f"{named[0].index} in genesis, but its key is validator "
                          f"{config.validator.index}'s ({config.validator.name!r}): configure "
                          f"{config.name}'s own key file")


def check_address(config: NodeConfig) -> None:
    """Peers dial the genesis address: the node must be reachable there.
    (A validator added by governance is dialed at its record's address,
    which genesis does not hold: nothing to check here.)"""
    if config.validator is None:
        return
    address = config.validator.address
    advertised = config.settings.node.advertise_address
    if advertised:
        if advertised != address:
            raise ConfigError("node.advertise_address", f"{advertised!r} is not this validator's"
                              f" genesis address {address!r}: peers dial the genesis address")
        return
    host, port = split_address(address, f"genesis validator {config.validator.name!r} address")
    http = config.settings.http
    if http.port != port or (http.host not in WILDCARD_HOSTS and http.host != host):
        raise ConfigError("http.port", f"the node listens on {http.host}:{http.port} but its "
                          f"genesis address is {address}: listen there, or set "
                          "node.advertise_address if a proxy or port mapping forwards it")


def startup_checks(config: NodeConfig, key_from_fd: bool = False) -> NodeTls | None:
    """Run every check; return the node's TLS material (None: plaintext)."""
    base = config.path.parent
    if not key_from_fd:
        check_private_file(base / config.settings.node.key_file, "node.key_file")
    for name in config.settings.node.rotation_key_files.split():
        check_private_file(base / name, "node.rotation_key_files")
    check_identity(config)
    check_address(config)
    tls = config.settings.tls
    if tls.key_file and not tls.insecure_plaintext:
        check_private_file(base / tls.key_file, "tls.key_file")
    try:
        return load_node_tls(tls, base)
    except TlsConfigError as exc:
        raise ConfigError(exc.key, str(exc)) from None
