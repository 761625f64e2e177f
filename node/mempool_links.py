"""What the mempool shares with the rest of the node, handed to it at
construction (:class:`node.mempool.Mempool`'s ``leaves`` and ``peer_backlog``).

* :class:`AdmittedLeaves`: while a proposal waits for envelopes
  (node/assembly.py), the leaf hashes of every record admitted meanwhile,
  whatever its source, and a wake-up of the assembler after each admission
  that added some.  Collects nothing while no proposal waits.
* :class:`PeerBacklog`: how many records received from peers are queued for
  admission; the mempool pushes clients back while it is above its limit.
"""

from __future__ import annotations

from collections.abc import Callable


class AdmittedLeaves:
    """Leaf hashes of admitted records, collected only between :meth:`start`
    and :meth:`stop`."""

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        self._wake = wake
        self._leaves: list[bytes] | None = None

    @property
    def collecting(self) -> bool:
        return self._leaves is not None

    def start(self) -> None:
        """Collect from now on (no-op if already collecting)."""
        if self._leaves is None:
            self._leaves = []

    def stop(self) -> None:
        """Stop collecting and forget what was collected."""
        self._leaves = None

    def add(self, leaf: bytes) -> None:
        if self._leaves is not None:
            self._leaves.append(leaf)

    def take(self) -> list[bytes]:
        """What was collected since the last take (collecting goes on)."""
        if not self._leaves:
            return []
        taken, self._leaves = self._leaves, []
        return taken

    def admitted(self) -> None:
        """Called by the mempool after an admission: wake the assembler if
        there is something for it."""
        if self._leaves and self._wake is not None:
            self._wake()

    def __len__(self) -> int:
        return 0 if self._leaves is None else len(self._leaves)


class PeerBacklog:
    """A count the node raises when it queues peers' records for admission
    and lowers once they were admitted."""

    def __init__(self) -> None:
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def queued(self, n: int) -> None:
        self._count += n

    def admitted(self, n: int) -> None:
        self._count -= n

    @property
    def busy(self) -> bool:
        return self._count > 0
