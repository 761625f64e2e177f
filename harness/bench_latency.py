"""Submit -> commit latency at fixed offered rates, with one signature per
record or signed batches (issue 28), commits learned by push.

Each run is a fresh 4-validator cluster (:func:`harness.bench_setup.new_cluster`,
the benchmark's consensus parameters).  The load is signed before the clock
starts (:func:`harness.bench_batches.signed_load`) and offered open-loop: every
``--tick`` seconds one POST of ``rate x tick`` envelopes, to the nodes in
turn.  A record's latency runs from just before its POST to the moment node 0
pushes the block that commits it on ``GET /v1/stream`` (server-sent events,
sent as the block is committed): no polling period is added to the figure,
which :mod:`harness.bench`'s latency scenario (a 10 ms status poll and a block
read) does add.  The event's envelopes are decoded after the run, so the
measuring process does little while it times.

Runs go in the order given, ``--repeat`` times (rates x sign batches each
round), so that two code versions can be compared in alternation: run the
same command from a checkout of the other version with ``PYTHONPATH`` set to
it (the nodes are started with this interpreter and inherit the variable).

    python -m harness.bench_latency --rate 500 --sign-batch 1 --sign-batch 64 --seconds 20
    python -m harness.bench_latency --rate 10000 --sign-batch 64 --seconds 20

One JSON line per run on stdout (percentiles, committed records/s while
offering, load averages, the nodes' CPU seconds and this process's, and what
each node counted: rounds past round 0, refused inputs by code, compact
proposals by outcome, dropped peer messages, collector time:
:data:`harness.bench_measure.COUNTERS`); ``--out`` collects them.  Harness
code: nothing in the runtime imports it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import click
import msgpack
import orjson

from .bench_batches import signed_load
from .bench_measure import counters_by_name, cpu_seconds, node_counters, pct, quiet_collector
from .bench_setup import DEFAULT_BLOCK_RECORDS, RESEND_S, new_cluster, offer_at_ticks, start_cluster


def record_id(envelope: bytes) -> bytes:
    """A record's id: SHA-256 of its canonical record bytes."""
    return hashlib.sha256(msgpack.unpackb(envelope, raw=True)[b"record"]).digest()


# (when node 0 pushed it, height, its envelopes in base64)
Event = tuple[float, int, list[str]]


async def start_following(session: aiohttp.ClientSession, url: str, first_height: int,
                          events: list[Event]) -> asyncio.Task[None]:
    """Follow ``GET /v1/stream`` from ``first_height``, appending each block
    as it arrives; returns once connected (cancel the task to stop)."""
    connected = asyncio.Event()

    async def follow() -> None:
        async with session.get(f"{url}/v1/stream?from={first_height}", timeout=None) as r:
            if r.status != 200:
                raise RuntimeError(f"GET /v1/stream: {r.status}")
            connected.set()
            # By chunks, not by line: a block's one data line is far longer
            # than aiohttp's line limit.
            buf = bytearray()
            async for chunk in r.content.iter_any():
                now = time.perf_counter()
                buf += chunk
                while (end := buf.find(b"\n\n")) >= 0:
                    event = bytes(buf[:end])
                    del buf[:end + 2]
                    for line in event.split(b"\n"):
                        if line.startswith(b"data:"):
                            doc = orjson.loads(line[5:])
                            events.append((now, doc["height"], doc["envelopes"]))

    task = asyncio.create_task(follow())
    waiter = asyncio.create_task(connected.wait())
    done, _ = await asyncio.wait([task, waiter], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task in done or not connected.is_set():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise RuntimeError(f"could not follow {url}/v1/stream")
    return task


async def stop_following(task: asyncio.Task[None]) -> None:
    """Stop a follower; raise what stopped it early, if anything did."""
    if task.done():
        task.result()  # raises the follower's error
        raise RuntimeError("the stream ended before the run did")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def latencies_ms(events: list[Event], sent: dict[bytes, float], by: float
                 ) -> tuple[list[float], int]:
    """Submit -> commit of every record in ``sent`` (popped as found), and
    how many of them were committed by time ``by``."""
    lat: list[float] = []
    early = 0
    for t, _, envelopes in events:
        for b64 in envelopes:
            s = sent.pop(record_id(base64.b64decode(b64)), None)
            if s is not None:
                lat.append((t - s) * 1000)
                early += t <= by
    return lat, early


async def one_run(root: Path, name: str, rate: float, sign_batch: int, seconds: float,
                  tick: float, block_records: int, backoff_max: float) -> dict[str, Any]:
    c = new_cluster(root, name, block_records)
    try:
        await start_cluster(c)
        per_tick = max(1, round(rate * tick))
        ticks = max(1, int(seconds / tick))
        envs = signed_load(c.dir / "keys" / "demo.json", c.genesis.chain, per_tick * ticks,
                           sign_batch)
        ids = [record_id(e) for e in envs]
        bodies = [(ids[k:k + per_tick], msgpack.packb(envs[k:k + per_tick], use_bin_type=True))
                  for k in range(0, len(envs), per_tick)]
        del envs
        session = c.http()
        first = await c.status(0)
        if first is None:
            raise RuntimeError("node0 does not answer /v1/status")
        events: list[Event] = []
        quiet_collector()
        follower = await start_following(session, c.url(0), first["height"] + 1, events)
        sent: dict[bytes, float] = {}
        load0 = os.getloadavg()
        pids = [c.procs[i].pid for i in range(4)]
        cpu0, own0 = sum(cpu_seconds(p) for p in pids), sum(os.times()[:2])
        t0, offer_s, posts = await offer_at_ticks(
            session, [c.url(i) for i in range(4)], bodies, tick, sent, backoff_max)
        load_offered = os.getloadavg()
        retries = sum(await asyncio.gather(*posts))
        total = len(sent)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and sum(len(e[2]) for e in events) < total:
            await asyncio.sleep(0.1)
        await stop_following(follower)
        # The nodes' CPU and this process's (the load's resends and their
        # answers share the machine with the nodes) from the offer's start.
        cpu, own = sum(cpu_seconds(p) for p in pids) - cpu0, sum(os.times()[:2]) - own0
        counters = counters_by_name(await node_counters(c))
        lat, committed_by_offer_end = latencies_ms(events, sent, t0 + offer_s)
        last = max((t for t, _, _ in events), default=t0)
        heights = len(events)
        return {"run": name, "offered_per_s": rate, "sign_batch": sign_batch,
                "records_per_post": per_tick, "offered": total,
                "offer_s": round(offer_s, 2), "post_retries": retries,
                "resend_backoff_max_s": backoff_max,
                "committed_seen": len(lat), "not_seen_30s_after_offer": len(sent),
                "committed_per_s_while_offering": round(committed_by_offer_end / offer_s),
                "last_commit_after_offer_s": round(last - t0 - offer_s, 2),
                "blocks": heights, "records_per_block": round(len(lat) / max(heights, 1), 1),
                "p50_ms": round(pct(lat, 50), 1), "p90_ms": round(pct(lat, 90), 1),
                "p99_ms": round(pct(lat, 99), 1), "max_ms": round(max(lat, default=0), 1),
                "load_start": load0, "load_offered": load_offered,
                "nodes_cpu_s": round(cpu, 1), "harness_cpu_s": round(own, 1),
                "load_end": os.getloadavg(), "counters": counters}
    finally:
        await c.stop_all()


@click.command()
@click.option("--rate", "rates", type=float, multiple=True, default=(500.0,), show_default=True,
              help="offered records/s (repeatable)")
@click.option("--sign-batch", "sign_batches", type=int, multiple=True, default=(1, 64),
              show_default=True, help="records per signature (repeatable; 1: per record)")
@click.option("--seconds", type=float, default=20.0, show_default=True, help="offered for")
@click.option("--tick", type=float, default=0.05, show_default=True,
              help="one POST every tick, of rate x tick records")
@click.option("--repeat", type=int, default=1, show_default=True)
@click.option("--block-records", type=int, default=DEFAULT_BLOCK_RECORDS, show_default=True,
              help="max_block_records of the chain and the nodes (the cluster default)")
@click.option("--backoff-max", type=float, default=RESEND_S, show_default=True,
              help="a refused POST is sent again after 50 ms, doubling up to this (s)")
@click.option("--out", type=click.Path(path_type=Path), help="all runs as a JSON list")
def main(rates: tuple[float, ...], sign_batches: tuple[int, ...], seconds: float, tick: float,
         repeat: int, block_records: int, backoff_max: float, out: Path | None) -> None:
    """Open-loop offer at each rate; submit -> commit percentiles per run."""

    async def run() -> list[dict[str, Any]]:
        results = []
        with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
            for k in range(repeat):
                for rate in rates:
                    for sb in sign_batches:
                        r = await one_run(Path(tmp), f"r{k}-{rate:.0f}-sb{sb}", rate, sb,
                                          seconds, tick, block_records, backoff_max)
                        click.echo(json.dumps(r), nl=True)
                        results.append(r)
        return results

    results = asyncio.run(run())
    if out is not None:
        out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
