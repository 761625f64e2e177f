"""fraudsim feeds a real 4-node cluster through the SDK; the committed
records, exported as the scoring input (``GET /v1/records/{id}``), score
with ``ledger-monitor``'s loop (docs/monitor.md)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from monitor.builtin import BuiltinDetector
from monitor.fraudsim import simulate
from monitor.fraudsim.feed import feed
from monitor.score import Summary, score_lines
from harness.localnet import LocalCluster

pytestmark = pytest.mark.cluster


async def test_fraudsim_feeds_a_cluster_and_the_export_scores(tmp_path: Path) -> None:
    txs = simulate(5, accounts=60, anomaly_rate=0.05)[:250]
    cluster = LocalCluster(tmp_path / "cluster", 4)
    try:
        await cluster.start_all()
        urls = [cluster.url(i) for i in range(4)]
        ids = await feed(txs, urls, cluster.dir / "keys" / "demo.json", rate=1000.0, batch=100)
        assert len(ids) == len(txs)
        await cluster.wait_committed([0, 1, 2, 3], ids[-1], timeout=60)
        lines = []
        for rid in ids:
            status, doc = await cluster.get(1, f"/v1/records/{rid}")
            assert status == 200 and doc["status"] == "committed", doc
            lines.append(orjson.dumps({"id": rid, "height": doc["height"], "time": doc["record"]["ts"],
                                       "record": doc["record"]}))
    finally:
        await cluster.stop_all()
    position = {rid: i for i, rid in enumerate(ids)}
    for i, line in enumerate(lines):
        record = orjson.loads(line)["record"]
        assert record["kind"] == txs[i].kind and record["body"]["amount"] == txs[i].amount
        assert all(position[p] < i for p in record["parents"])
    assert any(orjson.loads(line)["record"]["parents"] for line in lines)
    summary = Summary()
    scores = list(score_lines(lines, BuiltinDetector(), summary=summary))
    assert summary.scored == len(ids) and summary.malformed == 0
    assert [s["id"] for s in scores] == ids
