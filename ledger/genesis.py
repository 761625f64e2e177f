"""The genesis document (PROTOCOL §7): chain id, validators, submitters.

Everything an auditor trusts comes from here.  The quorum threshold is
defined once, in :func:`quorum`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from .encoding import H, canonical, from_hex
from .errors import BadEncoding, GenesisError, ParamOutOfRange
from .params import check_params


def quorum(n: int) -> int:
    """Votes needed among ``n`` validators: floor(2n/3) + 1 (3 of 4, 5 of 7)."""
    return (2 * n) // 3 + 1


def max_faulty(n: int) -> int:
    """The f of n = 3f + 1: how many Byzantine validators are tolerated."""
    return (n - 1) // 3


@dataclass(frozen=True)
class Validator:
    index: int
    name: str
    pubkey: bytes
    address: str


@dataclass(frozen=True)
class Submitter:
    name: str
    pubkey: bytes
    roles: frozenset[str]


@dataclass(frozen=True)
class Member:
    """An organisation's administrator: signs governance records (PROTOCOL §9.1)."""

    name: str
    pubkey: bytes


def default_threshold(members: int) -> int:
    """A strict majority of ``members``: floor(m/2) + 1 (0 without members)."""
    return members // 2 + 1 if members else 0


@dataclass(frozen=True)
class Genesis:
    chain: str
    validators: tuple[Validator, ...]
    submitters: Mapping[bytes, Submitter]
    params: Mapping[str, Any]
    validators_hash: bytes
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    # PROTOCOL §9.1; absent in a version 1 genesis: no members, no governance.
    members: Mapping[bytes, Member] = field(default_factory=dict)
    governance_threshold: int = 0

    @property
    def n(self) -> int:
        return len(self.validators)

    @property
    def quorum(self) -> int:
        return quorum(len(self.validators))

    @property
    def validator_keys(self) -> tuple[bytes, ...]:
        return tuple(v.pubkey for v in self.validators)

    def validator_index(self, pubkey: bytes) -> int | None:
        for v in self.validators:
            if v.pubkey == pubkey:
                return v.index
        return None


# How far a record's ``ts`` may lie before and after the time it is judged
# against (PROTOCOL §2): the block's header time in block validation, the
# node's clock at admission.  Genesis params of the same names override them.
# Seven days in the past lets a service upload what it buffered over a long
# weekend or an outage, or a nightly batch a day late; five minutes in the
# future covers a submitter's clock running fast (the common tolerance of
# Kerberos and many token schemes) while refusing ts values from a clock that
# is plainly wrong.
RECORD_TS_PAST_PARAM = "record_ts_past_ms"
RECORD_TS_FUTURE_PARAM = "record_ts_future_ms"
DEFAULT_RECORD_TS_PAST_MS = 7 * 24 * 3600 * 1000
DEFAULT_RECORD_TS_FUTURE_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class RecordTimeWindow:
    """A record's ``ts`` is acceptable at time ``at_ms`` when
    ``at_ms - past_ms <= ts <= at_ms + future_ms`` (both edges included)."""

    past_ms: int = DEFAULT_RECORD_TS_PAST_MS
    future_ms: int = DEFAULT_RECORD_TS_FUTURE_MS

    def contains(self, ts: int, at_ms: int) -> bool:
        return at_ms - self.past_ms <= ts <= at_ms + self.future_ms

    def expired(self, ts: int, at_ms: int) -> bool:
        """Too old at ``at_ms``, and so at every later time."""
        return ts < at_ms - self.past_ms

    def explain(self, ts: int, at_ms: int) -> str:
        """Why ``ts`` is outside the window at ``at_ms`` (for error messages)."""
        if self.expired(ts, at_ms):
            return (f"record ts {ts} is {at_ms - ts} ms before {at_ms}; "
                    f"at most {self.past_ms} ms ({RECORD_TS_PAST_PARAM}) is allowed")
        return (f"record ts {ts} is {ts - at_ms} ms after {at_ms}; "
                f"at most {self.future_ms} ms ({RECORD_TS_FUTURE_PARAM}) is allowed")


def record_time_window(params: Mapping[str, Any]) -> RecordTimeWindow:
    """The window of a genesis's ``params``: the defaults unless overridden
    by non-negative integers (anything else is a :class:`GenesisError`)."""
    values = []
    for key, default in ((RECORD_TS_PAST_PARAM, DEFAULT_RECORD_TS_PAST_MS),
                         (RECORD_TS_FUTURE_PARAM, DEFAULT_RECORD_TS_FUTURE_MS)):
        value = params.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise GenesisError(f"genesis: params.{key} must be a non-negative integer (ms)")
        values.append(value)
    return RecordTimeWindow(*values)


# Chain param (genesis ``params``, ``gov.params.set``): 1 opens the API's read
# routes to callers without a registered key, 0 (the default) does not
# (PROTOCOL §11.4; ledger/access.py).
PUBLIC_READ_PARAM = "public_read"


def validators_hash(pubkeys: list[bytes] | tuple[bytes, ...]) -> bytes:
    """``H(canonical([pubkey0, pubkey1, ...]))`` in genesis order (§4)."""
    return _validators_hash(tuple(pubkeys))


@lru_cache(maxsize=1024)
def _validators_hash(pubkeys: tuple[bytes, ...]) -> bytes:
    return H(canonical(list(pubkeys)))


def _need(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise GenesisError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise GenesisError(f"{where}: {key!r} must be {kind.__name__}")
    return value


def _optional_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise GenesisError(f"{where}: {key!r} must be str")
    return value


def _key(text: Any, where: str) -> bytes:
    try:
        return from_hex(text, length=32, what=f"{where} pubkey")
    except BadEncoding as exc:
        raise GenesisError(str(exc)) from None


def parse_genesis(doc: Any) -> Genesis:
    """Validate a genesis JSON document and build the :class:`Genesis`."""
    if not isinstance(doc, dict):
        raise GenesisError("genesis must be a JSON object")
    chain = _need(doc, "chain", str, "genesis")
    if not 1 <= len(chain) <= 64:
        raise GenesisError("genesis: chain id must be 1..64 characters")
    raw_validators = _need(doc, "validators", list, "genesis")
    if not raw_validators:
        raise GenesisError("genesis: at least one validator is required")
    validators = []
    seen: set[bytes] = set()
    for i, v in enumerate(raw_validators):
        where = f"validator {i}"
        if not isinstance(v, dict):
            raise GenesisError(f"{where}: must be an object")
        pubkey = _key(_need(v, "pubkey", str, where), where)
        if pubkey in seen:
            raise GenesisError(f"{where}: duplicate pubkey")
        seen.add(pubkey)
        validators.append(
            Validator(
                index=i,
                name=_need(v, "name", str, where),
                pubkey=pubkey,
                address=_optional_str(v, "address", where),
            )
        )
    raw_submitters = doc.get("submitters", [])
    if not isinstance(raw_submitters, list):
        raise GenesisError("genesis: submitters must be a list")
    submitters: dict[bytes, Submitter] = {}
    for i, s in enumerate(raw_submitters):
        where = f"submitter {i}"
        if not isinstance(s, dict):
            raise GenesisError(f"{where}: must be an object")
        pubkey = _key(_need(s, "pubkey", str, where), where)
        roles = _need(s, "roles", list, where)
        if not all(isinstance(r, str) for r in roles):
            raise GenesisError(f"{where}: roles must be strings")
        if pubkey in submitters:
            raise GenesisError(f"{where}: duplicate pubkey")
        submitters[pubkey] = Submitter(
            name=_need(s, "name", str, where), pubkey=pubkey, roles=frozenset(roles)
        )
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise GenesisError("genesis: params must be an object")
    record_time_window(params)  # refuse a malformed window now, not at the first record
    try:
        check_params(params)
    except ParamOutOfRange as exc:
        raise GenesisError(f"genesis: {exc}") from None
    public = params.get(PUBLIC_READ_PARAM, 0)
    if type(public) is not int or public not in (0, 1):
        raise GenesisError(f"genesis: params.{PUBLIC_READ_PARAM} must be 0 or 1")
    members, threshold = _members(doc)
    keys = [v.pubkey for v in validators]
    return Genesis(
        chain=chain,
        validators=tuple(validators),
        submitters=submitters,
        params=params,
        validators_hash=validators_hash(keys),
        raw=doc,
        members=members,
        governance_threshold=threshold,
    )


def _members(doc: Mapping[str, Any]) -> tuple[dict[bytes, Member], int]:
    """``members`` and ``governance_threshold`` (PROTOCOL §9.1)."""
    raw_members = doc.get("members", [])
    if not isinstance(raw_members, list):
        raise GenesisError("genesis: members must be a list")
    members: dict[bytes, Member] = {}
    for i, m in enumerate(raw_members):
        where = f"member {i}"
        if not isinstance(m, dict) or set(m) != {"name", "pubkey"}:
            raise GenesisError(f"{where}: must be an object of exactly name and pubkey")
        pubkey = _key(_need(m, "pubkey", str, where), where)
        if pubkey in members:
            raise GenesisError(f"{where}: duplicate pubkey")
        members[pubkey] = Member(name=_need(m, "name", str, where), pubkey=pubkey)
    if "governance_threshold" not in doc:
        return members, default_threshold(len(members))
    threshold = doc["governance_threshold"]
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise GenesisError("genesis: governance_threshold must be an integer")
    if not 1 <= threshold <= len(members):
        raise GenesisError(f"genesis: governance_threshold {threshold} is not in "
                           f"1..{len(members)} (the number of members)")
    return members, threshold


def load_genesis(path: str | Path) -> Genesis:
    """Read and parse a genesis file; raises OSError or GenesisError."""
    raw = Path(path).read_bytes()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise GenesisError("genesis is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis is not valid JSON: {exc}") from None
    return parse_genesis(doc)
