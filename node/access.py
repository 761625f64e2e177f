"""Which roles each API route takes: the one route -> role table (PROTOCOL §11.4).

A route's :class:`Rule` names the roles that grant it (any one suffices),
the roles that grant it for the caller's own records only, whether the chain
param ``public_read`` opens it to callers without a registered key, and how
the caller is authenticated: by an RFC 9421 request signature (node/auth.py),
not at all (``/health``), or by the route's own validator signature (block
sync, state sync and the peer link, node/syncauth.py and node/transport.py).

To give a new route a role, add one line to :data:`ROUTES` (and to the table
of PROTOCOL §11.4, which tests/test_access.py compares with this one).  A
route missing here falls under :data:`DEFAULT_RULE`, any registered
identity, so that a forgotten line never opens a route to strangers.

Handlers that serve records ask the request's :class:`Grant` (``grant_of``)
whether the caller may see a given record: ``read_own`` sees only records it
submitted, and pending records are shown to ``audit`` and to their own
submitter only.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ledger.access import (APPROVE_ROLE, AUDIT_ROLE, MEMBER_ROLE, MONITOR_ROLE, READ_OWN_ROLE,
                           READ_ROLE, REVIEW_ROLE, Identity)
from ledger.encoding import to_hex
from ledger.errors import ForbiddenRole, NotCommitted
from ledger.records import SUBMIT_ROLE

ANYONE = "*"  # in Rule.roles: any registered identity, whatever its roles

SIGNATURE = "signature"  # an RFC 9421 signature by a registered key (node/auth.py)
NONE = "none"            # no authentication at all
VALIDATOR = "validator"  # the route's own validator signature


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    own: frozenset[str] = frozenset()
    public_read: bool = False
    auth: str = SIGNATURE


def rule(*roles: str, own: tuple[str, ...] = (), public_read: bool = False,
         auth: str = SIGNATURE) -> Rule:
    return Rule(frozenset(roles), frozenset(own), public_read, auth)


# Routes that read records' contents, and those that verifying a proof needs
# (headers, certificates, consistency, checkpoints), which read_own gets too.
RECORDS = (READ_ROLE, AUDIT_ROLE)
CHAIN = (READ_ROLE, READ_OWN_ROLE, AUDIT_ROLE)

# (method, route as aiohttp names it) -> rule.  PROTOCOL §11.4 is this table.
ROUTES: dict[tuple[str, str], Rule] = {
    ("POST", "/v1/records"): rule(SUBMIT_ROLE, MEMBER_ROLE),
    # The verdict a record would get (PROTOCOL §10.9): asked by whoever submits.
    ("POST", "/v1/evaluate"): rule(SUBMIT_ROLE, MEMBER_ROLE),
    ("GET", "/v1/records/{id}"): rule(*RECORDS, own=(READ_OWN_ROLE,), public_read=True),
    ("GET", "/v1/records/{id}/proof"): rule(*RECORDS, own=(READ_OWN_ROLE,), public_read=True),
    ("GET", "/v1/records/{id}/trace"): rule(*RECORDS, public_read=True),
    # read_own: headers and record ids, not the envelopes (envelopes=1).
    ("GET", "/v1/blocks/latest"): rule(*RECORDS, own=(READ_OWN_ROLE,), public_read=True),
    ("GET", "/v1/blocks/{height}"): rule(*RECORDS, own=(READ_OWN_ROLE,), public_read=True),
    ("GET", "/v1/consistency"): rule(*CHAIN, public_read=True),
    ("GET", "/checkpoint"): rule(*CHAIN, public_read=True),
    ("GET", "/v1/checkpoints/{height}"): rule(*CHAIN, public_read=True),
    ("GET", "/v1/checkpoint-keys"): rule(*CHAIN, public_read=True),
    # A witness needs no registered key: its cosignature, checked against
    # [witness] keys, is what authenticates it (PROTOCOL §13).
    ("POST", "/v1/checkpoints/{height}/cosignatures"): rule(auth=NONE),
    ("GET", "/v1/evidence"): rule(*RECORDS, public_read=True),
    ("GET", "/v1/status"): rule(ANYONE, public_read=True),
    ("GET", "/v1/genesis"): rule(ANYONE, public_read=True),
    ("GET", "/v1/membership"): rule(ANYONE, public_read=True),
    ("GET", "/openapi.json"): rule(ANYONE, public_read=True),
    # The explorer's page and modules: the same static code on every node,
    # no chain data; a browser cannot sign the request that loads them. The
    # page signs its API requests with the key the auditor loads (§11.4).
    ("GET", "/explorer"): rule(auth=NONE),
    ("GET", "/explorer/"): rule(auth=NONE),
    ("GET", "/explorer/{name}"): rule(auth=NONE),
    ("GET", "/metrics"): rule(AUDIT_ROLE, MONITOR_ROLE),
    # Committed blocks with their envelopes, as GET /v1/blocks/{h}?envelopes=1.
    ("GET", "/v1/stream"): rule(*RECORDS, MONITOR_ROLE, public_read=True),
    ("GET", "/v1/breakers"): rule(*RECORDS, MONITOR_ROLE, REVIEW_ROLE, public_read=True),
    # The review queue (PROTOCOL §10.10): reviewers, and readers and auditors.
    ("GET", "/v1/reviews"): rule(*RECORDS, REVIEW_ROLE),
    ("GET", "/health"): rule(auth=NONE),
    ("GET", "/v1/sync/blocks"): rule(auth=VALIDATOR),
    ("GET", "/v1/sync/snapshot"): rule(auth=VALIDATOR),
    ("GET", "/v1/peer"): rule(auth=VALIDATOR),
}
# aiohttp answers HEAD for every GET route: the same rule.
ROUTES.update({("HEAD", path): r for (method, path), r in list(ROUTES.items()) if method == "GET"})
# Unknown routes and methods: 404 and 405 only to a registered caller.
DEFAULT_RULE = rule(ANYONE)
# Roles that no route of this version takes yet (the policy issue's): named
# so a genesis may hold them already.
RESERVED_ROLES = (APPROVE_ROLE,)


def rule_for(method: str, route: str) -> Rule:
    return ROUTES.get((method, route), DEFAULT_RULE)


ALL = "all"        # every record the route serves
OWN = "own"        # only records whose submitter is the caller
PUBLIC = "public"  # unauthenticated, through public_read: committed records only
OPEN = "open"      # a node without authentication (auth.insecure_open): everything


@dataclass(frozen=True)
class Grant:
    """What the authenticated (or public) caller of one request may see."""

    identity: Identity | None
    scope: str

    def check_record(self, submitter: bytes, *, pending: bool) -> None:
        """Raise unless the caller may see this record: 403 ``forbidden_role``
        for another submitter's record under ``read_own``; a pending record
        is answered as 409 ``not_committed`` (no contents) except to
        ``audit`` and to its own submitter."""
        if self.scope == OPEN:
            return
        mine = self.identity is not None and self.identity.pubkey == submitter
        if self.scope == OWN and not mine:
            raise ForbiddenRole(f"the {READ_OWN_ROLE!r} role reads only records this key "
                                f"submitted; record's submitter is {to_hex(submitter)}")
        if pending and not mine and not (self.identity is not None
                                         and AUDIT_ROLE in self.identity.roles):
            raise NotCommitted("the record is pending; pending records are shown only to "
                               f"their submitter and to the {AUDIT_ROLE!r} role")

    def check_bodies(self, what: str) -> None:
        """Raise 403 unless the caller may see every record's contents."""
        if self.scope == OWN:
            raise ForbiddenRole(f"{what} needs the {READ_ROLE!r} or {AUDIT_ROLE!r} role "
                                f"({READ_OWN_ROLE!r} reads only its own records)")


FULL = Grant(identity=None, scope=OPEN)  # a node without authentication serves all to all
# request[IDENTITY_KEY]: the Identity that signed the request, or None (a public
# read, an open route); request[GRANT_KEY]: its Grant.  Absent on a node
# without authentication.
IDENTITY_KEY = web.RequestKey[Identity | None]("identity")
GRANT_KEY = web.RequestKey("grant", Grant)


def grant_of(request: web.Request) -> Grant:
    return request[GRANT_KEY] if GRANT_KEY in request else FULL
