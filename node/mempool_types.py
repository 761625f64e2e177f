"""What the mempool (:mod:`node.mempool`) reads and answers: the chain store
as admission sees it (:class:`ChainView`), the outcome of admitting one
envelope (:class:`Admission`), and a nonce index answer kept with the height
it was read at (:class:`ChainNonce`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from ledger.breakers import Breakers
from ledger.errors import LedgerError
from ledger.membership import Membership


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class ChainView(Protocol):
    """What admission needs from the chain store."""

    def record_location(self, record_id: bytes) -> tuple[int, int] | None: ...

    def id_for_nonce(self, submitter: bytes, nonce: int) -> bytes | None: ...

    def nonce_holders(self, keys: Iterable[tuple[bytes, int]]
                      ) -> dict[tuple[bytes, int], bytes]: ...

    def committed_leaf_hash(self, record_id: bytes) -> bytes | None: ...

    @property
    def height(self) -> int: ...

    @property
    def membership(self) -> Membership:
        """Genesis plus the committed governance records (PROTOCOL §9)."""

    @property
    def breakers(self) -> Breakers:
        """The circuit breakers after the tip (PROTOCOL §12.3)."""


class Admission(NamedTuple):
    """The outcome for one submitted envelope: a status or an error.

    A named tuple, not a frozen dataclass: one is built per record admitted,
    and the dataclass's ``__init__`` sets each field through
    ``object.__setattr__``."""

    id: bytes | None
    status: str | None = None  # "accepted" | "duplicate" | "committed"
    error: LedgerError | None = None


class ChainNonce(NamedTuple):
    """The chain's nonce index entry for one record, read at ``height``."""

    height: int
    record_id: bytes | None
