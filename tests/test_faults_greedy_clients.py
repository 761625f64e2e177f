"""Clients that pipeline block sync requests and never read, against a real
4-node cluster (harness/faults_http.py, short): the node's resident memory
stays within a generous bound of where it was, the connections are cut for
the write timeout, status keeps being answered; unsigned sync requests get
401; and a restarted validator still catches up by block sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.faults_http import GREEDY_TOML, _fill, greedy_clients
from harness.localnet import LocalCluster

pytestmark = pytest.mark.cluster

# The documented bound (docs/operators.md): each connection holds at most one
# block of a sync answer (~375 KB here: 50 records of 7.5 KB) and one chunk;
# 100 connections stay far below this, while building whole answers (~8 MB
# each) took the node past a gigabyte.
RSS_GROWTH_BOUND_MB = 250
EDITS = {i: [(GREEDY_TOML[0], GREEDY_TOML[1].format(write_ms=1500))] for i in range(4)}


async def test_non_reading_sync_clients_are_bounded_and_cut(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "cluster", 4, params={"max_block_records": 50},
                     toml_edits=EDITS)
    try:
        everyone = await c.start_all()
        c.kill(3)  # behind from here on: catches up by block sync at the end
        await _fill(c, 0, 8.0)
        status, body = await c.get(1, "/v1/sync/blocks?from=1")
        assert status == 401 and body["error"] == "unauthorized"
        rep = await greedy_clients(tmp_path, connections=100, pipelined=5, watch_s=6.0,
                                   signed=True, node=1, cluster=c)
        print(rep)
        assert rep.answer_bytes > 4 * 1024 * 1024  # answers worth bounding
        assert rep.rss_peak_mb - rep.rss_before_mb < RSS_GROWTH_BOUND_MB, rep
        assert rep.cut_for_write_timeout >= 1, rep
        assert await c.status(1) is not None
        c.start(3)
        tip = (await c.status(0) or {})["height"]
        await c.wait_height(everyone, tip, timeout=60)
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 10)}")
