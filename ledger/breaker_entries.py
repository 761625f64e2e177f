"""Breaker transitions as verdict entries (PROTOCOL §10.5, §12.3).

The block whose records trip or close a circuit breaker commits that
transition: after its verdicts and its held records' transitions, its
entries hold one **breaker entry** per breaker transition of the block, in
the order the breakers (:mod:`ledger.breakers`) make them.  A breaker
entry is the canonical map ``{"records": [bin(32), ...], "scope": str,
"to": "open" | "closed", "value": str}``: the breaker, where it went, and
the records that moved it (the alerts that tripped it, at most 64, or the
one ``risk.breaker.close`` record).  Its Merkle leaf is ``H(0x00 ||
"auditledger/breaker/v1\\n" || bytes)``; the block's header (height, time)
says when.

Entries after the verdicts are told apart by their keys: a held record's
transition has three (``approvals``, ``record``, ``status``), a breaker
entry four.  Pure bytes; no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .encoding import canonical, decode, decode_exact_map, to_hex
from .errors import DecodeError, VerificationError
from .risk import BREAKER_SCOPES

BREAKER_DOMAIN = b"auditledger/breaker/v1\n"
BREAKER_KEYS = frozenset({"records", "scope", "to", "value"})
BREAKER_TO = ("open", "closed")
MAX_RECORDS = 64     # ledger.breakers.MAX_TRIPPED_BY: the alerts a trip names
ID_LEN = 32


class BreakerEntryError(VerificationError):
    """Bytes that are not a breaker entry, or a breaker proof that fails."""

    step = "breaker"


@dataclass(frozen=True, slots=True)
class BreakerEntry:
    scope: str
    value: str
    to: str                      # "open" or "closed"
    records: tuple[bytes, ...]   # the alerts that tripped it, or the close record

    def to_bytes(self) -> bytes:
        return canonical({"records": list(self.records), "scope": self.scope, "to": self.to,
                          "value": self.value})

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "value": self.value, "to": self.to,
                "records": [to_hex(r) for r in self.records]}


def decode_breaker_entry(data: bytes) -> BreakerEntry:
    """Canonical breaker entry bytes; raises :class:`BreakerEntryError` for anything else."""
    doc = decode_exact_map(data, BREAKER_KEYS, "breaker entry", BreakerEntryError)
    if doc["scope"] not in BREAKER_SCOPES:
        raise BreakerEntryError(f"breaker entry scope {doc['scope']!r} is not a breaker scope")
    if doc["to"] not in BREAKER_TO:
        raise BreakerEntryError("breaker entry 'to' must be 'open' or 'closed'")
    value = doc["value"]
    if not isinstance(value, str) or not value:  # as long as the record's field
        raise BreakerEntryError("breaker entry value must be a non-empty string")
    records = doc["records"]
    if not isinstance(records, list) or not 1 <= len(records) <= MAX_RECORDS \
            or not all(isinstance(r, bytes) and len(r) == ID_LEN for r in records):
        raise BreakerEntryError(f"breaker entry records must be 1..{MAX_RECORDS} ids")
    if doc["to"] == "closed" and len(records) != 1:
        raise BreakerEntryError("a closing breaker entry names exactly its close record")
    return BreakerEntry(doc["scope"], value, doc["to"], tuple(records))


def is_breaker_entry(data: bytes) -> bool:
    """Whether entry bytes after a block's verdicts are a breaker entry (a
    map with the breaker keys) rather than a held record's transition."""
    try:
        doc = decode(data)
    except DecodeError:
        return False
    return isinstance(doc, dict) and set(doc) == BREAKER_KEYS
