"""Connection-level deadline for HTTP clients: slow-loris request heads and
idle keep-alive connections.

aiohttp bounds neither how long a client may take to send a request head nor
(by default, ~1 h) how long an idle keep-alive connection is kept.  A
:class:`HeadTimeout` wraps the server's protocol factory: every connection
starts a timer when it opens and again each time it becomes idle after a
response; the timer stops when a complete request head reaches the
application (the outermost middleware sees it).  When it fires the
connection is closed and counted, by reason:

* ``head`` - bytes arrived but no complete request head within the deadline;
* ``idle`` - nothing arrived (a fresh connection, or keep-alive after a response).

A request being handled is never cut (its body has ``http.body_timeout_ms``,
and the peer websocket lives inside its handler), and a response still
draining to the client keeps its connection until the buffer is empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

log = logging.getLogger("node.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OnTimeout = Callable[[str], None]

REASON_HEAD = "head"
REASON_IDLE = "idle"


class _Connection:
    """The deadline of one client connection.

    Requests come far more often than deadlines expire, so a request only
    moves ``deadline`` (a float); it never cancels or schedules a timer.  One
    timer per connection wakes at the deadline or after ``tick_s`` (the
    shorter of the head and idle timeouts), whichever comes first, looks at
    the state and either closes the connection or sleeps again.  Waking that
    often keeps every deadline exact: none can be armed earlier than the
    pending wake-up, e.g. the short head deadline of a request whose first
    byte follows a long idle spell.
    (Two timers per request were a visible share of a node's CPU serving
    proofs; docs/performance.md.)
    """

    __slots__ = ("_busy", "_got_bytes", "_guard", "_handle", "_idle", "_loop", "armed_s",
                 "deadline", "transport")

    def __init__(self, guard: HeadTimeout, transport: asyncio.Transport) -> None:
        self._guard = guard
        self._loop = asyncio.get_running_loop()
        self.transport = transport
        self._handle: asyncio.TimerHandle | None = None
        self._busy = 0
        self._got_bytes = False
        self._idle = False
        self.deadline: float | None = None  # None while a request is being handled
        self.armed_s = 0.0  # the deadline last armed, for the log line

    def arm(self, *, idle: bool = False) -> None:
        """Start the head deadline, or (``idle``, between keep-alive requests)
        the longer idle one, which the first byte of a request cuts back."""
        self._got_bytes = False
        self._idle = idle
        self.armed_s = self._guard.idle_timeout_s if idle else self._guard.timeout_s
        now = self._loop.time()
        self.deadline = now + self.armed_s
        if self._handle is None:
            self._handle = self._loop.call_at(min(self.deadline, now + self._guard.tick_s),
                                              self._wake)

    def disarm(self) -> None:
        self.deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def bytes_arrived(self) -> None:
        if self._idle and self.deadline is not None:
            self.arm()  # a request began after an idle spell: its head has timeout_s
        self._got_bytes = True

    def request_started(self) -> None:
        self._busy += 1
        self.deadline = None  # the timer, if due, finds no deadline and stops

    def request_finished(self) -> None:
        self._busy -= 1
        if self._busy == 0 and not self.transport.is_closing():
            self.arm(idle=True)

    def _wake(self) -> None:
        self._handle = None
        if self._busy or self.deadline is None or self.transport.is_closing():
            return
        now = self._loop.time()
        if now < self.deadline:  # moved on since the timer was set: sleep again
            self._handle = self._loop.call_at(min(self.deadline, now + self._guard.tick_s),
                                              self._wake)
            return
        if self.transport.get_write_buffer_size() > 0:
            self.arm(idle=self._idle)  # a response is still draining: not idle yet
            return
        reason = REASON_HEAD if self._got_bytes else REASON_IDLE
        self._guard.expired(self, reason)


class _GuardedProtocol(asyncio.Protocol):
    """Delegates every protocol call to aiohttp's handler, timing the connection."""

    def __init__(self, inner: asyncio.Protocol, guard: HeadTimeout) -> None:
        self._inner = inner
        self._guard = guard
        self._conn: _Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self._conn = self._guard.opened(cast(asyncio.Transport, transport))
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._conn is not None:
            self._conn.bytes_arrived()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._guard.closed(self._conn)
            self._conn = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class HeadTimeout:
    """Closes connections that send no complete request head within ``timeout_s``.

    ``install(app)`` adds the (outermost) middleware that marks a head as
    arrived; :class:`GuardedTCPSite` wraps the protocol factory.  Both are
    needed; ``on_timeout(reason)`` is called once per closed connection.
    """

    def __init__(self, timeout_s: float, on_timeout: OnTimeout | None = None, *,
                 idle_timeout_s: float | None = None) -> None:
        if timeout_s <= 0 or (idle_timeout_s is not None and idle_timeout_s <= 0):
            raise ValueError("timeouts must be positive")
        self.timeout_s = timeout_s
        # Between keep-alive requests.  Longer than common clients' own
        # keep-alive (aiohttp's is 15 s), so that a client never reuses a
        # connection the server is closing at the same moment.
        self.idle_timeout_s = timeout_s if idle_timeout_s is None else idle_timeout_s
        self.tick_s = min(self.timeout_s, self.idle_timeout_s)  # see _Connection
        self._on_timeout = on_timeout
        self._open: dict[asyncio.Transport, _Connection] = {}

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def install(self, app: web.Application) -> None:
        app.middlewares.insert(0, self._middleware())

    def wrap(self, factory: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            return _GuardedProtocol(factory(), self)
        return make

    def opened(self, transport: asyncio.Transport) -> _Connection:
        conn = _Connection(self, transport)
        self._open[transport] = conn
        conn.arm()
        return conn

    def closed(self, conn: _Connection) -> None:
        conn.disarm()
        self._open.pop(conn.transport, None)

    def expired(self, conn: _Connection, reason: str) -> None:
        peer = conn.transport.get_extra_info("peername")
        log.info("closing an HTTP connection from %s: %s timeout (%gs)", peer, reason,
                 conn.armed_s)
        if self._on_timeout is not None:
            self._on_timeout(reason)
        conn.transport.close()

    def _middleware(self) -> Any:
        @web.middleware
        async def head_arrived(request: web.Request, handler: Handler) -> web.StreamResponse:
            transport = request.transport
            conn = None if transport is None else self._open.get(transport)
            if conn is None:
                return await handler(request)
            conn.request_started()
            try:
                return await handler(request)
            finally:
                conn.request_finished()

        return head_arrived


class GuardedTCPSite(web.TCPSite):
    """:class:`aiohttp.web.TCPSite` whose connections go through a :class:`HeadTimeout`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: HeadTimeout,
                 reuse_address: bool | None = None) -> None:
        super().__init__(runner, host, port, reuse_address=reuse_address)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.wrap(server), self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
