"""The SDK's verdict calls (PROTOCOL §10.5-10.9): what the policy decided
about a record, waiting for a held record's final status, approving one,
and asking for a verdict before submitting.  Mixed into ``LedgerClient``."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ledger.encoding import to_b64
from ledger.records import Envelope

from .errors import CommitTimeout
from .transport import NodeTransport
from .types import RecordDoc, VerdictDoc

# Statuses a record stays in for good (held waits for its approvals, review
# for a reviewer's decision, PROTOCOL §10.10).
FINAL_STATUSES = frozenset({"allowed", "denied", "approved", "expired", "rejected"})
APPROVAL_KIND = "approval"


class VerdictCalls(NodeTransport):
    """Needs ``sign``, ``submit`` and ``wait_committed`` of ``LedgerClient``."""

    sign: Callable[..., Envelope]
    submit: Callable[..., Awaitable[str]]
    wait_committed: Callable[..., Awaitable[RecordDoc]]

    async def evaluate(self, *, kind: str, origin: Mapping[str, str] | None = None,
                       body: Mapping[str, Any] | None = None,
                       parents: Sequence[str | bytes] = (), ts: int | None = None
                       ) -> VerdictDoc:
        """The verdict this record would get now (``POST /v1/evaluate``),
        nothing submitted.  The record is signed to be judged, not kept:
        submitting it later signs it again (with a new nonce)."""
        envelope = self.sign(kind=kind, origin=origin, body=body, parents=parents, ts=ts)
        doc = await self._request(
            "POST", "/v1/evaluate", data=json.dumps({"envelope": to_b64(
                envelope.envelope_bytes)}).encode(),
            headers={"Content-Type": "application/json"})
        verdict: VerdictDoc = doc["verdict"]
        return verdict

    async def verdict(self, record_id: str, timeout: float = 30.0) -> VerdictDoc:
        """The committed record's verdict and status (waits for its commit)."""
        doc = await self.wait_committed(record_id, timeout)
        verdict = doc.get("verdict")
        if verdict is None:  # a node of a version before verdicts: no policy
            return {"outcome": "allow", "rule": "", "reason": "", "approvals": 0, "role": "",
                    "policy_version": 0, "deadline": 0, "status": "allowed"}
        return verdict

    async def submit_for_verdict(self, *, timeout: float = 30.0, **record: Any
                                 ) -> tuple[str, VerdictDoc]:
        """Submit one record (the keywords of ``submit``) and wait for its
        committed verdict: ``(id, verdict)``.  A denied record is committed
        too, with its verdict; ``status`` says where it stands."""
        record_id = await self.submit(**record)
        return record_id, await self.verdict(record_id, timeout)

    async def wait_final(self, record_id: str, timeout: float = 60.0) -> VerdictDoc:
        """Poll until the record's status is final: allowed, denied, or, for
        a held record or one in review, approved, expired or rejected (a
        transition committed in a block).  Raises :class:`CommitTimeout`
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            verdict = await self.verdict(record_id, max(deadline - time.monotonic(), 0.1))
            if verdict["status"] in FINAL_STATUSES:
                return verdict
            if time.monotonic() + delay > deadline:
                raise CommitTimeout(f"record {record_id} still {verdict['status']} after "
                                    f"{timeout}s")
            await self._sleep(delay)
            delay = min(delay * 2, 1.0)

    async def approve(self, record_id: str, *, origin: Mapping[str, str] | None = None
                      ) -> str:
        """Submit this client's approval of a held record: a record of kind
        ``approval`` naming it as its one parent (PROTOCOL §10.7).  Returns
        the approval's id; whether it counted is its own verdict."""
        return await self.submit(kind=APPROVAL_KIND, origin=origin or {"system": "approve"},
                                 body={}, parents=[record_id])
