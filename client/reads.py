"""The SDK's read calls: a record and its proofs and trace, and the chain
(status, blocks, consistency, membership).  Mixed into ``LedgerClient``
(client/sdk.py); reading a committed record releases its kept envelope
from the client's outbox."""

from __future__ import annotations

from typing import Any, cast

from .outbox import Outbox
from .trace import DEFAULT_MAX_CHILDREN, DEFAULT_MAX_RECORDS, follow_trace
from .transport import NodeTransport
from .types import BlockDoc, BundleDoc, ConsistencyDoc, RecordDoc, StatusDoc, TraceDoc


class ChainReads(NodeTransport):
    """Needs the ``_outbox`` of ``LedgerClient``."""

    _outbox: Outbox

    # -- records -----------------------------------------------------------

    async def record(self, record_id: str, wait_ms: int = 0) -> RecordDoc:
        """The record document: status ``pending`` or ``committed`` (then
        with ``height`` and ``leaf_index``), the envelope and the decoded
        record.  With ``wait_ms`` (at most 10,000) a node holding the record
        pending answers when it commits, or after ``wait_ms`` (protocol §6).
        Raises :class:`LedgerAPIError` (``not_found``) for a record the node
        does not know."""
        doc: RecordDoc = await self._request(
            "GET", f"/v1/records/{record_id}",
            params={"wait_ms": str(wait_ms)} if wait_ms else None)
        if doc.get("status") == "committed":
            self._outbox.release([record_id])
        return doc

    async def proof(self, record_id: str, height: int | None = None) -> BundleDoc:
        """The proof bundle of a committed record (protocol §5), against its
        own block or, with ``height``, a later one; check it with
        :meth:`verify_bundle`.  Raises :class:`LedgerAPIError`
        (``not_committed`` while pending, ``not_found``, ``bad_request`` for
        a bad ``height``)."""
        params = {"height": str(height)} if height is not None else None
        doc: BundleDoc = await self._request("GET", f"/v1/records/{record_id}/proof", params=params)
        self._outbox.release([record_id])  # a bundle exists only for a committed record
        return doc

    async def tlog_proof(self, record_id: str) -> bytes:
        """The record's inclusion in the node's latest cosigned checkpoint as
        a c2sp.org/tlog-proof@v1 file (protocol §6.1), unverified: check it
        with :func:`ledger.note.verify_tlog_proof`."""
        body: bytes = await self._request("GET", f"/v1/records/{record_id}/proof",
                                          params={"format": "tlog-proof"}, raw=True)
        return body

    async def trace(self, record_id: str, depth: int | None = None, *,
                    max_records: int = DEFAULT_MAX_RECORDS,
                    max_children: int = DEFAULT_MAX_CHILDREN) -> TraceDoc:
        """The record's lineage (every ancestor, or ``depth`` generations)
        with a proof bundle each, and its direct children: the node's pages
        and cut ancestries followed up to the caps (see client/trace.py).
        Raises :class:`LedgerAPIError` (``not_committed``, ``not_found``,
        ``bad_request``)."""
        return cast(TraceDoc, await follow_trace(self.trace_page, record_id, depth,
                                                 max_records=max_records,
                                                 max_children=max_children))

    async def trace_page(self, record_id: str, depth: int | None = None,
                         children_limit: int | None = None,
                         children_after: str | None = None) -> TraceDoc:
        """One trace answer as the node gives it (PROTOCOL §6 "The trace
        answer"), without following its pages."""
        params: dict[str, str] = {}
        if depth is not None:
            params["depth"] = str(depth)
        if children_limit is not None:
            params["children_limit"] = str(children_limit)
        if children_after is not None:
            params["children_after"] = children_after
        doc: TraceDoc = await self._request("GET", f"/v1/records/{record_id}/trace",
                                            params=params or None)
        return doc

    # -- chain -------------------------------------------------------------

    async def status(self) -> StatusDoc:
        """The node's status document: chain id, height, log size and root,
        peers, mempool."""
        doc: StatusDoc = await self._request("GET", "/v1/status")
        return doc

    async def block(self, height: int | str = "latest", *, envelopes: bool = False) -> BlockDoc:
        """A block (``height`` or ``"latest"``) with its certificate and
        record ids; ``envelopes=True`` also returns the block's envelopes
        (base64), which auditors need to recompute roots.  Raises
        :class:`LedgerAPIError` (``not_found`` beyond the tip)."""
        params = {"envelopes": "1"} if envelopes else None
        doc: BlockDoc = await self._request("GET", f"/v1/blocks/{height}", params=params)
        return doc

    async def consistency(self, old_size: int, new_size: int) -> ConsistencyDoc:
        """The RFC 9162 proof that the log of ``old_size`` leaves is a prefix
        of the one of ``new_size`` (an auditor checks it against the two
        certified headers with ``ledger.verify.verify_consistency_between``).  Raises
        :class:`LedgerAPIError` (``not_found`` beyond the log size,
        ``bad_request`` for ``old_size`` > ``new_size`` or 0)."""
        doc: ConsistencyDoc = await self._request(
            "GET", "/v1/consistency", params={"from": str(old_size), "to": str(new_size)}
        )
        return doc

    async def membership(self, height: int | None = None) -> dict[str, Any]:
        """``GET /v1/membership``: the validators, submitters, members,
        threshold and paused scopes in force at ``height`` (default: the
        next block's), with the governance records that made them
        (protocol §9).  The node's word: verify what matters with proofs."""
        params = {"height": str(height)} if height is not None else None
        doc: dict[str, Any] = await self._request("GET", "/v1/membership", params=params)
        return doc
