"""Checks the mempool (:mod:`node.mempool`) applies that need none of its
state: canonical form (decoding a batch), and the chain params in force at
the next block: the record ts window (PROTOCOL §2) and the alert flood limit
(PROTOCOL §12.3)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Mapping

from ledger.breakers import rules as breaker_rules
from ledger.errors import AlertFlood, LedgerError
from ledger.genesis import RecordTimeWindow, record_time_window
from ledger.records import Envelope, decode_envelope

from .mempool_types import ChainNonce, ChainView

# Decoding and state checks yield to the event loop this often: admission is
# the bulk of a node's work under load and must not delay consensus messages.
YIELD_EVERY = 128


async def decode_batch(items: Sequence[bytes]) -> list[Envelope | LedgerError]:
    """Each item decoded, or why not (an error as a value: ``LedgerError.as_value``)."""
    decoded: list[Envelope | LedgerError] = []
    for i, raw in enumerate(items):
        try:
            # Multi-signed envelopes (PROTOCOL §9.2): every signature
            # is verified by admission before anything is admitted.
            decoded.append(decode_envelope(raw, cosigs=True))
        except LedgerError as exc:
            decoded.append(exc.as_value())
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)  # let consensus messages in between
    return decoded


def read_chain_nonces(chain: ChainView, decoded: Sequence[Envelope | LedgerError],
                      reads: Callable[[Envelope], bool]) -> dict[int, ChainNonce]:
    """What the chain's nonce index holds for the records of one request
    that admission would look it up for (``reads``), by item, read together
    (``nonce_holders``: one walk of the index per submitter over the
    request's nonces instead of a read per record).  ``Mempool._lookup``
    takes each as what the index said at this height."""
    asked = {i: (d.record.submitter, d.record.nonce) for i, d in enumerate(decoded)
             if isinstance(d, Envelope) and reads(d)}
    if len(asked) < 2:
        return {}
    height = chain.height
    found = chain.nonce_holders(asked.values())
    return {i: ChainNonce(height, found.get(key)) for i, key in asked.items()}


class RecordWindows:
    """The record ts windows: a client's record is judged against this
    node's clock (:attr:`client`); a peer's record with the validators'
    allowed clock skew added (:attr:`peer`), so that one a peer admitted, or
    a proposer put in a block, is not refused here for a few ms of clock
    difference (block validation decides against the header's time).

    The window is a chain param: governance may change it (gov.params.set);
    :meth:`refresh` follows it."""

    def __init__(self, chain: ChainView, peer_slack_ms: int) -> None:
        self._chain = chain
        self._peer_slack_ms = peer_slack_ms
        self._params: Mapping[str, Any] | None = None
        self.refresh()

    def refresh(self) -> None:
        """The windows of the params in force at the next block."""
        chain = self._chain
        params = chain.membership.at(chain.height + 1).params
        if params is self._params:
            return
        self._params = params
        self.client = record_time_window(params)
        self.peer = RecordTimeWindow(self.client.past_ms + self._peer_slack_ms,
                                     self.client.future_ms + self._peer_slack_ms)


def check_alert_flood(chain: ChainView, monitor: bytes) -> None:
    """Refuse a client's alert when its monitor's alerts counted in the
    breaker window at the tip reach ``breaker_monitor_alerts`` (PROTOCOL
    §12.3): it would not count.  From committed alerts only."""
    r = breaker_rules(chain.membership.at(chain.height + 1).params)
    limit = r["breaker_monitor_alerts"]
    if not limit or not r["breaker_alerts"]:
        return
    b = chain.breakers
    counted = b.monitor_alerts(monitor, b.time, r["breaker_window_ms"])
    if counted >= limit:
        raise AlertFlood(f"this monitor's alerts counted in the last "
                         f"{r['breaker_window_ms']} ms are at the limit ({limit})")
