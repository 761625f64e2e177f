"""The circuit breakers of a store: loaded from the persisted state and
brought up to the tip from the blocks it holds (PROTOCOL §12.3).

The breakers are part of the verdict state (ledger/approvals.py): the
breakers after block h - 1 decide the verdicts of block h.  A store keeps
them under ``schema.META_BREAKERS``, written with the policy state every
``POLICY_STATE_EVERY`` blocks or more (ledger/chain.py) and at a clean stop; :func:`derive_breakers`
loads that and applies every block after it, decoding only the envelopes
whose bytes hold ``risk.`` (the prefix of the kinds that move breakers), so
a restart replays at most a few hundred blocks' risk records.  A persisted
state that does not decode, or is past the tip, is dropped with a warning
and the breakers derived from block 1.

Blocks below a state-sync snapshot that back-fill has not written yet are
skipped: such a node derives its breakers from the blocks it holds, as it
does its policy state (ledger/policy_replay.py), and refuses blocks whose
verdicts it derives otherwise.  Back-fill's end drops the state so it is
derived again from every block (``ChainStore.reload_membership``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .breakers import Breakers, breakers_from_bytes
from .blocks import Header
from .records import Record, decode_committed_envelope
from .saved_state import load_saved


RISK_MARK = b"risk."


class BreakerSource(Protocol):
    """What :func:`derive_breakers` reads of a store (a ChainStore)."""

    @property
    def height(self) -> int: ...

    @property
    def history_gap(self) -> range: ...

    @property
    def membership(self) -> Any: ...

    def header(self, height: int) -> Header | None: ...

    def block_envelopes(self, height: int) -> list[bytes]: ...

    def breaker_state_bytes(self) -> bytes | None: ...


def persisted(chain: BreakerSource) -> Breakers | None:
    """The persisted breakers, if they load and are not past the tip."""
    return load_saved(chain.breaker_state_bytes(), breakers_from_bytes, chain.height,
                      "breaker state")


def apply_stored_block(breakers: Breakers, height: int, time_ms: int, raws: Sequence[bytes],
                       params: Mapping[str, Any],
                       lookup: Callable[[bytes], Record | None]) -> None:
    """Apply a stored block (its envelope bytes) to ``breakers``."""
    records = [decode_committed_envelope(raw).record for raw in raws if RISK_MARK in raw]
    block = {r.id: r for r in records}

    def find(record_id: bytes) -> Record | None:
        found = block.get(record_id)
        return found if found is not None else lookup(record_id)
    breakers.apply_block(height, time_ms, records, params, find)


def derive_breakers(chain: BreakerSource, lookup: Callable[[bytes], Record | None]) -> Breakers:
    """The breakers after ``chain``'s tip; ``lookup`` finds a committed record."""
    breakers = persisted(chain) or Breakers()
    gap = chain.history_gap
    for height in range(breakers.height + 1, chain.height + 1):
        header = chain.header(height)
        if height in gap or header is None:
            breakers.height = height  # not held: nothing to derive from
            if header is not None:
                breakers.time = header.time
            continue
        apply_stored_block(breakers, height, header.time, chain.block_envelopes(height),
                           chain.membership.at(height).params, lookup)
    return breakers
