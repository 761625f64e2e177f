"""What a chain store keeps beside the blocks for the node's other parts:
the consensus engine's persisted state, misbehaviour evidence, checkpoint
signatures and witness cosignatures (part of :class:`ledger.chain.ChainStore`)."""

from __future__ import annotations

from . import schema
from .storage import KeyValueStore, WriteBatch


class ChainSideData:
    """The side records of :class:`ledger.chain.ChainStore`."""

    _store: KeyValueStore

    def put_consensus_state(self, blob: bytes) -> None:
        """Durably replace the consensus engine's persisted state."""
        batch = WriteBatch()
        batch.put(schema.META_CONSENSUS, blob)
        self._store.write(batch, sync=True)

    def get_consensus_state(self) -> bytes | None:
        return self._store.get(schema.META_CONSENSUS)

    def add_evidence(self, key: bytes, blob: bytes) -> None:
        """Durably record misbehaviour evidence under ``key`` (idempotent)."""
        batch = WriteBatch()
        batch.put(schema.evidence_key(key), blob)
        self._store.write(batch, sync=True)

    def evidence(self) -> list[bytes]:
        """Every evidence blob, in key order."""
        return [value for _, value in self._store.iterate(schema.EVIDENCE)]

    def add_checkpoint_signature(self, height: int, validator: int, sig: bytes) -> None:
        """Keep a verified checkpoint signature (not synced: a lost one is
        gathered again or simply missing; it certifies nothing new)."""
        batch = WriteBatch()
        batch.put(schema.checkpoint_sig_key(height, validator), sig)
        self._store.write(batch, sync=False)

    def checkpoint_signatures(self, height: int) -> dict[int, bytes]:
        """Validator index -> note signature over block ``height``'s checkpoint."""
        return {schema.validator_from_checkpoint_sig_key(key): value
                for key, value in self._store.iterate(schema.checkpoint_sig_prefix(height))}

    def add_witness_cosignature(self, height: int, key_id: bytes, line: bytes) -> None:
        """Keep a verified witness cosignature line (PROTOCOL §13), synced:
        a witness sends it once."""
        batch = WriteBatch()
        batch.put(schema.witness_cosig_key(height, key_id), line)
        self._store.write(batch, sync=True)

    def witness_cosignatures(self, height: int) -> list[bytes]:
        """The witness cosignature lines kept for block ``height``, by key id."""
        return [value for _, value in self._store.iterate(schema.witness_cosig_prefix(height))]
