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

A request being handled is never cut by these (its body has
``http.body_timeout_ms``, and the peer websocket lives inside its handler).

Output has its own deadline, ``write_timeout_s`` (reason ``write``): while
answer bytes wait in the connection's buffer, the client must take some of
them (the transport resumes writing, or the buffer shrinks) at least that
often, or the connection is aborted and its buffered answer dropped.  A
client that pipelines requests and never reads therefore holds at most one
answer (aiohttp answers a connection's requests one at a time and waits for
each to drain), for at most ``write_timeout_s`` without progress.

Per client address, at most ``max_per_client`` connections are open; a
connection over that is answered 429 (JSON) and closed before anything it
sends is parsed.

Requests aiohttp refuses itself while parsing (a malformed request line or
header, a bad chunked body...) are answered by :class:`JsonErrorHandler`
in the API's JSON error format instead of aiohttp's plain text.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger("node.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OnTimeout = Callable[[str], None]

REASON_HEAD = "head"
REASON_IDLE = "idle"
REASON_WRITE = "write"
REASON_PER_CLIENT = "per_client"


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
                 "client", "deadline", "stall_deadline", "stall_size", "transport")

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
        # Output stalled since the window that ends at stall_deadline began,
        # with stall_size bytes buffered then (None: no output waiting).
        self.stall_deadline: float | None = None
        self.stall_size = 0
        self.client = ""

    def arm(self, *, idle: bool = False) -> None:
        """Start the head deadline, or (``idle``, between keep-alive requests)
        the longer idle one, which the first byte of a request cuts back."""
        self._got_bytes = False
        self._idle = idle
        self.armed_s = self._guard.idle_timeout_s if idle else self._guard.timeout_s
        now = self._loop.time()
        self.deadline = now + self.armed_s
        # (A pending wake-up is normally already this early: no timer churn.)
        self._wake_by(min(self.deadline, now + self._guard.tick_s))

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

    def writing_paused(self) -> None:
        """The transport's buffer is over its high-water mark: the client must
        take some of it within the write timeout."""
        if self.stall_deadline is None:
            self._start_stall(self._loop.time())
        self._wake_by(self.stall_deadline)

    def writing_resumed(self) -> None:
        self.stall_deadline = None  # the client took bytes: progress

    def _start_stall(self, now: float) -> None:
        self.stall_deadline = now + self._guard.write_timeout_s
        self.stall_size = self.transport.get_write_buffer_size()

    def _wake_by(self, when: float | None) -> None:
        if when is None:
            return
        if self._handle is not None:
            if self._handle.when() <= when:
                return
            self._handle.cancel()
        self._handle = self._loop.call_at(when, self._wake)

    def _output_stalled(self, now: float) -> bool:
        """True when buffered output made no progress for the write timeout."""
        size = self.transport.get_write_buffer_size()
        if size == 0:
            self.stall_deadline = None
            return False
        if self.stall_deadline is None or size < self.stall_size:
            self._start_stall(now)  # output waiting, or progress since: a new window
            return False
        return now >= self.stall_deadline

    def _wake(self) -> None:
        self._handle = None
        now = self._loop.time()
        # A closing transport still holds its unsent answer (an answer with
        # "Connection: close"): the write deadline applies until it is sent.
        closing = self.transport.is_closing()
        if self.stall_deadline is not None or not self._busy or closing:
            if self._output_stalled(now):
                self._guard.expired(self, REASON_WRITE)
                return
        if closing or self._busy or self.deadline is None:
            self._wake_by(self.stall_deadline)  # only output is watched while busy
            return
        if now < self.deadline:  # moved on since the timer was set: sleep again
            self._wake_by(min(self.deadline, now + self._guard.tick_s,
                              self.stall_deadline or self.deadline))
            return
        if self.transport.get_write_buffer_size() > 0:
            self.arm(idle=self._idle)  # a response is still draining: not idle yet
            self._wake_by(self.stall_deadline)
            return
        reason = REASON_HEAD if self._got_bytes else REASON_IDLE
        self._guard.expired(self, reason)


class _GuardedProtocol(asyncio.Protocol):
    """Delegates every protocol call to aiohttp's handler, timing the connection."""

    def __init__(self, inner: asyncio.Protocol, guard: HeadTimeout) -> None:
        self._inner = inner
        self._guard = guard
        self._conn: _Connection | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self._conn = self._guard.opened(cast(asyncio.Transport, transport))
        if self._conn is None:  # over the client's connection cap: answered and closed
            self._refused = True
            return
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._conn is not None:
            self._conn.bytes_arrived()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._conn is not None:
            self._guard.closed(self._conn)
            self._conn = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._refused:
            return
        if self._conn is not None:
            self._conn.writing_paused()
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._refused:
            return
        if self._conn is not None:
            self._conn.writing_resumed()
        self._inner.resume_writing()


class HeadTimeout:
    """Closes connections that send no complete request head within ``timeout_s``.

    ``install(app)`` adds the (outermost) middleware that marks a head as
    arrived; :class:`GuardedTCPSite` wraps the protocol factory.  Both are
    needed; ``on_timeout(reason)`` is called once per closed connection.
    """

    def __init__(self, timeout_s: float, on_timeout: OnTimeout | None = None, *,
                 idle_timeout_s: float | None = None, write_timeout_s: float = 30.0,
                 max_per_client: int | None = None) -> None:
        if timeout_s <= 0 or (idle_timeout_s is not None and idle_timeout_s <= 0) \
                or write_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        self.timeout_s = timeout_s
        self.write_timeout_s = write_timeout_s
        self.max_per_client = max_per_client
        self._per_client: dict[str, int] = {}
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

    def opened(self, transport: asyncio.Transport) -> _Connection | None:
        """The connection's deadlines, or None when its address is over the
        connection cap (it is then answered 429 and closed here)."""
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        count = self._per_client.get(client, 0)
        if self.max_per_client is not None and count >= self.max_per_client:
            if self._on_timeout is not None:
                self._on_timeout(REASON_PER_CLIENT)
            body = orjson.dumps({"error": "rate_limited", "message":
                                 f"more than {self.max_per_client} connections from this "
                                 f"address; retry later"})
            transport.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json"
                            b"; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\n"
                            b"Content-Length: "
                            + str(len(body)).encode() + b"\r\n\r\n" + body)
            transport.close()
            return None
        self._per_client[client] = count + 1
        conn = _Connection(self, transport)
        conn.client = client
        self._open[transport] = conn
        conn.arm()
        return conn

    def closed(self, conn: _Connection) -> None:
        conn.disarm()
        if self._open.pop(conn.transport, None) is not None:
            left = self._per_client.get(conn.client, 1) - 1
            if left > 0:
                self._per_client[conn.client] = left
            else:
                self._per_client.pop(conn.client, None)

    def expired(self, conn: _Connection, reason: str) -> None:
        peer = conn.transport.get_extra_info("peername")
        armed = self.write_timeout_s if reason == REASON_WRITE else conn.armed_s
        log.info("closing an HTTP connection from %s: %s timeout (%gs)", peer, reason, armed)
        if self._on_timeout is not None:
            self._on_timeout(reason)
        if reason == REASON_WRITE:
            conn.transport.abort()  # close() would wait for the stalled buffer to drain
        else:
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


class JsonErrorHandler(RequestHandler):
    """aiohttp's request handler, answering the requests it refuses itself
    (unparsable request line, headers or chunked body: always 400, and the
    connection is closed) as ``{"error": "bad_request", "message"}`` instead
    of plain text, and logging them at INFO rather than with a traceback.

    ``handle_error`` is the method aiohttp calls for those refusals; the
    override keeps its contract (nothing sent yet, else ConnectionError; the
    answer closes the connection)."""

    def __init__(self, manager: web.Server, *, on_refused: Callable[[], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._on_refused = on_refused

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("an answer has started; cannot send an error answer")
        if status >= 500:  # a handler bug past the API's middleware: fail loudly
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            code, text = "unavailable", "internal error"
        else:
            log.info("refused an unparsable request from %s: %s", request.remote,
                     message or exc)
            code, text = "bad_request", f"malformed HTTP request: {message or exc or status}"
            if self._on_refused is not None:
                self._on_refused()
        resp = web.Response(body=orjson.dumps({"error": code, "message": text}), status=status,
                            content_type="application/json", charset="utf-8")
        resp.force_close()
        return resp


class GuardedTCPSite(web.TCPSite):
    """:class:`aiohttp.web.TCPSite` whose connections go through a :class:`HeadTimeout`.

    ``handler_options`` are aiohttp's request-handler options (the ones given
    to the runner); the connections are served by :class:`JsonErrorHandler`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: HeadTimeout,
                 reuse_address: bool | None = None,
                 handler_options: dict[str, Any] | None = None,
                 on_refused: Callable[[], None] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, host, port, reuse_address=reuse_address,
                         ssl_context=ssl_context)
        self._guard = guard
        self._handler_options = dict(handler_options or {})
        self._on_refused = on_refused

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        options, on_refused = self._handler_options, self._on_refused

        def handler() -> RequestHandler:
            return JsonErrorHandler(server, loop=loop, on_refused=on_refused, **options)

        self._server = await loop.create_server(
            self._guard.wrap(handler), self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, ssl=self._ssl_context,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
