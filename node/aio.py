"""Small asyncio helpers shared by the node's components."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], timeout: float = 5.0,
                     attempts: int = 3) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait for them; returns any that would not stop.

    A cancellation can be swallowed inside a library await (Python 3.11's
    ``asyncio.wait_for`` does so when its inner awaitable finishes at the same
    moment), so cancel again a few times rather than wait forever.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(attempts):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=timeout)
    return pending


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """``event.wait()`` with a timeout, without ``asyncio.wait_for``'s 3.11 race."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)
