"""What :func:`ledger.fsck.fsck` reports: each damaged key, by index and problem.

The vocabulary is two sets of names: what a damaged key belongs to (an
index such as :data:`LOCATIONS`, or :data:`BLOCKS`, :data:`TREE`, ...) and
what is wrong with it (:data:`MISSING`, :data:`WRONG`, :data:`STRAY`).
:class:`FsckReport` keeps the first :data:`MAX_LISTED` damaged keys in
detail and, per (index, problem), a count with the first and last key;
:func:`describe_key` gives any store key a short human name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import schema
from .errors import StorageCorruption

# What a damaged key belongs to (the report groups by these).
BLOCKS = "blocks (headers, certificates, hash chain)"
ENVELOPES = "envelopes (e)"
TREE = "Merkle tree nodes (n)"
LOCATIONS = "record id -> location index (r)"
NONCES = "(submitter, nonce) -> record id index (u)"
CHILDREN = "parent -> children index (c)"
SUBMITTERS = "submitter -> records index (s)"
GOVERNANCE = "governance records index (g)"
META = "meta (m)"
UNKNOWN = "unknown keys"

MISSING = "missing"
WRONG = "wrong value"
STRAY = "stray (implied by no block)"

MAX_LISTED = 200  # damaged keys kept in detail; beyond this only counted

TREE_LEAF_KEY = schema.TILE + b"leaf:"  # report keys for damage found through the log's API
TREE_ROOT_KEY = schema.TILE + b"root:"


@dataclass(frozen=True)
class Damage:
    index: str
    problem: str
    key: bytes
    detail: str

    def describe(self) -> str:
        return f"{self.index}: {self.problem} at {describe_key(self.key)}: {self.detail}"


@dataclass
class DamageRange:
    """Every damaged key of one index with one problem: count, first and last key."""

    index: str
    problem: str
    count: int
    first: bytes
    last: bytes

    def describe(self) -> str:
        span = describe_key(self.first)
        if self.last != self.first:
            span += f" .. {describe_key(self.last)}"
        return f"{self.index}: {self.count} {self.problem}, keys {span}"


@dataclass
class FsckReport:
    height: int = 0
    log_size: int = 0
    blocks: int = 0
    records: int = 0
    keys: int = 0
    listed: list[Damage] = field(default_factory=list)
    ranges: dict[tuple[str, str], DamageRange] = field(default_factory=dict)
    _seen: set[bytes] = field(default_factory=set, repr=False)

    @property
    def clean(self) -> bool:
        return not self.ranges

    @property
    def damaged(self) -> int:
        return sum(r.count for r in self.ranges.values())

    def add(self, index: str, problem: str, key: bytes, detail: str) -> None:
        if key in self._seen:
            return  # one key, one report (forward and reverse walks may both see it)
        if len(self._seen) < MAX_LISTED:
            self._seen.add(key)
            self.listed.append(Damage(index, problem, key, detail))
        rng = self.ranges.get((index, problem))
        if rng is None:
            self.ranges[(index, problem)] = DamageRange(index, problem, 1, key, key)
        else:
            rng.count += 1
            rng.first, rng.last = min(rng.first, key), max(rng.last, key)

    def summary(self) -> list[str]:
        head = (f"checked {self.blocks} blocks, {self.records} records, {self.keys} keys "
                f"(height {self.height}, log size {self.log_size})")
        if self.clean:
            return [head, "no damage found"]
        return [head, f"{self.damaged} damaged keys:"] + [
            "  " + r.describe() for r in sorted(self.ranges.values(), key=_range_order)]

    def raise_if_damaged(self) -> None:
        if not self.clean:
            raise StorageCorruption("; ".join(self.summary()[1:]))


def _range_order(r: DamageRange) -> tuple[str, str]:
    return r.index, r.problem


def describe_key(key: bytes) -> str:
    """A short human name for a store key (prefix letter, then its fields)."""
    p = schema.key_prefix(key)
    number = schema.parse_numbered_key(key)
    if p in (schema.ENVELOPE, schema.HEADER, schema.CERTIFICATE) and number is not None:
        return f"{p.decode()}/{number}"
    if key[:6] in (TREE_LEAF_KEY, TREE_ROOT_KEY) and len(key) == 14:
        what = "leaf hash" if key[:6] == TREE_LEAF_KEY else "root at log size"
        return f"n ({what} {schema.unpack_u64(key[6:])})"
    submitter = schema.parse_submitter_key(key)
    if p in (schema.NONCE, schema.SUBMITTER) and submitter is not None:
        return f"{p.decode()}/{submitter[0][:8].hex()}../{submitter[1]}"
    pair = schema.parse_child_key(key)
    if p == schema.CHILD and pair is not None:
        return f"c/{pair[0][:8].hex()}../{pair[1][:8].hex()}.."
    record_id = schema.parse_location_key(key)
    if p == schema.RECORD_LOCATION and record_id is not None:
        return f"r/{record_id[:8].hex()}.."
    if p == schema.META:
        return "m/" + key[1:].decode("ascii", "replace")
    return key[:24].hex() + (".." if len(key) > 24 else "")
