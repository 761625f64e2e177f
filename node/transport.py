"""Peer transport: persistent, authenticated WebSocket links between validators.

Each node dials every other validator at ``wss://<genesis address>/v1/peer``
(``ws://`` with ``tls.insecure_plaintext``; node/tls.py)
and uses that *outbound* link only to send; it receives on the links the
others dial to it.  One direction per connection means no tie-breaking
between simultaneous dials and no shared state between sending and receiving.

A slow or dead peer never blocks the others: :meth:`PeerTransport.send` puts
into that peer's bounded queue and never awaits; when the queue is full the
message is dropped and counted (consensus re-sends what matters on its own
timers, and catch-up fetches any block it missed).  A frame that waited
longer than ``max_age_s`` is dropped (and counted) instead of sent: after a
restart a peer would otherwise first decode and verify megabytes of gossip
for records its catch-up brings in committed blocks anyway.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from ledger.crypto import SigningKey
from ledger.genesis import Genesis, Validator

from . import frames
from .aio import cancel_all
from .config import peer_url
from .settings import PeersSettings
from .handshake_limit import HandshakeLimiter, HandshakeReport
from .metrics import Metrics
from .tls import NodeTls, peer_fingerprint

log = logging.getLogger("node.transport")

FrameHandler = Callable[[int, bytes], None]
PeerUpHandler = Callable[[int], None]


@dataclass(frozen=True)
class TransportSettings:
    queue_size: int = 4096
    # Also bounded in bytes: gossip frames hold hundreds of envelopes, and a
    # dead peer's queue of 4,096 of them would be hundreds of megabytes that
    # catch-up makes pointless anyway.
    queue_bytes: int = 16 * 1024 * 1024
    # Frames older than this when their link can take them are stale: the
    # consensus round they belong to is long over, and their records are in
    # blocks the peer will sync (or fetch as a proposal's missing leaves).
    max_age_s: float = 5.0
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 3.0
    heartbeat_s: float = 2.0
    handshake_timeout_s: float = 3.0
    max_frame_bytes: int = 32 * 1024 * 1024
    # Inbound handshakes per remote address: a bucket of this many, refilled
    # at this rate; the excess is refused before anything is signed.
    handshake_burst: int = 64
    handshake_rate_per_s: float = 8.0
    # Refused inbound handshakes are logged as one summary line per interval.
    handshake_log_interval_s: float = 10.0


@dataclass
class _Link:
    """The outbound side of one peer."""

    validator: Validator
    queue: asyncio.Queue[tuple[float, bytes]]  # (enqueued at, frame body)
    queued_bytes: int = 0
    up: bool = False
    inbound: int = 0  # authenticated inbound connections from this peer
    last_error: str = ""
    connected_since: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class PeerTransport:
    def __init__(
        self,
        genesis: Genesis,
        key: SigningKey,
        peers: tuple[Validator, ...],
        metrics: Metrics,
        settings: TransportSettings,
        on_frame: FrameHandler,
        on_peer_up: PeerUpHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        tls: NodeTls | None = None,
    ) -> None:
        self.genesis = genesis
        # With TLS: dial wss:// and bind handshakes to the listener's certificate.
        self.tls = tls
        self.clock = clock
        self.key = key
        self.metrics = metrics
        self.settings = settings
        self.on_frame = on_frame
        self.on_peer_up = on_peer_up
        self.links: dict[int, _Link] = {
            v.index: _Link(v, asyncio.Queue(settings.queue_size)) for v in peers
        }
        # The ids of the validators this node links with (node/peers.py); by
        # default the genesis set by genesis index.
        self.index_of: Callable[[bytes], int | None] = (
            lambda key: next((v.index for v in peers if v.pubkey == key), None))
        self._inbound_of: dict[int, set[web.WebSocketResponse]] = {}
        # Every key of ours a dialer may address (around a rotation, both).
        self.own_keys: dict[bytes, SigningKey] = {key.public_key: key}
        self._session: aiohttp.ClientSession | None = None
        self._inbound: set[web.WebSocketResponse] = set()
        self._closing = False
        self._stopped = asyncio.Event()
        self._handshake_limiter = HandshakeLimiter(settings.handshake_rate_per_s,
                                                   settings.handshake_burst)
        self.handshake_report = HandshakeReport()
        self._report_timer: asyncio.TimerHandle | None = None
        for v in peers:
            metrics.init_peer(v.name)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        for link in self.links.values():
            self._dial(link)

    def _dial(self, link: _Link) -> None:
        """Start the task that keeps ``link`` connected, unless its address
        cannot be dialed (a ``gov.validator.add`` may carry any text)."""
        try:
            peer_url(link.validator, frames.PEER_PATH, self.tls is not None)
        except ValueError:
            log.warning("validator %s's address %r is not host:port: not dialed (its own "
                        "links are accepted)", link.validator.name, link.validator.address)
            return
        link.task = asyncio.create_task(self._run_link(link),
                                        name=f"peer-link-{link.validator.index}")

    def set_peers(self, added: Sequence[Validator], removed: Sequence[Validator]) -> None:
        """The validator set moved (PROTOCOL §9.9): dial ``added`` (by peer
        id, at their address), stop the links with ``removed`` and close
        their inbound connections (their frames count for nothing now)."""
        for v in removed:
            link = self.links.pop(v.index, None)
            if link is not None:
                if link.task is not None:
                    link.task.cancel()
                self._set_up(link, False)
            for ws in list(self._inbound_of.pop(v.index, ())):
                asyncio.ensure_future(ws.close())
            log.info("validator %s left the sets in force: link closed", v.name)
        for v in added:
            if v.index in self.links:
                continue
            link = self.links[v.index] = _Link(v, asyncio.Queue(self.settings.queue_size))
            self.metrics.init_peer(v.name)
            log.info("validator %s joined the sets in force: dialing %s", v.name, v.address)
            if self._session is not None and not self._closing:
                self._dial(link)

    def set_key(self, key: SigningKey) -> None:
        """Sign handshakes and frames with ``key`` from now on (a rotation of
        our own validator key is in force): links made with the old key are
        redialed."""
        if key.public_key == self.key.public_key:
            return
        self.key = key
        for link in self.links.values():
            if link.task is not None and not self._closing:
                link.task.cancel()
                self._dial(link)
        for ws in list(self._inbound):
            asyncio.ensure_future(ws.close())

    async def stop(self) -> None:
        self._closing = True
        self._stopped.set()
        # If a cancellation is swallowed inside a library await, the stop
        # event still ends the send loop.
        stuck = await cancel_all([link.task for link in self.links.values()
                                  if link.task is not None], self.settings.handshake_timeout_s)
        if stuck:
            log.error("%d peer links did not stop", len(stuck))
        for ws in list(self._inbound):
            await ws.close()
        self.flush_handshake_report()
        if self._session is not None:
            await self._session.close()

    # -- sending -----------------------------------------------------------

    def send(self, peer: int, body: bytes) -> bool:
        """Queue ``body`` for ``peer``; False (and counted) if its queue is full."""
        link = self.links.get(peer)
        if link is None:
            return False
        # (An empty queue takes any frame, however large.)
        if link.queued_bytes and link.queued_bytes + len(body) > self.settings.queue_bytes:
            self.metrics.outbound_dropped.labels(peer=link.validator.name, reason="full").inc()
            return False
        try:
            link.queue.put_nowait((self.clock(), body))
        except asyncio.QueueFull:
            self.metrics.outbound_dropped.labels(peer=link.validator.name, reason="full").inc()
            return False
        link.queued_bytes += len(body)
        return True

    async def _take(self, link: _Link) -> bytes:
        """The next queued frame body that is not stale, its bytes released
        from the bound; stale ones are dropped and counted on the way."""
        stale = 0
        try:
            while True:
                queued_at, body = await link.queue.get()
                link.queued_bytes -= len(body)
                if self.clock() - queued_at <= self.settings.max_age_s:
                    return body
                stale += 1
        finally:
            if stale:
                self.metrics.outbound_dropped.labels(peer=link.validator.name,
                                                     reason="stale").inc(stale)
                log.info("dropped %d stale frames for %s (queued over %.1f s ago)",
                         stale, link.validator.name, self.settings.max_age_s)

    def broadcast(self, body: bytes) -> None:
        for peer in self.links:
            self.send(peer, body)

    def connected(self) -> list[int]:
        return [i for i, link in self.links.items() if link.up]

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "index": i,
                "name": link.validator.name,
                "address": link.validator.address,
                "connected": link.up,
                "inbound": link.inbound > 0,
                "queued": link.queue.qsize(),
            }
            for i, link in sorted(self.links.items())
        ]

    async def _run_link(self, link: _Link) -> None:
        delay = self.settings.reconnect_initial_s
        url = peer_url(link.validator, frames.PEER_PATH, self.tls is not None)
        while not self._closing:
            try:
                await self._connect_and_send(link, url)
                delay = self.settings.reconnect_initial_s
            except asyncio.CancelledError:
                raise
            except frames.HandshakeError as exc:
                self.metrics.handshakes_failed.labels(reason=exc.reason).inc()
                link.last_error = str(exc)
                log.warning("handshake with %s failed: %s", link.validator.name, exc)
            except (TimeoutError, aiohttp.ClientError, OSError, ConnectionError) as exc:
                if link.last_error != type(exc).__name__:
                    log.info("peer %s unreachable: %s", link.validator.name, exc)
                link.last_error = type(exc).__name__
            finally:
                self._set_up(link, False)
            # Exponential backoff with jitter so restarted nodes do not stampede.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.settings.reconnect_max_s)

    async def _connect_and_send(self, link: _Link, url: str) -> None:
        assert self._session is not None
        peer_key = link.validator.pubkey
        key = self.key  # this connection's, whatever set_key does meanwhile
        async with self._session.ws_connect(
            url,
            heartbeat=self.settings.heartbeat_s,
            max_msg_size=self.settings.max_frame_bytes,
            timeout=aiohttp.ClientWSTimeout(ws_close=self.settings.handshake_timeout_s),
            # No CA check: the handshake binds the certificate to the key (node/tls.py).
            ssl=self.tls.peer if self.tls is not None else True,
        ) as ws:
            session = await asyncio.wait_for(
                self._dial_handshake(ws, peer_key, key), self.settings.handshake_timeout_s
            )
            self._set_up(link, True)
            log.info("connected to %s", link.validator.name)
            if self.on_peer_up is not None:
                self.on_peer_up(link.validator.index)
            seq = 0
            closed = asyncio.ensure_future(self._wait_closed(ws))
            stopping = asyncio.ensure_future(self._stopped.wait())
            getter: asyncio.Future[bytes] | None = None
            try:
                while True:
                    getter = asyncio.ensure_future(self._take(link))
                    done, _ = await asyncio.wait({getter, closed, stopping},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if stopping in done:
                        return
                    if getter not in done:
                        raise ConnectionError("peer closed the connection")
                    body = getter.result()
                    seq += 1
                    await ws.send_bytes(frames.seal(key, session, seq, body))
                    self.metrics.frames_sent.labels(peer=link.validator.name).inc()
            finally:
                closed.cancel()
                stopping.cancel()
                if getter is not None and not getter.done():
                    getter.cancel()

    async def _wait_closed(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # The listener never sends after the handshake; any message or close
        # here means the link is gone (heartbeat failures surface as CLOSED).
        async for _msg in ws:
            pass

    async def _dial_handshake(self, ws: aiohttp.ClientWebSocketResponse, peer_key: bytes,
                              key: SigningKey) -> bytes:
        # The certificate this connection's listener showed us (b"" in plaintext).
        binding = peer_fingerprint(ws.get_extra_info("ssl_object"))
        if self.tls is not None and not binding:
            raise frames.HandshakeError("refused", "the peer link is not TLS")
        nonce = frames.fresh_nonce()
        await ws.send_bytes(frames.hello(self.genesis, key, peer_key, nonce))
        their_nonce = frames.check_challenge(
            self.genesis, key, peer_key, nonce, await _receive_bytes(ws), binding
        )
        await ws.send_bytes(frames.auth(self.genesis, key, peer_key, their_nonce, binding))
        if await _receive_bytes(ws) != frames.READY:
            raise frames.HandshakeError("refused", "listener did not confirm the handshake")
        if self.tls is not None:  # peer_key signed over this certificate: it is theirs
            self.tls.pins.learn(peer_key, binding)
        return frames.session_id(nonce, their_nonce)

    def _set_up(self, link: _Link, up: bool) -> None:
        if link.up == up:
            return
        link.up = up
        link.connected_since = time.monotonic() if up else None
        self.metrics.peer_up.labels(peer=link.validator.name).set(1 if up else 0)
        self.metrics.peers_connected.set(sum(1 for l in self.links.values() if l.up))

    # -- receiving ---------------------------------------------------------

    async def handle_inbound(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for ``GET /v1/peer`` (the caller checked the upgrade)."""
        if self._closing:
            # Peers keep redialing while we shut down; a link accepted now would
            # hold the HTTP server's graceful shutdown open.
            raise web.HTTPServiceUnavailable(reason="node is stopping")
        address = request.remote or "unknown"
        if not self._handshake_limiter.allow(address, self.clock()):
            # Before the upgrade: a refused dialer gets no signed challenge.
            self._handshake_refused(address, "rate_limited")
            raise web.HTTPTooManyRequests(reason="too many peer handshakes from this address")
        ws = web.WebSocketResponse(
            heartbeat=self.settings.heartbeat_s, max_msg_size=self.settings.max_frame_bytes,
            timeout=self.settings.handshake_timeout_s,
        )
        await ws.prepare(request)
        self._inbound.add(ws)
        link: _Link | None = None
        try:
            try:
                hello, session = await asyncio.wait_for(
                    self._listen_handshake(ws), self.settings.handshake_timeout_s
                )
            except frames.HandshakeError as exc:
                self._handshake_refused(address, exc.reason, str(exc))
                return ws
            except (TimeoutError, ConnectionError):
                self._handshake_refused(address, "timeout")
                return ws
            link = self.links.get(hello.dialer_index)
            if link is None:  # our own key: check_hello refuses it, but be explicit
                return ws
            link.inbound += 1
            self._inbound_of.setdefault(hello.dialer_index, set()).add(ws)
            await self._receive_frames(ws, hello, session, link.validator.name)
        finally:
            if link is not None:
                link.inbound -= 1
                self._inbound_of.get(hello.dialer_index, set()).discard(ws)
            self._inbound.discard(ws)
            await ws.close()
        return ws

    def _handshake_refused(self, address: str, reason: str, message: str = "") -> None:
        """Count a refused inbound handshake; log it in the interval's summary."""
        self.metrics.handshakes_failed.labels(reason=reason).inc()
        if self.handshake_report.note(address, reason, message) and not self._closing:
            self._report_timer = asyncio.get_running_loop().call_later(
                self.settings.handshake_log_interval_s, self.flush_handshake_report)

    def flush_handshake_report(self) -> str | None:
        """Log the summary of refused inbound handshakes now (the line, or None)."""
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        return self.handshake_report.flush()

    async def _listen_handshake(self, ws: web.WebSocketResponse) -> tuple[frames.Hello, bytes]:
        # Our own certificate: the one the dialer must have seen on this connection.
        binding = self.tls.fingerprint if self.tls is not None else b""
        data = await _receive_bytes(ws)
        me = self.own_keys.get(frames.addressed_to(data) or b"", self.key)
        hello = frames.check_hello(self.genesis, me, data, self.index_of)
        nonce = frames.fresh_nonce()
        await ws.send_bytes(frames.challenge(self.genesis, me, hello, nonce, binding))
        frames.check_auth(self.genesis, me, hello, nonce, await _receive_bytes(ws),
                          binding)
        await ws.send_bytes(frames.READY)
        return hello, frames.session_id(hello.nonce, nonce)

    async def _receive_frames(
        self, ws: web.WebSocketResponse, hello: frames.Hello, session: bytes, name: str
    ) -> None:
        expected = 1
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.ERROR:
                # Not a frame: the link failed (a pong missed while this
                # node's loop was busy, a message over max_frame_bytes).
                # The dialer connects again.
                log.warning("inbound peer link from %s failed: %r", name, msg.data)
                break
            if msg.type != aiohttp.WSMsgType.BINARY:
                self.metrics.frames_dropped.labels(reason="not_binary").inc()
                continue
            try:
                body = frames.open_frame(hello.dialer, session, expected, msg.data)
            except frames.FrameError as exc:
                self.metrics.frames_dropped.labels(reason=exc.reason).inc()
                log.warning("dropped a frame from %s: %s", name, exc)
                continue
            expected += 1
            self.metrics.frames_received.labels(peer=name).inc()
            try:
                self.on_frame(hello.dialer_index, body)
            except Exception:  # a handler bug must not kill the link
                log.exception("frame handler failed")


async def _receive_bytes(ws: Any) -> bytes:
    msg = await ws.receive()
    if msg.type == aiohttp.WSMsgType.BINARY:
        return bytes(msg.data)
    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
        raise ConnectionError("connection closed during the handshake")
    raise frames.HandshakeError("malformed", "handshake messages are binary")


def settings_from_config(peers: PeersSettings) -> TransportSettings:
    return TransportSettings(
        queue_size=peers.queue_size,
        queue_bytes=peers.queue_bytes,
        reconnect_initial_s=peers.reconnect_initial_ms / 1000,
        reconnect_max_s=peers.reconnect_max_ms / 1000,
        heartbeat_s=peers.heartbeat_ms / 1000,
        handshake_timeout_s=peers.handshake_timeout_ms / 1000,
        max_frame_bytes=peers.max_frame_bytes,
        max_age_s=peers.max_age_ms / 1000,
        handshake_burst=peers.handshake_burst,
        handshake_rate_per_s=peers.handshake_rate_per_s,
    )
