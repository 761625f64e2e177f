"""Async client SDK for services submitting records and fetching proofs.

    async with LedgerClient(["http://127.0.0.1:7700"], key_file=".demo/keys/demo.json") as lc:
        rid = await lc.submit(kind="payment", origin={"system": "pos"}, body={"amount": 125})
        await lc.wait_committed(rid, timeout=10)
        bundle = await lc.proof(rid)

Resubmitting an envelope is idempotent on the node, so every request may be
retried on another node after a network error, a 429 or a 5xx.  The client
keeps every envelope it signs or sends (client/outbox.py) until it sees the
record committed, and only ever resends those exact bytes: retrying never
signs a second record.

Results are the node's JSON documents, typed by the TypedDicts of
client/types.py; the HTTP layer (failover, backoff) is client/transport.py,
the read calls client/reads.py, and the batching and resending of kept
envelopes client/sender.py.
"""

from __future__ import annotations

import random
import ssl as _ssl
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Mapping, Self, Sequence, cast

from ledger.encoding import from_hex, to_hex
from ledger.errors import LedgerError
from ledger.keys import KeyFile, KeyFileError as _LedgerKeyFileError, load_key_file
from ledger.batch import MAX_BATCH_SIZE
from ledger.batch_envelopes import sign_batch
from ledger.reqsig import RequestSigner
from ledger.records import Envelope, Record, make_record, sign_record
from ledger.verify import verify_bundle as _verify_bundle

from .errors import (
    BatchSubmitError,
    CommitTimeout,
    InvalidArgument,
    InvalidRecord,
    KeyFileError,
    LedgerAPIError,
    LedgerClientError,
    NonceFileError,
    SubmitUnavailable,
)
from .nonces import NonceAllocator
from .outbox import DEFAULT_MAX_PENDING, Outbox, PendingEnvelope
from .reads import ChainReads
from .sender import RETRYABLE_CODES, EnvelopeSender
from .transport import Sleep
from .reviews import ReviewCalls
from .verdicts import VerdictCalls
from .types import RecordDoc, RecordSpec, SubmitResult

MAX_BATCH = 5000
DEFAULT_BATCH = 1000
# Beyond this many new blocks, confirm_committed asks the nodes about each
# kept envelope (one resubmission) instead of reading every block.
SCAN_BLOCKS_MAX = 256
# wait_committed's long poll: the longest a node is asked to hold one request
# (well inside the default request timeout, and the node's 10 s limit).
LONG_POLL_S = 5.0
MAX_LONG_POLL_S = 10.0  # the node's limit on wait_ms (node/commit_waiters.py)


class LedgerClient(VerdictCalls, ReviewCalls, ChainReads, EnvelopeSender):
    """Talks to one or more nodes of a cluster; fails over between them.

    Use it as ``async with LedgerClient(nodes, key_file=...) as lc:``; every
    call that talks to a node is a coroutine.  Without ``key_file`` it can
    read and prove but not sign.  Every such call raises
    :class:`NodesUnavailable` when no node answers usefully within the
    retries, and :class:`LedgerAPIError` (with the protocol §6 code) when a
    node refuses the request; each method names the codes to expect."""

    verify_bundle = staticmethod(_verify_bundle)
    """``verify_bundle(bundle, genesis)``: the offline verifier of
    :mod:`ledger.verify` (needs only the genesis document, talks to no node).
    Returns a ``VerifiedBundle``; raises ``ledger.errors.VerificationError``
    naming the failed step."""

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
        """``ca_file``: PEM trust roots for ``https://`` nodes (a cluster's own
        CA, ``tls/ca.pem`` of ``ledger-cluster init``); ``ssl``: a complete
        ``ssl.SSLContext`` instead.  Without either, https uses the system's
        roots.  Every request is signed (protocol §11) with the key of
        ``auth_key_file``, else of ``key_file``: a reader or auditor that
        submits nothing passes ``auth_key_file`` only (no nonce file is made
        for it); without either, requests go unsigned, which only a node with
        ``public_read`` or ``auth.insecure_open`` answers.  ``retries``: extra tries of each request (each on the next node),
        waiting ``backoff_base * 2**try`` seconds (at most ``backoff_max``)
        times a random factor in [0.5, 1.5) between tries.  ``max_pending``:
        how many signed envelopes not yet seen committed the client keeps
        (:class:`OutboxFull` beyond).  ``spool_file``: mirror them on disk so
        that a restarted process can finish them (``resubmit_pending``).
        ``long_poll``: the longest each request of :meth:`wait_committed`
        asks a node to hold its answer until the record commits (``wait_ms``,
        at most 10 s); 0 asks without waiting and polls with backoff instead
        (a proxy that cuts idle requests, or a test whose node commits only
        between polls).  ``sleep`` and ``rng`` replace ``asyncio.sleep`` and
        ``random`` (tests).

        Raises :class:`InvalidArgument` for an empty ``nodes``, a ``long_poll``
        outside 0..10 s or a
        ``batch_size`` outside 1..5000, :class:`KeyFileError` for a key file
        that cannot be read, and :class:`SpoolError` for an unusable spool."""
        try:
            self._key: KeyFile | None = load_key_file(key_file) if key_file else None
            auth_key = load_key_file(auth_key_file) if auth_key_file else self._key
        except _LedgerKeyFileError as exc:
            raise KeyFileError(str(exc)) from None
        super().__init__(nodes, request_timeout=request_timeout, retries=retries, backoff_base=backoff_base,
                         backoff_max=backoff_max, sleep=sleep, rng=rng, ca_file=ca_file,
                         ssl_context=ssl,
                         signer=RequestSigner(auth_key.key) if auth_key is not None else None)
        if not 1 <= batch_size <= MAX_BATCH:
            raise InvalidArgument(f"batch_size must be 1..{MAX_BATCH}")
        if not 0 <= long_poll <= MAX_LONG_POLL_S:
            raise InvalidArgument(f"long_poll must be 0..{MAX_LONG_POLL_S} seconds")
        self._long_poll = long_poll
        self.chain = chain
        self.batch_size = batch_size
        self._nonces: NonceAllocator | None = None
        if self._key is not None:
            path = Path(nonce_file) if nonce_file else Path(str(key_file) + ".nonce")
            self._nonces = NonceAllocator(path)
        self._outbox = Outbox(max_pending, spool_file)
        self._scanned: int | None = None  # the highest block confirm_committed has read

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Open the HTTP session; with a key file and no ``chain=``, ask a
        node for the chain id."""
        self._open_session()
        if self._key is not None and self.chain is None:
            try:
                st = await self.status()
            except BaseException:
                await self._close_session()  # no node answered: nothing left open
                raise
            self.chain = st["chain"]
            self._scanned = int(st["height"])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session and the spool (kept envelopes stay in it)."""
        await self._close_session()
        self._outbox.close()

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
        """Build, canonicalise and sign one record with a fresh nonce; send
        nothing.  Returns the envelope (``.envelope_bytes``, ``.id``).

        Raises :class:`InvalidRecord` (with the ledger's error code, e.g.
        ``bad_encoding`` for a float or a non-string ``origin`` value,
        ``too_large`` beyond 8 KiB) for a record no node would accept,
        :class:`NonceFileError` if the nonce file cannot be written, and
        :class:`LedgerClientError` without a key file or a known chain."""
        record = self._record(kind=kind, origin=origin, body=body, parents=parents, ts=ts)
        assert self._key is not None  # _record checked it
        try:
            return sign_record(record, self._key.key)
        except LedgerError as exc:
            raise InvalidRecord(exc.code, exc.message) from exc

    def sign_batch(self, records: Sequence[RecordSpec]) -> list[Envelope]:
        """Build records as :meth:`sign` does and sign them with **one**
        signature (PROTOCOL §2, batch envelopes): each envelope carries the
        batch signature and its record's path to the batch root, and is
        proven and verified on its own like any other.  2..4096 records (one
        record is signed as by :meth:`sign`).  Raises as :meth:`sign`."""
        built = [self._record(**_record_spec(n, r)) for n, r in enumerate(records)]
        assert self._key is not None  # _record checked it
        try:
            if len(built) == 1:
                return [sign_record(built[0], self._key.key)]
            return list(sign_batch(built, self._key.key))
        except LedgerError as exc:
            raise InvalidRecord(exc.code, exc.message) from exc
        except ValueError as exc:  # more than MAX_BATCH_SIZE, or a record twice
            raise InvalidArgument(str(exc)) from None

    def _record(
        self,
        *,
        kind: str,
        origin: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        parents: Sequence[str | bytes] = (),
        ts: int | None = None,
    ) -> Record:
        """A new record with a fresh nonce (see :meth:`sign`)."""
        if self._key is None or self._nonces is None:
            raise LedgerClientError("a key_file is needed to sign records")
        if self.chain is None:
            raise LedgerClientError("chain id unknown: enter the client context or pass chain=")
        try:
            parent_ids = [p if isinstance(p, bytes) else from_hex(p, length=32, what="parent") for p in parents]
            nonce = self._nonces.next()
            return make_record(
                chain=self.chain,
                submitter=self._key.pubkey,
                nonce=nonce,
                ts=int(time.time() * 1000) if ts is None else ts,
                kind=kind,
                origin=origin,
                body=body,
                parents=parent_ids,
            )
        except LedgerError as exc:
            raise InvalidRecord(exc.code, exc.message) from exc
        except OSError as exc:
            raise NonceFileError(f"cannot reserve nonces in {self._nonces.path}: {exc}") from exc

    async def submit_envelopes(self, envelopes: Sequence[bytes]) -> list[SubmitResult]:
        """POST already-signed envelopes (MessagePack, in batches); one result
        each, in order: ``{"id", "status"}`` or ``{"error", "message"}`` for
        an envelope refused for good.  Passing refusals (``rate_limited``,
        ``unavailable``, failed requests) are retried with the same bytes on
        the next node, with backoff; if retries run out this raises
        :class:`SubmitUnavailable` carrying the envelopes not accepted.  The
        envelopes are kept until seen committed (see ``pending``).  Raises
        :class:`InvalidRecord` for bytes that are not an envelope (nothing is
        sent then), :class:`InvalidArgument` for an empty list and
        :class:`OutboxFull` when the client keeps too many already."""
        if not envelopes:
            raise InvalidArgument("at least one envelope")
        kept = self._keep(envelopes)
        results, unaccepted, attempts = await self._submit_kept(kept)
        if unaccepted:
            raise SubmitUnavailable(results, [rid for rid, _ in kept], [kept[i][1] for i in unaccepted], attempts)
        return results

    async def submit(
        self,
        *,
        kind: str,
        origin: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        parents: Sequence[str | bytes] = (),
        ts: int | None = None,
    ) -> str:
        """Sign and submit one record; returns its id (hex) once a node has
        accepted it (it is not committed yet: see ``wait_committed``).

        ``origin``: at most 16 string-to-string entries; ``body``: metadata
        (no floats); ``parents``: ids (hex or 32 bytes) of earlier records;
        ``ts``: the record's time in ms (default: now).  Raises
        :class:`InvalidRecord` before anything is sent if the record cannot
        be encoded, :class:`LedgerAPIError` if it is refused for good,
        :class:`SubmitUnavailable` (with the signed envelope) if no node
        accepted it within the retries, :class:`OutboxFull` when the client
        keeps ``max_pending`` envelopes already."""
        self._outbox.room_for(1)
        envelope = self.sign(kind=kind, origin=origin, body=body, parents=parents, ts=ts)
        (result,) = await self.submit_envelopes([envelope.envelope_bytes])
        if "error" in result:
            raise LedgerAPIError(result["error"], result.get("message", ""))
        return to_hex(envelope.id)

    async def submit_many(self, records: Sequence[RecordSpec], *,
                          batch_sign: bool = True) -> list[str]:
        """Sign and submit many records (dicts with the keywords of
        :meth:`submit`: ``kind``, ``origin``, ``body``, ``parents``, ``ts``) in
        requests of ``batch_size``; returns their ids in order.  Passing
        refusals are retried with the same signed bytes.

        By default the records of each request are signed as one batch
        (:meth:`sign_batch`, one signature per request of at most 4096
        records); ``batch_sign=False`` signs each record on its own.

        Raises :class:`InvalidRecord` before anything is sent if a record has
        an unknown key or cannot be encoded; :class:`BatchSubmitError` if some
        were refused for good, :class:`SubmitUnavailable` if retries ran out
        (both carry the accepted ids and the unaccepted envelopes);
        :class:`OutboxFull` when the client cannot keep them all."""
        if not records:
            return []
        self._outbox.room_for(len(records))
        if batch_sign:
            step = min(self.batch_size, MAX_BATCH_SIZE)
            envelopes = [e for lo in range(0, len(records), step)
                         for e in self.sign_batch(records[lo:lo + step])]
        else:
            envelopes = [self.sign(**_record_spec(n, r)) for n, r in enumerate(records)]
        kept = self._keep([e.envelope_bytes for e in envelopes])
        ids = [rid for rid, _ in kept]
        results, left, attempts = await self._submit_kept(kept)
        unaccepted = [kept[i][1] for i in left]
        not_refused = set(left)
        refused = [(i, r.get("error", "?"), r.get("message", "")) for i, r in enumerate(results)
                   if "error" in r and i not in not_refused]
        if refused:
            first = refused[0]
            raise BatchSubmitError(results, ids, unaccepted, refused,
                                   f"{len(refused)} of {len(results)} envelopes refused; "
                                   f"first #{first[0]}: {first[1]}: {first[2]}")
        if unaccepted:
            raise SubmitUnavailable(results, ids, unaccepted, attempts)
        return ids

    # -- kept envelopes ----------------------------------------------------

    def pending(self) -> list[PendingEnvelope]:
        """Envelopes this client signed or sent and has not seen committed,
        oldest first, with their exact bytes."""
        return self._outbox.pending()

    @property
    def pending_count(self) -> int:
        """How many envelopes are kept (cheaper than ``len(pending())``)."""
        return len(self._outbox)

    @property
    def max_pending(self) -> int:
        """The bound on kept envelopes (``OutboxFull`` beyond it)."""
        return self._outbox.max_pending

    def forget(self, record_ids: Iterable[str]) -> None:
        """Stop keeping these envelopes (the caller takes them over)."""
        self._outbox.release(record_ids)

    async def resubmit_pending(self) -> list[SubmitResult]:
        """Send every kept envelope again (the same bytes, oldest first): a
        record a node lost is admitted again, one already committed is
        released.  Returns one result per envelope (as ``submit_envelopes``);
        raises :class:`SubmitUnavailable` if retries run out."""
        kept = [(p.id, p.envelope) for p in self._outbox.pending()]
        if not kept:
            return []
        results, unaccepted, attempts = await self._submit_kept(kept)
        if unaccepted:
            raise SubmitUnavailable(results, [rid for rid, _ in kept], [kept[i][1] for i in unaccepted], attempts)
        return results

    async def confirm_committed(self) -> int:
        """Release kept envelopes whose records are in blocks committed since
        the last call (reads those blocks; when there are many, resubmits the
        kept envelopes instead, which tells the same).  Returns how many are
        still kept.  Long-running submitters call this now and then so that
        ``max_pending`` is not reached.  Raises :class:`SubmitUnavailable`
        if a resubmission runs out of retries."""
        tip = int((await self.status())["height"])
        if len(self._outbox) and self._scanned is not None and tip - self._scanned <= SCAN_BLOCKS_MAX:
            for height in range(self._scanned + 1, tip + 1):
                self._outbox.release((await self.block(height)).get("records", []))
        elif len(self._outbox):
            await self.resubmit_pending()
        self._scanned = tip
        return len(self._outbox)

    async def wait_committed(self, record_id: str, timeout: float = 30.0) -> RecordDoc:
        """Wait until the record is committed; returns its record document.
        Each request asks the node to answer when the record commits (a long
        poll, ``wait_ms``), so the commit is learnt as it happens; a node
        that answers ``pending`` sooner is asked again after a backoff.

        If a node does not know a record whose envelope this client keeps
        (it may have accepted it and been killed before passing it on), the
        same envelope is sent again, to the next node first.  Raises
        :class:`CommitTimeout` after ``timeout`` seconds,
        :class:`LedgerAPIError` for a record unknown to the node (and not
        kept here) or refused for good on resubmission."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            try:
                budget = min(deadline - time.monotonic(), self._long_poll,
                             (self._timeout.total or LONG_POLL_S * 2) / 2)
                doc = await self.record(record_id, wait_ms=max(0, int(budget * 1000)))
                if doc.get("status") == "committed":
                    return doc
            except LedgerAPIError as exc:
                # not_committed: pending, which a node shows only to the record's
                # submitter and to auditors (protocol §11.4): wait on.
                if exc.code not in ("not_found", "not_committed"):
                    raise
                # Without a kept envelope: another node may not have received the gossip yet.
                envelope = self._outbox.get(record_id) if exc.code == "not_found" else None
                if envelope is not None:
                    after = self.nodes.index(exc.node) + 1 if exc.node in self.nodes else None
                    (result,), _, _ = await self._post_until_accepted([(record_id, envelope)], after)
                    if "error" in result and result.get("error") not in RETRYABLE_CODES:
                        raise LedgerAPIError(result["error"], result.get("message", "")) from None
            if time.monotonic() + delay > deadline:
                raise CommitTimeout(f"record {record_id} not committed within {timeout}s")
            await self._sleep(delay)
            delay = min(delay * 2, 0.5)


_RECORD_KEYS = frozenset(RecordSpec.__annotations__)


def _record_spec(index: int, record: Mapping[str, Any]) -> RecordSpec:
    """``record`` checked for keys ``sign`` does not take: a typo'd key is
    an :class:`InvalidRecord` naming it, not a TypeError from deep inside."""
    unknown = sorted(set(record) - _RECORD_KEYS)
    if unknown or "kind" not in record:
        what = f"unknown keys {unknown}" if unknown else "no 'kind'"
        raise InvalidRecord("bad_request", f"record #{index}: {what}; a record takes {sorted(_RECORD_KEYS)}")
    return cast(RecordSpec, record)
