"""Every setting of ``node.toml``: one frozen dataclass per section.

This module is the one source of truth for the keys: each field's type,
default (a field without one is required), range (``lo``/``hi``) and the
description docs/operators.md prints.  :data:`SCHEMA` and
:data:`DESCRIPTIONS` are derived from the classes for node/config.py (the
checks, with their error messages), node/config_env.py (``LEDGER__SECTION__KEY``)
and node/config_reference.py (the generated reference).  node/config.py
builds one :class:`Settings` from the TOML at start; code reads a setting as
``cfg.settings.limits.max_mempool``, which a reader and mypy follow here.
"""

from __future__ import annotations

import types
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, get_type_hints

from ledger import storage

# (type, default, lower bound, upper bound): default None means required,
# except in [consensus], whose keys all default to None (not set).
Spec = tuple[type, Any, int | None, int | None]


def setting(default: Any = MISSING, *, lo: int | None = None, hi: int | None = None,
            doc: str) -> Any:
    """A settings field: no ``default`` means required."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "doc": doc})


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
class HttpSettings:
    """``[http]`` in node.toml."""

    host: str = setting("127.0.0.1", doc="Address the HTTP API listens on.")

    port: int = setting(lo=1, hi=65535,
        doc="Port the HTTP API listens on. It must match this validator's `address` in "
            "genesis, which is where peers connect.")

    max_body_bytes: int = setting(16 * 1024 * 1024, lo=1024, hi=1 << 30,
        doc="Largest request body; a larger one is refused with 413 `too_large`.")

    max_inflight_requests: int = setting(256, lo=1, hi=100_000,
        doc="Requests handled at once; above it a request gets 429 `rate_limited` "
            "(`/health`, `/metrics` and `/v1/peer` are exempt).")

    # A request body must arrive within this (slow-loris clients).
    body_timeout_ms: int = setting(30_000, lo=100, hi=600_000,
        doc="A request body must arrive within this; otherwise 400 `bad_request` (message "
            "`body_timeout: ...`) and the connection is closed.")

    # A connection must deliver a complete request head within this from
    # when it opens or from a request's first byte (slow-loris heads);
    # otherwise it is closed (node/httpconn.py).
    header_timeout_ms: int = setting(10_000, lo=100, hi=600_000,
        doc="A connection must deliver each complete request head within this, counted from"
            " when it opens or from a request's first byte; otherwise it is closed and "
            "counted in `ledger_http_connections_timed_out{reason=\"head\"}`.")

    # An idle keep-alive connection is closed after this.  Keep it above
    # clients' keep-alive (aiohttp: 15 s) so none reuses a closing socket.
    idle_timeout_ms: int = setting(60_000, lo=100, hi=3_600_000,
        doc="An idle keep-alive connection is closed after this. Keep it above clients' "
            "keep-alive (aiohttp keeps 15 s) so no client reuses a socket the server is "
            "just closing.")

    # A client that takes none of an answer's bytes for this long (its
    # connection's output stays stalled) is disconnected (node/httpconn.py).
    write_timeout_ms: int = setting(30_000, lo=100, hi=600_000,
        doc="A client that takes none of an answer's bytes for this long is disconnected "
            "and the answer cut (counted in "
            "`ledger_http_connections_timed_out_total{reason=\"write\"}`).")

    # Connections one client address may hold open; more are answered
    # 429 and closed at once.  Each holds at most one answer being written.
    max_connections_per_client: int = setting(128, lo=1, hi=100_000,
        doc="Connections one client address may hold open; more are answered 429 and closed"
            " before anything is read. Peer links count too.")

    # Requests one client address may have in progress at once (on all
    # its connections); more are answered 429 rate_limited.
    max_requests_per_client: int = setting(64, lo=1, hi=100_000,
        doc="Requests one client address may have in progress at once, on all its "
            "connections; more are answered 429 `rate_limited` with `Retry-After: 1`.")

    # Token bucket per client address (node/ratelimit.py), checked before
    # authentication: a flood costs no signature check.  A node serves a
    # few thousand proofs a second in all (docs/performance.md), so the
    # default leaves one address most of a node, and a benchmark or a bulk
    # auditor behind one address may need more.
    client_rate_per_s: int = setting(2000, lo=0, hi=1_000_000,
        doc="Requests per second one client address may make, on average (0: no limit); "
            "past its allowance a request is answered 429 `rate_limited` with `Retry-After`"
            " (PROTOCOL §11.5). `/health`, `/metrics` and `/v1/peer` are not counted.")

    client_burst: int = setting(4000, lo=1, hi=10_000_000,
        doc="Requests one client address may make at once before `client_rate_per_s` "
            "applies (the size of its token bucket).")

    # The same per authenticated identity (after authentication): one key
    # may be used from many addresses.
    identity_rate_per_s: int = setting(1000, lo=0, hi=1_000_000,
        doc="Requests per second one authenticated identity may make, on average, from all "
            "its addresses (0: no limit); past it 429 `rate_limited` with `Retry-After`. "
            "Requests that carry no identity are limited by address only.")

    identity_burst: int = setting(2000, lo=1, hi=10_000_000,
        doc="Requests one identity may make at once before `identity_rate_per_s` applies.")

    max_requests_per_identity: int = setting(32, lo=1, hi=100_000,
        doc="Requests one authenticated identity may have in progress at once, from all "
            "its addresses; more are answered 429 `rate_limited` with `Retry-After: 1`.")

    # Buckets kept per scope; past it full buckets, then the least recently
    # used, are forgotten (a forgotten key starts again with a full bucket).
    rate_limit_keys: int = setting(65536, lo=16, hi=10_000_000,
        doc="Client addresses (and, apart, identities) whose token buckets the node "
            "remembers; past it it forgets full buckets first, then the least recently "
            "used (about 100 bytes each).")

    # Large answers (block sync) are written in pieces of this size, each
    # after the previous one has been taken by the kernel.
    stream_chunk_bytes: int = setting(64 * 1024, lo=4096, hi=16 * 1024 * 1024,
        doc="Large answers (block sync) are written in pieces of this size, each after the "
            "client took the previous one, so a client that does not read holds at most one"
            " piece.")


    # /metrics and /health without signatures, for scrapers and probes that
    # hold no registered key (node/operator_http.py); 0: not served.
    operator_port: int = setting(0, lo=0, hi=65535,
        doc="Port of the operator listener, which serves only `GET /metrics` and `GET /health`"
            " without request signatures (for a Prometheus scraper or a probe; over TLS when "
            "the API has it). 0 (the default): no operator listener; `/metrics` is then only "
            "on the API, signed by a key with the `audit` or `monitor` role.")

    operator_host: str = setting("127.0.0.1",
        doc="Address the operator listener binds; keep it on a network only monitoring "
            "reaches.")


@dataclass(frozen=True, kw_only=True)
class ConsensusSettings:
    """``[consensus]`` in node.toml."""

    # Overrides of the genesis params; every validator should agree on them
    # but a mismatch only costs liveness, never safety.
    timeout_propose_ms: int | None = setting(None, lo=10, hi=600_000,
        doc="How long a validator waits for the round's proposal.")

    timeout_prevote_ms: int | None = setting(None, lo=10, hi=600_000,
        doc="How long it waits for prevotes after seeing 2/3 of them for different values.")

    timeout_precommit_ms: int | None = setting(None, lo=10, hi=600_000,
        doc="How long it waits for precommits likewise.")

    timeout_delta_ms: int | None = setting(None, lo=0, hi=600_000,
        doc="Added to each timeout per round, so that rounds grow until the network's delay"
            " fits.")


@dataclass(frozen=True, kw_only=True)
class LimitsSettings:
    """``[limits]`` in node.toml."""

    max_mempool: int = setting(20_000, lo=1, hi=10_000_000,
        doc="Records waiting to be committed (a decoded record takes about 1.3 KB). Above "
            "it clients get `rate_limited`.")

    # Peers' records received but not yet admitted here; above this,
    # clients get rate_limited so that admission keeps up with gossip
    # (a proposal whose records are still queued here must wait for them).
    max_peer_backlog: int = setting(4000, lo=1, hi=10_000_000,
        doc="Records received from peers but not yet admitted here. Above it clients get "
            "`rate_limited` until admission catches up, so the node's own clients cannot "
            "starve the records its next block depends on.")

    max_request_envelopes: int = setting(5000, lo=1, hi=5000,
        doc="Envelopes in one `POST /v1/records`; more is 400 `too_many`. The contract's "
            "ceiling is 5000.")

    max_block_records: int = setting(1000, lo=1, hi=100_000,
        doc="Records in a block this node proposes (the lower of this and genesis "
            "`params.max_block_records`).")

    max_orphans: int = setting(10_000, lo=0, hi=1_000_000,
        doc="Gossiped records whose parent has not arrived yet, held until it does (oldest "
            "dropped first; 0 holds none).")

    max_trace_depth: int = setting(64, lo=1, hi=10_000,
        doc="Deepest `?depth=` of `GET /v1/records/{id}/trace`, and its default.")

    max_trace_nodes: int = setting(1000, lo=1, hi=100_000,
        doc="Most records in one trace answer; a larger lineage is cut and the answer says "
            "`\"truncated\": true`.")

    # glibc malloc arenas the node's threads share (0: glibc's default,
    # eight per core; each arena keeps its own high-water mark), and the
    # size from which blocks are mapped on their own and returned when
    # freed (0: glibc's default, which moves up to 32 MiB).  See
    # node/memtune.py.
    malloc_arenas: int = setting(2, lo=0, hi=64,
        doc="glibc malloc arenas the node's threads share, applied before any thread starts"
            " (0: glibc's default of up to eight per core, each keeping its own high-water "
            "mark of freed memory).")

    malloc_mmap_threshold_bytes: int = setting(256 * 1024, lo=0, hi=32 * 1024 * 1024,
        doc="Blocks from this size are mapped on their own and returned to the system when "
            "freed (0: glibc's default, which climbs to the largest block freed, so large "
            "write batches and request bodies fragment the heap). Try 0 on a node that "
            "mostly serves proofs.")


@dataclass(frozen=True, kw_only=True)
class GossipSettings:
    """``[gossip]`` in node.toml."""

    batch: int = setting(500, lo=1, hi=5000, doc="Most envelopes in one gossip frame.")

    interval_ms: int = setting(20, lo=1, hi=10_000,
        doc="How often new records are gossiped to peers.")

    # A proposal names its records by leaf hash; those not admitted here
    # this long after it arrived are fetched from its sender.
    fetch_after_ms: int = setting(200, lo=1, hi=60_000,
        doc="A proposal names its records by leaf hash; those not admitted here this long "
            "after it arrived are fetched from its sender (counted in "
            "`ledger_proposal_assembly_total{outcome}`).")

    refetch_ms: int = setting(500, lo=10, hi=60_000,
        doc="Wait before asking again for records a fetch did not bring.")


@dataclass(frozen=True, kw_only=True)
class PeersSettings:
    """``[peers]`` in node.toml."""

    queue_size: int = setting(4096, lo=16, hi=1_000_000,
        doc="Frames waiting to be sent to one peer.")

    # Bytes waiting for one peer; above it new frames are dropped and
    # counted (a peer that is down catches up by block sync instead).
    queue_bytes: int = setting(16 * 1024 * 1024, lo=64 * 1024, hi=1 << 34,
        doc="Bytes waiting for one peer; above it new frames are dropped and counted (a "
            "peer that is down catches up by block sync instead).")

    # Frames that waited longer for their peer are dropped, not sent.
    max_age_ms: int = setting(5000, lo=100, hi=3_600_000,
        doc="Frames that waited longer for a peer that is down are dropped, not sent when "
            "it returns (counted in `ledger_peer_outbound_dropped{reason=\"stale\"}`): its "
            "catch-up brings those records in committed blocks.")

    reconnect_initial_ms: int = setting(100, lo=1, hi=60_000,
        doc="First wait before reconnecting to a peer; doubles per failed attempt.")

    reconnect_max_ms: int = setting(3000, lo=1, hi=600_000,
        doc="Longest wait between reconnection attempts (at least `reconnect_initial_ms`).")

    heartbeat_ms: int = setting(5000, lo=100, hi=600_000,
        doc="WebSocket ping interval on peer links; a peer that stops answering is "
            "disconnected.")

    handshake_timeout_ms: int = setting(3000, lo=100, hi=600_000,
        doc="A peer link's signed handshake must complete within this.")

    max_frame_bytes: int = setting(32 * 1024 * 1024, lo=1024, hi=1 << 30,
        doc="Largest peer frame accepted or sent.")

    # Inbound handshakes per remote address (node/handshake_limit.py): a
    # bucket of handshake_burst, refilled at handshake_rate_per_s; the
    # excess gets 429 before the node signs anything.  A restarted
    # validator dials each peer once, and a failing link retries at most
    # every reconnect_max_ms, so even a dozen validators behind one
    # address stay far below the defaults.
    handshake_burst: int = setting(64, lo=1, hi=1_000_000,
        doc="Inbound peer handshakes one remote address may start at once; the excess is "
            "answered 429 before anything is signed (counted in "
            "`ledger_peer_handshakes_failed_total{reason=\"rate_limited\"}`).")

    handshake_rate_per_s: int = setting(8, lo=1, hi=1_000_000,
        doc="Rate at which that allowance refills, per address; the default lets a "
            "validator reconnect many times a second.")


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    """``[storage]`` in node.toml."""

    # LevelDB's uncompressed block cache and memtable (anonymous memory).
    block_cache_bytes: int = setting(storage.DEFAULT_LRU_CACHE_BYTES, lo=1024 * 1024, hi=1 << 36,
        doc="LevelDB's cache of uncompressed blocks (anonymous memory).")

    write_buffer_bytes: int = setting(storage.DEFAULT_WRITE_BUFFER_BYTES, lo=1024 * 1024, hi=1 << 30,
        doc="LevelDB's memtable, flushed to a table file when full (anonymous memory).")

    # Bytes per LevelDB table block, the unit of a read: small for the
    # random lookups proofs make (ledger/storage.py has the figures).
    block_size_bytes: int = setting(storage.DEFAULT_BLOCK_BYTES, lo=256, hi=4 * 1024 * 1024,
        doc="The unit LevelDB reads, decompresses and caches (its own default is 4 KiB). A "
            "node's reads are random point lookups, so small blocks waste less; it applies "
            "to tables written from then on.")

    # LevelDB keeps this many table files open (each memory-mapped, as
    # LevelDB reads tables on 64-bit Linux); lower bounds the mapped
    # pages at the cost of reopening tables on reads.  LevelDB raises
    # anything below 74.
    max_open_files: int = setting(storage.DEFAULT_MAX_OPEN_FILES, lo=74, hi=50_000,
        doc="Table files LevelDB keeps open (LevelDB raises anything below 74). Each open "
            "table is memory-mapped, so lower values bound the mapped pages (page cache, "
            "not the node's own memory) at a cost in proof rate.")

    # Nice value of LevelDB's flush/compaction thread once the node is at
    # the tip (Linux; 0 = as the node).  Flushes then use CPU the node
    # leaves idle instead of stalling commits on a busy host
    # (docs/operators.md).
    compaction_nice: int = setting(storage.DEFAULT_COMPACTION_NICE, lo=0, hi=storage.MAX_COMPACTION_NICE,
        doc="Nice value given to LevelDB's flush and compaction thread once the node is at "
            "the tip (Linux; 0 leaves it alone). Not before: a node catching up needs its "
            "flushes.")


@dataclass(frozen=True, kw_only=True)
class SyncSettings:
    """``[sync]`` in node.toml."""

    batch_blocks: int = setting(64, lo=1, hi=10_000,
        doc="Most blocks fetched (and served to a peer) per catch-up request; batches start"
            " at one block and double up to this.")

    max_response_bytes: int = setting(8 * 1024 * 1024, lo=1024, hi=1 << 30,
        doc="Most bytes of blocks served to a peer in one answer.")

    lag_blocks: int = setting(2, lo=1, hi=1_000_000,
        doc="Accepted and validated, but not read by the node today.")

    # A signed sync request is accepted this long either side of its
    # timestamp (validators' clocks differ; a replay is only good this long).
    auth_window_ms: int = setting(60_000, lo=1000, hi=3_600_000,
        doc="A validator's signed block-sync request is accepted this long either side of "
            "its timestamp: room for clock differences, and how long a captured request "
            "could be replayed.")

    # How a node with an empty store joins: "blocks" replays every block,
    # "snapshot" starts from a peer's certified snapshot and back-fills
    # history behind it (node/statesync.py).
    mode: str = setting("blocks",
        doc="How a node whose store is empty joins the chain. `\"blocks\"` fetches and "
            "applies every block from height 1 (the node admits records as soon as it is "
            "at the tip). `\"snapshot\"` fetches a peer's certified snapshot of the tip "
            "(header, certificate, log frontier), serves new blocks and their proofs "
            "within seconds, and back-fills the blocks below in the background; until "
            "back-fill ends it refuses submissions (`503 unavailable`) and proofs of "
            "older records (`503 unavailable`), because only the whole history tells it "
            "which nonces are used. A store that already holds blocks ignores this "
            "setting.")


@dataclass(frozen=True, kw_only=True)
class TlsSettings:
    """``[tls]`` in node.toml (node/tls.py)."""

    cert_file: str = setting("",
        doc="PEM certificate the node serves HTTPS and peer links with (from the "
            "organisation's CA, or made by `ledger-cluster init`). Required unless "
            "`insecure_plaintext`.")

    key_file: str = setting("",
        doc="PEM private key of `cert_file`, unencrypted, mode 0600. The node refuses to "
            "start if the certificate does not match it or has expired.")

    ca_file: str = setting("",
        doc="PEM trust roots for the certificates of peers (and of other nodes this node "
            "fetches blocks from). Empty: the system's roots.")

    require: bool = setting(True,
        doc="Verify peers' certificates against `ca_file` and their `address` host. With "
            "`false` any certificate is accepted on peer links; peers are still "
            "authenticated by their validator keys in the handshake, which is bound to the "
            "certificate.")

    insecure_plaintext: bool = setting(False,
        doc="Serve plain HTTP and dial peers over plain WebSocket, without TLS: for local "
            "demos only; the node logs a warning at start.")


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """``[auth]`` in node.toml (node/auth.py, PROTOCOL §11)."""

    # Off only for local demos and tests, like tls.insecure_plaintext.
    insecure_open: bool = setting(False,
        doc="Serve every route to anyone, without request signatures or roles: for local "
            "demos and tests only; the node logs a warning at start. Otherwise every request"
            " but `/health` must be signed by a registered key (PROTOCOL §11).")

    # The replay window: how far a signature's `created` may lie from the
    # node's clock, and how long its nonce is remembered.
    window_ms: int = setting(60_000, lo=1_000, hi=3_600_000,
        doc="A request signature's `created` must lie within this of the node's clock, "
            "before or after; its nonce is remembered until then. Older, newer or repeated "
            "signatures are refused with 401 `unauthenticated`.")

    # Memory bound of the nonces remembered within the window (about 150
    # bytes each); beyond it requests get 429 rather than a forgotten nonce.
    max_nonces: int = setting(1_000_000, lo=1_000, hi=100_000_000,
        doc="Nonces remembered at most (about 150 bytes each); while the window holds this "
            "many, signed requests are answered 429 `rate_limited`.")


@dataclass(frozen=True, kw_only=True)
class StreamSettings:
    """``[stream]`` in node.toml: the block stream of monitors (`GET /v1/stream`)."""

    max_clients: int = setting(16, lo=1, hi=10_000,
        doc="Most block streams served at once; the next request is answered 429 "
            "`rate_limited` (counted in `ledger_stream_cut_total{reason=\"limit\"}`).")

    write_timeout_ms: int = setting(10_000, lo=100, hi=600_000,
        doc="A stream whose reader takes no event for this long is cut (counted in "
            "`ledger_stream_cut_total{reason=\"slow\"}`); the reader resumes from the next "
            "height.")

    keepalive_ms: int = setting(15_000, lo=100, hi=600_000,
        doc="A stream at the tip sends a comment line after this long without a block, so "
            "that proxies and readers see the connection alive.")


@dataclass(frozen=True, kw_only=True)
class WitnessSettings:
    """``[witness]`` in node.toml (PROTOCOL §13)."""

    # One string: the settings schema has int, bool and str values only.
    keys: str = setting("",
        doc="Trusted witnesses, as C2SP verifier keys (`name+<8 hex>+base64(04 || Ed25519 "
            "key)`, the form PROTOCOL §13 gives) separated by spaces. The node accepts "
            "their cosignatures of its checkpoints (`POST /v1/checkpoints/{height}/"
            "cosignatures`), keeps them and serves them in the checkpoint notes; empty: none.")


@dataclass(frozen=True, kw_only=True)
class WebhooksSettings:
    """``[webhooks]`` in node.toml: incident notifications (PROTOCOL §12.4)."""

    urls: str = setting("",
        doc="Comma-separated URLs that receive a signed JSON POST for each circuit breaker "
            "transition and scope pause this node commits; empty: none.")

    secret_file: str = setting("",
        doc="File holding the shared secret of the webhooks' HMAC-SHA256 signature "
            "(`X-Ledger-Signature`); required when `urls` is set.")

    max_attempts: int = setting(5, lo=1, hi=100,
        doc="Tries per URL and event, with backoff 0.5 s, 1 s, 2 s, ... (at most 30 s).")


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
