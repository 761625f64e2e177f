"""Schemathesis against /openapi.json of a real, committing 4-node cluster:
no 5xx, every response's status, content type and body match the document.

The CI version runs ``SCHEMATHESIS_EXAMPLES`` (default 25) cases per
operation; ``scripts/faults fuzz`` runs thousands.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest
from test_cluster import Submitter, submit

from harness.faults import run_schemathesis
from harness.localnet import LocalCluster

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(shutil.which("schemathesis", path=str(Path(sys.executable).parent))
                                 is None, reason="schemathesis not installed (pip install "
                                                 "-e .[test])")]

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))


# CI fuzzes the secure node, every case signed so that it reaches the
# handlers; unsigned fuzzing is --runslow (the suite's time).
@pytest.mark.parametrize("secure", [pytest.param(False, marks=pytest.mark.slow), True])
async def test_schemathesis_live_node(tmp_path: Path, secure: bool) -> None:
    """``secure``: TLS, and every fuzzed request signed by a key with the
    roles audit and submit (issue 24, "Done when")."""
    c = LocalCluster(tmp_path / "cluster", 4, tls=secure, auth=secure)
    try:
        everyone = await c.start_all()
        sub = Submitter(c)
        batch = sub.lineage(10)
        await submit(c, 0, batch)
        await c.wait_committed(everyone, batch[-1].id.hex())
        result = await asyncio.to_thread(
            run_schemathesis, c.url(0), tmp_path / "st", EXAMPLES, 1, ca_file=c.ca_file,
            signing_key=c.harness_key if secure else None)
        print(result.output[-4000:])
        assert result.cases > 0, result.output[-2000:]
        assert result.server_errors == 0, result.output[-4000:]
        assert result.exit_code == 0, result.output[-4000:]
        # Signed requests got through: reads answered 200, not only refusals.
        assert result.statuses.get(200, 0) > 0, result.statuses
        print("statuses:", result.statuses)
        # The nodes are still healthy and committing after the fuzzing.
        more = [sub.envelope() for _ in range(5)]
        await submit(c, 0, more)
        await c.wait_committed(everyone, more[-1].id.hex())
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")
