"""How an API request is signed (PROTOCOL §11.1-11.3): RFC 9421 HTTP Message
Signatures with the caller's registered Ed25519 key.

The signature covers ``@method``, ``@path``, ``@query`` and, when the
request has a body, ``content-digest`` (RFC 9530, ``sha-256``), with the
parameters ``created`` (Unix seconds), ``keyid`` (the public key, 64
lowercase hex digits), ``alg="ed25519"``, ``nonce`` (fresh per request) and
``tag="auditledger/request/v1"``.  The ``http-message-signatures`` library
builds the signature base and the ``Signature-Input``/``Signature`` fields;
this module fixes the choices above, so the SDK, the harness and the
protocol's worked example sign the same way, and the node (node/auth.py)
checks against the same constants.

Pure: no clock or randomness unless the caller leaves ``created`` or
``nonce`` out.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from .crypto import SigningKey

TAG = "auditledger/request/v1"
ALG = "ed25519"
LABEL = "sig"
COVERED = ("@method", "@path", "@query")
DIGEST = "content-digest"


@dataclass
class _Message:
    """A request as the library reads and writes it."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class RequestSigner:
    """Signs requests with one Ed25519 key (the key file's)."""

    def __init__(self, key: SigningKey) -> None:
        self.keyid = key.public_key.hex()
        private = Ed25519PrivateKey.from_private_bytes(key.seed)
        self._signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519,
            key_resolver=MappingKeyResolver(public_keys={}, private_keys={self.keyid: private}))

    def headers(self, method: str, url: str, body: bytes | None = None, *,
                created: int | None = None, nonce: str | None = None) -> dict[str, str]:
        """The headers that sign ``method url`` (an absolute URL, exactly as
        sent: path and query as they go on the request line) with ``body``
        (None or empty: no body).  ``created`` defaults to now, ``nonce`` to
        16 random bytes in base64url."""
        message = _Message(method.upper(), url)
        when = (datetime.datetime.now(datetime.timezone.utc) if created is None
                else datetime.datetime.fromtimestamp(created, datetime.timezone.utc))
        self._signer.sign(message, key_id=self.keyid, created=when,
                          nonce=nonce if nonce is not None else secrets.token_urlsafe(16),
                          label=LABEL, tag=TAG, covered_component_ids=COVERED,
                          body=body or None)
        return message.headers
