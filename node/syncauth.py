"""Signed block-sync requests: ``GET /v1/sync/blocks`` is for validators only.

Block sync answers are the largest a node writes (megabytes per request), so
only a holder of a genesis validator key may ask for them.  The fetching node
signs, with its validator key and a domain of its own (so the signature can
never pass for a vote, a record, a handshake or a peer frame), the chain id,
its validator index, the public key of the validator it asks, the request's
path and query, and its clock in milliseconds.  The serving node checks that
the index names a genesis validator other than itself, that the timestamp is
within ``sync.auth_window_ms`` of its own clock, and the signature.

A signed request names the node it is sent to, so it cannot be replayed at
another node; replayed at the same node within the window it only repeats
that validator's own request.  Nothing in a block is secret: the point is
that strangers cannot make a node write large answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ledger.crypto import SigningKey, verify_signature
from ledger.encoding import canonical
from ledger.errors import BadSignature, LedgerError
from ledger.genesis import Genesis

SYNC_AUTH_DOMAIN = b"auditledger/sync-request/v1\n"
HEADER_VALIDATOR = "X-Ledger-Validator"
HEADER_TIMESTAMP = "X-Ledger-Timestamp"
HEADER_SIGNATURE = "X-Ledger-Signature"
AUTH_SCHEME = "Ledger-Validator"  # named in WWW-Authenticate on a 401


class SyncUnauthorized(LedgerError):
    """The sync request is not signed by a genesis validator (HTTP 401)."""

    code = "unauthorized"


class SyncForbidden(LedgerError):
    """The signer is not a validator this node serves blocks to (HTTP 403)."""

    code = "forbidden"


def _message(chain: str, index: int | bytes, server: bytes, target: str, ts_ms: int) -> bytes:
    return canonical({"chain": chain, "validator": index, "server": server,
                      "target": target, "ts": ts_ms})


def sign_request(genesis: Genesis, key: SigningKey, index: int | None, server: bytes,
                 target: str, now_ms: int) -> dict[str, str]:
    """The headers that authenticate ``GET target`` (path and query) to the
    validator whose public key is ``server``: as genesis validator ``index``,
    or (``index`` None: a validator added by governance, PROTOCOL §9.9) by
    public key."""
    who: int | bytes = key.public_key if index is None or index < 0 else index
    sig = key.sign(SYNC_AUTH_DOMAIN, _message(genesis.chain, who, server, target, now_ms))
    return {HEADER_VALIDATOR: who.hex() if isinstance(who, bytes) else str(who),
            HEADER_TIMESTAMP: str(now_ms), HEADER_SIGNATURE: sig.hex()}


def _int_header(headers: Mapping[str, str], name: str, limit: int) -> int:
    raw = headers.get(name)
    if raw is None:
        raise SyncUnauthorized(f"block sync is for validators: sign the request "
                               f"({HEADER_VALIDATOR}, {HEADER_TIMESTAMP}, {HEADER_SIGNATURE})")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20 or int(raw) > limit:
        raise SyncUnauthorized(f"{name} must be a decimal integer")
    return int(raw)


def _signer(genesis: Genesis, headers: Mapping[str, str],
            was_validator: Callable[[bytes], bool] | None) -> tuple[int | bytes, bytes]:
    """``(the signed validator field, its public key)`` of the request."""
    raw = headers.get(HEADER_VALIDATOR, "")
    if len(raw) == 64 and raw.isascii() and not raw.isdigit():
        try:
            pubkey = bytes.fromhex(raw)
        except ValueError:
            raise SyncUnauthorized(f"{HEADER_VALIDATOR} must be an index or a public key "
                                   "in hex") from None
        if was_validator is None or not was_validator(pubkey):
            raise SyncForbidden(f"{raw} is not a validator of this chain")
        return pubkey, pubkey
    index = _int_header(headers, HEADER_VALIDATOR, 1 << 32)
    if not 0 <= index < genesis.n:
        raise SyncForbidden(f"validator {index} is not in genesis")
    return index, genesis.validators[index].pubkey


def check_request(genesis: Genesis, me: bytes, headers: Mapping[str, str], target: str,
                  now_ms: int, window_ms: int,
                  was_validator: Callable[[bytes], bool] | None = None) -> int | bytes:
    """The validator that signed this request (its genesis index, or its
    public key); raises :class:`SyncUnauthorized` (missing, stale or bad
    signature) or :class:`SyncForbidden` (not another validator: a genesis
    index, or a key ``was_validator`` knows)."""
    ts_ms = _int_header(headers, HEADER_TIMESTAMP, (1 << 64) - 1)
    raw_sig = headers.get(HEADER_SIGNATURE, "")
    who, pubkey = _signer(genesis, headers, was_validator)
    if pubkey == me:
        raise SyncForbidden("a node does not sync from itself")
    if abs(now_ms - ts_ms) > window_ms:
        raise SyncUnauthorized(f"{HEADER_TIMESTAMP} is more than {window_ms} ms from this "
                               f"node's clock")
    try:
        sig = bytes.fromhex(raw_sig)
        verify_signature(pubkey, SYNC_AUTH_DOMAIN,
                         _message(genesis.chain, who, me, target, ts_ms), sig)
    except (ValueError, BadSignature):
        raise SyncUnauthorized(f"the signature is not validator {raw_sig and who!r}'s") from None
    return who
