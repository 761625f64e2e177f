"""Feed a fraudsim stream to a live cluster through the SDK.

Records are signed with one key file (the service fraudsim plays), carry
the stream's kind, origin and body, and name their parents by the ids the
live chain gave the parents' records; the signing time is now, so node
record-time windows accept them.  A refund naming a record that does not
exist goes out naming nothing (nodes refuse unknown parents); a parent that
was not fed is left out.  Returns the live ids in stream order, aligned with the labels.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from client.sdk import LedgerClient
from client.types import RecordSpec

from .world import Tx


def record_of(tx: Tx, live: dict[int, str], ts_base: int | None = None) -> RecordSpec:
    origin = {k: v for k, v in (("account", tx.account), ("country", tx.country), ("system", tx.system),
                                ("channel", tx.channel), ("device", tx.device)) if v}
    body: dict[str, Any] = {"amount": tx.amount, "currency": "EUR", "counterparty": tx.counterparty}
    if tx.mcc:
        body["merchant_category"] = tx.mcc
    # Nodes refuse a record whose parent they do not know (unknown_parent), so
    # a refund of a record that does not exist goes out naming nothing, and a
    # parent that was not fed (a stream cut with --limit) is left out.
    parents = [live[id(p)] for p in tx.parents if isinstance(p, Tx) and id(p) in live]
    spec: RecordSpec = {"kind": tx.kind, "origin": origin, "body": body, "parents": parents}
    if ts_base is not None:
        spec["ts"] = ts_base + tx.t
    return spec


async def feed(txs: Sequence[Tx], nodes: Sequence[str], key_file: str | Path, *, rate: float = 500.0,
               batch: int = 200, client: LedgerClient | None = None,
               clock: Callable[[], float] = time.monotonic, stream_time: bool = False,
               inflight: int = 4) -> list[str]:
    """Submit ``txs`` in order at about ``rate`` records per second.

    Up to ``inflight`` batches are submitted at once (a node acknowledges a
    batch once it is durable, so one batch at a time waits for each of its
    writes); a batch holding a child of a record still in flight waits for
    that record's batch, as nodes refuse a client's record whose parent
    they do not know yet.

    ``stream_time``: each record's ``ts`` keeps the stream's spacing, the
    last record a minute before the feed starts (the chain's
    ``record_ts_past_ms`` must cover the stream's days); otherwise records
    carry the signing time, and days of traffic arrive within seconds."""
    own = client is None
    lc = client if client is not None else LedgerClient(list(nodes), key_file)
    live: dict[int, str] = {}
    ids: list[str] = []
    ts_base = (int(time.time() * 1000) - 60_000 - max((tx.t for tx in txs), default=0)
               if stream_time else None)
    tasks: list[asyncio.Task[list[str]]] = []
    chunk_of: dict[int, asyncio.Task[list[str]]] = {}  # id(tx) -> its batch's submission
    try:
        if own:
            await lc.__aenter__()
        start = clock()
        running: set[asyncio.Task[list[str]]] = set()
        for i in range(0, len(txs), batch):
            chunk = txs[i:i + batch]
            needs = {chunk_of[id(p)] for tx in chunk for p in tx.parents
                     if isinstance(p, Tx) and id(p) in chunk_of and id(p) not in live}
            task = asyncio.create_task(_after(needs, lc, chunk, live, ts_base))
            tasks.append(task)
            running.add(task)
            task.add_done_callback(running.discard)
            chunk_of.update((id(tx), task) for tx in chunk)
            while len(running) >= max(inflight, 1):
                done, _ = await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    finished.result()  # a batch refused for good stops the feed
            ahead = (i + len(chunk)) / rate - (clock() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
        for part in await asyncio.gather(*tasks):
            ids.extend(part)
    finally:
        for task in tasks:
            task.cancel()
        if own:
            await lc.__aexit__(None, None, None)
    return ids


async def _after(needs: set[asyncio.Task[list[str]]], lc: LedgerClient, part: Sequence[Tx],
                 live: dict[int, str], ts_base: int | None) -> list[str]:
    """Submit ``part`` once the batches holding its parents are accepted."""
    for task in needs:
        await asyncio.shield(task)
    # a child whose parent is in the same batch waits for the parent's id (see _submit_part)
    return await _submit_part(lc, part, live, ts_base)


async def _submit_part(lc: LedgerClient, part: Sequence[Tx], live: dict[int, str],
                       ts_base: int | None = None) -> list[str]:
    out: list[str] = []
    pending: list[Tx] = []
    waiting = {id(tx) for tx in part}
    for tx in part:
        if any(isinstance(p, Tx) and id(p) in waiting and id(p) not in live for p in tx.parents):
            out.extend(await _flush(lc, pending, live, ts_base))
            pending = []
        pending.append(tx)
    out.extend(await _flush(lc, pending, live, ts_base))
    return out


async def _flush(lc: LedgerClient, txs: list[Tx], live: dict[int, str],
                 ts_base: int | None = None) -> list[str]:
    if not txs:
        return []
    got = await lc.submit_many([record_of(tx, live, ts_base) for tx in txs])
    for tx, rid in zip(txs, got):
        live[id(tx)] = rid
    return got
