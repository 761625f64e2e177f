"""Prometheus metrics of one node.

Each node owns its registry (no process-global state), so tests can run
several nodes in one process and read each one's figures apart.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import ledger
from ledger import errors
from ledger.native import native

from . import ratelimit

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# Prometheus derives a counter's start time from resets; the ``_created``
# series prometheus_client adds beside every counter and histogram only
# doubles the series count.  The switch is process-wide (the library's public
# function); a node's process is the node.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library

# Every value a labelled counter can take is set to 0 at start, so that the
# series exist before the first event and rate()/increase() see it.
# Codes of ledger/errors.py, plus those the HTTP edge adds: a wrong
# Content-Type (node/api.py), block sync's refusals (node/syncauth.py), an
# unsigned request (node/auth.py) and a policy that does not compile
# (ledger/policy/cel.py).  tests/test_node_metrics.py checks none is missing.
REJECTION_CODES = tuple(sorted(
    {c.code for c in vars(errors).values()
     if isinstance(c, type) and issubclass(c, errors.LedgerError)}
    | {"unsupported_media_type", "unauthorized", "forbidden", "unauthenticated", "bad_policy"}))
FRAME_DROP_REASONS = ("bad_message", "bad_signature", "consensus_backlog", "gossip_backlog",
                      "malformed", "not_binary", "replay")
HANDSHAKE_FAIL_REASONS = ("bad_signature", "malformed", "rate_limited", "refused", "timeout",
                          "unknown_peer", "wrong_chain", "wrong_peer")
OUTBOUND_DROP_REASONS = ("full", "stale")
HTTP_TIMEOUT_REASONS = ("head", "idle")
ADMISSION_SOURCES = ("api", "gossip")
COMMIT_SOURCES = ("consensus", "sync")
REVIEW_FINAL_STATUSES = ("approved", "expired", "rejected")
# Seconds a record waits for people: a second to a week.
REVIEW_QUEUE_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
                        259_200.0, 604_800.0)
ASSEMBLY_OUTCOMES = ("immediate", "parked", "completed", "dropped", "fetches", "fetched")

# Request-latency children kept at hand (route, method, status); past this
# many label sets the registry's own lookup is used.
_REQUEST_CHILDREN = 1024
# The method label: RFC 9110's methods and PATCH; any other method a client
# sends is "other".  aiohttp's parser passes dozens more (WebDAV's, RTSP's,
# ...), and each would be a label set on every route, kept for good.
REQUEST_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                             "TRACE", "PATCH"))
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Submit-to-commit spans at least one consensus round and, under load or
# during a view change, tens of seconds.
_SUBMIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.height = Gauge("ledger_height", "Committed block height", registry=r)
        self.log_size = Gauge("ledger_log_size", "Records in the Merkle log", registry=r)
        self.records_committed = Counter(
            "ledger_records_committed", "Records committed by this node since start", registry=r
        )
        self.blocks_committed = Counter(
            "ledger_blocks_committed", "Blocks committed by this node since start",
            ["source"], registry=r,
        )
        self.mempool_size = Gauge("ledger_mempool_size", "Records waiting in the mempool", registry=r)
        self.orphans = Gauge("ledger_mempool_orphans", "Gossiped records waiting for a parent",
                             registry=r)
        self.admitted = Counter("ledger_records_admitted", "Records admitted to the mempool",
                                ["source"], registry=r)
        self.rejected = Counter(
            "ledger_inputs_rejected", "Inputs refused, by error code", ["code"], registry=r
        )
        self.consensus_round = Gauge("ledger_consensus_round", "Current consensus round",
                                     registry=r)
        self.rounds = Counter("ledger_consensus_rounds", "Consensus rounds started", registry=r)
        self.round_changes = Counter(
            "ledger_consensus_round_changes", "Rounds after round 0 (a proposer failed)", registry=r
        )
        self.evidence = Counter("ledger_evidence", "Equivocation evidence recorded", registry=r)
        self.peers_connected = Gauge(
            "ledger_peers_connected", "Peers with an authenticated outbound connection", registry=r
        )
        self.peer_up = Gauge("ledger_peer_up", "1 when the outbound link to a peer is up",
                             ["peer"], registry=r)
        self.frames_sent = Counter("ledger_peer_frames_sent", "Frames sent", ["peer"], registry=r)
        self.frames_received = Counter("ledger_peer_frames_received", "Frames accepted",
                                       ["peer"], registry=r)
        self.frames_dropped = Counter(
            "ledger_peer_frames_dropped", "Peer frames dropped, by reason", ["reason"], registry=r
        )
        self.outbound_dropped = Counter(
            "ledger_peer_outbound_dropped",
            "Messages not sent to a peer: its queue was full, or they waited too long (stale)",
            ["peer", "reason"], registry=r,
        )
        self.handshakes_failed = Counter(
            "ledger_peer_handshakes_failed", "Peer handshakes refused, by reason", ["reason"],
            registry=r,
        )
        self.proposal_assembly = Counter(
            "ledger_proposal_assembly",
            "Compact proposals by outcome: complete on arrival (immediate), "
            "parked for missing envelopes, completed later, dropped, fetch requests sent, "
            "envelopes fetched", ["outcome"], registry=r,
        )
        self.envelopes_fetch_served = Counter(
            "ledger_envelopes_fetch_served", "Envelopes sent to peers that asked for them",
            registry=r,
        )
        self.sync_blocks = Counter("ledger_sync_blocks", "Blocks applied by catch-up", registry=r)
        self.sync_records = Counter("ledger_sync_records", "Records applied by catch-up",
                                    registry=r)
        self.http_timeouts = Counter(
            "ledger_http_connections_timed_out",
            "Client connections closed for sending no request head in time (head), "
            "staying idle (idle), taking no output within the write timeout (write), or "
            "over the connections per client address (per_client)", ["reason"], registry=r,
        )
        self.client_limited = Counter(
            "ledger_http_client_limited",
            "Requests answered 429 by the limits of one client address or identity "
            "(scope), for its request rate or its requests in progress (limit)",
            ["scope", "limit"], registry=r,
        )
        self.request_latency = Histogram(
            "ledger_http_request_seconds", "HTTP request latency", ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.commit_latency = Histogram(
            "ledger_block_commit_seconds", "Time to persist one block", buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge(
            "ledger_build_info", "Always 1; the labels say what runs",
            ["version", "python", "native"], registry=r,
        )
        self.build_info.labels(version=ledger.__version__, python=platform.python_version(),
                               native="c" if native is not None else "python").set(1)
        self.mempool_capacity = Gauge(
            "ledger_mempool_capacity", "Records the mempool holds before clients get 429",
            registry=r,
        )
        self.submit_to_commit = Histogram(
            "ledger_submit_to_commit_seconds",
            "From a client's record's admission on this node to its commit on this node "
            "(one sample per accepted client batch: its first new record)",
            buckets=_SUBMIT_BUCKETS, registry=r,
        )
        self.peer_height = Gauge("ledger_peer_height", "A peer's committed height, as it last "
                                 "reported it", ["peer"], registry=r)
        self.peer_lag = Gauge("ledger_peer_lag_blocks", "This node's committed height behind a "
                              "peer's reported one (0 when level or ahead)", ["peer"], registry=r)
        self.health = Gauge(
            "ledger_health", "1 when the node has this /health capability: serving (store "
            "open, no fault stopped it), synced, committing", ["capability"], registry=r,
        )

        self.stream_clients = Gauge("ledger_stream_clients", "Block streams (GET /v1/stream) "
                                    "being served", registry=r)
        self.stream_blocks = Counter("ledger_stream_blocks_sent", "Block events sent on block "
                                     "streams", registry=r)
        self.stream_cut = Counter(
            "ledger_stream_cut", "Block streams refused over stream.max_clients (limit) or cut "
            "for a reader slower than stream.write_timeout_ms (slow)", ["reason"], registry=r)

        self.breakers_open = Gauge(
            "ledger_breakers_open", "Circuit breakers open at the last derived block's time "
            "(PROTOCOL §12.3)", registry=r)
        self.breaker_transitions = Counter(
            "ledger_breaker_transitions", "Breaker transitions of the blocks committed since "
            "start", ["to"], registry=r)
        for to in ("open", "closed"):
            self.breaker_transitions.labels(to=to)

        self.review_open = Gauge(
            "ledger_review_queue_open", "Records waiting for people at the tip: held for "
            "approvals (held) or open for review (review), PROTOCOL §10.10", ["status"],
            registry=r)
        self.review_time_in_queue = Histogram(
            "ledger_review_time_in_queue_seconds", "Block time from a held or in-review "
            "record's commit to the block deciding it (approved, expired, rejected), for "
            "blocks committed since start", ["status"], buckets=REVIEW_QUEUE_BUCKETS,
            registry=r)
        for status in ("held", "review"):
            self.review_open.labels(status=status)
        for status in REVIEW_FINAL_STATUSES:
            self.review_time_in_queue.labels(status=status)

        self.store_table_files = Gauge(
            "ledger_store_table_files", "LevelDB table files in the store; each open one "
            "(up to storage.max_open_files) holds its index in the node's memory", registry=r)

        self.webhooks = Counter(
            "ledger_webhooks", "Incident webhook deliveries by outcome: delivered, failed after "
            "every attempt, dropped (queue full)", ["outcome"], registry=r)

        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._on_scrape: list[Callable[[], None]] = []
        self._assembly_seen: dict[str, int] = {}
        self._init_labels()

    def _init_labels(self) -> None:
        for code in REJECTION_CODES:
            self.rejected.labels(code=code)
        for reason in FRAME_DROP_REASONS:
            self.frames_dropped.labels(reason=reason)
        for reason in HANDSHAKE_FAIL_REASONS:
            self.handshakes_failed.labels(reason=reason)
        for reason in HTTP_TIMEOUT_REASONS:
            self.http_timeouts.labels(reason=reason)
        for scope in ratelimit.SCOPES:
            for limit in ratelimit.LIMITS:
                self.client_limited.labels(scope=scope, limit=limit)
        for source in ADMISSION_SOURCES:
            self.admitted.labels(source=source)
        for source in COMMIT_SOURCES:
            self.blocks_committed.labels(source=source)
        for outcome in ASSEMBLY_OUTCOMES:
            self.proposal_assembly.labels(outcome=outcome)

    def init_peer(self, name: str) -> None:
        """A peer's series, all at 0, before its first frame."""
        self.peer_up.labels(peer=name).set(0)
        self.frames_sent.labels(peer=name)
        self.frames_received.labels(peer=name)
        for reason in OUTBOUND_DROP_REASONS:
            self.outbound_dropped.labels(peer=name, reason=reason)

    def publish_assembly(self, totals: dict[str, int]) -> None:
        """Add what the proposal assembler counted since the last call (its
        figures are totals since start; the exposed series is a counter)."""
        for outcome, total in totals.items():
            delta = total - self._assembly_seen.get(outcome, 0)
            if delta > 0:
                self.proposal_assembly.labels(outcome=outcome).inc(delta)
                self._assembly_seen[outcome] = total

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        """Call ``refresh`` before each rendering: for gauges of state that is
        cheaper to read when asked than to track on every change."""
        self._on_scrape.append(refresh)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request's latency.  The labelled child is looked up once per
        label set: ``labels()`` builds a key and takes a lock on every call."""
        if method not in REQUEST_METHODS:
            method = "other"
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.request_latency.labels(route=route, method=method, status=str(status))
            if len(self._request_children) < _REQUEST_CHILDREN:
                self._request_children[key] = child
        child.observe(seconds)

    def render(self) -> bytes:
        for refresh in self._on_scrape:
            refresh()
        return generate_latest(self.registry)
