"""Peer transport on loopback, in one process: handshake, signed frames,
refusal of strangers, bad signatures and replays, bounded queues, reconnect,
inbound handshakes limited per address."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import genesis_doc, make_keys

from ledger.crypto import SigningKey
from ledger.genesis import Genesis, parse_genesis
from node import frames
from harness.localnet import free_base_port
from node.handshake_limit import HandshakeLimiter
from node.metrics import Metrics
from node.transport import PeerTransport, TransportSettings

SETTINGS = TransportSettings(queue_size=16, reconnect_initial_s=0.05, reconnect_max_s=0.2,
                             heartbeat_s=1.0, handshake_timeout_s=2.0)


class Peer:
    def __init__(self, genesis: Genesis, key: SigningKey, index: int, port: int,
                 settings: TransportSettings = SETTINGS) -> None:
        self.metrics = Metrics()
        self.now = 0.0  # the transport's clock: tests move it by hand
        self.received: list[tuple[int, bytes]] = []
        self.got = asyncio.Event()
        peers = tuple(v for v in genesis.validators if v.index != index)
        self.transport = PeerTransport(genesis, key, peers, self.metrics, settings,
                                       self._on_frame, clock=lambda: self.now)
        self.port = port
        self.runner: web.AppRunner | None = None

    def _on_frame(self, peer: int, body: bytes) -> None:
        self.received.append((peer, body))
        self.got.set()

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get(frames.PEER_PATH, self.transport.handle_inbound)])
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        await self.transport.start()

    async def stop(self) -> None:
        await self.transport.stop()
        if self.runner is not None:
            await self.runner.cleanup()

    def counter(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


@pytest.fixture
async def trio() -> AsyncIterator[tuple[Genesis, list[SigningKey], list[Peer]]]:
    base = free_base_port(3)
    ports = [base, base + 1, base + 2]
    keys = make_keys(3)
    doc = genesis_doc(keys, make_keys(1, 1_000_000), "t")
    for v, port in zip(doc["validators"], ports):
        v["address"] = f"127.0.0.1:{port}"
    genesis = parse_genesis(doc)
    peers = [Peer(genesis, keys[i], i, ports[i]) for i in range(3)]
    for p in peers:
        await p.start()
    try:
        yield genesis, keys, peers
    finally:
        for p in peers:
            await p.stop()


async def test_peers_connect_and_exchange_frames(trio: Any) -> None:
    _, _, peers = trio
    await until(lambda: all(len(p.transport.connected()) == 2 for p in peers))
    peers[0].transport.broadcast(b"hello")
    await until(lambda: all(p.received for p in peers[1:]))
    assert peers[1].received == [(0, b"hello")] and peers[2].received == [(0, b"hello")]
    for i in range(SETTINGS.queue_size):  # a full queue's worth, in order
        peers[1].transport.send(2, i.to_bytes(2, "big"))
    await until(lambda: len(peers[2].received) == 1 + SETTINGS.queue_size)
    assert [b for _, b in peers[2].received[1:]] == \
        [i.to_bytes(2, "big") for i in range(SETTINGS.queue_size)]
    status = peers[0].transport.status()
    assert [s["connected"] for s in status] == [True, True]


async def _dial(port: int, genesis: Genesis, me: SigningKey, listener: bytes,
                session: aiohttp.ClientSession) -> tuple[aiohttp.ClientWebSocketResponse, bytes]:
    ws = await session.ws_connect(f"http://127.0.0.1:{port}{frames.PEER_PATH}")
    nonce = frames.fresh_nonce()
    await ws.send_bytes(frames.hello(genesis, me, listener, nonce))
    msg = await ws.receive()
    theirs = frames.check_challenge(genesis, me, listener, nonce, msg.data)
    await ws.send_bytes(frames.auth(genesis, me, listener, theirs))
    assert (await ws.receive()).data == frames.READY
    return ws, frames.session_id(nonce, theirs)


async def test_bad_frames_are_dropped_and_counted(trio: Any) -> None:
    genesis, keys, peers = trio
    target = peers[2]
    async with aiohttp.ClientSession() as session:
        ws, sid = await _dial(target.port, genesis, keys[0], keys[2].public_key, session)
        good = frames.seal(keys[0], sid, 1, b"one")
        forged = frames.seal(keys[1], sid, 2, b"forged")  # signed by someone else
        await ws.send_bytes(good)
        await ws.send_bytes(good)  # replay
        await ws.send_bytes(forged)
        await ws.send_bytes(b"\xc1garbage")
        await ws.send_bytes(frames.seal(keys[0], sid, 2, b"two"))
        await until(lambda: sum(1 for p, _ in target.received if p == 0) == 2)
        await ws.close()
    assert [b for p, b in target.received if p == 0] == [b"one", b"two"]
    assert target.counter("ledger_peer_frames_dropped_total", reason="replay") == 1
    assert target.counter("ledger_peer_frames_dropped_total", reason="bad_signature") == 1
    assert target.counter("ledger_peer_frames_dropped_total", reason="malformed") == 1


async def test_a_failed_link_is_logged_not_counted_as_a_frame(
        trio: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A text message is a frame dropped as ``not_binary``; a message over
    max_frame_bytes fails the link (aiohttp hands the reader an ERROR),
    which is logged with its cause and counted as no frame."""
    genesis, keys, peers = trio
    target = peers[2]
    async with aiohttp.ClientSession() as session:
        ws, sid = await _dial(target.port, genesis, keys[0], keys[2].public_key, session)
        await ws.send_str("text")
        await ws.send_bytes(frames.seal(keys[0], sid, 1, b"one"))
        await until(lambda: any(p == 0 for p, _ in target.received))
        with caplog.at_level(logging.WARNING, logger="node.transport"):
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await ws.send_bytes(bytes(SETTINGS.max_frame_bytes + 1))
            await until(lambda: "inbound peer link from node0 failed" in caplog.text)
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await ws.close()
    assert "exceeds limit" in caplog.text
    assert target.counter("ledger_peer_frames_dropped_total", reason="not_binary") == 1


async def test_strangers_and_impostors_are_refused(trio: Any) -> None:
    genesis, keys, peers = trio
    target = peers[1]
    stranger = make_keys(1, 5_000_000)[0]
    async with aiohttp.ClientSession() as session:
        # Not a genesis validator.
        ws = await session.ws_connect(f"http://127.0.0.1:{target.port}{frames.PEER_PATH}")
        await ws.send_bytes(frames.hello(genesis, stranger, keys[1].public_key,
                                         frames.fresh_nonce()))
        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        # Claims to be validator 0 but cannot sign as it.
        ws = await session.ws_connect(f"http://127.0.0.1:{target.port}{frames.PEER_PATH}")
        nonce = frames.fresh_nonce()
        hello = frames.hello(genesis, keys[0], keys[1].public_key, nonce)
        await ws.send_bytes(hello)
        msg = await ws.receive()
        theirs = frames.check_challenge(genesis, keys[0], keys[1].public_key, nonce, msg.data)
        await ws.send_bytes(frames.auth(genesis, stranger, keys[1].public_key, theirs))
        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert target.counter("ledger_peer_handshakes_failed_total", reason="unknown_peer") == 1
    assert target.counter("ledger_peer_handshakes_failed_total", reason="bad_signature") == 1


async def test_full_queue_drops_and_dead_peer_does_not_block(trio: Any) -> None:
    _, _, peers = trio
    await until(lambda: len(peers[0].transport.connected()) == 2)
    await peers[2].stop()
    await until(lambda: peers[0].transport.connected() == [1])
    for i in range(SETTINGS.queue_size + 5):
        peers[0].transport.send(2, b"x%d" % i)
    assert peers[0].counter("ledger_peer_outbound_dropped_total", peer="node2",
                            reason="full") == 5
    peers[0].transport.send(1, b"still flowing")
    await until(lambda: (0, b"still flowing") in peers[1].received)


async def test_dead_peers_queue_is_bounded_in_bytes(trio: Any) -> None:
    """Big frames (gossip batches) for a dead peer stop queueing at the byte
    bound, long before the frame-count bound; an empty queue takes any frame."""
    _, _, peers = trio
    await until(lambda: len(peers[0].transport.connected()) == 2)
    await peers[2].stop()
    await until(lambda: peers[0].transport.connected() == [1])
    transport = peers[0].transport
    transport.settings = dataclasses.replace(SETTINGS, queue_bytes=1000)
    assert transport.send(2, b"a" * 5000)       # alone in the queue: taken
    assert not transport.send(2, b"b")          # over the bound now
    assert peers[0].counter("ledger_peer_outbound_dropped_total", peer="node2",
                            reason="full") == 1
    assert transport.links[2].queued_bytes == 5000


async def test_frames_that_waited_too_long_are_dropped_not_sent(trio: Any) -> None:
    """A restarted peer is not fed what was queued for it long ago (gossip
    its catch-up brings in blocks anyway); recent frames still arrive, in order."""
    genesis, keys, peers = trio
    await until(lambda: len(peers[0].transport.connected()) == 2)
    await peers[1].stop()
    await until(lambda: 1 not in peers[0].transport.connected())
    sender = peers[0]
    for i in range(3):
        sender.transport.send(1, b"old%d" % i)
    sender.now += SETTINGS.max_age_s + 0.1
    sender.transport.send(1, b"fresh")
    fresh = Peer(genesis, keys[1], 1, peers[1].port)
    peers[1] = fresh
    await fresh.start()
    await until(lambda: (0, b"fresh") in fresh.received)
    assert [body for _, body in fresh.received] == [b"fresh"]
    assert sender.counter("ledger_peer_outbound_dropped_total", peer="node1",
                          reason="stale") == 3
    assert sender.transport.links[1].queued_bytes == 0


async def test_reconnects_after_restart(trio: Any) -> None:
    genesis, keys, peers = trio
    await until(lambda: len(peers[0].transport.connected()) == 2)
    await peers[1].stop()
    await until(lambda: 1 not in peers[0].transport.connected())
    fresh = Peer(genesis, keys[1], 1, peers[1].port)
    peers[1] = fresh
    await fresh.start()
    await until(lambda: 1 in peers[0].transport.connected())
    peers[0].transport.send(1, b"again")
    await until(lambda: (0, b"again") in fresh.received)


async def _forge_handshake(port: int, genesis: Genesis, claimed: SigningKey, listener: bytes,
                           session: aiohttp.ClientSession) -> bool:
    """One forged handshake: a hello naming a validator, then an auth signed by
    a stranger.  True if the listener signed a challenge for it."""
    try:
        ws = await session.ws_connect(f"http://127.0.0.1:{port}{frames.PEER_PATH}")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 429
        return False
    nonce = frames.fresh_nonce()
    await ws.send_bytes(frames.hello(genesis, claimed, listener, nonce))
    msg = await ws.receive()
    theirs = frames.check_challenge(genesis, claimed, listener, nonce, msg.data)
    stranger = make_keys(1, 5_000_000)[0]
    await ws.send_bytes(frames.auth(genesis, stranger, listener, theirs))
    assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await ws.close()
    return True


async def test_forged_handshakes_are_rate_limited_per_address(
        caplog: pytest.LogCaptureFixture) -> None:
    """A burst of forged handshakes from one address: a bucket's worth of
    signed challenges, the rest refused (429) before anything is signed,
    counted, and logged as one summary line; then a genuine peer connects."""
    base = free_base_port(3)
    keys = make_keys(3)
    doc = genesis_doc(keys, make_keys(1, 1_000_000), "t")
    for i, v in enumerate(doc["validators"]):
        v["address"] = f"127.0.0.1:{base + i}"
    genesis = parse_genesis(doc)
    settings = dataclasses.replace(SETTINGS, handshake_burst=5, handshake_rate_per_s=1.0,
                                   handshake_log_interval_s=3600.0)
    target = Peer(genesis, keys[1], 1, base + 1, settings)  # its clock stays at 0: no refill
    await target.start()
    caplog.set_level(logging.WARNING, logger="node.transport")
    try:
        async with aiohttp.ClientSession() as session:
            signed = [await _forge_handshake(target.port, genesis, keys[0], keys[1].public_key,
                                             session) for _ in range(60)]
            assert sum(signed) == 5 and all(signed[:5])
            assert target.counter("ledger_peer_handshakes_failed_total",
                                  reason="rate_limited") == 55
            assert target.counter("ledger_peer_handshakes_failed_total",
                                  reason="bad_signature") == 5
            during = [r for r in caplog.records if r.name == "node.transport"]
            assert during == []  # nothing per attempt: the summary comes per interval
            line = target.transport.flush_handshake_report()
            assert line is not None and "refused 60 inbound peer handshakes" in line
            assert "bad_signature 5, rate_limited 55" in line and "127.0.0.1 (60)" in line
            logged = [r for r in caplog.records if r.name == "node.transport"]
            assert len(logged) == 1 and logged[0].levelno == logging.WARNING
            assert target.transport.flush_handshake_report() is None  # nothing new
            # A second later the bucket holds one handshake: a genuine peer's.
            target.now += 1.0
            ws, _ = await _dial(target.port, genesis, keys[0], keys[1].public_key, session)
            await ws.close()
            assert not await _forge_handshake(target.port, genesis, keys[0],
                                              keys[1].public_key, session)
    finally:
        await target.stop()


def test_handshake_buckets_refill_and_stay_bounded() -> None:
    limiter = HandshakeLimiter(rate_per_s=2.0, burst=3, max_addresses=2)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)  # another address has its own bucket
    assert not limiter.allow("a", 0.49)  # 0.98 of a token
    assert limiter.allow("a", 0.5) and not limiter.allow("a", 0.5)
    assert [limiter.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]  # capped
    assert not limiter.allow("a", 50.0)  # a clock stepping back refills nothing
    limiter.allow("c", 100.0)  # a third address forgets the least recent ("b")
    assert len(limiter._buckets) == 2 and "b" not in limiter._buckets


async def test_links_follow_the_validator_set(trio: Any) -> None:
    """PROTOCOL §9.9 (node/peers.py decides, the transport carries it out):
    a validator that left the set is no longer dialed, its inbound link is
    closed and its handshakes refused; one that (re-)enters is dialed."""
    genesis, _, peers = trio
    await until(lambda: all(len(p.transport.connected()) == 2 for p in peers))
    node = peers[0].transport
    gone = genesis.validators[2]
    linked = {v.pubkey: v.index for v in genesis.validators[1:]}
    node.index_of = linked.get
    del linked[gone.pubkey]
    node.set_peers([], [gone])
    assert node.connected() == [1] and [s["index"] for s in node.status()] == [1]
    await until(lambda: peers[0].counter("ledger_peer_handshakes_failed_total",
                                         reason="unknown_peer") >= 1)
    node.send(2, b"nothing")  # no link: dropped, never sent
    linked[gone.pubkey] = gone.index
    node.set_peers([gone], [])
    await until(lambda: node.connected() == [1, 2])
    await until(lambda: 0 in peers[2].transport.connected())
    node.send(2, b"back")
    await until(lambda: (0, b"back") in peers[2].received)
    assert (0, b"nothing") not in peers[2].received


async def test_an_added_validator_whose_address_cannot_be_dialed_is_not(trio: Any) -> None:
    """A gov.validator.add may carry any address text: the link is kept (its
    own dials are accepted) but never dialed, and nothing else breaks."""
    genesis, _, peers = trio
    node = peers[0].transport
    odd = dataclasses.replace(genesis.validators[2], index=7, name="odd", address="no-port")
    node.set_peers([odd], [])
    assert node.links[7].task is None and not node.links[7].up
    node.set_key(make_keys(1, 6_000_000)[0])  # redials every dialable link, not this one
    assert node.links[7].task is None and node.links[1].task is not None
