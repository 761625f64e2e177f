"""The proof of a breaker's trip, for a record the breaker sent to review
(PROTOCOL §6 "The trace answer", §10.5, §12.3).

A record whose verdict is ``review`` by rule ``breaker:<scope>:<value>``
was judged with that breaker open.  The trip that opened it is a breaker
entry (:mod:`ledger.breaker_entries`) of the block whose alert tripped it:
:func:`trip_in_force` finds that transition among the breakers' history,
:func:`breaker_proof` proves its entry against that block's certified
verdict root.  Verification is :mod:`ledger.verify_breakers`.

Pure functions over a chain store.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from .blocks import HEADER_VERSION_VERDICTS
from .breakers import REASON_OPEN, RULE_PREFIX, Transition, scopes_of
from .encoding import to_b64
from .policy import Outcome
from .proofs_verdicts import VerdictSource, block_tree, entry_proof
from .records import Record
from .verdicts import MAX_TEXT, Verdict


def breaker_of(verdict: Verdict, record: Record) -> tuple[str, str] | None:
    """The ``(scope, value)`` of the breaker that sent ``record`` to review,
    or None when its verdict is not a breaker's (PROTOCOL §10.5: the rule
    names it, cut at 256 characters; the record's own scopes tell which)."""
    if verdict.outcome != Outcome.REVIEW or verdict.reason != REASON_OPEN \
            or not verdict.rule.startswith(RULE_PREFIX):
        return None
    for scope, value in scopes_of(record):
        if (RULE_PREFIX + scope + ":" + value)[:MAX_TEXT] == verdict.rule:
            return scope, value
    return None


def trip_in_force(transitions: Sequence[Transition], scope: str, value: str,
                  before: int) -> Transition | None:
    """The last transition to ``open`` of breaker ``(scope, value)`` in a
    block below height ``before`` (``transitions`` in height order)."""
    end = bisect_left(transitions, before, key=lambda t: t.height)
    for t in reversed(transitions[:end]):
        if t.scope == scope and t.value == value:
            return t if t.to == "open" else None
    return None


def breaker_proof(chain: VerdictSource, trip: Transition) -> dict[str, Any] | None:
    """``{"height", "header", "certificate", "entry", "index", "size",
    "path"}``: the trip's entry and its path to the verdict root of its
    block; None when that block does not commit it (a trip in a block built
    before breaker entries existed, PROTOCOL §8)."""
    header = chain.header(trip.height)
    certificate = chain.certificate(trip.height)
    if header is None or certificate is None or header.version != HEADER_VERSION_VERDICTS:
        return None
    tree = block_tree(chain, header)
    entry = trip.entry().to_bytes()
    for index in range(header.tx_count, len(tree.entries)):
        if tree.entries[index] == entry:
            return {"height": header.height, "header": to_b64(header.header_bytes),
                    "certificate": certificate.to_json(), "index": index,
                    **entry_proof(tree, index, header.height)}
    return None
