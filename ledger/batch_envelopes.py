"""Signing batch envelopes, and checking many of them with one signature
check per distinct batch (PROTOCOL §2, "Batch envelopes").

Admission and block validation share :func:`check_batched`: each
envelope's path is recomputed to its root, and only then is the signature
looked up by ``(submitter, size, root, sig)``.  A forged path leads to
another root, so it can never ride on a signature verified (or cached) for
the real one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from .batch import BATCH_DOMAIN, MAX_BATCH_SIZE, batch_message, batch_roots, batch_tree
from .crypto import SigningKey, verify_many
from .encoding import canonical
from .errors import InclusionError, TooLarge
from .records import MAX_ENVELOPE_BYTES, BatchedEnvelope, Record

# (submitter, batch size, batch root, signature): what one check verifies.
BatchKey = tuple[bytes, int, bytes, bytes]


def sign_batch(records: Sequence[Record], key: SigningKey) -> list[BatchedEnvelope]:
    """One signature by ``key`` for ``records`` (2..4096, all by its public
    key, distinct ids): one batch envelope per record, in order."""
    if any(r.submitter != key.public_key for r in records):
        raise ValueError("signing key does not match every record's submitter")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("a batch holds each record once")
    root, positions = batch_tree(ids)
    sig = key.sign(BATCH_DOMAIN, batch_message(len(records), root))
    out = []
    for record, position in zip(records, positions):
        envelope_bytes = canonical({"batch": position.to_map(),
                                    "record": record.record_bytes, "sig": sig})
        if len(envelope_bytes) > MAX_ENVELOPE_BYTES:
            raise TooLarge(f"envelope is {len(envelope_bytes)} bytes, limit {MAX_ENVELOPE_BYTES}")
        out.append(BatchedEnvelope(record=record, sig=sig, envelope_bytes=envelope_bytes,
                                   batch=position))
    return out


def batch_key(envelope: BatchedEnvelope) -> BatchKey | None:
    """The signature check this envelope needs, its root recomputed from its
    own path; None if the path does not fit its index and size."""
    try:
        root = envelope.batch_root()
    except InclusionError:
        return None
    return (envelope.record.submitter, envelope.batch.size, root, envelope.sig)


def verify_batch_keys(keys: Collection[BatchKey]) -> set[BatchKey]:
    """The keys whose signature verifies, each checked once (one
    ``verify_many`` call: libsodium, one GIL release for the lot)."""
    distinct = list(dict.fromkeys(keys))
    verdicts = verify_many(BATCH_DOMAIN, [
        (submitter, batch_message(size, root), sig) for submitter, size, root, sig in distinct])
    return {k for k, ok in zip(distinct, verdicts) if ok}


def check_batched(envelopes: Sequence[BatchedEnvelope],
                  known: Callable[[BatchKey], bool] = lambda key: False,
                  ) -> tuple[list[bool], set[BatchKey]]:
    """For each envelope: does its path lead to a root its submitter signed?
    (Each path recomputed to its root, with the work shared between the
    paths of one batch: :func:`ledger.batch.batch_roots`.)

    ``known`` answers for keys verified before (a cache); the rest are
    verified here, once per distinct key.  Returns the verdicts and the
    keys newly verified (for the caller's cache)."""
    roots = batch_roots([(e.record.id, e.batch) for e in envelopes])
    keys: list[BatchKey | None] = [
        None if root is None else (e.record.submitter, e.batch.size, root, e.sig)
        for e, root in zip(envelopes, roots)]
    todo = {k for k in keys if k is not None and not known(k)}
    good = verify_batch_keys(todo) if todo else set()
    return [k is not None and (k in good or (k not in todo and known(k))) for k in keys], good


__all__ = ["MAX_BATCH_SIZE", "BatchKey", "batch_key", "check_batched", "sign_batch",
           "verify_batch_keys"]
