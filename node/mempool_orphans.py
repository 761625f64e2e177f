"""Gossiped records whose parents this node does not know yet.

A peer's child may overtake its parent on the way here.  Such a record is
held (up to a limit, oldest evicted first) with the set of parents it still
misses; when a missing parent is admitted, :meth:`Orphans.release` hands
back the orphans that miss nothing any more, for the mempool
(:mod:`node.mempool`) to admit.  Clients' records are never held: a client
must send parents first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ledger.records import Envelope


@dataclass
class Orphan:
    envelope: Envelope
    missing: set[bytes]
    source: str  # "gossip", or "restore": acknowledged by this node before a restart


class Orphans:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: OrderedDict[bytes, Orphan] = OrderedDict()
        self._waiting: dict[bytes, set[bytes]] = {}  # parent id -> orphan ids

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, record_id: bytes) -> bool:
        return record_id in self._held

    def get(self, record_id: bytes) -> Orphan | None:
        return self._held.get(record_id)

    def hold(self, env: Envelope, missing: set[bytes], source: str) -> list[bytes]:
        """Hold ``env`` until every parent in ``missing`` is admitted; the ids
        of the oldest orphans evicted to make room (``limit`` > 0)."""
        evicted = []
        while len(self._held) >= self.limit:
            old_id, old = self._held.popitem(last=False)
            self._unwait(old_id, old)
            evicted.append(old_id)
        self._held[env.id] = Orphan(env, missing, source)
        for p in missing:
            self._waiting.setdefault(p, set()).add(env.id)
        return evicted

    def release(self, parent: bytes) -> list[tuple[bytes, Orphan]]:
        """``parent`` was admitted: the orphans that now miss nothing, in the
        order they were waiting, taken out of the pool."""
        ready: list[bytes] = []
        for oid in self._waiting.pop(parent, ()):
            orphan = self._held.get(oid)
            if orphan is not None:
                orphan.missing.discard(parent)
                if not orphan.missing:
                    ready.append(oid)
        return [(oid, self._held.pop(oid)) for oid in ready]

    def _unwait(self, orphan_id: bytes, orphan: Orphan) -> None:
        for p in orphan.missing:
            ids = self._waiting.get(p)
            if ids is not None:
                ids.discard(orphan_id)
                if not ids:
                    del self._waiting[p]
