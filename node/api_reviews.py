"""``GET /v1/reviews`` (PROTOCOL §6, §10.10): the review queue - records
held for approvals or open for review, and those decided - with their
verdicts, age, the alerts naming them and the decisions so far."""

from __future__ import annotations

from aiohttp import web

from ledger.errors import BadRequest
from ledger.statesync import below_snapshot

from .api_common import ApiBackend, json_response, parse_id, parse_uint
from .reviews import LIMIT_DEFAULT, LIMIT_MAX, STATES, parse_after, review_one, review_page


class ReviewRoutes:
    def __init__(self, node: ApiBackend) -> None:
        self.node = node

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/reviews", self.get_reviews)]

    async def get_reviews(self, request: web.Request) -> web.Response:
        chain = self.node.chain
        if chain.history_gap:  # records below a state-sync snapshot are not here yet
            raise below_snapshot(chain.history_gap, "the records the queue names")
        if "record" in request.query:
            return json_response(review_one(chain, parse_id(request.query["record"])))
        state = request.query.get("state", "open")
        if state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)}")
        limit = parse_uint(request, "limit", default=LIMIT_DEFAULT, minimum=1,
                           maximum=LIMIT_MAX)
        after = parse_after(state, request.query.get("after"))
        return json_response(review_page(chain, state, limit, after))
