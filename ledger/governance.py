"""Governance actions: the reserved ``gov.*`` record kinds (PROTOCOL §9.3).

:func:`parse_action` checks a governance record's body (rule 1) and
:meth:`Action.apply` makes the change on a membership state, refusing what
makes no sense there (rule 7).  Pure functions of their inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping

from .encoding import UINT64_MAX, to_hex
from .errors import GovernanceError
from .genesis import Member, Submitter, Validator
from .params import check_params
from .policy.cel import ENGINE_VERSION, BadPolicy
from .policy.rules import MAX_COST, MAX_POLICY_BYTES, NAME, decode_policy
from .records import Record

if TYPE_CHECKING:
    from .membership import State

GOV_PREFIX = "gov."
SCOPES = ("submitter", "account", "system", "kind")
MAX_PARAMS = 16
MAX_ROLES = 16
MAX_LIST_ENTRIES = 4096  # per record; an 8 KiB envelope holds far fewer long ones
_HEX64 = re.compile(r"[0-9a-f]{64}")

# kind -> the body fields besides expires_height, each with its checker's name
_FIELDS: dict[str, tuple[str, ...]] = {
    "gov.submitter.add": ("name", "pubkey", "roles"),
    "gov.submitter.remove": ("pubkey",),
    "gov.submitter.roles": ("pubkey", "roles"),
    "gov.submitter.rotate": ("new_pubkey", "pubkey"),
    "gov.validator.add": ("address", "name", "pubkey"),
    "gov.validator.remove": ("pubkey",),
    "gov.validator.rotate": ("new_pubkey", "pubkey"),
    "gov.member.add": ("name", "pubkey"),
    "gov.member.remove": ("pubkey",),
    "gov.threshold.set": ("threshold",),
    "gov.params.set": ("params",),
    "gov.scope.pause": ("scope", "value"),
    "gov.scope.resume": ("scope", "value"),
    "gov.policy.set": ("policy",),
    "gov.list.add": ("entries", "list"),
    "gov.list.remove": ("entries", "list"),
}
KINDS = frozenset(_FIELDS)


def _is_uint(value: Any) -> bool:
    return type(value) is int and 0 <= value <= UINT64_MAX


def _check_field(name: str, value: Any) -> None:
    if name in ("pubkey", "new_pubkey"):
        ok = type(value) is bytes and len(value) == 32
    elif name == "name":
        ok = type(value) is str and 1 <= len(value) <= 64
    elif name == "address":
        ok = type(value) is str and len(value) <= 255
    elif name == "roles":
        ok = (type(value) is list and 1 <= len(value) <= MAX_ROLES
              and all(type(r) is str and 1 <= len(r) <= 64 for r in value)
              and value == sorted(set(value)))
    elif name == "threshold":
        ok = _is_uint(value)
    elif name == "params":
        ok = (type(value) is dict and 1 <= len(value) <= MAX_PARAMS
              and all(1 <= len(k) <= 64 and _is_uint(v) for k, v in value.items()))
    elif name == "scope":
        ok = value in SCOPES
    elif name == "value":
        ok = type(value) is str and 1 <= len(value) <= 255
    elif name == "policy":
        if type(value) is not bytes or len(value) > MAX_POLICY_BYTES:
            raise BadPolicy(f"body field 'policy' is bytes, at most {MAX_POLICY_BYTES}")
        decode_policy(value)  # raises BadPolicy naming the rule and position
        ok = True
    elif name == "list":
        ok = type(value) is str and NAME.fullmatch(value) is not None
    elif name == "entries":
        ok = (type(value) is list and 1 <= len(value) <= MAX_LIST_ENTRIES
              and all(type(e) is str and 1 <= len(e) <= 255 for e in value)
              and all(a < b for a, b in zip(value, value[1:])))
    else:  # pragma: no cover - _FIELDS names only the fields above
        raise AssertionError(name)
    if not ok:
        raise GovernanceError(f"body field {name!r} is malformed")


@dataclass(frozen=True)
class Action:
    """A governance record's decoded action."""

    kind: str
    body: Mapping[str, Any]
    expires_height: int

    @property
    def changes_validators(self) -> bool:
        return self.kind.startswith("gov.validator.")

    def targets(self) -> frozenset[tuple[str, ...]]:
        """What the action changes, for the conflict rule (PROTOCOL §9.3 rule 6)."""
        b = self.body
        if self.changes_validators:
            return frozenset({("validators",)})
        if self.kind.startswith("gov.member.") or self.kind == "gov.threshold.set":
            return frozenset({("members",)})
        if self.kind.startswith("gov.submitter."):
            keys = {("submitter", to_hex(b["pubkey"]))}
            if "new_pubkey" in b:
                keys.add(("submitter", to_hex(b["new_pubkey"])))
            return frozenset(keys)
        if self.kind == "gov.params.set":
            return frozenset(("param", k) for k in b["params"])
        if self.kind == "gov.policy.set":
            return frozenset({("policy",)})
        if self.kind.startswith("gov.list."):
            return frozenset(("list", b["list"], e) for e in b["entries"])
        return frozenset({("scope", b["scope"], b["value"])})

    def apply(self, state: "State", record_id: bytes) -> "State":
        """``state`` with this action made by ``record_id``; raises
        :class:`GovernanceError` where it makes no sense (rule 7)."""
        return _APPLY[self.kind](state, self.body, record_id)


def parse_action(record: Record) -> Action:
    """Rule 1 of PROTOCOL §9.3: a reserved kind with exactly its body fields."""
    fields = _FIELDS.get(record.kind)
    if fields is None:
        raise GovernanceError(f"unknown governance kind {record.kind!r}")
    body = record.body
    expected = set(fields) | {"expires_height"}
    if set(body) != expected:
        raise GovernanceError(f"{record.kind} body needs exactly {sorted(expected)}, "
                              f"has {sorted(body)}")
    if not _is_uint(body["expires_height"]):
        raise GovernanceError("body field 'expires_height' must be an integer")
    for name in fields:
        _check_field(name, body[name])
    if record.kind.startswith("gov.scope.") and body["scope"] == "submitter" \
            and not _HEX64.fullmatch(body["value"]):
        raise GovernanceError("a submitter scope's value is its key in lowercase hex")
    if "new_pubkey" in body and body["new_pubkey"] == body["pubkey"]:
        raise GovernanceError("a rotation needs a different key")
    if record.kind == "gov.params.set":
        check_params(body["params"])  # ParamOutOfRange: the bounds of ledger/params.py
    return Action(kind=record.kind, body=body, expires_height=body["expires_height"])


# --------------------------------------------------------------------------
# The effect of each kind
# --------------------------------------------------------------------------


def _made(state: "State", fact: tuple[str, ...], record_id: bytes,
          drop: tuple[str, ...] | None = None) -> dict[tuple[str, ...], bytes]:
    made = dict(state.made_by)
    if drop is not None:
        made.pop(drop, None)
    made[fact] = record_id
    return made


def _key_in_use(state: "State", key: bytes) -> bool:
    return key in state.submitters or key in state.rotated_out


def _submitter_add(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    if _key_in_use(state, b["pubkey"]):
        raise GovernanceError(f"submitter {to_hex(b['pubkey'])} exists or was rotated out")
    subs = dict(state.submitters)
    subs[b["pubkey"]] = Submitter(name=b["name"], pubkey=b["pubkey"], roles=frozenset(b["roles"]))
    return replace(state, submitters=subs,
                   made_by=_made(state, ("submitter", to_hex(b["pubkey"])), rid))


def _existing_submitter(state: "State", key: bytes) -> Submitter:
    if key not in state.submitters:
        raise GovernanceError(f"{to_hex(key)} is not a submitter")
    return state.submitters[key]


def _submitter_remove(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    _existing_submitter(state, b["pubkey"])
    subs = dict(state.submitters)
    del subs[b["pubkey"]]
    fact = ("submitter", to_hex(b["pubkey"]))
    made = dict(state.made_by)
    made.pop(fact, None)
    return replace(state, submitters=subs, made_by=made)


def _submitter_roles(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    old = _existing_submitter(state, b["pubkey"])
    subs = dict(state.submitters)
    subs[b["pubkey"]] = replace(old, roles=frozenset(b["roles"]))
    return replace(state, submitters=subs,
                   made_by=_made(state, ("submitter", to_hex(b["pubkey"])), rid))


def _submitter_rotate(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    old = _existing_submitter(state, b["pubkey"])
    if _key_in_use(state, b["new_pubkey"]):
        raise GovernanceError(f"key {to_hex(b['new_pubkey'])} is in use or was rotated out")
    subs = dict(state.submitters)
    del subs[b["pubkey"]]
    subs[b["new_pubkey"]] = replace(old, pubkey=b["new_pubkey"])
    return replace(state, submitters=subs, rotated_out=state.rotated_out | {b["pubkey"]},
                   made_by=_made(state, ("submitter", to_hex(b["new_pubkey"])), rid,
                                 drop=("submitter", to_hex(b["pubkey"]))))


def _validator_position(state: "State", key: bytes) -> int:
    for i, v in enumerate(state.validators):
        if v.pubkey == key:
            return i
    raise GovernanceError(f"{to_hex(key)} is not a validator")


def _validator_key_free(state: "State", key: bytes) -> None:
    if any(v.pubkey == key for v in state.validators):
        raise GovernanceError(f"{to_hex(key)} is already a validator")


def _validator_add(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    _validator_key_free(state, b["pubkey"])
    new = Validator(index=len(state.validators), name=b["name"], pubkey=b["pubkey"],
                    address=b["address"])
    return replace(state, validators=state.validators + (new,),
                   made_by=_made(state, ("validators",), rid))


def _validator_remove(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    i = _validator_position(state, b["pubkey"])
    rest = state.validators[:i] + state.validators[i + 1:]
    return replace(state, validators=tuple(replace(v, index=j) for j, v in enumerate(rest)),
                   made_by=_made(state, ("validators",), rid))


def _validator_rotate(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    i = _validator_position(state, b["pubkey"])
    _validator_key_free(state, b["new_pubkey"])
    validators = list(state.validators)
    validators[i] = replace(validators[i], pubkey=b["new_pubkey"])
    return replace(state, validators=tuple(validators),
                   made_by=_made(state, ("validators",), rid))


def _member_add(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    if b["pubkey"] in state.members:
        raise GovernanceError(f"{to_hex(b['pubkey'])} is already a member")
    members = dict(state.members)
    members[b["pubkey"]] = Member(name=b["name"], pubkey=b["pubkey"])
    return replace(state, members=members,
                   made_by=_made(state, ("member", to_hex(b["pubkey"])), rid))


def _member_remove(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    if b["pubkey"] not in state.members:
        raise GovernanceError(f"{to_hex(b['pubkey'])} is not a member")
    members = dict(state.members)
    del members[b["pubkey"]]
    made = dict(state.made_by)
    made.pop(("member", to_hex(b["pubkey"])), None)
    return replace(state, members=members, made_by=made)


def _threshold_set(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    return replace(state, threshold=b["threshold"], made_by=_made(state, ("threshold",), rid))


def _params_set(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    params = dict(state.params)
    made = dict(state.made_by)
    for name, value in sorted(b["params"].items()):
        params[name] = value  # within ledger/params.py's bounds: parse_action checked
        made[("param", name)] = rid
    return replace(state, params=params, made_by=made)


def _scope_pause(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    scope = (b["scope"], b["value"])
    if scope in state.paused:
        raise GovernanceError(f"{scope[0]} {scope[1]!r} is already paused")
    return replace(state, paused=state.paused | {scope},
                   made_by=_made(state, ("paused", *scope), rid))


def _scope_resume(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    scope = (b["scope"], b["value"])
    if scope not in state.paused:
        raise GovernanceError(f"{scope[0]} {scope[1]!r} is not paused")
    made = dict(state.made_by)
    made.pop(("paused", *scope), None)
    return replace(state, paused=state.paused - {scope}, made_by=made)


def _policy_set(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    policy = decode_policy(b["policy"])
    engine = state.params.get("policy_engine", ENGINE_VERSION)
    if policy.engine != engine:
        raise BadPolicy(f"the policy is for engine {policy.engine}, the chain's param "
                        f"policy_engine is {engine}")
    max_cost = state.params.get("policy_max_cost", MAX_COST)
    if policy.cost > max_cost:
        raise BadPolicy(f"the policy's worst-case cost {policy.cost} exceeds the chain's "
                        f"param policy_max_cost {max_cost}")
    if policy.version <= state.policy_version:
        raise BadPolicy(f"policy version {policy.version} is not above the version "
                        f"installed, {state.policy_version}")
    return replace(state, policy_version=policy.version,
                   made_by=_made(state, ("policy",), rid))


def _list_change(state: "State", b: Mapping[str, Any], rid: bytes) -> "State":
    # Lists live in the policy state (ledger/policy/state.py), not in the
    # membership: adding an entry twice or removing an absent one is harmless.
    return state


_APPLY = {
    "gov.submitter.add": _submitter_add,
    "gov.submitter.remove": _submitter_remove,
    "gov.submitter.roles": _submitter_roles,
    "gov.submitter.rotate": _submitter_rotate,
    "gov.validator.add": _validator_add,
    "gov.validator.remove": _validator_remove,
    "gov.validator.rotate": _validator_rotate,
    "gov.member.add": _member_add,
    "gov.member.remove": _member_remove,
    "gov.threshold.set": _threshold_set,
    "gov.params.set": _params_set,
    "gov.scope.pause": _scope_pause,
    "gov.scope.resume": _scope_resume,
    "gov.policy.set": _policy_set,
    "gov.list.add": _list_change,
    "gov.list.remove": _list_change,
}
