"""Limits per client address and per authenticated identity (PROTOCOL §11.5).

Two kinds of limit apply to each key (a client address, or the identity
that authenticated the request):

* **rate** - a token bucket of ``burst`` requests, refilled at
  ``rate_per_s``; a request that finds it empty is answered 429
  ``rate_limited`` with ``Retry-After``, the whole seconds until a token
  is back;
* **concurrency** - at most ``max_concurrent`` requests of the key in
  progress at once (on all its connections); the excess is answered 429
  with ``Retry-After: 1`` (when a request ends cannot be known).

The address limits run before authentication, so that a flood of requests
from one address costs neither a signature check nor a handler; the
identity limits run after it, on the key that ``identity_of(request)``
returns (``None``: the request has no identity, and only its address is
limited).  :func:`limit_middlewares` makes both; node/api.py puts the
authentication middleware between them.

Time comes from an injected clock (``time.monotonic`` by default), so
tests run on a virtual one.  Buckets are kept for at most ``max_keys``
keys: past that, full buckets (those that carry no state) are forgotten
first, then the least recently used ones.  Forgetting a bucket hands its
key a full one, so under a spray of many addresses the limit weakens for
them instead of the table growing without bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ledger.errors import RateLimited

from .access import IDENTITY_KEY
from .settings import HttpSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IdentityOf = Callable[[web.Request], str | None]
Clock = Callable[[], float]
# Called once per refused request with (scope, limit): scope "address" or
# "identity", limit "rate" or "concurrent" (node/metrics.py counts them).
OnLimited = Callable[[str, str], None]

SCOPES = ("address", "identity")
LIMITS = ("rate", "concurrent")
# Routes never limited here: probes, the scrape, and peer links (a
# long-lived WebSocket; handshakes have their own bucket, node/handshake_limit.py).
EXEMPT_ROUTES = ("/health", "/metrics", "/v1/peer")
# Routes whose answer lasts as long as the client reads (the block stream):
# limited like any request when they start, but they hold no in-flight or
# concurrency slot while they stream - node/stream.py bounds them with
# ``stream.max_clients`` - so a follower never starves its own requests.
LONG_LIVED_ROUTES = ("/v1/stream",)


class ClientRateLimited(RateLimited):
    """A client address or identity is over its rate or concurrency limit."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class KeyLimits:
    """The limits of one scope; a rate of 0 turns the rate limit off."""

    rate_per_s: float
    burst: int
    max_concurrent: int


@dataclass(frozen=True)
class ClientLimits:
    """Both scopes' limits, the size of each bucket table, how a request's
    identity is found (None: no identity, only addresses are limited) and
    the clock."""

    address: KeyLimits
    identity: KeyLimits
    max_keys: int = 65536
    identity_of: IdentityOf | None = None
    clock: Clock = time.monotonic

    @classmethod
    def from_settings(cls, http: HttpSettings, *,
                      identity_of: IdentityOf | None = None) -> ClientLimits:
        return cls(address=KeyLimits(http.client_rate_per_s, http.client_burst,
                                     http.max_requests_per_client),
                   identity=KeyLimits(http.identity_rate_per_s, http.identity_burst,
                                      http.max_requests_per_identity),
                   max_keys=http.rate_limit_keys, identity_of=identity_of)


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class KeyedLimiter:
    """Token buckets and in-progress counts per key, for one scope."""

    def __init__(self, limits: KeyLimits, *, clock: Clock = time.monotonic,
                 max_keys: int = 65536) -> None:
        if limits.rate_per_s < 0 or limits.burst < 1 or limits.max_concurrent < 1 \
                or max_keys < 1:
            raise ValueError("rate must be >= 0; burst, concurrency and max_keys >= 1")
        self.limits = limits
        self._clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._busy: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def in_progress(self, key: str) -> int:
        return self._busy.get(key, 0)

    def take(self, key: str) -> float:
        """Take a token of ``key``: 0.0 when granted, else the seconds until
        the next token is back (nothing is taken then)."""
        rate = self.limits.rate_per_s
        if rate == 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.pop(key, None)  # re-inserted last: the dict is LRU-ordered
        if bucket is None:
            bucket = _Bucket(float(self.limits.burst), now)
        else:
            bucket.tokens = min(float(self.limits.burst),
                                bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if len(self._buckets) >= self.max_keys:
            self._forget(now)
        self._buckets[key] = bucket
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def enter(self, key: str) -> bool:
        """Count a request of ``key`` in progress; False (and nothing counted)
        when it already has ``max_concurrent``."""
        busy = self._busy.get(key, 0)
        if busy >= self.limits.max_concurrent:
            return False
        self._busy[key] = busy + 1
        return True

    def leave(self, key: str) -> None:
        left = self._busy[key] - 1
        if left:
            self._busy[key] = left
        else:
            del self._busy[key]

    def _forget(self, now: float) -> None:
        """Make room for one key.  Full buckets go first; if that frees too
        little, the least recently used go down to 7/8 of the table, so the
        next scan is at least an eighth of ``max_keys`` new keys away (a
        scan per new key would make a spray of addresses quadratic)."""
        burst, rate = float(self.limits.burst), self.limits.rate_per_s
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.stamp) * rate >= burst]
        for key in full:
            del self._buckets[key]
        keep = min(self.max_keys - 1, self.max_keys * 7 // 8)
        while len(self._buckets) > keep:
            del self._buckets[next(iter(self._buckets))]


def identity_key(request: web.Request) -> str | None:
    """The key of the identity node/auth.py authenticated the request with
    (hex), None for a request without one (public reads, open routes)."""
    identity = request.get(IDENTITY_KEY)
    return None if identity is None else identity.pubkey.hex()


def retry_after(wait_s: float) -> int:
    """``Retry-After`` in whole seconds (RFC 9110 §10.2.3), at least 1."""
    return max(1, math.ceil(wait_s))


def _limited(scope: str, limiter: KeyedLimiter, key: str,
             on_limited: OnLimited | None) -> tuple[str, int] | None:
    """Check ``key`` against ``limiter`` and count it in progress; the
    refusal (limit, Retry-After) when over a limit."""
    if limiter.in_progress(key) >= limiter.limits.max_concurrent:
        limit, wait = "concurrent", 1
    else:
        seconds = limiter.take(key)
        if seconds == 0.0:
            limiter.enter(key)
            return None
        limit, wait = "rate", retry_after(seconds)
    if on_limited is not None:
        on_limited(scope, limit)
    return limit, wait


def _refusal(scope: str, limit: str, limits: KeyLimits, wait: int) -> ClientRateLimited:
    who = "this address" if scope == "address" else "this identity"
    if limit == "concurrent":
        text = f"more than {limits.max_concurrent} requests in progress from {who}"
    else:
        text = f"more than {limits.rate_per_s:g} requests per second from {who} " \
               f"(burst {limits.burst})"
    return ClientRateLimited(f"{text}; retry after {wait} s", wait)


def limit_middlewares(route_of: Callable[[web.Request], str], limits: ClientLimits, *,
                      on_limited: OnLimited | None = None) -> tuple[Any, Any]:
    """The (address, identity) middlewares; the address one goes before
    authentication, the identity one after it.  Each raises
    :class:`ClientRateLimited` for the API's error middleware to answer."""
    address = KeyedLimiter(limits.address, clock=limits.clock, max_keys=limits.max_keys)
    identity = KeyedLimiter(limits.identity, clock=limits.clock, max_keys=limits.max_keys)
    identity_of = limits.identity_of

    def limit(scope: str, limiter: KeyedLimiter | None,
              key_of: Callable[[web.Request], str | None]) -> Any:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if limiter is None or route_of(request) in EXEMPT_ROUTES:
                return await handler(request)
            key = key_of(request)
            if key is None:
                return await handler(request)
            refused = _limited(scope, limiter, key, on_limited)
            if refused is not None:
                raise _refusal(scope, refused[0], limiter.limits, refused[1])
            if route_of(request) in LONG_LIVED_ROUTES:
                limiter.leave(key)
                return await handler(request)
            try:
                return await handler(request)
            finally:
                limiter.leave(key)

        return middleware

    return (limit("address", address, lambda request: request.remote or ""),
            limit("identity", identity if identity_of is not None else None,
                  identity_of or (lambda request: None)))
