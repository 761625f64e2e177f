"""The SDK's review calls (PROTOCOL §10.10): the review queue, one case, and
a reviewer's signed decision.  Mixed into ``LedgerClient``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .transport import NodeTransport
from .types import ReviewItemDoc, ReviewsDoc

DECISION_KIND = "risk.decision"
DECISIONS = ("approve", "reject", "escalate")


class ReviewCalls(NodeTransport):
    """Needs ``submit`` of ``LedgerClient``."""

    submit: Callable[..., Awaitable[str]]

    async def reviews(self, state: str = "open", *, limit: int = 50,
                      after: str | None = None) -> ReviewsDoc:
        """One page of the review queue (``GET /v1/reviews``): ``open``
        records (held or in review, oldest first) or ``decided`` ones; pass
        the answer's ``next`` as ``after`` for the next page."""
        params: dict[str, Any] = {"state": state, "limit": limit}
        if after is not None:
            params["after"] = after
        doc: ReviewsDoc = await self._request("GET", "/v1/reviews", params=params)
        return doc

    async def review_case(self, record_id: str) -> ReviewItemDoc:
        """One record as the queue shows it, open or decided (or neither):
        verdict, age, the alerts naming it and the decisions so far."""
        doc: ReviewsDoc = await self._request("GET", "/v1/reviews",
                                              params={"record": record_id})
        return doc["reviews"][0]

    async def decide(self, record_id: str, decision: str, *, note: str = "",
                     rests_on: Sequence[str] = (),
                     origin: Mapping[str, str] | None = None) -> str:
        """Submit this client's review decision on a held or in-review
        record: a ``risk.decision`` record naming it first, then the records
        in ``rests_on`` (the alerts on the case, so that the decision's
        trace holds the whole case).  ``decision`` is approve, reject or
        escalate; the key needs the role ``review``.  Returns the decision's
        id; whether it counted is its own verdict."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
        return await self.submit(kind=DECISION_KIND, origin=origin or {"system": "review"},
                                 body={"decision": decision, "note": note},
                                 parents=[record_id, *rests_on])
