"""The building blocks of node/openapi.py's description: the string and
integer shapes it reuses, and the helpers for responses, errors, GET routes
and query parameters."""

from __future__ import annotations

from typing import Any


HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
HEX64B = {"type": "string", "pattern": "^[0-9a-f]{128}$"}
B64 = {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$"}
UINT64_MAX = 2**64 - 1
UINT = {"type": "integer", "minimum": 0}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None,
         extra: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props,
                           "required": list(props) if required is None else required}
    if not extra:
        out["additionalProperties"] = False
    return out


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "bad input (bad_request, bad_encoding, too_many, ...)",
            401: "unauthenticated: no valid signature by a registered key (PROTOCOL §11; "
                 "WWW-Authenticate and Accept-Signature say what to sign); on the validators' "
                 "sync routes, unauthorized (WWW-Authenticate: Ledger-Validator)",
            403: "forbidden_role: the caller's roles do not grant the route (PROTOCOL §11.4); "
                 "on the sync routes, forbidden",
            404: "not_found",
            409: "not_committed", 413: "too_large", 415: "unsupported_media_type",
            429: "rate_limited (with Retry-After): in flight, or a client's limits",
            503: "unavailable"}
    # Any route may be refused while the node is saturated (429) or cannot
    # serve (503, e.g. damaged storage); 500 is a bug, still in the Error shape.
    out = {str(s): _json(_ref("Error"), text[s]) for s in sorted({*statuses, 429, 503})}
    # Every 429 says when to come back (PROTOCOL §11.5).
    out["429"]["headers"] = {"Retry-After": {
        "description": "whole seconds to wait before retrying this node", "required": True,
        "schema": {"type": "integer", "minimum": 1}}}
    out["500"] = _json(_ref("Error"), "internal error (a bug; logged)")
    return out


def _get(summary: str, ok: dict[str, Any], params: list[dict[str, Any]] | None = None,
         errors: tuple[int, ...] = (400, 429)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(*errors)}}
    if params:
        op["parameters"] = params
    return {"get": op}


def _query(name: str, description: str, minimum: int, maximum: int | None = None,
           required: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum,
                              "maximum": UINT64_MAX if maximum is None else maximum}
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}


ID_PARAM = {"name": "id", "in": "path", "required": True, "description": "record id (hex)",
            "schema": HEX32}
ENVELOPES_PARAM = {"name": "envelopes", "in": "query", "required": False,
                   "description": "1 to include the block's envelopes (base64)",
                   "schema": {"type": "string", "enum": ["0", "1", "true", "false"]}}
