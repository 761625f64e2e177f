"""Inbound peer handshakes: a token bucket per remote address, and one log
line per interval for the handshakes refused.

Anyone who can reach ``/v1/peer`` can send a hello naming a validator, and
the listener answers with a signed challenge before it learns that the dialer
cannot sign as that validator.  Buckets bound how many such signatures (and
handshake attempts of any kind) one address gets; the excess is refused
before the WebSocket upgrade, so nothing is signed for it.  The failures and
refusals are logged as a summary per interval (counts by reason and by
address) instead of one line per attempt, so a flood cannot fill the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass

log = logging.getLogger("node.transport")

# Addresses with a bucket at a time; the least recently seen is forgotten
# (it comes back with a full bucket).  Bounds the table, not the attack: an
# attacker with more addresses than this is not limited per address anyway.
MAX_ADDRESSES = 4096
# Addresses named in one summary line; the rest are counted together.
MAX_LOGGED_ADDRESSES = 5
# Distinct addresses counted per interval (the rest are "others").
MAX_COUNTED_ADDRESSES = 1024
# A failure's message can quote what the dialer sent (a chain id): cut short.
MAX_MESSAGE_CHARS = 200


@dataclass
class _Bucket:
    tokens: float
    at: float


class HandshakeLimiter:
    """Per-address token buckets: ``burst`` handshakes at once, refilled at
    ``rate_per_s``; ``allow`` takes one token or says no."""

    def __init__(self, rate_per_s: float, burst: int, max_addresses: int = MAX_ADDRESSES) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a handshake bucket needs a positive rate and a burst of at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, address: str, now: float) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = _Bucket(float(self.burst), now)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(address)
            # max(): a clock that steps back refills nothing (and takes nothing).
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
            bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True


class HandshakeReport:
    """Refused inbound handshakes since the last summary, by reason and by address."""

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self.addresses: Counter[str] = Counter()
        self.last_message = ""
        self.since = 0.0  # time.monotonic() of the first refusal counted

    def note(self, address: str, reason: str, message: str = "") -> bool:
        """Count one refusal; True if it is the first since the last summary
        (the caller then schedules :meth:`flush`)."""
        first = not self.reasons
        if first:
            self.since = time.monotonic()
        self.reasons[reason] += 1
        if address in self.addresses or len(self.addresses) < MAX_COUNTED_ADDRESSES:
            self.addresses[address] += 1
        else:
            self.addresses["others"] += 1
        if message:
            self.last_message = message[:MAX_MESSAGE_CHARS]
        return first

    def flush(self) -> str | None:
        """Log and forget the summary; the line logged, or None if nothing was refused."""
        if not self.reasons:
            return None
        elapsed = time.monotonic() - self.since
        total = sum(self.reasons.values())
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items()))
        top = self.addresses.most_common(MAX_LOGGED_ADDRESSES)
        addresses = ", ".join(f"{a} ({n})" for a, n in top)
        rest = len(self.addresses) - len(top)
        if rest > 0:
            addresses += f" and {rest} more"
        line = (f"refused {total} inbound peer handshakes in {elapsed:.1f} s "
                f"({reasons}) from {addresses}")
        if self.last_message:
            line += f"; last failure: {self.last_message}"
        log.warning("%s", line)
        self.reasons.clear()
        self.addresses.clear()
        self.last_message = ""
        return line
