"""Block validation's nonce check through the node (NodeApplication): a
nonce a pending record holds is not used in the chain, one a committed
record holds is, whether or not the mempool holds any nonce (catch-up)."""

from __future__ import annotations

import pytest
from helpers import FIXED_TS, commit_envelopes, make_envelope, make_genesis

from ledger.chain import ChainStore
from consensus.validation import NonceAlreadyUsed
from ledger.genesis import parse_genesis
from ledger.storage import MemoryStore
from node.chainapp import NodeApplication
from node.mempool import Mempool
from node.metrics import Metrics


@pytest.mark.parametrize("pending", [False, True])
async def test_block_nonces_against_chain_and_mempool(pending: bool) -> None:
    doc, validator_keys, submitter = make_genesis(4, "test")
    genesis = parse_genesis(doc)
    chain = ChainStore(MemoryStore(), genesis)
    mempool = Mempool(genesis, chain, Metrics(), max_size=1000, clock=lambda: FIXED_TS)
    app = NodeApplication(genesis, chain, mempool, max_block_records=1000,
                          max_clock_skew_ms=10_000)
    commit_envelopes(chain, [make_envelope(submitter, "test", 1)], validator_keys,
                     time=FIXED_TS)
    held = make_envelope(submitter, "test", 2)
    if pending:
        admitted = await mempool.admit([held.envelope_bytes], "api")
        assert admitted[0].status == "accepted" and mempool.holds_nonces()
    else:
        assert not mempool.holds_nonces()
    other = make_envelope(submitter, "test", 2, body={"amount": 7})  # nonce 2, another record
    fresh = make_envelope(submitter, "test", 3)
    for certified in (False, True):
        header = chain.next_header([other, fresh], FIXED_TS, 0)
        app.validate(header, [other, fresh], now_ms=FIXED_TS, certified=certified)
        reused = make_envelope(submitter, "test", 1, body={"amount": 7})  # nonce 1 committed
        header = chain.next_header([fresh, reused], FIXED_TS, 0)
        with pytest.raises(NonceAlreadyUsed, match="record 1"):
            app.validate(header, [fresh, reused], now_ms=FIXED_TS, certified=certified)
    assert app._nonce_holders is None
