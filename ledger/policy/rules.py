"""A policy: named CEL rules with outcomes, windows and list lookups (PROTOCOL §10.2).

A policy's bytes are ``POLICY_DOMAIN + canonical(map)``; its hash is SHA-256
of those bytes.  :func:`policy_from_json` builds one from the operator's
document (YAML or JSON, see docs/policy.md) and :func:`decode_policy` from
its bytes; both check everything, compile every rule, and raise
:class:`BadPolicy` naming the rule and the position of the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from ..encoding import UINT64_MAX, H, canonical, decode
from ..errors import LedgerError
from .cel import ENGINE_VERSION, BadPolicy, analyse, compile_rule, rule_cost
from .engine import Decision, Outcome

POLICY_DOMAIN = b"auditledger/policy/v1\n"
MAX_POLICY_BYTES = 6 * 1024  # fits a governance envelope (8 KiB) with its signatures
MAX_RULES = 64
MAX_WINDOWS = 16
MAX_LOOKUPS = 16
MAX_KINDS = 16
MAX_COST = 1_000_000  # default of the chain param policy_max_cost
MAX_WINDOW_MS = 2**32
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
FIELD = re.compile(r"(kind|submitter|(origin|body)\.[A-Za-z_][A-Za-z0-9_]{0,63})")
_KIND = re.compile(r"[!-~]{1,64}")
_OUTCOME_KEYS = {"allow": {"outcome"}, "review": {"outcome", "reason"},
                 "deny": {"outcome", "reason"}, "approve": {"outcome", "approvals", "role"}}


@dataclass(frozen=True)
class Rule:
    name: str
    when: str
    then: Decision
    kinds: frozenset[str] | None  # None: every kind but governance


@dataclass(frozen=True)
class Window:
    """Count and sum of ``body.amount`` over the last ``ms`` of block time,
    per value of the ``by`` field, over records of ``kinds``."""

    by: str
    ms: int
    kinds: frozenset[str] | None


@dataclass(frozen=True)
class Lookup:
    """``listed.<name>``: the record's ``key`` fields, joined by ``:``, are in ``list``."""

    list: str
    key: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    engine: int
    default: Decision
    rules: tuple[Rule, ...]
    windows: Mapping[str, Window]
    lookups: Mapping[str, Lookup]
    policy_bytes: bytes
    cost: int

    @property
    def hash(self) -> bytes:
        return H(self.policy_bytes)


def _fail(where: str, message: str) -> BadPolicy:
    return BadPolicy(f"{where}: {message}" if where else message)


def _str(value: Any, where: str, pattern: re.Pattern[str] | None = None, limit: int = 64) -> str:
    if type(value) is not str or not 1 <= len(value) <= limit:
        raise _fail(where, f"must be a string of 1..{limit} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise _fail(where, f"{value!r} does not match {pattern.pattern}")
    return value


def _uint(value: Any, where: str, low: int = 0, high: int = UINT64_MAX) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _fail(where, f"must be an integer in {low}..{high}")
    return value


def _kinds(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if type(value) is not list or not 1 <= len(value) <= MAX_KINDS:
        raise _fail(where, f"must be a list of 1..{MAX_KINDS} kinds")
    kinds = [_str(k, where, _KIND) for k in value]
    if any(k.startswith("gov.") for k in kinds):
        raise _fail(where, "governance records are never judged by a policy")
    if kinds != sorted(set(kinds)):
        raise _fail(where, "kinds must be distinct and in ascending order")
    return frozenset(kinds)


def _outcome(value: Any, where: str) -> tuple[Decision, dict[str, Any]]:
    if type(value) is str:
        value = {"outcome": value}
    if type(value) is not dict or value.get("outcome") not in _OUTCOME_KEYS:
        raise _fail(where, "must be allow, review, deny or {outcome: ..., ...}")
    kind = value["outcome"]
    extra = set(value) - _OUTCOME_KEYS[kind]
    if extra or (kind == "approve" and set(value) != _OUTCOME_KEYS[kind]):
        raise _fail(where, f"{kind} takes exactly {sorted(_OUTCOME_KEYS[kind])}")
    reason = _str(value["reason"], where + ".reason", NAME) if "reason" in value else ""
    if kind == "approve":
        k = _uint(value["approvals"], where + ".approvals", 1, 32)
        role = _str(value["role"], where + ".role")
        return Decision(Outcome.APPROVE, approvals=k, role=role), dict(value)
    return Decision(Outcome(kind), reason=reason), dict(value)


def _field(value: Any, where: str) -> str:
    return _str(value, where, FIELD, 70)


def policy_from_json(doc: Any) -> Policy:
    """The policy an operator's document describes (checked and compiled)."""
    if type(doc) is not dict:
        raise BadPolicy("a policy is a map")
    known = {"name", "version", "engine", "default", "rules", "windows", "lookups"}
    if set(doc) - known or not {"name", "version", "rules"} <= set(doc):
        raise BadPolicy(f"a policy has name, version, rules and optionally engine, default, "
                        f"windows, lookups; found {sorted(doc)}")
    name = _str(doc["name"], "name", NAME)
    version = _uint(doc["version"], "version", 1)
    engine = _uint(doc.get("engine", ENGINE_VERSION), "engine", 1)
    if engine != ENGINE_VERSION:
        raise BadPolicy(f"engine {engine} is not this node's policy engine ({ENGINE_VERSION})")
    default, default_map = _outcome(doc.get("default", "allow"), "default")
    windows_doc = doc.get("windows", {})
    if type(windows_doc) is not dict or len(windows_doc) > MAX_WINDOWS:
        raise BadPolicy(f"windows is a map of at most {MAX_WINDOWS}")
    windows: dict[str, Window] = {}
    windows_map: dict[str, Any] = {}
    for wname, w in sorted(windows_doc.items()):
        where = f"windows.{wname}"
        _str(wname, where, NAME)
        if type(w) is not dict or set(w) - {"by", "ms", "kinds"} or not {"by", "ms"} <= set(w):
            raise _fail(where, "has by, ms and optionally kinds")
        windows[wname] = Window(_field(w["by"], where + ".by"),
                                _uint(w["ms"], where + ".ms", 1, MAX_WINDOW_MS),
                                _kinds(w.get("kinds"), where + ".kinds"))
        windows_map[wname] = dict(w)
    lookups_doc = doc.get("lookups", {})
    if type(lookups_doc) is not dict or len(lookups_doc) > MAX_LOOKUPS:
        raise BadPolicy(f"lookups is a map of at most {MAX_LOOKUPS}")
    lookups: dict[str, Lookup] = {}
    lookups_map: dict[str, Any] = {}
    for lname, lk in sorted(lookups_doc.items()):
        where = f"lookups.{lname}"
        _str(lname, where, NAME)
        if type(lk) is not dict or set(lk) != {"list", "key"}:
            raise _fail(where, "has exactly list and key")
        key = lk["key"]
        if type(key) is not list or not 1 <= len(key) <= 4:
            raise _fail(where + ".key", "is a list of 1..4 fields")
        lookups[lname] = Lookup(_str(lk["list"], where + ".list", NAME),
                                tuple(_field(f, where + ".key") for f in key))
        lookups_map[lname] = {"key": list(key), "list": lk["list"]}
    rules_doc = doc["rules"]
    if type(rules_doc) is not list or not 1 <= len(rules_doc) <= MAX_RULES:
        raise BadPolicy(f"rules is a list of 1..{MAX_RULES}")
    rules: list[Rule] = []
    rules_list: list[dict[str, Any]] = []
    cost = 0
    seen: set[str] = set()
    for i, r in enumerate(rules_doc):
        where = f"rules[{i}]"
        if type(r) is not dict or set(r) - {"name", "when", "then", "kinds"} \
                or not {"name", "when", "then"} <= set(r):
            raise _fail(where, "has name, when, then and optionally kinds")
        rname = _str(r["name"], where + ".name", NAME)
        if rname in seen:
            raise _fail(where, f"rule name {rname!r} repeats")
        seen.add(rname)
        where = f"rule {rname!r}"
        when = r["when"]
        if type(when) is not str:
            raise _fail(where, "when must be a CEL expression")
        try:
            reads = analyse(when)
            compile_rule(when)
        except BadPolicy as exc:
            raise _fail(where, str(exc)) from None
        for path in reads.paths:
            _check_path(path, windows, lookups, where)
        cost += rule_cost(when)
        then, then_map = _outcome(r["then"], where + ".then")
        kinds = _kinds(r.get("kinds"), where + ".kinds")
        rules.append(Rule(rname, when, then, kinds))
        entry: dict[str, Any] = {"name": rname, "then": then_map, "when": when}
        if kinds is not None:
            entry["kinds"] = sorted(kinds)
        rules_list.append(entry)
    if cost > MAX_COST:
        raise BadPolicy(f"the policy's worst-case cost {cost} exceeds {MAX_COST}")
    body = {"default": default_map, "engine": engine, "lookups": lookups_map, "name": name,
            "rules": rules_list, "version": version, "windows": windows_map}
    data = POLICY_DOMAIN + canonical(body)
    if len(data) > MAX_POLICY_BYTES:
        raise BadPolicy(f"the policy is {len(data)} bytes, at most {MAX_POLICY_BYTES}")
    return Policy(name, version, engine, default, tuple(rules), windows, lookups, data, cost)


def _check_path(path: tuple[str, ...], windows: Mapping[str, Window],
                lookups: Mapping[str, Lookup], where: str) -> None:
    """A rule names only windows and lookups its policy declares."""
    root = path[0]
    if root == "velocity" and len(path) >= 2:
        if path[1] not in windows:
            raise _fail(where, f"velocity.{path[1]} is not a window of this policy")
        if len(path) >= 3 and path[2] not in ("count", "sum"):
            raise _fail(where, f"a window has count and sum, not {path[2]!r}")
    if root == "listed" and len(path) >= 2 and path[1] not in lookups:
        raise _fail(where, f"listed.{path[1]} is not a lookup of this policy")


@lru_cache(maxsize=32)  # a governance record's policy is judged several times
def decode_policy(data: bytes) -> Policy:
    """The policy of ``data`` (its canonical bytes), checked and compiled."""
    if not data.startswith(POLICY_DOMAIN):
        raise BadPolicy("policy bytes start with the policy domain")
    try:
        doc = decode(data[len(POLICY_DOMAIN):])
    except LedgerError as exc:
        raise BadPolicy(f"policy bytes: {exc}") from None
    policy = policy_from_json(doc)
    if policy.policy_bytes != data:
        raise BadPolicy("policy bytes are not in canonical form")
    return policy
