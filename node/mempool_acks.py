"""Which held records a client was told are held (acknowledged), by their
entry in the pending keyspace (:mod:`ledger.pending`, written by
:class:`node.durable.PendingWriter`).

The mempool (:mod:`node.mempool`) numbers here every record it answers a
client ``accepted`` or ``duplicate`` for, and waits for that number to be
durable before it answers; on restart the keyspace is admitted again
(source "restore").  An entry leaves the keyspace with the block that
commits its record (:meth:`AckedRecords.take`), or when the record leaves
the mempool for good (:meth:`AckedRecords.discard`).  Peers' records are not
numbered: nobody was promised anything by this node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ledger.errors import LedgerError
from ledger.records import Envelope

from .durable import PendingWriter
from .mempool_types import Admission


class AckedRecords:
    def __init__(self, writer: PendingWriter | None) -> None:
        self.writer = writer
        # Record id -> number of its entry in the pending keyspace, for the
        # records (pending or orphans) a client was told are held here.
        self._seq: dict[bytes, int] = {}

    def __contains__(self, record_id: bytes) -> bool:
        return record_id in self._seq

    def keep(self, source: str, decoded: Sequence[Envelope | LedgerError],
             results: Sequence[Admission], seqs: Sequence[int],
             held: Callable[[bytes], bool]) -> int:
        """Number in the pending keyspace what admit() tells a client is held
        here (or, restoring, keep or drop each stored entry); the highest
        number the answer must wait for (-1: none).  ``held``: whether the
        mempool holds a record id (pending or orphan)."""
        durable = self.writer
        if durable is None or source == "gossip":
            return -1
        kept, need = self._seq, -1
        for i, (d, r) in enumerate(zip(decoded, results)):
            # Still held: admit() yields between admitting and this pass, and
            # a block may have committed the record meanwhile.
            rid = d.id if isinstance(d, Envelope) else None
            is_held = rid is not None and held(rid)
            if source == "restore":
                if rid is not None and is_held and r.status == "accepted" and rid not in kept:
                    kept[rid] = seqs[i]
                else:  # committed meanwhile, refused now, or stored twice
                    durable.discard([seqs[i]])
            elif is_held and r.status in ("accepted", "duplicate"):
                assert isinstance(d, Envelope) and rid is not None
                seq = kept.get(rid)
                if seq is None:
                    # New here, or a peer's record this client is now told we hold.
                    seq = kept[rid] = durable.add(d.envelope_bytes)
                need = max(need, seq)
        return need

    async def wait(self, need: int) -> None:
        """Return once every entry numbered ``need`` or less is durable."""
        if need >= 0 and self.writer is not None:
            await self.writer.wait(need)

    def load(self) -> list[tuple[int, bytes]]:
        """The keyspace's entries, in order, to admit again on start."""
        if self.writer is None:
            return []
        entries = self.writer.records.load()
        for seq, _ in entries:
            self.writer.restored(seq)
        return entries

    def take(self, envelopes: Sequence[Envelope]) -> list[int]:
        """Before a block with ``envelopes`` commits: the pending-keyspace
        entries it commits that its write batch must delete."""
        if self.writer is None or not self._seq:
            return []
        kept = self._seq
        seqs = [seq for env in envelopes if (seq := kept.pop(env.id, None)) is not None]
        return self.writer.forget(seqs) if seqs else []

    def discard(self, record_id: bytes) -> None:
        """``record_id`` left the mempool for good: drop its entry, if any."""
        seq = self._seq.pop(record_id, None)
        if seq is not None and self.writer is not None:
            self.writer.discard([seq])
