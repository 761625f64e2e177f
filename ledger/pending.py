"""Envelopes a node acknowledged and has not committed yet, kept durably.

A node answers ``accepted`` only once the envelope is on disk with the same
durability as a block (a synced LevelDB write), so that a SIGKILL right after
the answer loses nothing: on restart the node reads these entries back and
admits them again.  Each entry is keyed by an admission sequence number
(:func:`ledger.schema.pending_key`), so reading them back in key order gives
them in admission order, parents before children.

The entries of a committed block are deleted in that block's own write batch
(``ChainStore.commit_block(..., pending_done=...)``); the ones the mempool
drops for good (a nonce taken by a committed record, an evicted orphan) are
deleted by :meth:`PendingRecords.write` along with the next puts.  So the
keyspace holds at most what the mempool holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from . import schema
from .storage import KeyValueStore, WriteBatch


class PendingRecords:
    """The ``p`` keyspace of one store: put, delete and read back in order."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store

    def next_seq(self) -> int:
        """One past the highest sequence number stored (0 when there is none)."""
        last = next(iter(self._store.iterate(schema.PENDING, reverse=True)), None)
        return 0 if last is None else schema.seq_from_pending_key(last[0]) + 1

    def load(self) -> list[tuple[int, bytes]]:
        """Every stored ``(seq, envelope bytes)``, in admission order."""
        return [(schema.seq_from_pending_key(key), value)
                for key, value in self._store.iterate(schema.PENDING)]

    def write(self, puts: Sequence[tuple[int, bytes]], deletes: Iterable[int] = (),
              *, sync: bool = True) -> None:
        """Add ``puts`` and remove ``deletes`` in one atomic batch, synced
        (durable before returning) unless ``sync`` is False."""
        batch = WriteBatch()
        batch.put_many((schema.pending_key(seq), envelope) for seq, envelope in puts)
        for seq in deletes:
            batch.delete(schema.pending_key(seq))
        if batch:
            self._store.write(batch, sync=sync)


def stage_pending_done(batch: WriteBatch, seqs: Iterable[int]) -> None:
    """Delete the pending entries ``seqs`` in ``batch`` (a block's commit)."""
    for seq in seqs:
        batch.delete(schema.pending_key(seq))
