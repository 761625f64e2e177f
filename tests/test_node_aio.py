"""node.aio: the daemon-thread helper catch-up fetches run in."""

from __future__ import annotations

import asyncio
import threading

import pytest

from node.aio import in_daemon_thread


async def test_result_and_thread() -> None:
    main = threading.get_ident()
    ident = await in_daemon_thread(threading.get_ident)
    assert ident != main
    assert await in_daemon_thread(divmod, 7, 2) == (3, 1)


async def test_exception_reaches_the_awaiting_coroutine() -> None:
    with pytest.raises(ZeroDivisionError):
        await in_daemon_thread(divmod, 1, 0)


async def test_cancelled_future_ignores_the_late_result() -> None:
    release = threading.Event()
    finished = threading.Event()

    def slow() -> int:
        release.wait(5)
        finished.set()
        return 1

    future = in_daemon_thread(slow)
    future.cancel()
    release.set()
    await asyncio.get_running_loop().run_in_executor(None, finished.wait, 5)
    await asyncio.sleep(0.01)  # the thread's settle callback runs and finds it cancelled
    assert future.cancelled()


async def test_threads_are_daemons() -> None:
    seen: list[bool] = []
    await in_daemon_thread(lambda: seen.append(threading.current_thread().daemon))
    assert seen == [True]
