"""The node's circuit breakers (PROTOCOL §12.3): ``GET /v1/breakers``, the
breaker metrics, and a log line and webhook per transition.

The breakers themselves are consensus state kept by the ledger layer
(``ChainStore.breakers``, ledger/approvals.py): the breakers after block
h - 1 decide the verdicts of block h, so they advance in the same step
that commits a block, and they are persisted with the policy state.  This
module only reads them: one place for each fact.  After each commit
(:meth:`BreakerTracker.committed`) the transitions of the blocks committed
since the last call are logged and notified; those of blocks committed
before this start were notified by the run that committed them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ledger.breakers import Transition
from ledger.chain import ChainStore

from .metrics import Metrics

log = logging.getLogger("node.breakers")


class BreakerTracker:
    def __init__(self, chain: ChainStore, metrics: Metrics | None = None,
                 notify: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.chain = chain
        chain.derive_breakers()
        self.notified_to = chain.breakers.height
        self.notify = notify
        self.metrics = metrics
        if metrics is not None:
            metrics.on_scrape(self._publish)

    def _publish(self) -> None:
        assert self.metrics is not None
        b = self.chain.breakers
        self.metrics.breakers_open.set(len(b.open_at(b.time)))

    def committed(self, height: int) -> list[Transition]:
        """Log and notify the transitions of the blocks committed since the
        last call (and after this start); returns them."""
        b = self.chain.breakers
        fresh: list[Transition] = []
        for t in reversed(b.transitions):
            if t.height <= self.notified_to:
                break
            fresh.append(t)
        fresh.reverse()
        self.notified_to = max(self.notified_to, b.height)
        for t in fresh:
            # One line per transition, for incident tooling that reads logs.
            log.warning("breaker %s %r %s at height %d by %s", t.scope, t.value,
                        "opened" if t.to == "open" else "closed", t.height,
                        ",".join(r.hex()[:16] for r in t.records[:4]),
                        extra={"breaker_scope": t.scope, "breaker_value": t.value,
                               "breaker_to": t.to, "height": t.height})
            if self.metrics is not None:
                self.metrics.breaker_transitions.labels(to=t.to).inc()
            if self.notify is not None:
                self.notify(dict(t.to_json(), event="breaker_" + t.to))
        return fresh

    def to_json(self) -> dict[str, Any]:
        doc = self.chain.breakers.to_json()
        doc["behind"] = max(0, self.chain.height - self.chain.breakers.height)
        return doc
