"""Request authentication: RFC 9421 HTTP Message Signatures (PROTOCOL §11).

Every API request but ``/health`` (and the validators' own routes, which
carry their validator signature) is signed with the caller's registered
Ed25519 key.  The signature covers ``@method``, ``@path``, ``@query`` and,
for a request with a body, ``content-digest`` (RFC 9530, sha-256), with the
parameters ``created``, ``nonce``, ``keyid`` (the public key, hex),
``alg="ed25519"`` and ``tag="auditledger/request/v1"``.  The
``http-message-signatures`` library builds the signature base, parses the
headers and checks the signature and the digest; this module adds what RFC
9421 leaves to the application: which components and parameters are
required, the replay window (``created`` within ``auth.window_ms`` of the
node's clock) and the memory of nonces for that window, the lookup of
``keyid`` in the membership in force, and the roles of node/access.py.

The middleware runs inside the error middleware (node/api.py), after the
body has been read, and sets ``request["identity"]`` (the
:class:`~ledger.access.Identity`, or None for a public read) and
``request["grant"]`` (what the caller may see) for the handlers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (HTTPMessageSignaturesException, HTTPMessageVerifier,
                                     HTTPSignatureKeyResolver, InvalidSignature, algorithms)

from ledger.access import Identity, identity_of, public_read
from ledger.errors import ForbiddenRole, LedgerError, RateLimited
from ledger.membership import State
from ledger.reqsig import ALG, COVERED, DIGEST, TAG

from . import access
from .access import ALL, ANYONE, GRANT_KEY, IDENTITY_KEY, OWN, PUBLIC, Grant

# The components every signature covers, as the library names them (quoted).
REQUIRED_NAMES = frozenset(f'"{c}"' for c in COVERED)
_DIGEST_NAME = f'"{DIGEST}"'
NONCE_RE = re.compile(r"[A-Za-z0-9_\-+/=.~]{16,128}")
KEYID_RE = re.compile(r"[0-9a-f]{64}")
# Sent with every 401: what a signature must cover (RFC 9421 §5.1).
ACCEPT_SIGNATURE = ('sig=("@method" "@path" "@query" "content-digest");created;nonce;keyid;'
                    f'alg="{ALG}";tag="{TAG}"')
WWW_AUTHENTICATE = 'Signature realm="auditledger"'


class Unauthenticated(LedgerError):
    """No valid signature by a registered key (HTTP 401, PROTOCOL §11)."""

    code = "unauthenticated"


class _Refused(InvalidSignature):
    """A signature parameter this protocol refuses (raised inside the library's
    verification, before any key is resolved or signature checked)."""


class ReplayGuard:
    """The (keyid, nonce) pairs of accepted requests, each kept until its
    ``created`` leaves the window; a request whose pair is held is a replay.

    Pairs are grouped by ``created`` (whole seconds, signed, so a replay
    repeats it): the groups that left the window are dropped whole.  At most
    ``max_entries`` pairs are held; beyond that requests are refused with 429
    rather than forgetting a pair that could then be replayed."""

    def __init__(self, window_ms: int, max_entries: int) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._by_created: dict[int, set[tuple[str, str]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _prune(self, now_ms: int) -> None:
        for created in [c for c in self._by_created if c * 1000 + self.window_ms < now_ms]:
            self._size -= len(self._by_created.pop(created))

    def remember(self, keyid: str, nonce: str, created: int, now_ms: int) -> None:
        self._prune(now_ms)
        seen = self._by_created.setdefault(created, set())
        if (keyid, nonce) in seen:
            raise Unauthenticated("replayed request: this nonce was already used with this "
                                  "key; sign every request with a fresh nonce")
        if self._size >= self.max_entries:
            raise RateLimited("too many signed requests within the replay window; retry later")
        seen.add((keyid, nonce))
        self._size += 1


class _Verifier(HTTPMessageVerifier):
    """The library's verifier with this protocol's rules for the signature
    parameters and the window, checked on the node's clock."""

    def __init__(self, resolver: HTTPSignatureKeyResolver, now_ms: int, window_ms: int) -> None:
        super().__init__(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
        self.now_ms = now_ms
        self.window_ms = window_ms

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        params = sig_input.params
        for name in ("created", "nonce", "keyid", "alg"):
            if name not in params:
                raise _Refused(f"the signature has no {name!r} parameter")
        if params["alg"] != ALG:
            raise _Refused(f'alg must be "{ALG}"')
        if type(params["created"]) is not int:
            raise _Refused("created must be an integer")
        if not isinstance(params["nonce"], str) or not NONCE_RE.fullmatch(params["nonce"]):
            raise _Refused("nonce must be 16 to 128 characters of A-Z a-z 0-9 _ - + / = . ~")
        if not isinstance(params["keyid"], str) or not KEYID_RE.fullmatch(params["keyid"]):
            raise _Refused("keyid must be the Ed25519 public key as 64 lowercase hex digits")
        skew = params["created"] * 1000 - self.now_ms
        if abs(skew) > self.window_ms:
            raise _Refused(f"created is {abs(skew) // 1000} s {'ahead of' if skew > 0 else 'behind'}"
                           f" this node's clock; at most {self.window_ms // 1000} s "
                           "(auth.window_ms) is accepted: expired, or a clock to fix")
        expires = params.get("expires")
        if expires is not None and (type(expires) is not int or expires * 1000 < self.now_ms):
            raise _Refused("the signature expired (expires is in the past)")


class _Keys(HTTPSignatureKeyResolver):
    """keyid -> the public key of the identity the membership lists."""

    def __init__(self, state: State, cache: dict[bytes, Ed25519PublicKey]) -> None:
        self.state = state
        self.cache = cache
        self.identity: Identity | None = None

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        pubkey = bytes.fromhex(key_id)  # checked: 64 lowercase hex digits
        identity = identity_of(self.state, pubkey)
        if identity is None:
            raise _Refused(f"key {key_id} is not registered on this chain (not a submitter "
                           "or member in force)")
        key = self.cache.get(pubkey)
        if key is None:
            if len(self.cache) > 65536:  # keys come and go with governance
                self.cache.clear()
            key = self.cache[pubkey] = Ed25519PublicKey.from_public_bytes(pubkey)
        self.identity = identity
        return key

    def resolve_private_key(self, key_id: str) -> Any:  # pragma: no cover - never signs
        raise NotImplementedError


class _View:
    """The request as the library reads it: method, absolute URL, headers."""

    def __init__(self, request: web.Request) -> None:
        self.method = request.method
        scheme = "https" if request.secure else "http"
        self.url = f"{scheme}://{request.host}{request.raw_path}"
        self.headers = request.headers


class Authenticator:
    """Checks one request's signature against the membership in force."""

    def __init__(self, membership: Callable[[], State], *, window_ms: int, max_nonces: int,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.membership = membership
        self.window_ms = window_ms
        self.replay = ReplayGuard(window_ms, max_nonces)
        self._clock = clock_ms or (lambda: int(time.time() * 1000))
        self._keys: dict[bytes, Ed25519PublicKey] = {}

    def authenticate(self, request: web.Request, body: bytes, state: State) -> Identity:
        """The identity that signed ``request`` (whose body is ``body``), or
        :class:`Unauthenticated` naming what is wrong."""
        now = self._clock()
        keys = _Keys(state, self._keys)
        verifier = _Verifier(keys, now, self.window_ms)
        try:
            # Coverage is checked below on the result's component names: the
            # library's require_components re-parses every identifier per
            # request, a third of the verification's cost.
            results = verifier.verify(_View(request), max_age=None, expect_tag=TAG, body=body)
        except InvalidSignature as exc:
            raise Unauthenticated(_reason(exc)) from None
        except (HTTPMessageSignaturesException, ValueError, TypeError) as exc:
            raise Unauthenticated(f"malformed signature: {_reason(exc)}") from None
        if len(results) != 1 or keys.identity is None:
            raise Unauthenticated(f"sign the request once, with tag {TAG!r}")
        missing = REQUIRED_NAMES - results[0].covered_components.keys()
        if (body or DIGEST in request.headers) and _DIGEST_NAME not in results[0].covered_components:
            missing = missing | {_DIGEST_NAME}
        if missing:
            raise Unauthenticated(f"bad request signature: it must cover {', '.join(sorted(missing))}")
        params = results[0].parameters
        self.replay.remember(str(params["keyid"]), str(params["nonce"]),
                             int(params["created"]), now)
        return keys.identity


def _reason(exc: BaseException) -> str:
    cause = exc.args[0] if exc.args else exc
    text = str(cause) if not isinstance(cause, BaseException) else str(cause) or type(cause).__name__
    return f"bad request signature: {text}"[:300]


def signed(headers: Mapping[str, str]) -> bool:
    return "Signature" in headers or "Signature-Input" in headers


Handler = Callable[[web.Request], Any]


def make_auth_middleware(auth: Authenticator) -> Any:
    """The aiohttp middleware: authenticate, authorise by node/access.py's
    table, and leave ``request["identity"]`` and ``request["grant"]``."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else ""
        rule = access.rule_for(request.method, route)
        if rule.auth != access.SIGNATURE:
            return await handler(request)  # type: ignore[no-any-return]
        state = auth.membership()
        opened = rule.public_read and public_read(state.params)
        identity: Identity | None = None
        if signed(request.headers) or not opened:
            if not signed(request.headers):
                raise Unauthenticated("sign the request with a registered key (RFC 9421; "
                                      "PROTOCOL §11)")
            identity = auth.authenticate(request, await request.read(), state)
        grant = _grant(rule, identity, opened, request.method, route)
        request[IDENTITY_KEY] = identity
        request[GRANT_KEY] = grant
        return await handler(request)  # type: ignore[no-any-return]

    return authenticate


def _grant(rule: access.Rule, identity: Identity | None, opened: bool, method: str,
           route: str) -> Grant:
    if identity is not None:
        if ANYONE in rule.roles or identity.has_any(rule.roles):
            return Grant(identity, ALL)
        if identity.has_any(rule.own):
            return Grant(identity, OWN)
    if opened:
        return Grant(identity, PUBLIC)
    assert identity is not None
    wanted = " or ".join(repr(r) for r in sorted(rule.roles | rule.own))
    raise ForbiddenRole(f"{method} {route or 'this route'} needs the role {wanted}; "
                        f"{identity.name!r} has {sorted(identity.roles) or 'none'}")
