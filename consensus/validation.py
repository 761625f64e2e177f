"""Pure validation of a proposed or fetched block (PROTOCOL §2 and §4).

:func:`validate_block` recomputes every header field from the previous block,
the log and the envelopes, and checks every record; it raises a
:class:`ledger.errors.VerificationError` subclass naming what is wrong and
returns nothing when the block is acceptable.  The real node reuses it with a
context over its ChainStore; the simulator with an in-memory chain.

Record signatures are expensive, so the context says which envelopes (by
leaf hash, which covers the signature) were already verified: the node
verifies each once at mempool admission; only the others are verified here.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from ledger.batch_envelopes import check_batched
from ledger.blocks import ZERO_HASH, Header
from ledger.crypto import digest_equal
from ledger.encoding import to_hex
from ledger.errors import (
    BadSignature,
    HeaderError,
    HeightMismatch,
    ValidatorSetMismatch,
    VerificationError,
    WrongChain,
)
from ledger.genesis import Genesis, RecordTimeWindow, record_time_window
from ledger.membership import Membership, State, check_envelope, is_governance
from ledger.merkle import root
from ledger.records import BatchedEnvelope, Envelope

from .params import NIL_ROUND, proposer_for


class ValidationContext(Protocol):
    """What :func:`validate_block` needs to know about the local node."""

    @property
    def genesis(self) -> Genesis: ...

    @property
    def membership(self) -> Membership:
        """Genesis plus the committed governance records (PROTOCOL §9):
        judges the next block's header and records."""

    @property
    def tip(self) -> Header | None:
        """The last committed header, None before block 1."""

    @property
    def now_ms(self) -> int: ...

    @property
    def max_clock_skew_ms(self) -> int: ...

    def log_preview(self, leaf_hashes: Sequence[bytes]) -> tuple[int, bytes]:
        """(size, root) of the committed log with ``leaf_hashes`` appended."""

    def nonce_holder(self, submitter: bytes, nonce: int) -> bytes | None:
        """The id of the committed record that used (submitter, nonce), or None.

        One lookup answers both "already committed" (it names this record)
        and "nonce reused" (it names another): a committed record's nonce
        always names it."""

    def record_known_committed(self, record_id: bytes) -> bool: ...

    def signature_verified(self, envelope_id: bytes) -> bool:
        """True if the envelope with this id was already verified.

        The id is the envelope's **leaf hash** (``Envelope.leaf_hash``), which
        covers the signature.  A cache keyed by record id would let a Byzantine
        proposer pair a known record with a forged signature.
        """


# --------------------------------------------------------------------------
# Errors (all VerificationError: a block is either valid or not)
# --------------------------------------------------------------------------


class PrevMismatch(HeaderError):
    """The header's prev is not the tip's hash."""


class TimeNotMonotonic(HeaderError):
    """The block time is earlier than the previous block's."""


class BlockFromFuture(HeaderError):
    """The block time is further ahead of the local clock than the allowed skew.

    The only failure that may go away later, so callers must not cache it."""


class WrongProposer(HeaderError):
    """The header's proposer is not the validator whose turn it was."""


class EmptyBlock(HeaderError):
    """Blocks carry at least one record (no empty blocks while idle)."""


class TxCountMismatch(HeaderError):
    """tx_count differs from the number of envelopes."""


class TooManyRecords(HeaderError):
    """More records than the chain param ``max_block_records`` in force at
    the block's height."""


class TxRootMismatch(HeaderError):
    """tx_root differs from the Merkle root of the envelopes."""


class LogMismatch(HeaderError):
    """log_size/log_root differ from the log with this block appended."""


class BlockRecordError(VerificationError):
    """A record in the block cannot be committed."""

    step = "records"


class DuplicateRecord(BlockRecordError):
    """A record appears twice in the block, or was already committed."""


class NonceAlreadyUsed(BlockRecordError):
    """(submitter, nonce) is already used by a committed or earlier record."""

    code = "nonce_reused"


class RecordTimeOutOfWindow(BlockRecordError):
    """A record's ts is outside the chain's window around the header's time."""

    code = "bad_timestamp"


class ParentNotCommitted(BlockRecordError):
    """A parent is neither committed nor earlier in the same block."""

    code = "unknown_parent"


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def allowed_proposers(n: int, height: int, round_: int, pol_round: int = NIL_ROUND) -> set[int]:
    """Who may appear as ``header.proposer`` for a proposal at ``round_``.

    A fresh block names the round's proposer.  A block re-proposed from
    ``pol_round`` keeps the name of whoever first proposed it, in some round
    up to ``pol_round``.
    """
    if pol_round == NIL_ROUND:
        return {proposer_for(n, height, round_)}
    # Rotation has period n, so rounds 0..min(pol_round, n-1) cover them all.
    return {proposer_for(n, height, r) for r in range(min(pol_round, n - 1) + 1)}


def check_proposer(header: Header, n: int, round_: int, pol_round: int = NIL_ROUND) -> None:
    if header.proposer not in allowed_proposers(n, header.height, round_, pol_round):
        raise WrongProposer(
            f"proposer {header.proposer} may not propose height {header.height} "
            f"at round {round_} (POL round {pol_round})"
        )


def _check_chain_position(header: Header, ctx: ValidationContext) -> None:
    genesis, tip = ctx.genesis, ctx.tip
    if header.chain != genesis.chain:
        raise WrongChain(f"header is for chain {header.chain!r}, not {genesis.chain!r}")
    in_force = ctx.membership.at(header.height)
    if not digest_equal(header.validators, in_force.validators_hash):
        raise ValidatorSetMismatch(
            f"header validators hash differs from the set in force at height {header.height}")
    if not 0 <= header.proposer < len(in_force.validators):
        raise WrongProposer(f"proposer {header.proposer} is not a validator at height "
                            f"{header.height}")
    expected_height = tip.height + 1 if tip else 1
    if header.height != expected_height:
        raise HeightMismatch(f"height {header.height}, expected {expected_height}")
    expected_prev = tip.hash if tip else ZERO_HASH
    if not digest_equal(header.prev, expected_prev):
        raise PrevMismatch(f"prev {to_hex(header.prev)} is not {to_hex(expected_prev)}")


def _check_time(header: Header, ctx: ValidationContext) -> None:
    tip = ctx.tip
    if tip is not None and header.time < tip.time:
        raise TimeNotMonotonic(f"time {header.time} is before the previous block's {tip.time}")
    if header.time > ctx.now_ms + ctx.max_clock_skew_ms:
        raise BlockFromFuture(
            f"time {header.time} is more than {ctx.max_clock_skew_ms} ms ahead of {ctx.now_ms}"
        )


def block_records_cap(params: Mapping[str, Any], default: int) -> int:
    """The chain param ``max_block_records`` (genesis ``params``, changed by
    ``gov.params.set``) in ``params``, else ``default``."""
    value = params.get("max_block_records")
    return value if type(value) is int and value >= 0 else default


def _check_roots(header: Header, envelopes: Sequence[Envelope], ctx: ValidationContext) -> None:
    if not envelopes:
        raise EmptyBlock("a block must carry at least one record")
    if header.tx_count != len(envelopes):
        raise TxCountMismatch(f"tx_count {header.tx_count}, block has {len(envelopes)} records")
    cap = block_records_cap(ctx.membership.at(header.height).params, len(envelopes))
    if len(envelopes) > cap:
        raise TooManyRecords(f"block has {len(envelopes)} records, the chain param "
                             f"max_block_records in force at height {header.height} is {cap}")
    leaves = [e.leaf_hash for e in envelopes]
    if not digest_equal(header.tx_root, root(leaves)):
        raise TxRootMismatch("tx_root is not the Merkle root of the block's envelopes")
    size, log_root = ctx.log_preview(leaves)
    if header.log_size != size or not digest_equal(header.log_root, log_root):
        raise LogMismatch(f"log_size/log_root do not match the log after this block (size {size})")


def _check_record_identity(env: Envelope, height: int, ctx: ValidationContext,
                           governance: bool, state: State) -> None:
    """PROTOCOL §2 chain, and §9.4 submitter, role, key and scope in force at
    ``height`` (``state``; §9.3 for a governance record); the signatures unless
    already verified (batch envelopes: by :func:`_check_batch_signatures`,
    first)."""
    check_envelope(ctx.membership, env, height,
                   signatures=not isinstance(env, BatchedEnvelope)
                   and not ctx.signature_verified(env.leaf_hash),
                   governance=governance, state=state)


def _check_batch_signatures(envelopes: Sequence[Envelope], ctx: ValidationContext) -> None:
    """PROTOCOL §2 batch envelopes not verified before: each one's path to
    its batch root, and each distinct root's signature once per block."""
    todo = [(index, env) for index, env in enumerate(envelopes)
            if isinstance(env, BatchedEnvelope) and not ctx.signature_verified(env.leaf_hash)]
    if not todo:
        return
    verdicts, _ = check_batched([env for _, env in todo])
    for (index, env), ok in zip(todo, verdicts):
        if not ok:
            raise BadSignature(f"record {index} ({to_hex(env.id)[:16]}): batch path does not "
                               "lead to a root its submitter signed")


def _duplicate() -> DuplicateRecord:
    return DuplicateRecord("record appears twice or is already committed")


def _nonce_used(nonce: int) -> NonceAlreadyUsed:
    return NonceAlreadyUsed(f"nonce {nonce} of this submitter is already used")


def _check_record_state(
    env: Envelope, ctx: ValidationContext, ids: set[bytes], nonces: set[tuple[bytes, int]]
) -> None:
    record = env.record
    if record.id in ids:
        raise _duplicate()
    key = (record.submitter, record.nonce)
    if key in nonces:
        raise _nonce_used(record.nonce)
    holder = ctx.nonce_holder(*key)
    if holder is not None:
        if digest_equal(holder, record.id):
            raise _duplicate()
        raise _nonce_used(record.nonce)
    for parent in record.parents:
        if parent not in ids and not ctx.record_known_committed(parent):
            raise ParentNotCommitted(f"parent {to_hex(parent)} is not committed or earlier in the block")


def _check_record_time(env: Envelope, block_time: int, window: RecordTimeWindow) -> None:
    """PROTOCOL §2: ts within the genesis window around the header's time, so
    that every validator decides from the block alone, whatever its clock."""
    ts = env.record.ts
    if not window.contains(ts, block_time):
        raise RecordTimeOutOfWindow(window.explain(ts, block_time))


def _check_records(envelopes: Sequence[Envelope], ctx: ValidationContext, height: int,
                   block_time: int | None) -> None:
    ids: set[bytes] = set()
    nonces: set[tuple[bytes, int]] = set()
    governance_records: list[Envelope] = []
    state = ctx.membership.at(height)  # in force for every record of the block
    window = record_time_window(state.params) if block_time is not None else None
    for index, env in enumerate(envelopes):
        governance = is_governance(env)
        try:
            if window is not None and block_time is not None:
                _check_record_time(env, block_time, window)
            _check_record_identity(env, height, ctx, governance, state)
            _check_record_state(env, ctx, ids, nonces)
        except VerificationError as exc:
            # Same type, so callers can dispatch on it; the message says which record.
            raise type(exc)(f"record {index} ({to_hex(env.id)[:16]}): {exc}") from None
        ids.add(env.id)
        nonces.add((env.record.submitter, env.record.nonce))
        if governance:
            governance_records.append(env)
    # Each governance record was checked against the membership before the
    # block; applying them in order also checks them against each other
    # (two changing the same target at the same height conflict).  apply()
    # skips every other record.
    ctx.membership.apply(height, governance_records, signatures=False)


def validate_block(
    header: Header,
    envelopes: Sequence[Envelope],
    ctx: ValidationContext,
    *,
    round: int | None = None,
    pol_round: int = NIL_ROUND,
    record_times: bool = True,
) -> None:
    """Raise unless ``header`` + ``envelopes`` is a valid next block on ``ctx.tip``.

    With ``round`` the proposer must be the one whose turn it was (see
    :func:`allowed_proposers`); without, it only has to be a validator.
    ``record_times=False`` skips the record ts window: for certified blocks
    (catch-up), whose records a quorum already accepted, and which chains
    committed before the window existed must keep passing.
    """
    _check_chain_position(header, ctx)
    if round is not None:
        check_proposer(header, len(ctx.membership.at(header.height).validators), round,
                       pol_round)
    _check_time(header, ctx)
    _check_roots(header, envelopes, ctx)
    _check_batch_signatures(envelopes, ctx)
    _check_records(envelopes, ctx, header.height, header.time if record_times else None)
