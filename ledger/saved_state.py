"""State derived from committed blocks and saved beside them (the policy
state, the circuit breakers): a restart loads it instead of replaying from
block 1.  One rule for both: a saved state that does not decode, or is
past the tip, is dropped with a warning and derived again from block 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from .errors import StorageCorruption

log = logging.getLogger(__name__)


class AtHeight(Protocol):
    @property
    def height(self) -> int: ...


S = TypeVar("S", bound=AtHeight)


def load_saved(raw: bytes | None, decode: Callable[[bytes], S], tip: int,
               what: str) -> S | None:
    """``decode(raw)`` if it loads and is at or below ``tip``, else None
    (logged, naming ``what``)."""
    if raw is None:
        return None
    try:
        state = decode(raw)
    except StorageCorruption as exc:
        log.warning("saved %s dropped (%s): deriving it from block 1", what, exc)
        return None
    if state.height > tip:
        log.warning("saved %s is at height %d, past the tip %d: deriving it from block 1",
                    what, state.height, tip)
        return None
    return state
