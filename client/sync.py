"""A small synchronous wrapper around :class:`LedgerClient` for scripts.

    with SyncLedgerClient(["http://127.0.0.1:7700"], key_file="keys/demo.json") as lc:
        rid = lc.submit(kind="payment", body={"amount": 5})
        lc.wait_committed(rid)

It offers every call of :class:`LedgerClient`, with the same arguments,
results and errors, each blocking on the wrapper's own event loop (so it
cannot be used from inside a running event loop).
"""

from __future__ import annotations

import random
import ssl as _ssl
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Coroutine, Iterable, Mapping, Self, Sequence, TypeVar

from ledger.records import Envelope
from ledger.verify import verify_bundle as _verify_bundle

from .outbox import DEFAULT_MAX_PENDING, PendingEnvelope
from .sdk import DEFAULT_BATCH, LONG_POLL_S, LedgerClient
from .trace import DEFAULT_MAX_CHILDREN, DEFAULT_MAX_RECORDS
from .transport import Sleep
from .types import (BlockDoc, BundleDoc, ConsistencyDoc, RecordDoc, RecordSpec, ReviewItemDoc,
                    ReviewsDoc, StatusDoc, SubmitResult, TraceDoc, VerdictDoc)

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")


class SyncLedgerClient:
    """:class:`LedgerClient` for code without an event loop; use it as
    ``with SyncLedgerClient(nodes, key_file=...) as lc:``."""

    verify_bundle = staticmethod(_verify_bundle)  # as LedgerClient's: called on an instance, no self

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
        max_pending: int = DEFAULT_MAX_PENDING,
        spool_file: str | Path | None = None,
        backoff_base: float = 0.05,
        backoff_max: float = 2.0,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        ca_file: str | Path | None = None,
        ssl: _ssl.SSLContext | None = None,
        auth_key_file: str | Path | None = None,
        long_poll: float = LONG_POLL_S,
    ) -> None:
        """The options of :class:`LedgerClient` (and its errors)."""
        import asyncio  # with the client, not with the module (see client/sdk.py)

        self._client = LedgerClient(
            nodes, key_file, chain=chain, nonce_file=nonce_file, request_timeout=request_timeout,
            retries=retries, batch_size=batch_size, max_pending=max_pending, spool_file=spool_file,
            backoff_base=backoff_base, backoff_max=backoff_max, sleep=sleep, rng=rng,
            ca_file=ca_file, ssl=ssl, auth_key_file=auth_key_file, long_poll=long_poll,
        )
        self._loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> Self:
        """Open the session (see :meth:`LedgerClient.__aenter__`)."""
        self._run(self._client.__aenter__())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the session, the spool and the event loop."""
        if not self._loop.is_closed():
            self._run(self._client.close())
            self._loop.close()

    @property
    def chain(self) -> str | None:
        """The chain id (given, or learnt from a node on entering)."""
        return self._client.chain

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
        """See :meth:`LedgerClient.sign`."""
        return self._client.sign(kind=kind, origin=origin, body=body, parents=parents, ts=ts)

    def submit(
        self,
        *,
        kind: str,
        origin: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        parents: Sequence[str | bytes] = (),
        ts: int | None = None,
    ) -> str:
        """See :meth:`LedgerClient.submit`."""
        return self._run(self._client.submit(kind=kind, origin=origin, body=body, parents=parents, ts=ts))

    def sign_batch(self, records: Sequence[RecordSpec]) -> list[Envelope]:
        """See :meth:`LedgerClient.sign_batch`."""
        return self._client.sign_batch(records)

    def submit_many(self, records: Sequence[RecordSpec], *, batch_sign: bool = True) -> list[str]:
        """See :meth:`LedgerClient.submit_many`."""
        return self._run(self._client.submit_many(records, batch_sign=batch_sign))

    def submit_envelopes(self, envelopes: Sequence[bytes]) -> list[SubmitResult]:
        """See :meth:`LedgerClient.submit_envelopes`."""
        return self._run(self._client.submit_envelopes(envelopes))

    def pending(self) -> list[PendingEnvelope]:
        """See :meth:`LedgerClient.pending`."""
        return self._client.pending()

    @property
    def pending_count(self) -> int:
        """See :attr:`LedgerClient.pending_count`."""
        return self._client.pending_count

    @property
    def max_pending(self) -> int:
        """See :attr:`LedgerClient.max_pending`."""
        return self._client.max_pending

    def forget(self, record_ids: Iterable[str]) -> None:
        """See :meth:`LedgerClient.forget`."""
        self._client.forget(record_ids)

    def resubmit_pending(self) -> list[SubmitResult]:
        """See :meth:`LedgerClient.resubmit_pending`."""
        return self._run(self._client.resubmit_pending())

    def confirm_committed(self) -> int:
        """See :meth:`LedgerClient.confirm_committed`."""
        return self._run(self._client.confirm_committed())

    def record(self, record_id: str, wait_ms: int = 0) -> RecordDoc:
        """See :meth:`LedgerClient.record`."""
        return self._run(self._client.record(record_id, wait_ms))

    def wait_committed(self, record_id: str, timeout: float = 30.0) -> RecordDoc:
        """See :meth:`LedgerClient.wait_committed`."""
        return self._run(self._client.wait_committed(record_id, timeout))

    def submit_for_verdict(self, *, timeout: float = 30.0, **record: Any
                           ) -> tuple[str, VerdictDoc]:
        """See :meth:`LedgerClient.submit_for_verdict`."""
        return self._run(self._client.submit_for_verdict(timeout=timeout, **record))

    def verdict(self, record_id: str, timeout: float = 30.0) -> VerdictDoc:
        """See :meth:`LedgerClient.verdict`."""
        return self._run(self._client.verdict(record_id, timeout))

    def wait_final(self, record_id: str, timeout: float = 60.0) -> VerdictDoc:
        """See :meth:`LedgerClient.wait_final`."""
        return self._run(self._client.wait_final(record_id, timeout))

    def approve(self, record_id: str, *, origin: Mapping[str, str] | None = None) -> str:
        """See :meth:`LedgerClient.approve`."""
        return self._run(self._client.approve(record_id, origin=origin))

    def evaluate(self, *, kind: str, origin: Mapping[str, str] | None = None,
                 body: Mapping[str, Any] | None = None, parents: Sequence[str | bytes] = (),
                 ts: int | None = None) -> VerdictDoc:
        """See :meth:`LedgerClient.evaluate`."""
        return self._run(self._client.evaluate(kind=kind, origin=origin, body=body,
                                               parents=parents, ts=ts))

    def reviews(self, state: str = "open", *, limit: int = 50,
                after: str | None = None) -> ReviewsDoc:
        """See :meth:`LedgerClient.reviews`."""
        return self._run(self._client.reviews(state, limit=limit, after=after))

    def review_case(self, record_id: str) -> ReviewItemDoc:
        """See :meth:`LedgerClient.review_case`."""
        return self._run(self._client.review_case(record_id))

    def decide(self, record_id: str, decision: str, *, note: str = "",
               rests_on: Sequence[str] = (), origin: Mapping[str, str] | None = None) -> str:
        """See :meth:`LedgerClient.decide`."""
        return self._run(self._client.decide(record_id, decision, note=note,
                                             rests_on=rests_on, origin=origin))

    def proof(self, record_id: str, height: int | None = None) -> BundleDoc:
        """See :meth:`LedgerClient.proof`."""
        return self._run(self._client.proof(record_id, height))

    def tlog_proof(self, record_id: str) -> bytes:
        """See :meth:`LedgerClient.tlog_proof`."""
        return self._run(self._client.tlog_proof(record_id))

    def trace(self, record_id: str, depth: int | None = None, *,
              max_records: int = DEFAULT_MAX_RECORDS,
              max_children: int = DEFAULT_MAX_CHILDREN) -> TraceDoc:
        """See :meth:`LedgerClient.trace`."""
        return self._run(self._client.trace(record_id, depth, max_records=max_records,
                                            max_children=max_children))

    def trace_page(self, record_id: str, depth: int | None = None,
                   children_limit: int | None = None,
                   children_after: str | None = None) -> TraceDoc:
        """See :meth:`LedgerClient.trace_page`."""
        return self._run(self._client.trace_page(record_id, depth, children_limit, children_after))

    # -- chain -------------------------------------------------------------

    def status(self) -> StatusDoc:
        """See :meth:`LedgerClient.status`."""
        return self._run(self._client.status())

    def block(self, height: int | str = "latest", *, envelopes: bool = False) -> BlockDoc:
        """See :meth:`LedgerClient.block`."""
        return self._run(self._client.block(height, envelopes=envelopes))

    def consistency(self, old_size: int, new_size: int) -> ConsistencyDoc:
        """See :meth:`LedgerClient.consistency`."""
        return self._run(self._client.consistency(old_size, new_size))

    def membership(self, height: int | None = None) -> dict[str, Any]:
        """See :meth:`LedgerClient.membership`."""
        return self._run(self._client.membership(height))
