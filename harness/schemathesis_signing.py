"""A schemathesis hook module that signs every fuzzed request (PROTOCOL §11).

``run_schemathesis(..., signing_key=...)`` loads it into the schemathesis
CLI with ``SCHEMATHESIS_HOOKS=harness.schemathesis_signing`` and names the
key file in ``LEDGER_FUZZ_SIGNING_KEY``.  The signature is made by a
``requests`` auth object, which sees the prepared request: the URL and
body bytes exactly as they go on the wire, so the fuzzed input is signed,
not an earlier form of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import requests
import schemathesis

from ledger.keys import load_key_file
from ledger.reqsig import RequestSigner

KEY_ENV = "LEDGER_FUZZ_SIGNING_KEY"


class SignRequests(requests.auth.AuthBase):
    """Adds the RFC 9421 signature headers to a prepared request."""

    def __init__(self, signer: RequestSigner) -> None:
        self._signer = signer

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body.encode() if isinstance(r.body, str) else r.body
        r.headers.update(self._signer.headers(r.method or "GET", r.url or "",
                                              body if isinstance(body, bytes) else None))
        return r


def signing_auth(key_file: str | Path) -> SignRequests:
    return SignRequests(RequestSigner(load_key_file(key_file).key))


def fetch_spec(url: str, key_file: Path, ca_file: Path | None, out: Path) -> None:
    """Save the node's /openapi.json, itself a signed route, for the CLI to load."""
    resp = requests.get(url, auth=signing_auth(key_file), timeout=30,
                        verify=str(ca_file) if ca_file is not None else True)
    resp.raise_for_status()
    out.write_bytes(resp.content)


_AUTH: list[SignRequests] = []  # made on first use, in the schemathesis process


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if not _AUTH:
        _AUTH.append(signing_auth(os.environ[KEY_ENV]))
    kwargs["auth"] = _AUTH[0]
