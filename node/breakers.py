"""The node's circuit breakers (PROTOCOL §12.3): :class:`ledger.breakers.Breakers`
kept up with the committed blocks, and ``GET /v1/breakers``.

A task walks the committed blocks from the persisted state (saved every
few hundred blocks and at a clean stop; height 1 without one) at start (a block is
decoded only when its bytes hold ``risk.``, the prefix of the kinds that
change breakers) and then each block as it commits, yielding to the event
loop between blocks, so a long chain delays nothing else.  The answer says
the height the breakers are derived to (``height``) and how far that is
behind the committed tip (``behind``, 0 once caught up).  Code that decides
with the breakers at height h (a verdict) must see ``height`` = h - 1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ledger.breakers import Breakers, breakers_from_bytes
from ledger.chain import POLICY_STATE_EVERY, ChainStore
from ledger.errors import StorageCorruption
from ledger.records import Record, decode_committed_envelope

from .metrics import Metrics

log = logging.getLogger("node.breakers")

RISK_MARK = b"risk."


class BreakerTracker:
    def __init__(self, chain: ChainStore, metrics: Metrics | None = None,
                 notify: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.chain = chain
        # Transitions of blocks committed before this start were notified by
        # the run that committed them: only later ones go to the webhooks.
        self.notify_after = chain.height
        self.notify = notify
        self.breakers = self._load()
        self._wake = asyncio.Event()
        self.metrics = metrics
        if metrics is not None:
            metrics.on_scrape(self._publish)

    def _publish(self) -> None:
        assert self.metrics is not None
        b = self.breakers
        self.metrics.breakers_open.set(
            sum(1 for x in b.breakers.values() if x.state(b.time) == "open"))
        self.metrics.breakers_behind.set(max(0, self.chain.height - b.height))

    def _load(self) -> Breakers:
        raw = self.chain.breaker_state_bytes()
        if raw is None:
            return Breakers()
        try:
            loaded = breakers_from_bytes(raw)
        except StorageCorruption as exc:
            log.warning("persisted breaker state dropped (%s): replaying from block 1", exc)
            return Breakers()
        if loaded.height > self.chain.height:
            log.warning("persisted breaker state is at height %d, past the tip %d: "
                        "replaying from block 1", loaded.height, self.chain.height)
            return Breakers()
        return loaded

    def save(self) -> None:
        """Persist the breakers (at a clean stop, and every few hundred blocks)."""
        self.chain.put_breaker_state(self.breakers.to_bytes())

    def committed(self, height: int) -> None:
        self._wake.set()

    def _lookup(self, block: dict[bytes, Record]) -> Any:
        def lookup(record_id: bytes) -> Record | None:
            if record_id in block:
                return block[record_id]
            raw = self.chain.envelope(record_id)
            return decode_committed_envelope(raw).record if raw is not None else None
        return lookup

    def apply_next(self) -> bool:
        """Apply the next committed block; False when there is none (or it
        is below a state-sync snapshot not back-filled yet)."""
        height = self.breakers.height + 1
        if height > self.chain.height or height in self.chain.history_gap:
            return False
        header = self.chain.header(height)
        assert header is not None
        records = [decode_committed_envelope(raw).record
                   for raw in self.chain.block_envelopes(height) if RISK_MARK in raw]
        block = {r.id: r for r in records}
        before = len(self.breakers.transitions)
        self.breakers.apply_block(height, header.time, records,
                                  self.chain.membership.at(height).params, self._lookup(block))
        for t in self.breakers.transitions[before:]:
            # One line per transition, for incident tooling that reads logs.
            log.warning("breaker %s %r %s at height %d by %s", t.scope, t.value,
                        "opened" if t.to == "open" else "closed", t.height,
                        ",".join(r.hex()[:16] for r in t.records[:4]),
                        extra={"breaker_scope": t.scope, "breaker_value": t.value,
                               "breaker_to": t.to, "height": t.height})
            if self.metrics is not None:
                self.metrics.breaker_transitions.labels(to=t.to).inc()
            if self.notify is not None and t.height > self.notify_after:
                self.notify(dict(t.to_json(), event="breaker_" + t.to))
        if height % POLICY_STATE_EVERY == 0:
            self.save()
        return True

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                while self.apply_next():
                    await asyncio.sleep(0)
                await self._wake.wait()
        except Exception:
            log.exception("breakers stopped at height %d", self.breakers.height)
            raise

    def to_json(self) -> dict[str, Any]:
        doc = self.breakers.to_json()
        doc["behind"] = max(0, self.chain.height - self.breakers.height)
        return doc
