"""What ``GET /health`` says: what the node can do now, one field per capability.

A load balancer or an operator's probe needs more than "the process answers":
a validator can answer HTTP while it has fallen behind or stopped committing.
So the answer names three capabilities, each with the figure it was decided
on (docs/protocol.md §6):

* ``serving``    - the store is open and no fault has stopped the node: reads
  of committed data are answered.  The status code follows this one: 200
  when serving, 503 when not.
* ``synced``     - not catching up, and at most :data:`SYNC_SLACK_BLOCKS`
  behind the height f+1 peers report (a block committed elsewhere a moment
  ago reaches us with the next status message).
* ``committing`` - the node's last commit is recent, or no peer is ahead of
  it (an idle cluster commits nothing, and that is not a fault).

``ok`` is all three at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SYNC_SLACK_BLOCKS = 1
# Peers ahead and no commit of our own for this long: not committing.  Well
# above one block's interval, the same order as the driver's catch-up stall.
STALL_MS = 5_000


@dataclass(frozen=True)
class Health:
    node: str
    height: int
    peers_height: int          # the height f+1 peers report (0: none reported yet)
    since_commit_ms: int       # since this node's last commit (or its start)
    catching_up: bool
    stopped: str | None = None  # the fault that stopped the node, if any
    store_open: bool = True
    history_gap: range = range(0)  # blocks still to back-fill after state sync

    @property
    def serving(self) -> bool:
        return self.store_open and self.stopped is None

    @property
    def behind(self) -> int:
        return max(0, self.peers_height - self.height)

    @property
    def synced(self) -> bool:
        return self.serving and not self.catching_up and self.behind <= SYNC_SLACK_BLOCKS

    @property
    def committing(self) -> bool:
        return self.serving and (self.behind == 0 or self.since_commit_ms <= STALL_MS)

    @property
    def status_code(self) -> int:
        return 200 if self.serving else 503

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ok": self.serving and self.synced and self.committing,
            "node": self.node,
            "height": self.height,
            "serving": self.serving,
            "synced": self.synced,
            "committing": self.committing,
            "peers_height": self.peers_height,
            "behind": self.behind,
            "since_commit_ms": self.since_commit_ms,
        }
        if self.history_gap:
            # Joined by state sync: serving new blocks, not yet the older ones.
            doc["backfilling"] = {"from": self.history_gap.start,
                                  "to": self.history_gap.stop - 1}
        reason = self.reason()
        if reason is not None:
            doc["reason"] = reason
        return doc

    def reason(self) -> str | None:
        """Why the node is not ``ok``, in words (None when it is)."""
        if self.stopped is not None:
            return self.stopped
        if not self.store_open:
            return "the store is closed (the node is stopping)"
        if not self.committing:
            return (f"no commit for {self.since_commit_ms} ms while peers are at height "
                    f"{self.peers_height} (this node: {self.height})")
        if not self.synced:
            return f"catching up: at height {self.height}, peers at {self.peers_height}"
        return None
