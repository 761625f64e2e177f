"""Fail-stop: a fault the node must not serve through ends the process.

A validator whose write did not reach the disk no longer knows what it has
made durable: a block it thinks committed, or the consensus state that
remembers what it signed (without which a restart could sign twice).
LevelDB also keeps a failed write's error and refuses every later write
until the database is reopened, so a node that carried on would stay stuck
at its height while answering clients - the failure mode operators cannot
see.  Instead the node logs one CRITICAL line naming the cause and exits
with a distinct code; a restart reopens the store at its last whole block
and catches up from the peers.

* :class:`FailStop` - the one way out: one CRITICAL line, then ``os._exit``.
  Not a graceful stop: shutdown runs code (``finally`` blocks, in-flight
  requests, LevelDB's close) that could write again or answer from state
  that is not on disk; LevelDB's write-ahead log is built to survive a
  process that just ends.
* :class:`FailStopStore` - wraps the node's key-value store so that every
  write (block commits, consensus state, evidence, anything added later)
  fails stop in this one place instead of at each call site.

Exit codes (docs/operators.md): 0 clean stop, 1 cannot start, 2 configuration,
:data:`EXIT_STORAGE_WRITE` a write to the store failed,
:data:`EXIT_INTERNAL` committing or persisting failed for another reason.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator

from ledger.storage import KeyValueStore, WriteBatch

log = logging.getLogger("node.failstop")

EXIT_STORAGE_WRITE = 3
EXIT_INTERNAL = 4


# LevelDB reports an I/O failure as text ("IO error: <file>: No space left
# on device"); the errno's symbolic name is what operators search for.
_NAMED_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES)


def _message(exc: BaseException) -> str:
    # plyvel carries LevelDB's status text as bytes.
    if len(exc.args) == 1 and isinstance(exc.args[0], bytes):
        return exc.args[0].decode("utf-8", "replace")
    return str(exc)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception (and of its cause, if it has one),
    followed by the errno's name when the text carries one (``[ENOSPC]``)."""
    text = f"{type(exc).__name__}: {_message(exc)}"
    cause = exc.__cause__
    if cause is not None and _message(cause) not in text:
        text += f" (caused by {type(cause).__name__}: {_message(cause)})"
    code = getattr(exc, "errno", None)
    names = [errno.errorcode[code]] if isinstance(code, int) and code in errno.errorcode else []
    names += [errno.errorcode[c] for c in _NAMED_ERRNOS
              if os.strerror(c) in text and errno.errorcode[c] not in names]
    return text + "".join(f" [{name}]" for name in names)


class FailStop:
    """Stop the process on a fault, once.

    ``exit`` is ``os._exit`` in the node; tests pass a recorder (then the
    caller sees the original exception raised on, and :attr:`stopped` says
    the node has stopped).
    """

    def __init__(self, exit: Callable[[int], object] = os._exit) -> None:
        self._exit = exit
        self.stopped: tuple[int, str] | None = None

    def __call__(self, code: int, reason: str) -> None:
        if self.stopped is not None:
            return  # the first fault is the cause; later ones are its echoes
        self.stopped = (code, reason)
        log.critical("stopping the node (exit code %d): %s", code, reason,
                     extra={"exit_code": code})
        for handler in logging.getLogger().handlers:
            handler.flush()  # os._exit skips the interpreter's own flushing
        self._exit(code)

    def write_failed(self, exc: BaseException) -> None:
        self(EXIT_STORAGE_WRITE, f"a write to the store failed: {describe(exc)}")

    def internal(self, what: str, exc: BaseException) -> None:
        self(EXIT_INTERNAL, f"{what} failed: {describe(exc)}")


class FailStopStore:
    """A :class:`KeyValueStore` whose failed writes stop the node.

    Reads pass straight through (``get`` is the wrapped store's own bound
    method: proofs make many reads each).
    """

    def __init__(self, store: KeyValueStore, fail: FailStop) -> None:
        self.inner = store
        self.fail = fail
        self.get: Callable[[bytes], bytes | None] = store.get

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        try:
            self.inner.write(batch, sync)
        except Exception as exc:
            # TypeError from a malformed batch is a bug, an OSError or
            # StorageWriteFailed the disk: neither leaves a store we trust.
            self.fail.write_failed(exc)
            raise

    def iterate(self, prefix: bytes, reverse: bool = False,
                start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.iterate(prefix, reverse, start)

    def close(self) -> None:
        self.inner.close()
        self.get = self.inner.get
