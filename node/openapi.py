"""The OpenAPI 3 description of the node's HTTP API (PROTOCOL §6).

Written by hand next to :mod:`node.api` and kept strict (closed error-code
enum, hex/base64 patterns, required fields) so that a fuzzer such as
schemathesis can check every answer against it.

The shapes and helpers it is built from are node/openapi_parts.py; the
checker tests hold answers to it with (``check``, ``response_schema``,
re-exported here) is node/openapi_check.py.
"""

from __future__ import annotations

from typing import Any

from .commit_waiters import MAX_WAIT_MS
from .openapi_check import (
    SchemaMismatch as SchemaMismatch,
    check as check,
    response_schema as response_schema,
)
from .openapi_parts import (
    B64,
    ENVELOPES_PARAM,
    HEX32,
    HEX64B,
    ID_PARAM,
    UINT,
    UINT64_MAX,
    _errors,
    _get,
    _html,
    _json,
    _obj,
    _query,
    _ref,
    _text,
)
from .trace import CHILDREN_DEFAULT, CHILDREN_MAX

ERROR_CODES = [
    "bad_request", "bad_encoding", "non_canonical", "bad_signature", "bad_timestamp",
    "unknown_submitter",
    "forbidden_role", "wrong_chain", "nonce_reused", "unknown_parent", "too_large", "too_many",
    "unsupported_media_type", "not_found", "not_committed", "rate_limited", "unavailable",
]
ERROR_CODES += ["unauthorized", "forbidden"]  # block sync is for validators (node/syncauth.py)
# Request signatures and roles (PROTOCOL §11, node/auth.py, node/access.py);
# forbidden_role, above, is also a request's 403.
ERROR_CODES += ["unauthenticated"]
# Refusals of one submitted envelope under governance (PROTOCOL §9.2-9.4):
# only inside a 202's results, never a request's status.
GOVERNANCE_CODES = [
    "duplicate_signature", "bad_governance", "not_a_member", "too_few_signatures",
    "proposal_expired", "conflicting_proposal", "too_few_validators",
    "unreachable_threshold", "key_rotated", "paused",
    "param_out_of_range",  # a gov.params.set outside ledger/params.py's bounds (PROTOCOL §9.3)
    "bad_risk_record",  # a risk.* record's kind, body or parents (PROTOCOL §12.2)
    "alert_flood",  # a monitor over breaker_monitor_alerts (PROTOCOL §12.3)
    "bad_policy",  # a gov.policy.set whose policy does not compile (PROTOCOL §10.2)
]


def _schemas(max_envelopes: int) -> dict[str, Any]:
    return {
        "Error": _obj({"error": {"type": "string", "enum": ERROR_CODES},
                       "message": {"type": "string"}}),
        # Items are not pattern-checked here: an undecodable item is answered
        # per envelope (bad_encoding) like any other bad envelope.
        "SubmitJson": _obj({"envelopes": {"type": "array", "items": {"type": "string"},
                                          "minItems": 1, "maxItems": max_envelopes}}),
        "SubmitMsgpack": {"type": "string", "format": "binary",
                          "description": "MessagePack array of envelope bytes (bin)"},
        "SubmitResult": {"oneOf": [
            _obj({"id": HEX32, "status": {"type": "string",
                                          "enum": ["accepted", "duplicate", "committed"]}},
                 extra=False),
            _obj({"error": {"type": "string", "enum": ERROR_CODES + GOVERNANCE_CODES},
                  "message": {"type": "string"}},
                 extra=False),
        ]},
        "SubmitResponse": _obj({"results": {"type": "array", "items": _ref("SubmitResult")}}),
        "RecordFields": _obj({
            "v": {"type": "integer"}, "chain": {"type": "string"},
            "submitter": HEX32, "nonce": UINT, "ts": UINT, "kind": {"type": "string"},
            "origin": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"type": "object"},
            "parents": {"type": "array", "items": HEX32},
        }),
        "Record": _obj({
            "id": HEX32,
            "status": {"type": "string", "enum": ["pending", "committed"]},
            "height": {"type": "integer", "minimum": 1},
            "leaf_index": UINT,
            "envelope": B64,
            "record": _ref("RecordFields"),
            "verdict": _ref("Verdict"),
        }, required=["id", "status", "envelope", "record"]),
        "Verdict": _obj({
                "outcome": {"type": "string", "enum": ["allow", "deny", "approve", "review"]},
                "rule": {"type": "string"}, "reason": {"type": "string"},
                "approvals": UINT, "role": {"type": "string"}, "policy_version": UINT,
                "deadline": UINT,
                "status": {"type": "string", "enum": ["allowed", "denied", "review", "held",
                                                      "approved", "expired", "rejected"]},
                "final_height": {"type": "integer", "minimum": 1},
                "approved_by": {"type": "array", "items": _obj({
                    "approver": HEX32, "record": HEX32})},
                "approvals_needed": UINT,
                "escalated_by": {"type": "array", "items": _obj({
                    "reviewer": HEX32, "record": HEX32})},
            }, required=["outcome", "rule", "reason", "approvals", "role", "policy_version",
                         "deadline", "status"]),
        "Reviews": _obj({
            "state": {"type": "string", "enum": ["open", "decided"]},
            "height": UINT, "time": UINT, "open": UINT,
            "reviews": {"type": "array", "items": _obj({
                "record": HEX32, "height": {"type": "integer", "minimum": 1},
                "kind": {"type": "string"}, "submitter": HEX32,
                "origin": {"type": "object", "additionalProperties": {"type": "string"}},
                "amount": {"type": "integer"}, "currency": {"type": "string"},
                "since": UINT, "age_ms": UINT, "decided_time": UINT,
                "verdict": _ref("Verdict"),
                "alerts": {"type": "array", "items": _obj({
                    "record": HEX32, "height": UINT, "monitor": HEX32, "score": UINT,
                    "detector": {"type": "string"}, "version": {"type": "string"}})},
                "decisions": {"type": "array", "items": _obj({
                    "record": HEX32, "height": UINT, "kind": {"type": "string"},
                    "decision": {"type": "string", "enum": ["approve", "reject", "escalate"]},
                    "reviewer": HEX32, "note": {"type": "string"},
                    "counted": {"type": "boolean"}, "reason": {"type": "string"}})},
                "children_truncated": {"type": "boolean"},
            }, required=["record"])},
            "next": {"type": ["string", "null"]},
        }),
        "Certificate": _obj({
            "height": {"type": "integer", "minimum": 1}, "round": UINT, "block": HEX32,
            "signatures": {"type": "array", "items": _obj({
                "validator": UINT, "sig": HEX64B})},
        }),
        "Bundle": _obj({
            "format": {"type": "string",
                       "enum": ["auditledger-proof/1", "auditledger-proof/2"]},
            "chain": {"type": "string"}, "record_id": HEX32, "leaf_index": UINT,
            "envelope": B64, "height": {"type": "integer", "minimum": 1}, "header": B64,
            "inclusion": {"type": "array", "items": HEX32},
            "certificate": _ref("Certificate"),
            # Version 2 only (PROTOCOL §9.6): version 1 bundles of governance records.
            "governance": {"type": "array", "items": {"type": "object"}},
            # The record's verdict proof (PROTOCOL §10.11), when its block is version 2.
            "verdict": _ref("VerdictProof"),
        }, required=["format", "chain", "record_id", "leaf_index", "envelope", "height",
                     "header", "inclusion", "certificate"]),
        "VerdictProof": _obj({
            "entry": B64, "size": UINT, "path": {"type": "array", "items": HEX32},
            "transition": _obj({
                "height": {"type": "integer", "minimum": 1}, "header": B64,
                "certificate": _ref("Certificate"), "entry": B64, "index": UINT,
                "size": UINT, "path": {"type": "array", "items": HEX32}}),
        }, required=["entry", "size", "path"]),
        "Membership": _obj({
            "height": {"type": "integer", "minimum": 1},
            "validators": {"type": "array", "items": _obj({
                "index": UINT, "name": {"type": "string"}, "pubkey": HEX32,
                "address": {"type": "string"}})},
            "submitters": {"type": "array", "items": _obj({
                "name": {"type": "string"}, "pubkey": HEX32,
                "roles": {"type": "array", "items": {"type": "string"}}})},
            "members": {"type": "array", "items": _obj({
                "name": {"type": "string"}, "pubkey": HEX32})},
            "threshold": UINT,
            "params": {"type": "object", "additionalProperties": UINT},
            "paused": {"type": "array", "items": _obj({
                "scope": {"type": "string"}, "value": {"type": "string"}})},
            "made_by": {"type": "object", "additionalProperties": HEX32},
        }),
        "Trace": _obj({
            "record": HEX32,
            "bundles": {"type": "array", "items": _ref("Bundle")},
            "edges": {"type": "array", "items": {"type": "array", "items": HEX32,
                                                 "minItems": 2, "maxItems": 2}},
            "children": {"type": "array", "items": HEX32},
            "children_next": HEX32,
            "frontier": {"type": "array", "items": HEX32},
            "truncated": {"type": "boolean"},
            # Records a breaker sent to review: the trip's entry and proof (PROTOCOL §6).
            "breakers": {"type": "array", "items": _obj({
                "record": HEX32, "height": {"type": "integer", "minimum": 1}, "header": B64,
                "certificate": _ref("Certificate"), "entry": B64, "index": UINT,
                "size": UINT, "path": {"type": "array", "items": HEX32}})},
        }, required=["record", "bundles", "edges", "children", "frontier"]),
        "HeaderFields": _obj({
            "v": {"type": "integer"}, "chain": {"type": "string"},
            "height": {"type": "integer", "minimum": 1}, "prev": HEX32, "time": UINT,
            "proposer": UINT, "tx_count": UINT, "tx_root": HEX32, "log_size": UINT,
            "log_root": HEX32, "validators": HEX32,
            "verdicts": HEX32,  # version 2 headers (PROTOCOL §10.6)
        }, required=["v", "chain", "height", "prev", "time", "proposer", "tx_count", "tx_root",
                     "log_size", "log_root", "validators"]),
        "Block": _obj({
            "height": {"type": "integer", "minimum": 1}, "hash": HEX32, "header": B64,
            "fields": _ref("HeaderFields"), "certificate": _ref("Certificate"),
            "records": {"type": "array", "items": HEX32},
            "envelopes": {"type": "array", "items": B64},
            # with envelopes=1, for a version 2 block: its verdict entries (§10.5)
            "verdicts": {"type": "array", "items": B64},
        }, required=["height", "hash", "header", "fields", "certificate", "records"]),
        "Consistency": _obj({"from": {"type": "integer", "minimum": 1},
                             "to": {"type": "integer", "minimum": 1},
                             "path": {"type": "array", "items": HEX32}}),
        "Peer": _obj({"index": UINT, "name": {"type": "string"}, "address": {"type": "string"},
                      "connected": {"type": "boolean"}, "inbound": {"type": "boolean"},
                      "queued": UINT,
                      "height": {"type": "integer", "minimum": 0, "nullable": True}},
                     required=["index", "name", "address", "connected"]),
        "Status": _obj({
            "chain": {"type": "string"}, "node": {"type": "string"},
            "validator": {"type": "integer", "minimum": 0, "nullable": True},
            "height": UINT, "log_size": UINT, "log_root": HEX32,
            "peers": {"type": "array", "items": _ref("Peer")}, "mempool": UINT,
            "round": UINT, "syncing": {"type": "boolean"},
        }, required=["chain", "node", "validator", "height", "log_size", "log_root", "peers",
                     "mempool"]),
        "Evidence": _obj({"evidence": {"type": "array", "items": {"type": "object"}}}),
        "Health": _obj({"ok": {"type": "boolean"}, "node": {"type": "string"}, "height": UINT,
                        "serving": {"type": "boolean"}, "synced": {"type": "boolean"},
                        "committing": {"type": "boolean"}, "peers_height": UINT,
                        "behind": UINT, "since_commit_ms": UINT,
                        "backfilling": _obj({"from": UINT, "to": UINT})},
                       required=["ok", "node", "height", "serving", "synced", "committing",
                                 "peers_height", "behind", "since_commit_ms"]),
    }


def openapi_spec(*, max_envelopes: int = 5000, max_trace_depth: int = 64) -> dict[str, Any]:
    submit = {
        "summary": f"Submit signed envelopes (1..{max_envelopes}); one result per envelope, "
                   "in order",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("SubmitJson")},
            "application/msgpack": {"schema": _ref("SubmitMsgpack")},
        }},
        "responses": {"202": _json(_ref("SubmitResponse"), "per-envelope results"),
                      **_errors(400, 413, 415, 429, 503)},
    }
    paths: dict[str, Any] = {
        "/v1/records": {"post": submit},
        "/v1/evaluate": {"post": {
            "summary": "The verdict an envelope would get now, as the only record of the "
                       "next block, without committing it (PROTOCOL §10.9)",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _obj({"envelope": B64}, extra=False)}}},
            "responses": {"200": _json(_obj({
                "id": HEX32, "height": {"type": "integer", "minimum": 1}, "time": UINT,
                "header_version": {"type": "integer", "enum": [1, 2]},
                "verdict": _ref("Verdict")}), "the verdict"),
                **_errors(400, 413, 415, 429)},
        }},
        "/v1/records/{id}": _get("A record, pending or committed; with wait_ms, answered when a "
                                 "record pending here commits, or after wait_ms",
                                 _json(_ref("Record"), "the record"),
                                 [ID_PARAM, _query("wait_ms", "wait up to this long for a pending "
                                                   "record's commit (long poll)", 0, MAX_WAIT_MS)],
                                 (400, 404, 429)),
        "/v1/records/{id}/proof": _get(
            "The proof bundle of a committed record: PROTOCOL §5, or §9.6 (version 2) "
            "when governance changed what judges the record; with format=tlog-proof a "
            "c2sp.org/tlog-proof@v1 file (PROTOCOL §6.1)",
            {"description": "proof bundle, or tlog-proof",
             "content": {"application/json": {"schema": _ref("Bundle")},
                         "text/plain": {"schema": {"type": "string"}}}},
            [ID_PARAM, _query("height", "prove against this later block", 1),
             {"name": "format", "in": "query", "required": False,
              "schema": {"type": "string", "enum": ["json", "tlog-proof"]}}],
            (400, 404, 409, 429)),
        "/checkpoint": _get(
            "The latest C2SP checkpoint signed by a quorum of validators (a signed note)",
            _text("signed note"), errors=(404,)),
        "/v1/checkpoints/{height}": _get(
            "The C2SP checkpoint of block height with the validator signatures held here",
            _text("signed note"),
            [{"name": "height", "in": "path", "required": True,
              "schema": {"type": "integer", "minimum": 1}}], (400, 404)),
        "/v1/checkpoint-keys": _get(
            "The validators' C2SP note verifier keys, derived from genesis, and the "
            "trusted witnesses' keys",
            _json({"type": "object"}, "origin, quorum, keys and witnesses"), errors=(404,)),
        "/v1/checkpoints/{height}/cosignatures": {"post": {
            "summary": "A trusted witness's C2SP tlog-cosignature/v1 of block height's "
                       "checkpoint (one signature line, PROTOCOL §13); kept and served in the "
                       "checkpoint notes",
            "parameters": [{"name": "height", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}}],
            "requestBody": {"required": True, "content": {
                "text/plain": {"schema": {"type": "string"}}}},
            "responses": {"200": _json({"type": "object"}, "height, witness and timestamp"),
                          **_errors(400, 404, 429)}}},
        "/v1/records/{id}/trace": _get(
            "The record and its ancestors (to depth, within the per-answer bounds), each "
            "with its bundle, and one page of its direct children",
            _json(_ref("Trace"), "lineage"),
            [ID_PARAM, _query("depth", "ancestor levels to include", 0, max_trace_depth),
             _query("children_limit", f"direct children per page (default "
                    f"{CHILDREN_DEFAULT})", 1, CHILDREN_MAX),
             {"name": "children_after", "in": "query", "required": False,
              "description": "page cursor: list the children whose id sorts after this id "
                             "(the children_next of the previous page)",
              "schema": HEX32}],
            (400, 404, 409, 429)),
        "/v1/blocks/latest": _get("The tip block", _json(_ref("Block"), "block"),
                                  [ENVELOPES_PARAM], (400, 404, 429)),
        "/v1/blocks/{height}": _get(
            "A block with its certificate", _json(_ref("Block"), "block"),
            [{"name": "height", "in": "path", "required": True,
              "schema": {"type": "integer", "minimum": 1, "maximum": UINT64_MAX}},
             ENVELOPES_PARAM],
            (400, 404, 429)),
        "/v1/consistency": _get(
            "RFC 9162 consistency proof between two log sizes",
            _json(_ref("Consistency"), "consistency path"),
            [_query("from", "old log size", 1, required=True),
             _query("to", "new log size (404 beyond the current log size)", 1, required=True)],
            (400, 404)),
        "/v1/status": _get("Node status", _json(_ref("Status"), "status")),
        "/v1/genesis": _get("The genesis document this node runs with, byte for byte as it "
                            "loaded it (PROTOCOL §7)",
                            _json({"type": "object"}, "genesis JSON"), errors=(503,)),
        "/explorer/": _get("The web explorer's page (read-only; verifies proofs in the "
                           "browser)", _html("the explorer page"), errors=(503,)),
        "/explorer/{name}": _get(
            "A file of the web explorer (ES modules, stylesheet)",
            {"description": "the file", "content": {
                t: {"schema": {"type": "string"}}
                for t in ("text/javascript", "text/css", "text/html")}},
            [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            (404,)),
        "/v1/membership": _get(
            "Validators, submitters, members, threshold, params and paused scopes in force "
            "at a height, and the governance records that made them (PROTOCOL §9.7)",
            _json(_ref("Membership"), "membership"),
            [_query("height", "a height up to the next block's (default: the next block's)",
                    1)],
            (400, 429)),
        "/v1/evidence": _get("Equivocation evidence seen by consensus",
                             _json(_ref("Evidence"), "evidence")),
        "/v1/breakers": _get(
            "Circuit breakers not closed, every transition and the alerts the flood limit left "
            "uncounted, derived from committed blocks up to the tip (PROTOCOL §12.3)",
            {"description": "breakers", "content": {"application/json": {"schema": _obj({
                "height": {"type": "integer", "minimum": 0},
                "time": {"type": "integer", "minimum": 0},
                "behind": {"type": "integer", "minimum": 0},
                "breakers": {"type": "array", "items": {"type": "object"}},
                "transitions": {"type": "array", "items": {"type": "object"}},
                "flooded_alerts": {"type": "integer", "minimum": 0},
            })}}}),
        "/v1/reviews": _get(
            "The review queue: records held for approvals or open for review (state=open), "
            "or decided (state=decided), with verdict, age, alerts and decisions "
            "(PROTOCOL §10.10)",
            _json(_ref("Reviews"), "one page of the queue"),
            [{"name": "state", "in": "query", "required": False,
              "schema": {"type": "string", "enum": ["open", "decided"]}},
             _query("limit", "records per page (default 50)", 1, 200),
             {"name": "after", "in": "query", "required": False,
              "description": "the previous page's next",
              "schema": {"type": "string", "pattern": "^([0-9]{1,20}|[0-9a-f]{64})$"}},
             {"name": "record", "in": "query", "required": False,
              "description": "one committed record instead of a page", "schema": HEX32}],
            (400, 404, 429, 503)),
        "/v1/stream": _get(
            "Committed blocks with their certificates as server-sent events, from a height "
            "on and then live as they commit (PROTOCOL §12.1)",
            {"description": "text/event-stream: one `block` event per block (id: its height; "
                            "data: {height, tip, hash, header, certificate, envelopes})",
             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
            [_query("from", "first height (default: Last-Event-ID + 1, else the next block)",
                    1)],
            (400, 429, 503)),
        "/v1/sync/blocks": _get(
            "Certified blocks with their envelopes, for catch-up between validators: "
            "validators only, signed with X-Ledger-Validator, X-Ledger-Timestamp and "
            "X-Ledger-Signature (PROTOCOL §6)",
            {"description": "a sequence of MessagePack values: {tip}, then one "
                            "{header, certificate, envelopes} per block",
             "content": {"application/msgpack": {"schema": {"type": "string",
                                                            "format": "binary"}}}},
            [_query("from", "first height", 1, required=True),
             _query("limit", "at most this many blocks", 1)],
            (400, 401, 403, 429)),
        "/v1/sync/snapshot": _get(
            "The tip's header, certificate and log frontier, and the governance records "
            "up to it with their proofs, for state sync between validators: validators "
            "only, signed as /v1/sync/blocks (PROTOCOL §6)",
            {"description": "one MessagePack map {header, certificate, log_size, tails"
                            "[, governance]}",
             "content": {"application/msgpack": {"schema": {"type": "string",
                                                            "format": "binary"}}}},
            [], (401, 403, 404, 429, 503)),
        "/health": _get("200 while the node serves (503 when it cannot); a field per "
                        "capability", _json(_ref("Health"), "serving"),
                        errors=(503,)),
        "/metrics": _get("Prometheus metrics",
                         {"description": "Prometheus text format",
                          "content": {"text/plain": {"schema": {"type": "string"}}}},
                         errors=(503,)),
        "/openapi.json": _get("This document",
                              _json({"type": "object"}, "OpenAPI 3 document"), errors=(503,)),
    }
    # Every route but /health, the explorer's static files (and the
    # validators' own, signed their way) is signed by a registered key and
    # may be refused 401 or 403 (PROTOCOL §11).
    for path, item in paths.items():
        if path not in ("/health", "/explorer/", "/explorer/{name}", "/v1/sync/blocks",
                        "/v1/sync/snapshot"):
            for op in item.values():
                op["responses"].update(_errors(401, 403))
                op["security"] = [{"RequestSignature": []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "auditledger node API", "version": "1",
                 "description": "PROTOCOL §6. Errors are {\"error\": code, \"message\": text}. "
                                "Validators also open WebSocket links to each other at "
                                "GET /v1/peer (signed MessagePack frames after a key "
                                "handshake); a plain GET there is answered 400 bad_request."},
        "x-internal-routes": {"/v1/peer": "validator-to-validator WebSocket transport"},
        "paths": paths,
        "components": {
            "schemas": _schemas(max_envelopes),
            # OpenAPI 3.0 has no scheme for RFC 9421; the header is named, the
            # rules are PROTOCOL §11.
            "securitySchemes": {"RequestSignature": {
                "type": "apiKey", "in": "header", "name": "Signature",
                "description": "RFC 9421 HTTP Message Signature by the caller's registered "
                               "Ed25519 key, with Signature-Input and, for a body, "
                               "Content-Digest (RFC 9530): PROTOCOL §11"}},
        },
    }
