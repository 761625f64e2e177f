"""Client SDK for services and the ledger-audit tools for auditors.

``LedgerClient`` (async) and ``SyncLedgerClient`` are imported lazily so that
``client.audit`` (the offline verifier CLI) does not pay for aiohttp.
"""

from __future__ import annotations

from typing import Any

_ERRORS = {"LedgerAPIError", "NodesUnavailable", "BatchSubmitError", "CommitTimeout", "SubmitIncomplete",
           "SubmitUnavailable", "OutboxFull"}
__all__ = ["LedgerClient", "SyncLedgerClient", *sorted(_ERRORS)]


def __getattr__(name: str) -> Any:
    if name == "LedgerClient":
        from .sdk import LedgerClient

        return LedgerClient
    if name == "SyncLedgerClient":
        from .sync import SyncLedgerClient

        return SyncLedgerClient
    if name in _ERRORS:
        from . import errors

        return getattr(errors, name)
    raise AttributeError(name)
