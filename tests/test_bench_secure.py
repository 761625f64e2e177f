"""harness/bench_secure.py runs end to end on a TLS + authentication cluster
and reports every figure (a smoke test; the figures are in docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.bench_secure import concurrent_pair, one_run

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


async def test_one_secure_run_reports_every_figure(tmp_path: Path) -> None:
    r = await one_run(tmp_path, "on", True, records=4000, duration=3.0, warmup=1.0,
                      request=500, inflight=2, probes=3, proof_seconds=1.0, proof_clients=2)
    assert r["tls_and_auth"] is True
    assert r["records_per_s"] > 0 and r["offered_all"] in (True, False)
    assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"]
    assert r["proofs_per_s"] > 0 and r["proof_errors"] == 0
    assert r["round_changes"] >= 0 and r["proposals_parked"] >= 0
    assert all(rate >= 0 for rate in r["rates_per_s"])


async def test_one_policy_run_installs_the_policy_and_reports(tmp_path: Path) -> None:
    """``--policy``: the policy and its lists installed by governance before
    the load, in force for the load (the last probe's verdict names its version)."""
    r = await one_run(tmp_path, "policy", False, records=3000, duration=3.0, warmup=1.0,
                      request=500, inflight=2, probes=3, proof_seconds=1.0, proof_clients=2,
                      policy=True, list_size=3000)
    assert r["policy"] is True and r["governance_records"] > 5
    assert r["probe_verdict"]["policy_version"] == 1
    assert r["records_per_s"] >= 0 and 0 < r["latency_p50_ms"] <= r["latency_p99_ms"]


async def test_a_concurrent_pair_loads_both_clusters_at_once(tmp_path: Path) -> None:
    """``--concurrent``: both arms measured over the same seconds, the
    policy in force in one of them only."""
    off, on = await concurrent_pair(tmp_path, "pair0", records=3000, duration=3.0, warmup=1.0,
                                    request=500, inflight=2, list_size=3000)
    assert (off["policy"], on["policy"]) == (False, True) and on["governance_records"] > 5
    assert off["concurrent"] and on["concurrent"]
    assert off["committed"] > 0 and on["committed"] > 0
    assert off["cpu_us_per_record_per_node"] > 0 and on["cpu_us_per_record_per_node"] > 0
