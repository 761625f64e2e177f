"""Forged peer handshakes from one address against one listener (issue 21).

Starts a PeerTransport listener on loopback with the default settings and
sends N hellos that name validator 0, each followed by an auth signed by a
stranger, as fast as one client can.  Prints how many challenges the
listener signed, how many attempts it refused, and the WARNING lines (and
bytes) its transport logged during the flood and after the summary.

    .venv/bin/python scripts/handshake_flood.py [N=3000]
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.crypto import SigningKey  # noqa: E402
from ledger.genesis import parse_genesis  # noqa: E402
from node import frames  # noqa: E402
from harness.localnet import free_base_port  # noqa: E402
from node.metrics import Metrics  # noqa: E402
from node.transport import PeerTransport, TransportSettings  # noqa: E402


async def flood(count: int) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("node.transport")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    base = free_base_port(3)
    keys = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
    stranger = SigningKey(b"\xee" * 32)
    genesis = parse_genesis({
        "chain": "flood",
        "validators": [{"name": f"node{i}", "pubkey": k.public_key.hex(),
                        "address": f"127.0.0.1:{base + i}"} for i, k in enumerate(keys)],
        "submitters": [],
    })
    transport = PeerTransport(genesis, keys[1], tuple(v for v in genesis.validators if v.index != 1),
                              Metrics(), TransportSettings(), lambda peer, body: None)
    app = web.Application()
    app.add_routes([web.get(frames.PEER_PATH, transport.handle_inbound)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", base + 1).start()
    url = f"http://127.0.0.1:{base + 1}{frames.PEER_PATH}"
    listener = keys[1].public_key
    signed = refused = 0
    start = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            try:
                ws = await session.ws_connect(url)
            except aiohttp.WSServerHandshakeError:
                refused += 1
                continue
            nonce = frames.fresh_nonce()
            await ws.send_bytes(frames.hello(genesis, keys[0], listener, nonce))
            msg = await ws.receive()
            theirs = frames.check_challenge(genesis, keys[0], listener, nonce, msg.data)
            signed += 1
            await ws.send_bytes(frames.auth(genesis, stranger, listener, theirs))
            await ws.receive()
            await ws.close()
    took = time.perf_counter() - start
    during = stream.getvalue()
    flush = getattr(transport, "flush_handshake_report", None)
    if flush is not None:
        flush()
    await runner.cleanup()
    after = stream.getvalue()
    print(f"{count} forged handshakes in {took:.2f} s: {signed} challenges signed, "
          f"{refused} refused; WARNING lines during the flood: {during.count(chr(10))} "
          f"({len(during)} bytes), with the summary: {after.count(chr(10))} ({len(after)} bytes)")


if __name__ == "__main__":
    asyncio.run(flood(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
