"""Slow-loris clients against a real node: connections that trickle their
headers or never finish their body.  Other clients keep being served (status,
submissions that commit); a head that does not arrive within
``http.header_timeout_ms`` has its connection closed (and counted in
``ledger_http_connections_timed_out``); a body that does not arrive within
``http.body_timeout_ms`` is refused and its connection closed, and slow
bodies never hold one of the ``max_inflight_requests`` slots."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from test_cluster import Submitter, submit

from harness.localnet import LocalCluster, until

pytestmark = pytest.mark.cluster

INFLIGHT = 8
SLOW = 3 * INFLIGHT  # more slow clients than inflight slots
EDITS = {i: [("max_body_bytes = 16777216",
              (f"max_body_bytes = 16777216\nmax_inflight_requests = {INFLIGHT}\n"
              "body_timeout_ms = 1500\nheader_timeout_ms = 1000"))] for i in range(4)}


async def test_slow_loris_clients(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "cluster", 4, toml_edits=EDITS)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        everyone = await c.start_all()
        port = c.base_port
        slow_bodies, slow_heads = [], []
        for k in range(SLOW):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            conns.append((reader, writer))
            if k % 2 == 0:  # headers that never end
                writer.write(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                slow_heads.append(reader)
            else:  # a body that never arrives
                writer.write(b"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                             b'{"envelopes": [')
                slow_bodies.append(reader)
            await writer.drain()

        # Everyone else is served while the slow clients hang on.
        sub = Submitter(c)
        for _ in range(3):
            status, doc = await c.get(0, "/v1/status")
            assert status == 200, doc
            batch = [sub.envelope() for _ in range(20)]
            await submit(c, 0, batch)  # 202, not 429: slow bodies hold no inflight slot
            await c.wait_committed(everyone, batch[-1].id.hex())

        # Each slow body is answered (400, naming the timeout) and closed.
        answers: list[bytes] = []

        async def read_answer(reader: asyncio.StreamReader) -> None:
            answers.append(await reader.read(4096))

        started = time.monotonic()
        readers = [asyncio.create_task(read_answer(r)) for r in slow_bodies]

        async def all_answered() -> bool:
            return all(t.done() for t in readers)

        await until(all_answered, 30, "slow bodies to be refused")
        print(f"slow bodies refused after {time.monotonic() - started:.1f}s")
        assert all(a.startswith(b"HTTP/1.1 400") and b"body_timeout" in a for a in answers), \
            answers[:2]
        # Each slow head is closed by the server (EOF), and counted.
        heads = [asyncio.create_task(read_answer(r)) for r in slow_heads]
        answers.clear()

        async def heads_closed() -> bool:
            return all(t.done() for t in heads)

        await until(heads_closed, 30, "slow heads to be closed")
        assert answers == [b""] * len(slow_heads)
        timed_out = await c.metric(0, "ledger_http_connections_timed_out_total", reason="head")
        print(f"{len(slow_heads)} slow heads closed; ledger_http_connections_timed_out "
              f"head={timed_out:g}")
        assert timed_out >= len(slow_heads)
        status, _ = await c.get(0, "/health")
        assert status == 200
    finally:
        for _, writer in conns:
            writer.close()
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")
