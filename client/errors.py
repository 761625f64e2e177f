"""Exceptions of the client SDK: each carries the API's error code."""

from __future__ import annotations

from typing import Any


class LedgerClientError(Exception):
    """Root of the SDK's errors."""

    code: str = "client_error"


class LedgerAPIError(LedgerClientError):
    """A node answered with a PROTOCOL §6 error document."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (HTTP {status})" if status else ""))
        self.code = code
        self.message = message
        self.status = status


class NodesUnavailable(LedgerClientError):
    """No node answered usefully within the retry budget."""

    code = "unavailable"

    def __init__(self, message: str, attempts: list[str]) -> None:
        super().__init__(message + "; attempts: " + "; ".join(attempts[-6:]))
        self.attempts = attempts


class BatchSubmitError(LedgerClientError):
    """Some envelopes of a batch were refused; the others were accepted."""

    code = "batch_rejected"

    def __init__(self, results: list[dict[str, Any]], ids: list[str]) -> None:
        self.results = results
        self.ids = ids
        self.failures = [
            (i, r.get("error", "?"), r.get("message", "")) for i, r in enumerate(results) if "error" in r
        ]
        first = self.failures[0] if self.failures else (0, "?", "")
        super().__init__(f"{len(self.failures)} of {len(results)} envelopes refused; first #{first[0]}: {first[1]}: {first[2]}")


class CommitTimeout(LedgerClientError, TimeoutError):
    """A record was not committed within the time asked for."""

    code = "timeout"
