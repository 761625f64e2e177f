"""Client SDK for services and the ledger-audit tools for auditors.

``from client import LedgerClient`` is a plain import, so type checkers
and editors see the real classes.  The offline auditor CLI stays light
another way: :mod:`client.sdk` imports ``asyncio`` and ``aiohttp`` only when
a client is constructed (``ledger-audit verify`` never constructs one).
"""

from __future__ import annotations

from ledger.errors import VerificationError
from ledger.verify import VerifiedBundle, verify_bundle

from .errors import (
    BatchSubmitError,
    CommitTimeout,
    InvalidArgument,
    InvalidRecord,
    KeyFileError,
    LedgerAPIError,
    LedgerClientError,
    NonceFileError,
    NodesUnavailable,
    OutboxFull,
    SpoolError,
    SubmitIncomplete,
    SubmitUnavailable,
)
from .outbox import PendingEnvelope
from .sdk import LedgerClient
from .sync import SyncLedgerClient
from .types import (
    BlockDoc,
    BundleDoc,
    CertificateDoc,
    ConsistencyDoc,
    HeaderFields,
    PeerDoc,
    RecordDoc,
    RecordFields,
    RecordSpec,
    SignatureDoc,
    StatusDoc,
    SubmitResult,
    TraceDoc,
)

__all__ = [
    "BatchSubmitError",
    "BlockDoc",
    "BundleDoc",
    "CertificateDoc",
    "CommitTimeout",
    "ConsistencyDoc",
    "HeaderFields",
    "InvalidArgument",
    "InvalidRecord",
    "KeyFileError",
    "LedgerAPIError",
    "LedgerClient",
    "LedgerClientError",
    "NodesUnavailable",
    "NonceFileError",
    "OutboxFull",
    "PeerDoc",
    "PendingEnvelope",
    "RecordDoc",
    "RecordFields",
    "RecordSpec",
    "SignatureDoc",
    "SpoolError",
    "StatusDoc",
    "SubmitIncomplete",
    "SubmitResult",
    "SubmitUnavailable",
    "SyncLedgerClient",
    "TraceDoc",
    "VerificationError",
    "VerifiedBundle",
    "verify_bundle",
]
