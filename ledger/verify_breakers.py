"""Offline verification of a breaker trip in a trace (PROTOCOL §6 "The
trace answer", §10.5, §12.3).

A trace answer carries, for each record in it that a breaker sent to
review, ``breakers[]``: ``{"record", "height", "header", "certificate",
"entry", "index", "size", "path"}``, the breaker entry that opened the
breaker and its RFC 9162 path to the verdict root of the block that
committed it.  The alerts the entry names are in the trace too, each with
its own bundle.  Given those verified bundles (by record id) and the
genesis file, :func:`check_breaker_proof` runs :data:`BREAKER_STEPS`, each
failure a :class:`~ledger.breaker_entries.BreakerEntryError` naming its
step (a malformed object fails ``bundle``):

1. ``breaker``: the record is in the trace, its bundle proves the verdict
   ``review``, reason ``breaker_open``, whose rule names this breaker
   (one of the record's own scopes); the entry decodes, is a trip
   (``to`` open) and lies in a block below the record's.
2. ``breaker_alerts``: every alert the entry names is in the trace, a
   ``risk.alert`` in a block at or below the trip's, and the last one - the
   alert that tripped it - in the trip's block itself (same header hash);
   each alert whose flagged record is in the trace flags a record in the
   breaker's scope.
3. ``breaker_header``: the header decodes, names the chain, carries the
   validator set in force at its height (that of the last alert's bundle),
   has the height given and is version 2.
4. ``breaker_certificate``: a quorum of that set signed it.
5. ``breaker_inclusion``: ``tx_count <= index < size`` and the entry's leaf
   ``H(0x00 || "auditledger/breaker/v1\\n" || entry)`` is at ``index`` of
   the header's verdict root.

What a valid proof shows: the validators committed that the breaker
opened in that block, naming those alerts.  Not checked offline: the rule
in force (k, m, window, cooldown: governance params), and that no close
came between the trip and the record (nothing proves an absence).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .blocks import HEADER_VERSION_VERDICTS, Header
from .breaker_entries import BREAKER_DOMAIN, BreakerEntry, BreakerEntryError, decode_breaker_entry
from .crypto import digest_equal
from .errors import BundleFormatError, VerificationError
from .genesis import Genesis
from .merkle import leaf_hash
from .proofs_breakers import breaker_of
from .risk import ALERT
from .breakers import scopes_of
from .verdicts import check_entry
from .verify import VerifiedBundle, check_certificate, check_header, parse_certificate
from .verify_verdicts import TRANSITION_PROOF_KEYS, _b64, _exact, _path, _uint

BREAKER_PROOF_KEYS = TRANSITION_PROOF_KEYS | {"record"}
BREAKER_STEPS: tuple[str, ...] = (
    "breaker", "breaker_alerts", "breaker_header", "breaker_certificate", "breaker_inclusion")
T = TypeVar("T")


class AlertNotInTrace(BreakerEntryError):
    """An alert the trip names has no bundle in the trace (beyond a depth, or
    not fetched): the trip cannot be checked, which says nothing against it."""

    step = "breaker_alerts"


@dataclass(frozen=True)
class VerifiedTrip:
    """A trip the trace proves: the record in review, the committed entry, its block."""

    record: bytes
    entry: BreakerEntry
    header: Header
    index: int

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record.hex(), "height": self.header.height,
                "time": self.header.time, "entry_index": self.index, **self.entry.to_json()}


def _step(step: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except VerificationError as exc:
        raise BreakerEntryError(f"{exc}", step=step) from None


def _id(doc: Mapping[str, Any]) -> bytes:
    value = doc["record"]
    if not isinstance(value, str) or len(value) != 64 or value != value.lower():
        raise BundleFormatError("breaker 'record' must be 64 lowercase hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BundleFormatError("breaker 'record' must be 64 lowercase hex digits") from None


def check_breaker_proof(doc: Any, hops: Mapping[bytes, VerifiedBundle],
                        genesis: Genesis) -> VerifiedTrip:
    """:data:`BREAKER_STEPS` for one item of a trace's ``breakers``;
    ``hops`` are the trace's verified bundles by record id."""
    d = _exact(doc, BREAKER_PROOF_KEYS, "breaker")
    record_id, height = _id(d), _uint(d, "height", "breaker")
    header_bytes, entry_bytes = _b64(d, "header", "breaker"), _b64(d, "entry", "breaker")
    index, size = _uint(d, "index", "breaker"), _uint(d, "size", "breaker")
    path, certificate = _path(d["path"], "breaker path"), parse_certificate(d["certificate"])

    held = hops.get(record_id)
    if held is None:
        raise BreakerEntryError(f"record {record_id.hex()} is not in the trace")
    entry = decode_breaker_entry(entry_bytes)
    proven = held.verdict
    if proven is None or breaker_of(proven.verdict, held.envelope.record) \
            != (entry.scope, entry.value):
        raise BreakerEntryError(f"record {record_id.hex()[:16]}'s proven verdict is not a review "
                                f"by breaker {entry.scope}:{entry.value}")
    if entry.to != "open":
        raise BreakerEntryError("the entry closes the breaker: a trip opens it")
    if height >= held.height:
        raise BreakerEntryError(f"trip at height {height}, not below the record's block "
                                f"{held.height}")

    alerts = [hops.get(a) for a in entry.records]
    last = alerts[-1]
    for alert_id, alert in zip(entry.records, alerts):
        if alert is None:
            raise AlertNotInTrace(f"alert {alert_id.hex()[:16]} is not in the trace")
        record = alert.envelope.record
        if record.kind != ALERT or alert.height > height:
            raise BreakerEntryError(f"record {alert_id.hex()[:16]} is not an alert committed by "
                                    f"height {height}", step="breaker_alerts")
        flagged = hops.get(record.parents[0]) if record.parents else None
        if flagged is not None and (entry.scope, entry.value) \
                not in scopes_of(flagged.envelope.record):
            raise BreakerEntryError(f"alert {alert_id.hex()[:16]} flags a record outside "
                                    f"{entry.scope}:{entry.value}", step="breaker_alerts")
    assert last is not None
    if last.height != height:
        raise BreakerEntryError(f"the tripping alert is in block {last.height}, not the trip's "
                                f"block {height}", step="breaker_alerts")

    epoch = last.epoch or genesis
    header = _step("breaker_header", lambda: check_header(header_bytes, epoch))
    if header.height != height or not digest_equal(header.hash, last.header.hash):
        raise BreakerEntryError(f"the header is not block {height} of the tripping alert",
                                step="breaker_header")
    if header.version != HEADER_VERSION_VERDICTS or header.verdicts is None:
        raise BreakerEntryError(f"block {height} is version {header.version}: it commits no "
                                "breaker entries", step="breaker_header")
    _step("breaker_certificate", lambda: check_certificate(certificate, header, epoch))
    if not header.tx_count <= index < size:
        raise BreakerEntryError(f"entry {index} of block {height} is not after its "
                                f"{header.tx_count} verdicts", step="breaker_inclusion")
    verdicts = header.verdicts
    _step("breaker_inclusion", lambda: check_entry(
        index, size, leaf_hash(BREAKER_DOMAIN + entry_bytes), path, verdicts,
        "breaker_inclusion"))
    return VerifiedTrip(record_id, entry, header, index)
