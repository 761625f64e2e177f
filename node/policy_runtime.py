"""The node's policy engine (PROTOCOL §10): one factory, used at start.

The engine's state (installed policy, lists, velocity windows, risk tiers)
is derived from committed blocks only, so a starting node rebuilds it by
feeding the policy evaluator (:func:`ledger.policy.load_policy_engine`)
every block it holds, from height 1, in order.  Held records and the
header version come from the store (ledger/chain.py); together they give
the verdicts of the next block exactly as the validators that never
stopped derive them.

The state is persisted every few hundred blocks and at a clean stop
(``ChainStore.save_policy_state``): a restart loads it and replays only
the blocks after it, so neither start time nor a damaged old envelope
depends on the chain's length.  A persisted state that does not load is
dropped with a warning and the whole chain replayed.

A node started from a state-sync snapshot holds no blocks below it until
back-fill ends: its engine is rebuilt from the blocks it holds, and if
that state differs from its peers' the node refuses their blocks (it
derives other verdicts) rather than certify verdicts it cannot reproduce.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

from ledger.approvals import record_inputs
from ledger.chain import ChainStore
from ledger.policy import PolicyEngine, RecordInput, load_policy_engine
from ledger.policy.state import PolicyState, state_from_bytes
from ledger.records import decode_committed_envelope
from ledger.saved_state import load_saved

log = logging.getLogger(__name__)


def committed_inputs(chain: ChainStore, after: int = 0
                     ) -> Iterator[tuple[int, int, Sequence[RecordInput]]]:
    """``(height, time_ms, records)`` of every block the store holds above
    ``after``, in order."""
    gap = chain.history_gap
    for height in range(after + 1, chain.height + 1):
        if height in gap:
            continue
        header = chain.header(height)
        if header is None:
            continue
        envelopes = [decode_committed_envelope(e) for e in chain.block_envelopes(height)]
        yield height, header.time, record_inputs(chain.membership.at(height), envelopes)


def persisted_state(chain: ChainStore) -> PolicyState | None:
    """The persisted policy state, if there is one at or below the tip."""
    return load_saved(chain.policy_state_bytes(), state_from_bytes, chain.height,
                      "policy state")


def make_policy_engine(chain: ChainStore) -> PolicyEngine:
    """The policy evaluator with its state after ``chain``'s tip."""
    started = time.perf_counter()
    state = persisted_state(chain)
    after = state.height if state is not None else 0
    engine = load_policy_engine(state, committed_inputs(chain, after))
    if chain.height:
        log.info("policy state at height %d loaded, %d blocks replayed in %.2fs "
                 "(policy version %d)", after, chain.height - after,
                 time.perf_counter() - started, engine.version)
    return engine


def install_policy_engine(chain: ChainStore) -> PolicyEngine:
    """Build the engine and make ``chain`` judge the next blocks with it."""
    engine = make_policy_engine(chain)
    chain.set_policy_engine(engine)
    return engine
