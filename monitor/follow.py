"""``ledger-monitor follow``: score committed blocks as a node streams them
(docs/monitor.md, "Following a node"; PROTOCOL §12.1).

:class:`Follower` takes the ``block`` events of ``GET /v1/stream`` one by
one.  Each block is verified before a record of it is scored, with the
offline auditor's checks (:class:`ledger.audit.ChainAuditor`): the header
decodes and names the chain and the validator set in force, ``prev`` links
to the block before, ``tx_root`` and ``log_size``/``log_root`` are
recomputed from the envelopes, and the certificate carries a quorum of that
set's precommits.  Record signatures are not re-checked: the certificate
says a quorum of validators checked them.  A block that fails stops the
follower (:class:`StreamVerificationError`): the node served something its
validators never certified.

Scoring is the offline scorer's (:mod:`monitor.score`): ``score`` then
``learn``, record by record in log order.  Records at or above the flag
score become :class:`Alert` values for the caller to submit
(:mod:`monitor.alerts`).  Governance and ``risk.*`` records are not scored.

:func:`follow` keeps one stream open and, when it breaks (the node
restarted, the stream was cut because the monitor was slow), reconnects
with ``from`` set to the next height, so the walk continues where it
stopped and the monitor catches up.  Its lag (``tip - height`` from each
event, and the age of the last block's time) is a metric.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ledger.audit import ChainAuditor
from ledger.blocks import certificate_from_json
from ledger.errors import VerificationError
from ledger.genesis import Genesis
from ledger.reqsig import RequestSigner

from .detector import Detector, Reason
from .events import event_from_record
from .metrics import FollowMetrics

log = logging.getLogger("monitor.follow")

UNSCORED_PREFIXES = ("gov.", "risk.")
# The cyclic collector's thresholds for a monitor process (:func:`tune_gc`).
# Scoring allocates many small objects (events, reasons, baseline deques)
# and makes no reference cycles; at the default first threshold of 700 the
# collector ran every few records and took about a sixth of the follower's
# CPU time (docs/performance.md, "Risk monitor").
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Collect cycles less often (``ledger-monitor follow`` and ``score``)."""
    gc.set_threshold(*GC_THRESHOLDS)
MAX_EVENT_BYTES = 64 * 1024 * 1024  # one block event; a node's blocks are far smaller


class StreamVerificationError(Exception):
    """A streamed block failed verification: the follower stops."""


class StreamFormatError(Exception):
    """A stream's bytes are not the events of PROTOCOL §12.1."""


@dataclass(frozen=True)
class Alert:
    """A flagged record, as ``risk.alert`` will name it (PROTOCOL §12.2)."""

    record_id: bytes
    height: int
    score: float
    reasons: list[Reason]


def parse_events(buffer: bytearray) -> Iterator[tuple[str, str, bytes]]:
    """Complete server-sent events at the start of ``buffer`` as ``(event,
    id, data)``; what they took is removed, a partial event stays."""
    while True:
        end = buffer.find(b"\n\n")
        if end < 0:
            if len(buffer) > MAX_EVENT_BYTES:
                raise StreamFormatError(f"an event longer than {MAX_EVENT_BYTES} bytes")
            return
        raw = bytes(buffer[:end])
        del buffer[:end + 2]
        name, ident, data = "message", "", []
        for line in raw.split(b"\n"):
            if not line or line.startswith(b":"):
                continue  # a comment (keepalive)
            key, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if key == b"event":
                name = value.decode("utf-8", "replace")
            elif key == b"id":
                ident = value.decode("utf-8", "replace")
            elif key == b"data":
                data.append(value)
        if data:
            yield name, ident, b"\n".join(data)


@dataclass
class Follower:
    """The verified walk and the scoring, without I/O (tests feed it events)."""

    genesis: Genesis
    detector: Detector
    flag: float = 0.5
    metrics: FollowMetrics = field(default_factory=FollowMetrics)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.auditor = ChainAuditor(self.genesis, verify_signatures=False)
        self.records = 0
        self.scored = 0

    @property
    def height(self) -> int:
        return self.auditor.height

    def on_block(self, data: bytes) -> list[Alert]:
        """One ``block`` event's data: verify, score; the flagged records."""
        try:
            doc = orjson.loads(data)
            height, tip = doc["height"], doc["tip"]
            header_bytes = base64.b64decode(doc["header"], validate=True)
            certificate = certificate_from_json(doc["certificate"])
            envelopes = [base64.b64decode(e, validate=True) for e in doc["envelopes"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, VerificationError) as exc:
            raise StreamFormatError(f"a block event that does not decode: {exc}") from None
        if type(height) is not int or type(tip) is not int:
            raise StreamFormatError("a block event's height and tip must be integers")
        if height <= self.height:
            return []  # a block walked already (a reconnect overlapped)
        try:
            header = self.auditor.check_block(header_bytes, certificate, envelopes)
        except VerificationError as exc:
            self.metrics.verification_failures.inc()
            raise StreamVerificationError(
                f"block {height} fails verification at step {exc.step}: {exc}") from None
        alerts: list[Alert] = []
        detector, flag = self.detector, self.flag
        for env in self.auditor.last_envelopes:
            record = env.record
            self.records += 1
            if record.kind.startswith(UNSCORED_PREFIXES):
                continue
            event = event_from_record(record, height)
            score, reasons = detector.score(event)
            detector.learn(event)
            self.scored += 1
            if score >= flag:
                alerts.append(Alert(record.id, height, score, reasons))
        m = self.metrics
        m.height.set(height)
        m.lag_blocks.set(max(0, tip - height))
        m.lag_seconds.set(max(0.0, self.clock() - header.time / 1000))
        m.records.inc(len(envelopes))
        m.flagged.inc(len(alerts))
        return alerts


Sink = Callable[[list[Alert]], Awaitable[None]]


def signed_get(url: str, signer: RequestSigner | None) -> tuple[Any, dict[str, str]]:
    """The URL as it goes on the request line and the headers signing it
    (PROTOCOL §11) when the monitor has a key."""
    from yarl import URL

    if signer is None:
        return URL(url), {}
    return URL(url, encoded=True), signer.headers("GET", url)


async def follow(follower: Follower, url: str, sink: Sink, *,
                 session: Any, signer: RequestSigner | None = None,
                 stop_at: int | None = None,
                 retry_s: float = 1.0, max_retry_s: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Follow ``url``'s stream from the follower's next height, reconnecting
    (with backoff) whenever it breaks; returns once ``stop_at`` is walked.
    ``session`` is an ``aiohttp.ClientSession``."""
    import aiohttp

    delay = retry_s
    while stop_at is None or follower.height < stop_at:
        start = follower.height + 1
        try:
            target, headers = signed_get(f"{url.rstrip('/')}/v1/stream?from={start}", signer)
            async with session.get(target, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=120)
                                   ) as resp:
                if resp.status != 200:
                    raise StreamFormatError(f"GET /v1/stream answered {resp.status}: "
                                            f"{(await resp.read())[:200]!r}")
                delay = retry_s
                buffer = bytearray()
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    for name, _, data in parse_events(buffer):
                        if name != "block":
                            continue
                        alerts = follower.on_block(data)
                        if alerts:
                            await sink(alerts)
                        if stop_at is not None and follower.height >= stop_at:
                            return
        except (aiohttp.ClientError, asyncio.TimeoutError, StreamFormatError) as exc:
            follower.metrics.reconnects.inc()
            log.warning("stream from %s broke at height %d (%s); reconnecting in %.1f s",
                        url, follower.height, exc, delay)
            await sleep(delay)
            delay = min(max_retry_s, delay * 2)
            continue
        # The node ended the answer (it stopped): reconnect.
        follower.metrics.reconnects.inc()
        await sleep(delay)
