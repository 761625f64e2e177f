"""Who a caller of the API is, from the membership in force (PROTOCOL §11).

An identity is a key the chain registered: a genesis or governance
``submitters`` entry (whatever its roles: a reader or an auditor is a
``submitters`` entry without the ``submit`` role) and/or a ``members`` entry,
which holds the implicit role ``member``.  The roles are strings; the ones a
node's routes check are named here, so that a node and its documentation
share one vocabulary.  Which route takes which role is the node's table
(node/access.py).

Pure: derived from a membership :class:`~ledger.membership.State` only, so
every validator answers the same caller the same way at the same height.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .genesis import PUBLIC_READ_PARAM
from .records import SUBMIT_ROLE

if TYPE_CHECKING:
    from .membership import State

# The roles of PROTOCOL §11.4.  ``submit`` is also what admission checks of a
# record's submitter (PROTOCOL §2); the others only gate routes.
READ_ROLE = "read"            # every read route, every committed record
READ_OWN_ROLE = "read_own"    # read routes, records only where the caller is the submitter
AUDIT_ROLE = "audit"          # every read-only route, pending records and metrics included
MEMBER_ROLE = "member"        # implicit for genesis/governance members (PROTOCOL §9.1)
# Reserved for the routes of the policy and risk issues (approvals, reviews,
# the monitor's stream): no route of this version takes them.
APPROVE_ROLE = "approve"
REVIEW_ROLE = "review"
MONITOR_ROLE = "monitor"

ROLES = (SUBMIT_ROLE, READ_ROLE, READ_OWN_ROLE, AUDIT_ROLE, MEMBER_ROLE, APPROVE_ROLE,
         REVIEW_ROLE, MONITOR_ROLE)


@dataclass(frozen=True)
class Identity:
    """A registered key and what it may do."""

    name: str
    pubkey: bytes
    roles: frozenset[str]
    kinds: tuple[str, ...]  # "submitter" and/or "member": where the membership lists it

    def has_any(self, roles: frozenset[str]) -> bool:
        return not self.roles.isdisjoint(roles)


def identity_of(state: "State", pubkey: bytes) -> Identity | None:
    """The identity ``pubkey`` names in ``state``, or None when the membership
    does not list it (a key rotated out is no longer listed)."""
    if pubkey in state.rotated_out:
        return None
    submitter = state.submitters.get(pubkey)
    member = state.members.get(pubkey)
    if submitter is None and member is None:
        return None
    roles: set[str] = set()
    kinds: list[str] = []
    name = ""
    if submitter is not None:
        roles |= submitter.roles
        kinds.append("submitter")
        name = submitter.name
    if member is not None:
        roles.add(MEMBER_ROLE)
        kinds.append("member")
        name = name or member.name
    return Identity(name=name, pubkey=pubkey, roles=frozenset(roles), kinds=tuple(kinds))


def public_read(params: Mapping[str, Any]) -> bool:
    """Whether the chain param ``public_read`` opens the read routes (any
    value other than 0; absent is 0)."""
    value = params.get(PUBLIC_READ_PARAM, 0)
    return isinstance(value, int) and not isinstance(value, bool) and value != 0

