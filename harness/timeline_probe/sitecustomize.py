"""A timeline of one ledger-node process, for :mod:`harness.timeline` (harness only).

Python imports ``sitecustomize`` at start from any directory on its path;
with this directory on ``PYTHONPATH`` and ``LEDGER_TIMELINE_DIR`` set, each
``ledger-node`` process started with that environment wraps a few of its
own methods (the consensus driver's events and effects, block building,
validation, the verdict pass, the commit, admission) and writes, for each
call, its start and end as ``<unix time> > <label> [height]`` and
``<unix time> < <label> [height]`` (validation and commit: ``[height
records]``) to ``$LEDGER_TIMELINE_DIR/<pid>.log``.
Any other process (the harness itself, tools) is left alone.

    PYTHONPATH=harness/timeline_probe LEDGER_TIMELINE_DIR=/tmp/tl \\
        python -m harness.bench_secure --policy --pairs 1
    python -m harness.timeline /tmp/tl

Nothing in the runtime imports this; the wrappers cost a few µs per call.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import inspect
import os
import sys
import time
from collections.abc import Callable
from typing import Any

# Method -> label.  Driver events and effects get their type (and a
# message's type) appended.
_TARGETS = (
    ("node.driver", "Driver", "_execute", "execute"),
    ("node.driver", "Driver", "feed", "feed"),
    ("node.driver", "Driver", "feed_peer", "feed_peer"),
    ("node.chainapp", "NodeApplication", "build_block", "build_block"),
    ("node.chainapp", "NodeApplication", "validate", "validate"),
    ("ledger.chain", "ChainStore", "next_verdicts", "verdicts"),
    ("ledger.chain", "ChainStore", "commit_block", "commit_block"),
    ("ledger.approvals", "VerdictState", "commit", "verdicts_commit"),
    ("node.api_records", "RecordRoutes", "submit", "submit"),
    ("node.mempool", "Mempool", "admit", "admit"),
)
_FLUSH_EVERY = 4096


class _Log:
    def __init__(self, path: str) -> None:
        self.file = open(path, "a", encoding="ascii")
        self.lines: list[str] = []
        atexit.register(self.flush)

    def mark(self, line: str) -> None:
        self.lines.append(f"{time.time():.6f} {line}\n")
        if len(self.lines) >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self.file.writelines(self.lines)
        self.file.flush()
        self.lines.clear()


def _describe(label: str, args: tuple[Any, ...]) -> str:
    """``label`` with what the call is about: an event's or effect's type and
    height, a block's height."""
    if label in ("execute", "feed", "feed_peer") and len(args) > 1:
        item = args[1]
        label = f"{label}:{type(item).__name__}"
        inner = getattr(item, "message", None) or getattr(item, "vote", None)
        if inner is not None:
            kind = getattr(getattr(inner, "vote", inner), "type", None)
            label += f":{type(inner).__name__}" + (f":{kind}" if kind is not None else "")
        height = _height(item)
        return label if height is None else f"{label} {height}"
    if label == "build_block" and len(args) > 1:
        return f"{label} {args[1]}"
    if label in ("validate", "commit_block") and len(args) > 2:
        # the block's height and its number of records
        return f"{label} {getattr(args[1], 'height', '')} {len(args[2])}"
    if label == "verdicts" and len(args) > 1:
        return f"{label} {args[1]}"
    return label


def _height(item: Any) -> int | None:
    for holder in (item, getattr(item, "message", None), getattr(item, "proposal", None),
                   getattr(getattr(item, "vote", None), "vote", None)):
        height = getattr(holder, "height", None)
        if isinstance(height, int):
            return height
    return None


def _wrap(log: _Log, owner: type, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)
    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            what = _describe(label, args)
            log.mark("> " + what)
            try:
                return await original(*args, **kwargs)
            finally:
                log.mark("< " + what)
        setattr(owner, name, timed_async)
        return

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        what = _describe(label, args)
        log.mark("> " + what)
        try:
            return original(*args, **kwargs)
        finally:
            log.mark("< " + what)
    setattr(owner, name, timed)


def _install(directory: str) -> None:
    log = _Log(os.path.join(directory, f"{os.getpid()}.log"))
    for module, cls, name, label in _TARGETS:
        _wrap(log, getattr(importlib.import_module(module), cls), name, label)


_DIR = os.environ.get("LEDGER_TIMELINE_DIR")
if _DIR and os.path.basename(sys.argv[0] if sys.argv else "") == "ledger-node":
    _install(_DIR)
