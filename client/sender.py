"""The SDK's submit machinery: POSTing kept envelopes in batches, resending
the same bytes of those refused for a passing reason to the next node with
backoff, and settling the outbox from the results.  Mixed into
``LedgerClient`` (client/sdk.py), whose submit calls use it."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import msgpack

from ledger.encoding import to_hex
from ledger.errors import LedgerError
from ledger.records import decode_envelope

from .errors import InvalidRecord, LedgerAPIError
from .outbox import Outbox
from .transport import NodeTransport, Retry
from .types import SubmitResult

# Per-envelope refusals inside a 202 that another try (later, or elsewhere) can turn into an acceptance.
RETRYABLE_CODES = frozenset({"rate_limited", "unavailable"})
ACCEPTED = frozenset({"accepted", "duplicate", "committed"})


class EnvelopeSender(NodeTransport):
    """Needs the ``_outbox`` and ``batch_size`` of ``LedgerClient``."""

    _outbox: Outbox
    batch_size: int

    async def _post_until_accepted(
        self, envelopes: list[tuple[str, bytes]], first_node: int | None = None
    ) -> tuple[list[SubmitResult], list[int], list[str]]:
        """POST one batch (at most MAX_BATCH), resending the same bytes of
        each envelope refused for a passing reason, each try to the next node,
        with backoff.  Returns one result per envelope, the indexes still not
        accepted when the retries ran out, and what went wrong on each try."""
        results: list[SubmitResult] = [{} for _ in envelopes]
        todo = list(range(len(envelopes)))
        attempts: list[str] = []
        start = self._preferred if first_node is None else first_node % len(self.nodes)
        for attempt in range(self.retries + 1):
            index = (start + attempt) % len(self.nodes)
            payload = msgpack.packb([envelopes[i][1] for i in todo], use_bin_type=True)
            try:
                doc = await self._call(index, "POST", "/v1/records", data=payload,
                                       headers={"Content-Type": "application/msgpack"}, ok_statuses=(202,))
                got = doc.get("results") if isinstance(doc, dict) else None
                if not isinstance(got, list) or len(got) != len(todo):
                    raise Retry(f"{self.nodes[index]}: results do not match the envelopes sent")
            except Retry as exc:
                attempts.append(str(exc))
                for i in todo:
                    results[i] = {"error": "unavailable", "message": str(exc)}
            except LedgerAPIError as exc:
                # The whole request was refused for good (4xx): so is each envelope.
                for i in todo:
                    results[i] = {"error": exc.code, "message": exc.message}
                todo = []
            else:
                self._preferred = index
                retry = []
                for i, result in zip(todo, got):
                    results[i] = result
                    if self._worth_retrying(result, envelopes[i][1]):
                        retry.append(i)
                if retry:
                    attempts.append(f"{self.nodes[index]}: {len(retry)} of {len(todo)} envelopes refused "
                                    f"({results[retry[0]].get('error')})")
                todo = retry
            if not todo:
                break
            if attempt < self.retries:
                await self._sleep(self._backoff(attempt))
        self._settle(envelopes, results, set(todo))
        return results, todo, attempts

    def _worth_retrying(self, result: Mapping[str, Any], envelope: bytes) -> bool:
        code = result.get("error")
        if code in RETRYABLE_CODES:
            return True
        if code == "unknown_parent":
            # A parent this client is still sending (refused in the same
            # batch, or not yet gossiped to this node) arrives on a later try.
            try:
                parents = decode_envelope(envelope, cosigs=True).record.parents
            except LedgerError:
                return False
            return any(to_hex(p) in self._outbox for p in parents)
        return False

    def _settle(self, envelopes: list[tuple[str, bytes]], results: list[SubmitResult], left: set[int]) -> None:
        """Update the outbox from final results: committed and refused-for-good
        envelopes are released, accepted ones stay until seen committed."""
        release, accepted = [], []
        for i, ((rid, _), result) in enumerate(zip(envelopes, results)):
            if i in left:
                continue
            status = result.get("status")
            if status == "committed" or "error" in result:
                release.append(rid)
            elif status in ACCEPTED:
                accepted.append(rid)
        self._outbox.mark_accepted(accepted)
        self._outbox.release(release)

    async def _submit_kept(
        self, envelopes: list[tuple[str, bytes]], first_node: int | None = None
    ) -> tuple[list[SubmitResult], list[int], list[str]]:
        """Submit kept envelopes in batches of ``batch_size``.  Stops at the
        first batch whose retries run out: that batch's and every later
        batch's envelopes are returned (as indexes) as not accepted; they
        stay kept."""
        results: list[SubmitResult] = []
        unaccepted: list[int] = []
        attempts: list[str] = []
        for lo in range(0, len(envelopes), self.batch_size):
            chunk = envelopes[lo: lo + self.batch_size]
            if unaccepted:
                results.extend({"error": "unavailable", "message": "not sent: an earlier batch failed"}
                               for _ in chunk)
                unaccepted.extend(range(lo, lo + len(chunk)))
                continue
            got, left, tries = await self._post_until_accepted(chunk, first_node)
            results.extend(got)
            attempts.extend(tries)
            unaccepted.extend(lo + i for i in left)
        return results, unaccepted, attempts

    def _keep(self, envelopes: Sequence[bytes]) -> list[tuple[str, bytes]]:
        pairs = []
        for n, raw in enumerate(envelopes):
            try:
                pairs.append((to_hex(decode_envelope(bytes(raw), cosigs=True).id), bytes(raw)))
            except LedgerError as exc:
                raise InvalidRecord(exc.code, f"envelope #{n} cannot be decoded: {exc}") from None
        self._outbox.keep(pairs)
        return pairs
