"""The settings of what a node serves: ``[http]`` (listeners, timeouts, per-client
limits), ``[tls]``, ``[auth]`` (request signatures), ``[stream]`` (monitors'
block stream) and ``[webhooks]``.  Part of node/settings.py, which assembles
and re-exports every section.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings_fields import setting


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
        doc="PEM trust roots for the certificates of the validators this node fetches blocks"
            ", snapshots and status from before a peer handshake has pinned their "
            "certificate. Peer links do not use it. Empty: the system's roots.")

    require: bool = setting(True,
        doc="Verify against `ca_file` and the `address` host the certificate of a validator "
            "this node fetches from before a peer handshake has pinned it. Peer links never "
            "check a CA: peers are authenticated by the validator keys the membership lists,"
            " in the handshake, which is bound to the certificate. With `false` any "
            "certificate is accepted until pinned.")

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
