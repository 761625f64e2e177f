"""Small asyncio helpers shared by the node's components."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


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


def in_daemon_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run ``fn(*args)`` in a new daemon thread; its result as a future of the
    running loop.

    For blocking work that must progress while the loop is busy (a thread
    blocked in ``recv`` or ``write`` releases the GIL).  Unlike the default
    executor, a daemon thread never holds up the process's exit when a peer
    hangs mid-answer; cancelling the future abandons the result, and the
    thread ends at its own timeout.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, exc: BaseException | None) -> None:
        if future.done():
            return  # cancelled meanwhile
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            value, exc = fn(*args), None
        except BaseException as error:  # handed to the awaiting coroutine
            value, exc = None, error
        try:
            loop.call_soon_threadsafe(settle, value, exc)
        except RuntimeError:
            pass  # the loop closed: nobody is waiting any more

    threading.Thread(target=run, name=getattr(fn, "__name__", "worker"), daemon=True).start()
    return future
