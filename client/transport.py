"""HTTP to a cluster's nodes with failover, backoff and jitter.

:class:`NodeTransport` is the base of :class:`client.sdk.LedgerClient`: each
request goes to the node that answered last and, after a network error, a
timeout, a 429 or a 5xx, to the next node in the list, waiting
``backoff_base * 2**try`` seconds (at most ``backoff_max``) times a random
factor in [0.5, 1.5) between tries.

``asyncio`` and ``aiohttp`` are imported when a client is constructed, not
with this module: ``import client`` is also what the offline ``ledger-audit
verify`` pays for, and it never opens a connection.
"""

from __future__ import annotations

import json
import random
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Mapping, Sequence

from ledger.reqsig import RequestSigner

from .errors import InvalidArgument, LedgerAPIError, LedgerClientError, NodesUnavailable

if TYPE_CHECKING:
    import aiohttp

# Statuses worth trying again elsewhere: the node is saturated or failing.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})

Sleep = Callable[[float], Awaitable[None]]


class Retry(Exception):
    """A request failed in a way another try (later, or elsewhere) may not."""


class NodeTransport:
    """The nodes of one cluster, tried in turn (see the module docstring)."""

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        request_timeout: float,
        retries: int,
        backoff_base: float,
        backoff_max: float,
        sleep: Sleep | None,
        rng: random.Random | None,
        ca_file: str | Path | None = None,
        ssl_context: ssl.SSLContext | None = None,
        signer: RequestSigner | None = None,
    ) -> None:
        import asyncio

        import aiohttp

        if not nodes:
            raise InvalidArgument("LedgerClient needs at least one node URL")
        self.nodes = [n.rstrip("/") for n in nodes]
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._preferred = 0  # the node that answered last
        self._sleep: Sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        # https:// URLs: verified against ``ca_file`` (a cluster's own CA), or
        # ``ssl_context`` as given, else the system's trust roots.
        if ssl_context is None and ca_file is not None:
            ssl_context = ssl.create_default_context(cafile=str(ca_file))
            ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl = ssl_context
        # Every request (each try) signed with the caller's key (PROTOCOL §11).
        self._signer = signer

    def _open_session(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
        self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: spreads clients that failed together."""
        return min(self.backoff_max, self.backoff_base * 2.0**attempt) * (0.5 + self._rng.random())

    async def _call(
        self,
        index: int,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok_statuses: Iterable[int] = (200, 202),
        raw: bool = False,
    ) -> Any:
        """One request to one node: decoded JSON (the body's bytes with ``raw``); :class:`Retry` when another
        try may succeed; :class:`LedgerAPIError` when none will."""
        import aiohttp  # loaded by __init__ already: a lookup in sys.modules

        if self._session is None:
            raise LedgerClientError("use LedgerClient as 'async with LedgerClient(...)'")
        node = self.nodes[index]
        try:
            url, headers = self._signed(method, node + path, params, data, headers)
            async with self._session.request(method, url, data=data,
                                             headers=headers) as resp:
                body = await resp.read()
                if resp.status in set(ok_statuses):
                    if raw:
                        return body
                    doc = _json_or_none(body)
                    if doc is None:  # a garbled answer: another node may give a good one
                        raise Retry(f"{node}{path}: HTTP {resp.status} with a body that is not JSON "
                                     "(or is nested too deeply to read)")
                    return doc
                doc = _json_or_none(body)
                code = doc.get("error", "http_error") if isinstance(doc, dict) else "http_error"
                message = doc.get("message", "") if isinstance(doc, dict) else body[:200].decode("utf-8", "replace")
                if resp.status not in RETRYABLE_STATUS:
                    raise LedgerAPIError(code, message, resp.status, node=node)
                raise Retry(f"{node}{path}: HTTP {resp.status} {code}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # asyncio.TimeoutError is TimeoutError
            raise Retry(f"{node}{path}: {type(exc).__name__} {exc}") from None

    def _signed(self, method: str, url: str, params: Mapping[str, Any] | None, data: bytes | None,
                headers: Mapping[str, str] | None) -> tuple[Any, Mapping[str, str] | None]:
        """The URL exactly as it will be sent and the headers, with the
        request's signature when this client has a key: the signature covers
        the path and query as they go on the request line, so the URL is
        built here, once, not by aiohttp from ``params``."""
        from yarl import URL

        target = URL(url)
        if params:
            target = target.update_query({k: str(v) for k, v in params.items()})
        if self._signer is None:
            return target, headers
        signed = dict(headers or {})
        signed.update(self._signer.headers(method, str(target), data))
        return URL(str(target), encoded=True), signed

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok_statuses: Iterable[int] = (200, 202),
        raw: bool = False,
    ) -> Any:
        """One API call with failover: returns decoded JSON (bytes with
        ``raw``) or raises."""
        attempts: list[str] = []
        for attempt in range(self.retries + 1):
            index = (self._preferred + attempt) % len(self.nodes)
            try:
                doc = await self._call(index, method, path, params=params, data=data, headers=headers,
                                       ok_statuses=ok_statuses, raw=raw)
            except Retry as exc:
                attempts.append(str(exc))
            else:
                self._preferred = index
                return doc
            if attempt < self.retries:
                await self._sleep(self._backoff(attempt))
        raise NodesUnavailable(f"{method} {path} failed on every node", attempts)



def _json_or_none(body: bytes) -> Any:
    """The decoded JSON answer, or None when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: json's refusal of absurd nesting
        return None


