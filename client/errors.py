"""Exceptions of the client SDK: each carries the API's error code.

Every submission error derives from :class:`SubmitIncomplete` and carries
what the caller needs to finish the job without signing anything again: the
ids that were accepted and the exact signed bytes that were not.
"""

from __future__ import annotations

from typing import Sequence

from ledger.keys import KeyFileError as _LedgerKeyFileError

from .types import SubmitResult


class LedgerClientError(Exception):
    """Root of the SDK's errors."""

    code: str = "client_error"


class InvalidArgument(LedgerClientError, ValueError):
    """A call's arguments are unusable (an empty node list, a ``batch_size``
    out of range, no envelopes); also a ``ValueError``."""

    code = "invalid_argument"


class InvalidRecord(InvalidArgument):
    """A record (or envelope) the client cannot encode or decode, so no
    node would accept it; nothing was sent.  ``code`` is the error code a
    node would answer with (``bad_encoding``, ``too_large``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class KeyFileError(LedgerClientError, _LedgerKeyFileError):
    """The key file is missing, unreadable or malformed (also the ledger's
    ``KeyFileError``, a ``ValueError``)."""

    code = "key_file"


class NonceFileError(LedgerClientError, OSError):
    """The nonce file next to the key cannot be read or written, so no
    nonce can be reserved (also an ``OSError``)."""

    code = "nonce_file"


class LedgerAPIError(LedgerClientError):
    """A node answered with a PROTOCOL §6 error document.

    ``node`` is the base URL of the node that answered, when known."""

    def __init__(self, code: str, message: str, status: int | None = None, node: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (HTTP {status})" if status else ""))
        self.code = code
        self.message = message
        self.status = status
        self.node = node


class NodesUnavailable(LedgerClientError):
    """No node answered usefully within the retry budget."""

    code = "unavailable"

    def __init__(self, message: str, attempts: list[str]) -> None:
        super().__init__(message + "; attempts: " + "; ".join(attempts[-6:]))
        self.attempts = attempts


class SubmitIncomplete(LedgerClientError):
    """Not every envelope of a submission was accepted.

    * ``results``: one result per envelope, in submission order (the node's
      result, or the last retryable error seen for it);
    * ``ids``: the record ids (hex) of all envelopes, in order;
    * ``accepted``: ids a node accepted (``accepted``/``duplicate``/``committed``);
    * ``unaccepted``: the exact signed bytes of the envelopes still worth
      sending (retryable refusals or failed requests) - pass them to
      ``submit_envelopes`` (or call ``resubmit_pending``), never re-sign;
    * ``refused``: ``(index, code, message)`` of the envelopes refused for
      good (a bad signature, a reused nonce, ...), which no retry will change.
    """

    code = "submit_incomplete"

    def __init__(
        self,
        results: list[SubmitResult],
        ids: list[str],
        unaccepted: Sequence[bytes],
        refused: list[tuple[int, str, str]],
        summary: str,
    ) -> None:
        self.results = results
        self.ids = ids
        self.accepted = [ids[i] for i, r in enumerate(results) if "error" not in r]
        self.unaccepted = list(unaccepted)
        self.refused = refused
        super().__init__(summary)

    @property
    def failures(self) -> list[tuple[int, str, str]]:
        """Every envelope not accepted: ``(index, code, message)``."""
        return [(i, r.get("error", "?"), r.get("message", "")) for i, r in enumerate(self.results) if "error" in r]


class BatchSubmitError(SubmitIncomplete):
    """Some envelopes were refused for good; the others were accepted (or,
    if retries also ran out, are listed in ``unaccepted``)."""

    code = "batch_rejected"


class SubmitUnavailable(SubmitIncomplete):
    """Retries ran out before every envelope was accepted; nothing was
    refused for good.  ``unaccepted`` holds the bytes to send again."""

    code = "unavailable"

    def __init__(
        self,
        results: list[SubmitResult],
        ids: list[str],
        unaccepted: Sequence[bytes],
        attempts: list[str],
    ) -> None:
        self.attempts = attempts
        super().__init__(
            results, ids, unaccepted, [],
            f"{len(unaccepted)} of {len(ids)} envelopes not accepted after retries; attempts: "
            + "; ".join(attempts[-6:]),
        )


class OutboxFull(LedgerClientError):
    """The client already keeps ``max_pending`` envelopes it has not seen
    committed; wait for some (``wait_committed``, ``confirm_committed``)
    before signing more."""

    code = "outbox_full"


class SpoolError(LedgerClientError):
    """The spool file is unusable (held by another process, or unreadable)."""

    code = "spool_error"


class CommitTimeout(LedgerClientError, TimeoutError):
    """A record was not committed within the time asked for."""

    code = "timeout"
