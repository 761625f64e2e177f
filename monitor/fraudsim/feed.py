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


def record_of(tx: Tx, live: dict[int, str]) -> RecordSpec:
    origin = {k: v for k, v in (("account", tx.account), ("country", tx.country), ("system", tx.system),
                                ("channel", tx.channel), ("device", tx.device)) if v}
    body: dict[str, Any] = {"amount": tx.amount, "currency": "EUR", "counterparty": tx.counterparty}
    if tx.mcc:
        body["merchant_category"] = tx.mcc
    # Nodes refuse a record whose parent they do not know (unknown_parent), so
    # a refund of a record that does not exist goes out naming nothing, and a
    # parent that was not fed (a stream cut with --limit) is left out.
    parents = [live[id(p)] for p in tx.parents if isinstance(p, Tx) and id(p) in live]
    return {"kind": tx.kind, "origin": origin, "body": body, "parents": parents}


async def feed(txs: Sequence[Tx], nodes: Sequence[str], key_file: str | Path, *, rate: float = 500.0,
               batch: int = 200, client: LedgerClient | None = None,
               clock: Callable[[], float] = time.monotonic) -> list[str]:
    """Submit ``txs`` in order at about ``rate`` records per second."""
    own = client is None
    lc = client if client is not None else LedgerClient(list(nodes), key_file)
    live: dict[int, str] = {}
    ids: list[str] = []
    try:
        if own:
            await lc.__aenter__()
        start = clock()
        for i in range(0, len(txs), batch):
            chunk = txs[i:i + batch]
            # a child whose parent is in the same batch waits for the parent's id (see _submit_part)
            ids.extend(await _submit_part(lc, chunk, live))
            ahead = (i + len(chunk)) / rate - (clock() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        if own:
            await lc.__aexit__(None, None, None)
    return ids


async def _submit_part(lc: LedgerClient, part: Sequence[Tx], live: dict[int, str]) -> list[str]:
    out: list[str] = []
    pending: list[Tx] = []
    waiting = {id(tx) for tx in part}
    for tx in part:
        if any(isinstance(p, Tx) and id(p) in waiting and id(p) not in live for p in tx.parents):
            out.extend(await _flush(lc, pending, live))
            pending = []
        pending.append(tx)
    out.extend(await _flush(lc, pending, live))
    return out


async def _flush(lc: LedgerClient, txs: list[Tx], live: dict[int, str]) -> list[str]:
    if not txs:
        return []
    got = await lc.submit_many([record_of(tx, live) for tx in txs])
    for tx, rid in zip(txs, got):
        live[id(tx)] = rid
    return got
