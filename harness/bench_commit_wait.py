"""How late a client learns of its record's commit: the SDK's
``wait_committed`` with the long poll (``GET /v1/records/{id}?wait_ms=N``)
against the polling it replaced (20 ms, doubling to 0.5 s), on one idle
4-validator cluster, one record at a time, the two ways in alternation, so
that both see the same machine.  Beside each: when node 0 pushed the block
that commits the record (``GET /v1/stream``), the floor of any client.

    python -m harness.bench_commit_wait --records 100

One JSON line: per way, p50 / p90 / p99 of submit -> learnt, and of
submit -> pushed for the same records.  Harness code: nothing in the
runtime imports it.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from client import LedgerClient
from client.errors import LedgerAPIError

from .bench_latency import Event, latencies_ms, start_following, stop_following
from .bench_measure import pct
from .bench_setup import new_cluster, start_cluster


async def poll_committed(lc: LedgerClient, record_id: str, timeout: float = 30.0) -> None:
    """The SDK's wait_committed before the long poll: ask, then wait 20 ms,
    doubling up to 0.5 s."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        try:
            if (await lc.record(record_id)).get("status") == "committed":
                return
        except LedgerAPIError as exc:
            if exc.code not in ("not_found", "not_committed"):
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise TimeoutError(record_id)


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(ms, 50), 1), "p90_ms": round(pct(ms, 90), 1),
            "p99_ms": round(pct(ms, 99), 1)}


async def run(records: int, gap: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-commit-wait-") as tmp:
        c = new_cluster(Path(tmp), "wait", 1000)
        try:
            await start_cluster(c)
            first = await c.status(0)
            assert first is not None
            events: list[Event] = []
            follower = await start_following(c.http(), c.url(0), first["height"] + 1, events)
            learnt: dict[str, list[float]] = {"long_poll": [], "poll": []}
            sent: dict[str, dict[bytes, float]] = {"long_poll": {}, "poll": {}}
            load0 = os.getloadavg()
            async with LedgerClient([c.url(i) for i in range(4)],
                                    key_file=c.dir / "keys" / "demo.json") as lc:
                for k in range(records):
                    way = "long_poll" if k % 2 else "poll"
                    t0 = time.perf_counter()
                    rid = await lc.submit(kind="payment", body={"amount": 100 + k})
                    if way == "long_poll":
                        await lc.wait_committed(rid)
                    else:
                        await poll_committed(lc, rid)
                    learnt[way].append((time.perf_counter() - t0) * 1000)
                    sent[way][bytes.fromhex(rid)] = t0
                    await asyncio.sleep(gap)
            await asyncio.sleep(0.5)
            await stop_following(follower)
            out: dict[str, Any] = {"records": records, "load_start": load0,
                                   "load_end": os.getloadavg()}
            for way in learnt:
                pushed, _ = latencies_ms(events, sent[way], float("inf"))
                out[way] = {"learnt": summary(learnt[way]), "pushed": summary(pushed),
                            "n": len(learnt[way])}
            return out
        finally:
            await c.stop_all()


@click.command()
@click.option("--records", type=int, default=100, show_default=True,
              help="records, one at a time, the two ways in alternation")
@click.option("--gap", type=float, default=0.05, show_default=True,
              help="seconds between one record's commit and the next submission")
def main(records: int, gap: float) -> None:
    """Submit -> commit learnt: long poll against the old polling."""
    click.echo(json.dumps(asyncio.run(run(records, gap))))


if __name__ == "__main__":
    main()
