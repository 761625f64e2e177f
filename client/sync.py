"""A small synchronous wrapper around :class:`LedgerClient` for scripts.

    with SyncLedgerClient(["http://127.0.0.1:7700"], key_file="keys/demo.json") as lc:
        rid = lc.submit(kind="payment", body={"amount": 5})
        lc.wait_committed(rid)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Mapping, Sequence

from .outbox import PendingEnvelope
from .sdk import LedgerClient


class SyncLedgerClient:
    def __init__(self, nodes: Sequence[str], key_file: str | Path | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = LedgerClient(nodes, key_file, **options)

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> "SyncLedgerClient":
        self._run(self._client.__aenter__())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.close())
            self._loop.close()

    @property
    def chain(self) -> str | None:
        return self._client.chain

    def submit(self, **record: Any) -> str:
        result: str = self._run(self._client.submit(**record))
        return result

    def submit_many(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        result: list[str] = self._run(self._client.submit_many(records))
        return result

    def submit_envelopes(self, envelopes: Sequence[bytes]) -> list[dict[str, Any]]:
        """See :meth:`LedgerClient.submit_envelopes`."""
        result: list[dict[str, Any]] = self._run(self._client.submit_envelopes(envelopes))
        return result

    def pending(self) -> list[PendingEnvelope]:
        """See :meth:`LedgerClient.pending`."""
        return self._client.pending()

    def forget(self, record_ids: Iterable[str]) -> None:
        """See :meth:`LedgerClient.forget`."""
        self._client.forget(record_ids)

    def resubmit_pending(self) -> list[dict[str, Any]]:
        """See :meth:`LedgerClient.resubmit_pending`."""
        result: list[dict[str, Any]] = self._run(self._client.resubmit_pending())
        return result

    def confirm_committed(self) -> int:
        """See :meth:`LedgerClient.confirm_committed`."""
        result: int = self._run(self._client.confirm_committed())
        return result

    def wait_committed(self, record_id: str, timeout: float = 30.0) -> dict[str, Any]:
        result: dict[str, Any] = self._run(self._client.wait_committed(record_id, timeout))
        return result

    def proof(self, record_id: str, height: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._run(self._client.proof(record_id, height))
        return result

    def trace(self, record_id: str, depth: int | None = None, **caps: int) -> dict[str, Any]:
        """See :meth:`LedgerClient.trace` (``max_records``, ``max_children``)."""
        result: dict[str, Any] = self._run(self._client.trace(record_id, depth, **caps))
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._run(self._client.status())
        return result

    def block(self, height: int | str = "latest") -> dict[str, Any]:
        result: dict[str, Any] = self._run(self._client.block(height))
        return result
