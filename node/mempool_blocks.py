"""Choosing pending records for the next block (:meth:`node.mempool.Mempool.select`),
and finding those a committed block leaves unable to commit.

Records are kept in admission order, and since a parent must be known before
its child is admitted, that order already puts parents first: selection only
has to stop a child whose parent did not make it into the same block.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ledger.errors import ConflictingProposal, LedgerError, Paused
from ledger.genesis import RecordTimeWindow
from ledger.membership import Membership, check_envelope, is_governance
from ledger.records import Envelope

from .mempool_types import ChainView


def select_for_block(pending: Iterable[tuple[bytes, Envelope]], chain: ChainView,
                     window: RecordTimeWindow, max_records: int,
                     max_bytes: int | None, time_ms: int | None, *,
                     governance_pending: bool) -> tuple[list[Envelope], list[bytes]]:
    """``(chosen, expired)``: records for the next block from ``pending``
    (id, envelope pairs in admission order), parents first; and the ids of
    those too old for any later block.

    With ``time_ms`` (the block's time) only records whose ts is in
    ``window`` around it: those too old are expired (block times only grow,
    so they can never commit), those ahead of it wait.
    ``governance_pending``: whether a governance record is pending."""
    chosen: list[Envelope] = []
    chosen_ids: set[bytes] = set()
    expired: list[bytes] = []
    size = 0
    # Once governance changed anything, a record admitted earlier may be
    # out of scope for the next block (paused, key rotated): it is left
    # out rather than make the block invalid.  Governance records are
    # applied in turn, so two conflicting ones never share a block.
    trial = chain.membership
    judge = bool(trial.changes) or governance_pending
    height = chain.height + 1
    state = trial.at(height) if judge else None  # what a record is checked against
    for rid, env in pending:
        if len(chosen) >= max_records:
            break
        if max_bytes is not None and size + len(env.envelope_bytes) > max_bytes:
            break
        if time_ms is not None and not window.contains(env.record.ts, time_ms):
            if window.expired(env.record.ts, time_ms):
                expired.append(rid)
            continue
        if all(p in chosen_ids or chain.record_location(p) is not None
               for p in env.record.parents):
            if judge:
                try:
                    governance = is_governance(env)
                    check_envelope(trial, env, height, signatures=False,
                                   governance=governance, state=state)
                    if governance:
                        trial = trial.apply(height, [env], signatures=False)
                        state = trial.at(height)
                except LedgerError:
                    continue
            chosen.append(env)
            chosen_ids.add(rid)
            size += len(env.envelope_bytes)
    return chosen, expired


def out_of_scope(pending: Mapping[bytes, Envelope], record_ids: Iterable[bytes],
                 membership: Membership, height: int) -> list[tuple[bytes, LedgerError]]:
    """The pending records among ``record_ids`` that ``membership`` refuses
    for good at ``height`` (submitter removed, key rotated out, proposal
    expired or unsound), with the reason; a record of a paused scope, or a
    proposal in conflict with another pending one, waits."""
    refused = []
    for rid in record_ids:
        env = pending.get(rid)
        if env is None:
            continue
        try:
            check_envelope(membership, env, height, signatures=False)
        except (Paused, ConflictingProposal):
            continue
        except LedgerError as exc:
            refused.append((rid, exc))
    return refused


def unreachable(pending: Mapping[bytes, Envelope], chain: ChainView) -> list[bytes]:
    """The pending records with a parent neither pending nor committed
    (they can never commit), and their descendants: in admission order a
    parent comes before its children."""
    gone: set[bytes] = set()
    for rid, env in pending.items():
        if any((p in gone or p not in pending) and chain.record_location(p) is None
               for p in env.record.parents):
            gone.add(rid)
    return [rid for rid in pending if rid in gone]
