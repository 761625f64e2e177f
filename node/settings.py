"""Every setting of ``node.toml``: one frozen dataclass per section.

These classes are the one source of truth for the keys: each field's type,
default (a field without one is required), range (``lo``/``hi``) and the
description docs/operators.md prints.  :data:`SCHEMA` and
:data:`DESCRIPTIONS` are derived from the classes for node/config.py (the
checks, with their error messages), node/config_env.py (``LEDGER__SECTION__KEY``)
and node/config_reference.py (the generated reference).  node/config.py
builds one :class:`Settings` from the TOML at start; code reads a setting as
``cfg.settings.limits.max_mempool``, which a reader and mypy follow here.

The sections are declared by area: ``[node]`` and ``[log]`` here, what the
node serves in node/settings_api.py, running the chain in
node/settings_chain.py, all with the field helper of node/settings_fields.py;
this module assembles them into :class:`Settings` and re-exports each.
"""

from __future__ import annotations

import types
from dataclasses import MISSING, dataclass, fields
from typing import Any, get_type_hints

from .settings_api import (
    AuthSettings as AuthSettings,
    HttpSettings as HttpSettings,
    StreamSettings as StreamSettings,
    TlsSettings as TlsSettings,
    WebhooksSettings as WebhooksSettings,
)
from .settings_chain import (
    ConsensusSettings as ConsensusSettings,
    GossipSettings as GossipSettings,
    LimitsSettings as LimitsSettings,
    PeersSettings as PeersSettings,
    StorageSettings as StorageSettings,
    SyncSettings as SyncSettings,
    WitnessSettings as WitnessSettings,
)
from .settings_fields import Spec as Spec, setting as setting


@dataclass(frozen=True, kw_only=True)
class NodeSettings:
    """``[node]`` in node.toml."""

    name: str = setting(doc="The node's name in logs, metrics and `/v1/status`.")

    genesis: str = setting("genesis.json",
        doc="Path of the chain's `genesis.json` (validators, submitters, params). Every "
            "validator must use the same file.")

    key_file: str = setting(
        doc="Path of this validator's key file (`{\"name\", \"pubkey\", \"seed\"}`, mode 0600). "
            "Its public key is a genesis validator's, or one a `gov.validator.add` record "
            "added (the node then joins: it catches up from the genesis validators and "
            "takes part from the height the addition is in force).")

    rotation_key_files: str = setting("",
        doc="Further validator key files, separated by spaces (each like `key_file`, mode "
            "0600): the keys this validator rotates to or from (`gov.validator.rotate`, "
            "PROTOCOL §9.9). At each height the node signs with whichever of its keys is in "
            "the validator set in force there; with none in force it follows the chain.")

    data_dir: str = setting("data",
        doc="Directory of the LevelDB store (blocks, log, indexes, consensus state). "
            "Created if missing.")

    # The asyncio event loop: "uvloop" (libuv; falls back to "asyncio"
    # where uvloop is not installed) or "asyncio", the standard library's.
    # uvloop serves more proofs/s, where request handling is most of the
    # cost (docs/performance.md).
    event_loop: str = setting("uvloop",
        doc="`\"uvloop\"` (libuv's event loop) or `\"asyncio\"` (the standard library's). Where"
            " uvloop is not installed the node runs on asyncio and its start log warns.")

    # Where peers reach this node when it differs from where it listens
    # (a proxy, NAT or container port mapping); checked against genesis.
    advertise_address: str = setting("",
        doc="`host:port` where peers reach this node, when that is not `http.host:http.port` "
            "(a proxy, NAT or a container's port mapping). It must equal this validator's "
            "`address` in genesis; without it the listen address must (a wildcard host such"
            " as `0.0.0.0` matches any host, the port must still match).")


@dataclass(frozen=True, kw_only=True)
class LogSettings:
    """``[log]`` in node.toml."""

    level: str = setting("info", doc="`debug`, `info`, `warning` or `error`.")


@dataclass(frozen=True)
class Settings:
    """All of node.toml's settings, validated (node/config.py builds it)."""

    node: NodeSettings
    http: HttpSettings
    consensus: ConsensusSettings
    limits: LimitsSettings
    gossip: GossipSettings
    peers: PeersSettings
    storage: StorageSettings
    sync: SyncSettings
    tls: TlsSettings
    auth: AuthSettings
    stream: StreamSettings
    webhooks: WebhooksSettings
    witness: WitnessSettings
    log: LogSettings


def _kind(annotation: Any) -> type:
    """``int``, ``bool`` or ``str`` of a field's annotation (``int | None`` is ``int``)."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = [a for a in annotation.__args__ if a is not type(None)]
    assert annotation in (int, bool, str), annotation
    return annotation  # type: ignore[no-any-return]


SECTION_CLASSES: dict[str, type] = {
    f.name: hint for f, hint in
    ((f, get_type_hints(Settings)[f.name]) for f in fields(Settings))
}
SCHEMA: dict[str, dict[str, Spec]] = {}
DESCRIPTIONS: dict[str, str] = {}
REQUIRED: frozenset[str] = frozenset(
    f"{section}.{f.name}" for section, cls in SECTION_CLASSES.items()
    for f in fields(cls) if f.default is MISSING)
for _section, _cls in SECTION_CLASSES.items():
    _hints = get_type_hints(_cls)
    SCHEMA[_section] = {
        f.name: (_kind(_hints[f.name]), None if f.default is MISSING else f.default,
                 f.metadata["lo"], f.metadata["hi"])
        for f in fields(_cls)}
    DESCRIPTIONS.update({f"{_section}.{f.name}": f.metadata["doc"] for f in fields(_cls)})


def build_settings(values: dict[str, dict[str, Any]]) -> Settings:
    """The :class:`Settings` of validated ``{section: {key: value}}``."""
    return Settings(**{section: SECTION_CLASSES[section](**values[section])
                       for section in SECTION_CLASSES})
