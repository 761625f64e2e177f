"""``POST /v1/evaluate`` (PROTOCOL §10.9): the verdict an envelope would get
now, as the only record of the next block, without committing anything -
what a payment service asks before it executes a payment."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from ledger.blocks import HEADER_VERSION
from ledger.encoding import from_b64
from ledger.errors import BadEncoding, BadRequest, LedgerError, VerificationError
from ledger.membership import check_envelope
from ledger.records import decode_envelope
from ledger.verdicts import no_policy_verdict

from .api_common import JSON_TYPES, ApiBackend, UnsupportedMediaType, error_response, json_response


class EvaluateRoutes:
    def __init__(self, node: ApiBackend) -> None:
        self.node = node

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/evaluate", self.evaluate)]

    async def evaluate(self, request: web.Request) -> web.Response:
        if request.content_type not in JSON_TYPES:
            raise UnsupportedMediaType(f"Content-Type {request.content_type!r}: send "
                                       "application/json")
        try:
            doc: Any = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            raise BadEncoding("the body is not JSON") from None
        if not isinstance(doc, dict) or set(doc) != {"envelope"} \
                or not isinstance(doc["envelope"], str):
            raise BadRequest('send {"envelope": "<base64>"}')
        chain = self.node.chain
        height = chain.height + 1
        try:
            env = decode_envelope(from_b64(doc["envelope"], what="envelope"), cosigs=True)
            # Judged as admission would judge it for the next block (PROTOCOL
            # §2, §9.4): a record that would be refused has no verdict.
            check_envelope(chain.membership, env, height)
        except VerificationError as exc:
            return error_response(exc.code, exc.message, 400)
        tip = chain.tip()
        now = max(int(time.time() * 1000), tip.time if tip is not None else 0)
        try:
            block = chain.next_verdicts(height, now, [env])
        except LedgerError as exc:
            return error_response(exc.code, exc.message, 400)
        verdict = block.verdicts[0] if block.verdicts else no_policy_verdict(env.id)
        answer = verdict.to_json()
        answer["status"] = verdict.status.value
        return json_response({"id": env.id.hex(), "height": height, "time": now,
                              "header_version": block.version or HEADER_VERSION,
                              "verdict": answer})
