"""The offline scoring input (docs/monitor.md, "Input"): one JSON object a
line, ``{"id", "height", "time", "record"}``, with ``record`` decoded as
``GET /v1/records/{id}`` answers it (``ledger.records.Record.to_json``).

:func:`parse_line` turns a line into an :class:`Event` holding just what the
detectors read, or raises :class:`MalformedLine` naming what is wrong: a bad
line is an expected input, counted and skipped by the caller, never a crash.
Record fields beyond the structural ones stay optional (issue 25 item 3): a
record without ``origin.account`` or ``body.amount`` is still an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import orjson

from ledger.records import Record

KINDS = ("payment", "refund", "settlement", "transfer", "payout")
MAX_LINE_BYTES = 64 * 1024


class MalformedLine(ValueError):
    """An input line that is not a scoring event; the message says why."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    height: int
    time: int  # event time, ms since the epoch: the line's "time"
    kind: str
    submitter: str
    account: str | None
    country: str | None
    system: str | None
    channel: str | None
    device: str | None
    amount: int | None  # integer minor units; None when absent or not an integer
    currency: str | None
    counterparty: str | None
    merchant_category: str | None
    parents: tuple[str, ...]


def _opt_str(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) and value else None


def parse_line(line: bytes | str) -> Event:
    """One input line as an :class:`Event` (raises :class:`MalformedLine`)."""
    if len(line) > MAX_LINE_BYTES:
        raise MalformedLine(f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise MalformedLine(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedLine("not a JSON object")
    rid, height, time, record = value.get("id"), value.get("height"), value.get("time"), value.get("record")
    if not isinstance(rid, str) or not rid:
        raise MalformedLine("id missing or not a string")
    if type(height) is not int or height < 0:
        raise MalformedLine("height missing or not a non-negative integer")
    if type(time) is not int or time < 0:
        raise MalformedLine("time missing or not a non-negative integer (ms since the epoch)")
    if not isinstance(record, dict):
        raise MalformedLine("record missing or not an object")
    kind = record.get("kind")
    if not isinstance(kind, str) or not kind:
        raise MalformedLine("record.kind missing or not a string")
    origin = record.get("origin", {})
    body = record.get("body", {})
    parents = record.get("parents", [])
    if not isinstance(origin, dict):
        raise MalformedLine("record.origin is not an object")
    if not isinstance(body, dict):
        raise MalformedLine("record.body is not an object")
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise MalformedLine("record.parents is not a list of ids")
    submitter = record.get("submitter", "")
    return _event(rid, height, time, kind, submitter if isinstance(submitter, str) else "",
                  origin, body, tuple(parents))


def _event(rid: str, height: int, time: int, kind: str, submitter: str, origin: Mapping[str, Any],
           body: Mapping[str, Any], parents: tuple[str, ...]) -> Event:
    amount = body.get("amount")
    return Event(
        id=rid, height=height, time=time, kind=kind, submitter=submitter,
        account=_opt_str(origin, "account"), country=_opt_str(origin, "country"),
        system=_opt_str(origin, "system"), channel=_opt_str(origin, "channel"),
        device=_opt_str(origin, "device"),
        amount=amount if type(amount) is int else None,
        currency=_opt_str(body, "currency"), counterparty=_opt_str(body, "counterparty"),
        merchant_category=_opt_str(body, "merchant_category"),
        parents=parents,
    )


def event_from_record(record: Record, height: int) -> Event:
    """A committed record as the detectors see it (``ledger-monitor follow``):
    the same fields :func:`parse_line` reads from its JSON form, the
    record's ``ts`` as the event time."""
    return _event(record.id.hex(), height, record.ts, record.kind, record.submitter.hex(),
                  record.origin, record.body, tuple(p.hex() for p in record.parents))
