"""Admission's stateless checks of a batch of envelopes, and what this node
remembers having verified (node/mempool.py admits with them).

Signatures are expensive, so the envelopes whose signatures this node has
checked are remembered by leaf hash (a bounded set of envelopes checked in
block validation that were not pending; the mempool knows its pending ones)
and batch signatures by (submitter, size, root, signature).  The key is the
leaf hash, which covers the signature, not the record id: otherwise a
Byzantine proposer could pair a known record with a forged signature.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from ledger.batch_envelopes import BatchKey, check_batched
from ledger.crypto import RECORD_DOMAIN, SIGNATURE_FAILS, verify_many
from ledger.errors import BadSignature, LedgerError
from ledger.membership import Membership, check_envelope
from ledger.records import BatchedEnvelope, Envelope

# Batch signatures remembered as verified (PROTOCOL §2, batch envelopes): a
# peer's gossip brings a batch's records in several messages.
BATCH_SIGNATURE_CACHE = 4096
BATCH_SIGNATURE_FAILS = "batch path does not lead to a root its submitter signed"


class SignatureChecks:
    """The checks and the two bounded caches of verified signatures."""

    def __init__(self, verified_cache: int,
                 verify: Callable[[bytes, Sequence[tuple[bytes, bytes, bytes]]], list[bool]]
                 = verify_many) -> None:
        self._verify = verify  # per-record signatures, one batch call
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._verified_cap = verified_cache
        # Batch signatures verified here, by (submitter, size, root, sig):
        # the root is recomputed from each envelope's own path before the
        # lookup, so a forged path never matches a cached signature.
        self._batch_sigs: OrderedDict[BatchKey, None] = OrderedDict()
        self._batch_sigs_cap = BATCH_SIGNATURE_CACHE

    def verified(self, leaf_hash: bytes) -> bool:
        return leaf_hash in self._verified

    def forget(self, leaf_hash: bytes) -> None:
        """A committed envelope: block validation will not meet it again."""
        self._verified.pop(leaf_hash, None)

    def forget_many(self, leaf_hashes: Iterable[bytes]) -> None:
        """:meth:`forget` for each (nothing to do while none is remembered)."""
        verified = self._verified
        if verified:
            pop = verified.pop
            for leaf in leaf_hashes:
                pop(leaf, None)

    def mark_verified(self, leaf_hashes: Iterable[bytes]) -> None:
        """Remember envelopes whose signatures were checked (here or in block validation)."""
        verified = self._verified
        move = verified.move_to_end
        for leaf in leaf_hashes:
            verified[leaf] = None
            move(leaf)
        excess = len(verified) - self._verified_cap
        for _ in range(max(0, excess)):
            verified.popitem(last=False)

    def check(self, envs: list[Envelope], membership: Membership, height: int, *,
              paused: bool = True) -> list[LedgerError | None]:
        """Admission's stateless checks: chain, and the membership's checks
        for a block of ``height`` (PROTOCOL §9.3, §9.4: submitter, role, key,
        scope, governance signers and threshold) per envelope, then every
        signature of those that passed - the submitter's and each
        co-signer's - in one batch (``verify_many``: libsodium per
        signature, one GIL release for the lot).  ``paused=False``: records
        of a paused scope pass (see :meth:`node.mempool.Mempool._verify_many`)."""
        out: list[LedgerError | None] = []
        signed: list[int] = []  # one entry per signature: the envelope's index
        items: list[tuple[bytes, bytes, bytes]] = []
        batched: list[int] = []
        for i, env in enumerate(envs):
            try:
                check_envelope(membership, env, height, signatures=False, paused=paused)
            except LedgerError as exc:
                out.append(exc.as_value())
                continue
            out.append(None)
            if isinstance(env, BatchedEnvelope):  # its signature is over the batch root
                batched.append(i)
                continue
            record_bytes = env.record.record_bytes
            for key, sig in env.signatures():
                signed.append(i)
                items.append((key, record_bytes, sig))
        if batched:
            for i, ok in zip(batched, self._verify_batched([envs[i] for i in batched])):
                if not ok:
                    out[i] = BadSignature(BATCH_SIGNATURE_FAILS)
        for i, ok in zip(signed, self._verify(RECORD_DOMAIN, items)):
            if not ok:
                out[i] = BadSignature(SIGNATURE_FAILS)
        return out

    def _verify_batched(self, envs: Sequence[Envelope]) -> list[bool]:
        """Batch envelopes (PROTOCOL §2): each path recomputed to its root,
        each distinct (submitter, size, root, signature) verified once and
        then remembered, so the other records of a batch (a client's chunk,
        or their gossip copies) cost a hash path each, not a signature."""
        verdicts, good = check_batched(
            [e for e in envs if isinstance(e, BatchedEnvelope)], self._batch_sigs.__contains__)
        for key in good:
            self._batch_sigs[key] = None
        while len(self._batch_sigs) > self._batch_sigs_cap:
            self._batch_sigs.popitem(last=False)
        return verdicts
