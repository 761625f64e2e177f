"""node/metrics.py: Prometheus conventions (no ``_created`` series, counters
in ``_total``, labelled counters present from the start), the proposal
assembly counter, and the mempool's sampled submit-to-commit latency."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import FIXED_TS, commit_envelopes, make_envelopes, make_genesis
from prometheus_client.parser import text_string_to_metric_families

from ledger.chain import ChainStore
from ledger.errors import LedgerError
from ledger.genesis import parse_genesis
from ledger.storage import MemoryStore
from node import api, frames  # noqa: F401  (their LedgerError subclasses count)
from node.mempool import MAX_TIMED, Mempool
from node.metrics import (
    FRAME_DROP_REASONS,
    HANDSHAKE_FAIL_REASONS,
    REJECTION_CODES,
    Metrics,
)

NODE = Path(__file__).resolve().parent.parent / "node"


def test_no_created_series_and_counters_end_in_total() -> None:
    m = Metrics()
    m.records_committed.inc()
    m.request_latency.labels(route="/x", method="GET", status="200").observe(0.1)
    fams = list(text_string_to_metric_families(m.render().decode()))
    names = [s.name for f in fams for s in f.samples]
    assert names and not [n for n in names if n.endswith("_created")]
    counters = [f for f in fams if f.type == "counter"]
    assert counters
    for f in counters:
        assert all(s.name == f.name + "_total" for s in f.samples), f.name


def _subclasses(cls: type) -> set[type]:
    out = set(cls.__subclasses__())
    for sub in list(out):
        out |= _subclasses(sub)
    return out


def test_every_code_and_reason_the_node_emits_is_preinitialised() -> None:
    codes = {c.code for c in _subclasses(LedgerError) if c.__module__.startswith(("ledger", "node"))}
    assert codes | set(api.CODE_FOR_STATUS.values()) <= set(REJECTION_CODES)
    source = "\n".join(p.read_text() for p in NODE.glob("*.py"))
    dropped = set(re.findall(r'frames_dropped\.labels\(reason="(\w+)"\)', source))
    dropped |= set(re.findall(r'FrameError\("(\w+)"', source))
    assert dropped and dropped <= set(FRAME_DROP_REASONS)
    refused = set(re.findall(r'HandshakeError\("(\w+)"', source))
    refused |= set(re.findall(r'_handshake_refused\(address, "(\w+)"', source))
    assert refused and refused <= set(HANDSHAKE_FAIL_REASONS)
    m = Metrics()
    for code in REJECTION_CODES:
        assert m.registry.get_sample_value("ledger_inputs_rejected_total", {"code": code}) == 0


def test_proposal_assembly_is_a_counter_fed_by_totals() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    m.publish_assembly({"immediate": 3, "parked": 0})
    m.publish_assembly({"immediate": 3, "parked": 1})  # published again: no double count
    m.publish_assembly({"immediate": 5, "parked": 1})
    assert get("ledger_proposal_assembly_total", {"outcome": "immediate"}) == 5
    assert get("ledger_proposal_assembly_total", {"outcome": "parked"}) == 1
    assert get("ledger_proposal_assembly_total", {"outcome": "fetched"}) == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_submit_to_commit_is_sampled_per_client_batch() -> None:
    doc, validator_keys, submitter = make_genesis(4, "test")
    genesis = parse_genesis(doc)
    chain = ChainStore(MemoryStore(), genesis)
    m = Metrics()
    clock = Clock()
    pool = Mempool(genesis, chain, m, max_size=1000, clock=lambda: FIXED_TS,
                   latency_clock=clock)
    envs = make_envelopes(submitter, genesis.chain, 8)
    await pool.admit([e.envelope_bytes for e in envs[:3]], "api")    # timed at 100
    clock.now = 101.0
    await pool.admit([e.envelope_bytes for e in envs[3:5]], "gossip")  # not timed
    await pool.admit([e.envelope_bytes for e in envs[:3]], "api")    # duplicates: not timed
    clock.now = 102.5
    chosen = pool.select(1000)
    commit_envelopes(chain, chosen, validator_keys)
    pool.committed(chosen)
    get = m.registry.get_sample_value
    assert get("ledger_submit_to_commit_seconds_count") == 1
    assert get("ledger_submit_to_commit_seconds_sum") == 2.5
    # A timed record dropped without commit leaves nothing behind.
    await pool.admit([envs[5].envelope_bytes], "api")
    pool._drop_expired([envs[5].id], None)
    assert not pool._timed
    # A stalled chain cannot grow the table beyond its bound.
    pool._timed.update({bytes([i % 256, i // 256]) * 16: 0.0 for i in range(MAX_TIMED)})
    await pool.admit([envs[6].envelope_bytes], "api")
    assert envs[6].id not in pool._timed
