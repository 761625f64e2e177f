"""Async client SDK for services submitting records and fetching proofs.

    async with LedgerClient(["http://127.0.0.1:7700"], key_file=".demo/keys/demo.json") as lc:
        rid = await lc.submit(kind="payment", origin={"system": "pos"}, body={"amount": 125})
        await lc.wait_committed(rid, timeout=10)
        bundle = await lc.proof(rid)

Resubmitting an envelope is idempotent on the node, so every request may be
retried on another node after a network error, a 429 or a 5xx.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Mapping, Sequence

import aiohttp
import msgpack

from ledger.encoding import from_hex, to_hex
from ledger.keys import KeyFile, load_key_file
from ledger.records import Envelope, make_record, sign_record
from ledger.verify import verify_bundle as _verify_bundle

from .errors import BatchSubmitError, CommitTimeout, LedgerAPIError, LedgerClientError, NodesUnavailable
from .nonces import NonceAllocator
from .trace import DEFAULT_MAX_CHILDREN, DEFAULT_MAX_RECORDS, follow_trace

MAX_BATCH = 5000
DEFAULT_BATCH = 1000
# Statuses worth trying again elsewhere: the node is saturated or failing.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class LedgerClient:
    """Talks to one or more nodes of a cluster; fails over between them."""

    verify_bundle = staticmethod(_verify_bundle)

    def __init__(
        self,
        nodes: Sequence[str],
        key_file: str | Path | None = None,
        *,
        chain: str | None = None,
        nonce_file: str | Path | None = None,
        request_timeout: float = 15.0,
        retries: int = 6,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        if not nodes:
            raise ValueError("LedgerClient needs at least one node URL")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.nodes = [n.rstrip("/") for n in nodes]
        self.chain = chain
        self.retries = retries
        self.batch_size = batch_size
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._key: KeyFile | None = load_key_file(key_file) if key_file else None
        self._nonces: NonceAllocator | None = None
        if self._key is not None:
            path = Path(nonce_file) if nonce_file else Path(str(key_file) + ".nonce")
            self._nonces = NonceAllocator(path)
        self._session: aiohttp.ClientSession | None = None
        self._preferred = 0

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> "LedgerClient":
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        if self._key is not None and self.chain is None:
            self.chain = (await self.status())["chain"]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport ---------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok_statuses: Iterable[int] = (200, 202),
    ) -> Any:
        """One API call with failover: returns decoded JSON or raises."""
        if self._session is None:
            raise LedgerClientError("use LedgerClient as 'async with LedgerClient(...)'")
        attempts: list[str] = []
        ok = set(ok_statuses)
        for attempt in range(self.retries + 1):
            index = (self._preferred + attempt) % len(self.nodes)
            url = self.nodes[index] + path
            try:
                async with self._session.request(method, url, params=params, data=data, headers=headers) as resp:
                    body = await resp.read()
                    if resp.status in ok:
                        self._preferred = index
                        return _json(body)
                    doc = _json_or_none(body)
                    code = doc.get("error", "http_error") if isinstance(doc, dict) else "http_error"
                    message = doc.get("message", "") if isinstance(doc, dict) else body[:200].decode("utf-8", "replace")
                    if resp.status not in RETRYABLE_STATUS:
                        raise LedgerAPIError(code, message, resp.status)
                    attempts.append(f"{url}: HTTP {resp.status} {code}")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                attempts.append(f"{url}: {type(exc).__name__} {exc}")
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise NodesUnavailable(f"{method} {path} failed on every node", attempts)

    # -- records -----------------------------------------------------------

    def sign(
        self,
        *,
        kind: str,
        origin: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        parents: Sequence[str | bytes] = (),
        ts: int | None = None,
    ) -> Envelope:
        """Build, canonicalise and sign one record with a fresh nonce."""
        if self._key is None or self._nonces is None:
            raise LedgerClientError("a key_file is needed to sign records")
        if self.chain is None:
            raise LedgerClientError("chain id unknown: enter the client context or pass chain=")
        record = make_record(
            chain=self.chain,
            submitter=self._key.pubkey,
            nonce=self._nonces.next(),
            ts=int(time.time() * 1000) if ts is None else ts,
            kind=kind,
            origin=origin,
            body=body,
            parents=[p if isinstance(p, bytes) else from_hex(p, length=32, what="parent") for p in parents],
        )
        return sign_record(record, self._key.key)

    async def submit_envelopes(self, envelopes: Sequence[bytes]) -> list[dict[str, Any]]:
        """POST already-signed envelopes (MessagePack body); one result each."""
        if not 1 <= len(envelopes) <= MAX_BATCH:
            raise ValueError(f"1..{MAX_BATCH} envelopes per request")
        payload = msgpack.packb(list(envelopes), use_bin_type=True)
        doc = await self._request(
            "POST", "/v1/records", data=payload, headers={"Content-Type": "application/msgpack"}
        )
        results: list[dict[str, Any]] = doc["results"]
        return results

    async def submit(
        self,
        *,
        kind: str,
        origin: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        parents: Sequence[str | bytes] = (),
    ) -> str:
        """Sign and submit one record; returns its id (hex)."""
        envelope = self.sign(kind=kind, origin=origin, body=body, parents=parents)
        (result,) = await self.submit_envelopes([envelope.envelope_bytes])
        if "error" in result:
            raise LedgerAPIError(result["error"], result.get("message", ""))
        return to_hex(envelope.id)

    async def submit_many(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """Sign and submit many records (dicts with kind, origin, body, parents)
        in large requests; returns their ids in order.  Raises
        :class:`BatchSubmitError` listing the refused ones, if any."""
        envelopes = [self.sign(**dict(r)) for r in records]
        ids = [to_hex(e.id) for e in envelopes]
        results: list[dict[str, Any]] = []
        for start in range(0, len(envelopes), self.batch_size):
            chunk = envelopes[start : start + self.batch_size]
            results.extend(await self.submit_envelopes([e.envelope_bytes for e in chunk]))
        if any("error" in r for r in results):
            raise BatchSubmitError(results, ids)
        return ids

    async def record(self, record_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = await self._request("GET", f"/v1/records/{record_id}")
        return doc

    async def wait_committed(self, record_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until the record is committed; returns its record document."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            try:
                doc = await self.record(record_id)
                if doc.get("status") == "committed":
                    return doc
            except LedgerAPIError as exc:
                # Another node may not have received the gossip yet.
                if exc.code != "not_found":
                    raise
            if time.monotonic() + delay > deadline:
                raise CommitTimeout(f"record {record_id} not committed within {timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def proof(self, record_id: str, height: int | None = None) -> dict[str, Any]:
        params = {"height": str(height)} if height is not None else None
        doc: dict[str, Any] = await self._request("GET", f"/v1/records/{record_id}/proof", params=params)
        return doc

    async def trace(self, record_id: str, depth: int | None = None, *,
                    max_records: int = DEFAULT_MAX_RECORDS,
                    max_children: int = DEFAULT_MAX_CHILDREN) -> dict[str, Any]:
        """The record's lineage (every ancestor, or ``depth`` generations)
        with a proof bundle each, and its direct children: the node's pages
        and cut ancestries followed up to the caps (see client/trace.py)."""
        return await follow_trace(self.trace_page, record_id, depth,
                                  max_records=max_records, max_children=max_children)

    async def trace_page(self, record_id: str, depth: int | None = None,
                         children_limit: int | None = None,
                         children_after: str | None = None) -> dict[str, Any]:
        """One trace answer as the node gives it (PROTOCOL §6)."""
        params: dict[str, str] = {}
        if depth is not None:
            params["depth"] = str(depth)
        if children_limit is not None:
            params["children_limit"] = str(children_limit)
        if children_after is not None:
            params["children_after"] = children_after
        doc: dict[str, Any] = await self._request("GET", f"/v1/records/{record_id}/trace",
                                                  params=params or None)
        return doc

    # -- chain -------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = await self._request("GET", "/v1/status")
        return doc

    async def block(self, height: int | str = "latest", *, envelopes: bool = False) -> dict[str, Any]:
        """A block with its certificate; ``envelopes=True`` also returns the
        block's envelopes (base64), which auditors need to recompute roots."""
        params = {"envelopes": "1"} if envelopes else None
        doc: dict[str, Any] = await self._request("GET", f"/v1/blocks/{height}", params=params)
        return doc

    async def consistency(self, old_size: int, new_size: int) -> dict[str, Any]:
        doc: dict[str, Any] = await self._request(
            "GET", "/v1/consistency", params={"from": str(old_size), "to": str(new_size)}
        )
        return doc


def _json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except ValueError:
        raise LedgerAPIError("bad_response", "node answered with non-JSON") from None


def _json_or_none(body: bytes) -> Any:
    try:
        return _json(body)
    except LedgerAPIError:
        return None
