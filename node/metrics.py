"""Prometheus metrics of one node.

Each node owns its registry (no process-global state), so tests can run
several nodes in one process and read each one's figures apart.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# Request-latency children kept at hand (route, method, status); past this
# many label sets (clients choose methods) the registry's own lookup is used.
_REQUEST_CHILDREN = 1024
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
        self.proposal_assembly = Gauge(
            "ledger_proposal_assembly",
            "Compact proposals by outcome since start: complete on arrival (immediate), "
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
        self.request_latency = Histogram(
            "ledger_http_request_seconds", "HTTP request latency", ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.commit_latency = Histogram(
            "ledger_block_commit_seconds", "Time to persist one block", buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        self._request_children: dict[tuple[str, str, int], Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request's latency.  The labelled child is looked up once per
        label set: ``labels()`` builds a key and takes a lock on every call."""
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.request_latency.labels(route=route, method=method, status=str(status))
            if len(self._request_children) < _REQUEST_CHILDREN:
                self._request_children[key] = child
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
