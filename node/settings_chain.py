"""The settings of running the chain: ``[consensus]`` (timeouts), ``[limits]``,
``[gossip]``, ``[peers]``, ``[storage]`` (LevelDB), ``[sync]`` (catch-up) and
``[witness]``.  Part of node/settings.py, which assembles and re-exports every
section.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger import storage
from ledger.params import (
    BLOCK_RECORDS_MAX,
    BLOCK_RECORDS_MIN,
    DELTA_MIN_MS,
    TIMEOUT_MAX_MS,
    TIMEOUT_MIN_MS,
)

from .gctune import GEN0_THRESHOLD
from .settings_fields import setting

# Records in a block a node proposes, and the chain param ledger-cluster
# writes into a new genesis.  Under load a block's round costs about the
# same whatever its size, so larger blocks carry more records per round
# (the figures: docs/performance.md, "Blocks of up to 4,000 records").
DEFAULT_BLOCK_RECORDS = 4000


@dataclass(frozen=True, kw_only=True)
class ConsensusSettings:
    """``[consensus]`` in node.toml."""

    # Overrides of the chain params in force at each height (genesis, then
    # gov.params.set); every validator should agree on them but a mismatch
    # only costs liveness, never safety.
    timeout_propose_ms: int | None = setting(None, lo=TIMEOUT_MIN_MS, hi=TIMEOUT_MAX_MS,
        doc="How long a validator waits for the round's proposal.")

    timeout_prevote_ms: int | None = setting(None, lo=TIMEOUT_MIN_MS, hi=TIMEOUT_MAX_MS,
        doc="How long it waits for prevotes after seeing 2/3 of them for different values.")

    timeout_precommit_ms: int | None = setting(None, lo=TIMEOUT_MIN_MS, hi=TIMEOUT_MAX_MS,
        doc="How long it waits for precommits likewise.")

    timeout_delta_ms: int | None = setting(None, lo=DELTA_MIN_MS, hi=TIMEOUT_MAX_MS,
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

    max_block_records: int = setting(DEFAULT_BLOCK_RECORDS, lo=BLOCK_RECORDS_MIN,
                                     hi=BLOCK_RECORDS_MAX,
        doc="Records in a block this node proposes (the lower of this and the chain param "
            "`max_block_records` in force at the block's height).")

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

    malloc_trim_interval_s: int = setting(30, lo=0, hi=86_400,
        doc="Every this many seconds the node hands the free memory inside glibc's heaps "
            "back to the system (`malloc_trim`); without it, memory freed after a backlog "
            "(a partition, a catch-up) stays in the process's RssAnon (0: never).")

    gc_young_threshold: int = setting(GEN0_THRESHOLD, lo=100, hi=1_000_000,
        doc="Net allocations of tracked objects between two collections of the cyclic "
            "garbage collector's young generation, once the node has started. Higher: "
            "less of the node's CPU in the collector, longer pauses (both measured in "
            "docs/performance.md). Python's own default is 700.")


@dataclass(frozen=True, kw_only=True)
class GossipSettings:
    """``[gossip]`` in node.toml."""

    batch: int = setting(500, lo=1, hi=5000, doc="Most envelopes in one gossip frame.")

    interval_ms: int = setting(20, lo=1, hi=10_000,
        doc="Least time between two gossip frames to peers: a client's records admitted "
            "after a quiet interval are sent at once, the rest gathered until it ends.")

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

    # LevelDB keeps this many table files open (the first 1000
    # memory-mapped, as LevelDB reads tables on 64-bit Linux); a table
    # past it is reopened on a read.  LevelDB raises anything below 74.
    max_open_files: int = setting(storage.DEFAULT_MAX_OPEN_FILES, lo=74, hi=50_000,
        doc="Table files LevelDB keeps open (LevelDB raises anything below 74; ~170 per "
            "million records). A table past it is reopened on each read, which costs a "
            "proof several times its CPU once the store has more tables than this. The "
            "first 1000 open tables are memory-mapped: lower values bound the mapped pages "
            "(page cache, not the node's own memory). The node raises its open-files limit "
            "to this plus 1024 (up to the hard limit; below it, fewer tables stay open and "
            "the node warns at start).")

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
            "which nonces are used. After validator-set changes the snapshot is checked "
            "with the governance records it carries (from peers of an earlier version, "
            "which send none, the node replays blocks and says so in its log). A store "
            "that already holds blocks ignores this setting.")


@dataclass(frozen=True, kw_only=True)
class WitnessSettings:
    """``[witness]`` in node.toml (PROTOCOL §13)."""

    # One string: the settings schema has int, bool and str values only.
    keys: str = setting("",
        doc="Trusted witnesses, as C2SP verifier keys (`name+<8 hex>+base64(04 || Ed25519 "
            "key)`, the form PROTOCOL §13 gives) separated by spaces. The node accepts "
            "their cosignatures of its checkpoints (`POST /v1/checkpoints/{height}/"
            "cosignatures`), keeps them and serves them in the checkpoint notes; empty: none.")
