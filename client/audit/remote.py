"""What the auditor does against a live node: trace, whole-chain audit and
checkpoints.  Fetching goes through the SDK (read-only, no key); every
check is one of the pure verifiers in ``ledger`` — nothing the node says is
trusted without its proof.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ledger.audit import ChainAuditor
from ledger.blocks import certificate_from_json
from ledger.checkpoint import (
    CertifiedHead,
    ForkDetected,
    check_extends,
    check_same_height,
    genesis_digest,
)
from ledger.crypto import digest_equal
from ledger.encoding import from_b64, from_hex
from ledger.errors import BundleFormatError, VerificationError
from ledger.genesis import Genesis
from ledger.verify import BUNDLE_FORMAT, BUNDLE_KEYS, VerifiedBundle, verify_bundle
from ledger.verify_breakers import AlertNotInTrace, VerifiedTrip, check_breaker_proof
from ledger.verify_epochs import BUNDLE_FORMAT_V2, EpochCache, verify_bundle_v2

from ..sdk import LedgerClient
from .common import decode_json
from ..trace import DEFAULT_MAX_RECORDS

DEFAULT_CHECKPOINTS = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "auditledger" / "checkpoints.json"


def answer_field(doc: Any, key: str, kind: type, what: str) -> Any:
    """``doc[key]`` from a node's answer, checked to be a ``kind``: a node
    that answers a malformed document fails verification by name rather
    than with a KeyError or TypeError traceback."""
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BundleFormatError(f"{what} answer lacks {key!r} (a {kind.__name__})")
    return value


def verify_any(bundle: Any, genesis: Genesis, cache: EpochCache) -> VerifiedBundle:
    """A version 1 or 2 bundle (PROTOCOL §5, §9.6), the governance walk of
    version 2 shared through ``cache``."""
    if isinstance(bundle, dict) and bundle.get("format") == BUNDLE_FORMAT_V2 and "governance" in bundle:
        return verify_bundle_v2(bundle, genesis, cache)
    return verify_bundle(bundle, genesis)


# --------------------------------------------------------------------------
# Trace
# --------------------------------------------------------------------------


@dataclass
class TraceHop:
    record_id: str
    verified: VerifiedBundle
    parents: list[str]


@dataclass
class TraceReport:
    root: str
    hops: dict[str, TraceHop]
    children: list[str]
    missing: list[str] = field(default_factory=list)  # parents beyond the depth asked for
    # The walk stopped at the record cap (``missing`` then holds ancestors
    # not fetched), or more children exist than were listed.
    stopped: bool = False
    more_children: bool = False
    # Records a breaker sent to review, by id: the trip the trace proves
    # (PROTOCOL §6, §12.3), its alerts among ``hops``.
    trips: dict[str, VerifiedTrip] = field(default_factory=dict)


async def trace_and_verify(client: LedgerClient, record_id: str, genesis: Genesis, depth: int | None,
                           max_records: int = DEFAULT_MAX_RECORDS) -> TraceReport:
    """Fetch a record's lineage and verify every hop's bundle offline.

    The edges the node reports are not trusted: each hop's parents are read
    from its own signed record, and every bundle must verify.  The SDK
    follows the node's pages; past ``max_records`` records the report says
    it stopped (``stopped``) instead of claiming the lineage is whole.
    """
    doc = await client.trace(record_id, depth, max_records=max_records)
    if not isinstance(doc, dict) or not isinstance(doc.get("bundles"), list):
        raise BundleFormatError("trace answer lacks 'bundles'")
    hops: dict[str, TraceHop] = {}
    cache = EpochCache(genesis)  # each governance record is verified once per trace
    for bundle in doc["bundles"]:
        verified = verify_any(bundle, genesis, cache)
        rid = verified.envelope.id.hex()
        hops[rid] = TraceHop(rid, verified, [p.hex() for p in verified.envelope.record.parents])
    if record_id not in hops:
        raise BundleFormatError(f"trace does not contain the record {record_id} itself")
    signed_edges = {(child, p) for child, hop in hops.items() for p in hop.parents}
    edges, children = doc.get("edges", []), doc.get("children", [])
    if not (isinstance(edges, list) and all(isinstance(e, list) and len(e) == 2
                                            and all(isinstance(x, str) for x in e) for e in edges)):
        raise BundleFormatError("trace 'edges' must be a list of [child, parent] ids")
    if not isinstance(children, list):
        raise BundleFormatError("trace 'children' must be a list of ids")
    claimed = {(c, p) for c, p in edges}
    if not claimed <= signed_edges:
        raise BundleFormatError("trace edges name a parent its signed record does not")
    missing = sorted({p for _, p in signed_edges} - set(hops))
    stopped = doc.get("truncated") is True
    if depth is None and missing and not stopped:
        raise BundleFormatError(f"trace is missing ancestors: {', '.join(m[:16] for m in missing)}")
    children = [c for c in children if isinstance(c, str)]
    trips = _trips(doc.get("breakers", []), hops, genesis, partial=depth is not None or stopped)
    return TraceReport(root=record_id, hops=hops, children=children, missing=missing,
                       stopped=stopped, more_children=isinstance(doc.get("children_next"), str),
                       trips=trips)


def _trips(items: Any, hops: dict[str, TraceHop], genesis: Genesis,
           partial: bool) -> dict[str, VerifiedTrip]:
    """Every breaker trip of the trace verified (PROTOCOL §6): a trip whose
    alerts lie beyond the depth asked for, or were not fetched, is left out
    (``partial``); otherwise any failure names its step."""
    if not isinstance(items, list):
        raise BundleFormatError("trace 'breakers' must be a list")
    by_id = {bytes.fromhex(rid): hop.verified for rid, hop in hops.items()}
    out: dict[str, VerifiedTrip] = {}
    for item in items:
        try:
            trip = check_breaker_proof(item, by_id, genesis)
        except AlertNotInTrace:
            if partial:
                continue
            raise
        out[trip.record.hex()] = trip
    return out


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------


class CheckpointFileError(OSError):
    """The checkpoint file cannot be read or is not a checkpoint file: the
    auditor's own state is unusable (exit 2), which says nothing about the chain."""


class CheckpointStore:
    """The auditor's last verified head per chain, in one JSON file, keyed
    by the chain's genesis digest (:func:`ledger.checkpoint.genesis_digest`):
    ``{"genesis:<sha256 hex>": head}``.  Files written before were keyed by
    chain id; such an entry is read once, re-checked against the genesis
    given, and moved under the digest if a quorum of that genesis certified
    it, or left alone (with a notice) if not: it belongs to another chain
    that shares the id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.notices: list[str] = []
        self._migrated: str | None = None  # the chain-id key an entry was moved from

    @staticmethod
    def key(genesis: Genesis) -> str:
        return f"genesis:{genesis_digest(genesis)}"

    def _load(self) -> dict[str, Any]:
        try:
            doc = decode_json(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CheckpointFileError(f"checkpoint file {self.path} is unreadable: {exc}") from None
        return doc if isinstance(doc, dict) else {}

    def _head(self, entry: Any, what: str) -> CertifiedHead:
        try:
            return CertifiedHead.from_json(entry)
        except VerificationError as exc:
            raise CheckpointFileError(f"checkpoint file {self.path}: the entry for {what} is "
                                      f"malformed: {exc}") from None

    def get(self, genesis: Genesis, cache: EpochCache | None = None) -> CertifiedHead | None:
        """The stored head for this genesis, re-checked against it."""
        doc = self._load()
        entry = doc.get(self.key(genesis))
        if entry:
            head = self._head(entry, "this genesis")
            try:
                head.verify(genesis, cache)
            except VerificationError as exc:
                raise CheckpointFileError(
                    f"checkpoint file {self.path}: the head stored for this genesis no longer "
                    f"verifies against it ({exc.step}: {exc}); move the file aside to start "
                    "afresh") from None
            return head
        legacy = doc.get(genesis.chain)
        if not legacy:
            return None
        head = self._head(legacy, f"chain {genesis.chain!r}")
        try:
            head.verify(genesis, cache)
        except VerificationError:
            self.notices.append(
                f"ignored the checkpoint kept under chain id {genesis.chain!r} by an older "
                "ledger-audit: no quorum of this genesis certified it (another chain with the "
                "same id)")
            return None
        self.notices.append(f"moved the checkpoint kept under chain id {genesis.chain!r} to "
                            "this genesis's digest")
        self._migrated = genesis.chain
        return head

    def put(self, genesis: Genesis, head: CertifiedHead) -> None:
        doc = self._load()
        doc[self.key(genesis)] = head.to_json()
        if self._migrated is not None:
            doc.pop(self._migrated, None)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise CheckpointFileError(f"cannot write checkpoint file {self.path}: {exc}") from None


async def epoch_proof(client: LedgerClient, genesis: Genesis, header: Any) -> list[Any]:
    """The governance bundles behind a header's validator set (empty in the
    genesis epoch).  The node names the record that made the set in force at
    the header's height (``made_by.validators`` of ``GET
    /v1/membership?height=H``); its version 2 bundle carries every earlier
    validator and member change.  Nothing here is trusted: the walk that
    :meth:`CertifiedHead.verify` does proves or refuses it."""
    if digest_equal(header.validators, genesis.validators_hash):
        return []
    doc = await client.membership(header.height)
    made_by = answer_field(doc, "made_by", dict, "membership")
    record_id = made_by.get("validators")
    if not isinstance(record_id, str):
        raise BundleFormatError(f"membership at height {header.height} names no record that "
                                "changed the validators, yet the header's set is not genesis's")
    bundle: Any = await client.proof(record_id)
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT_V2 \
            or not isinstance(bundle.get("governance"), list):
        raise BundleFormatError(f"the proof of governance record {record_id[:16]} is not a "
                                "version 2 bundle")
    own = {k: bundle[k] for k in BUNDLE_KEYS if k in bundle}
    own["format"] = BUNDLE_FORMAT
    return [*bundle["governance"], own]


async def fetch_head(client: LedgerClient, height: int | str, genesis: Genesis | None = None) -> CertifiedHead:
    """A block's certified head; with ``genesis``, with the epoch proof its
    validator set needs."""
    head = CertifiedHead.from_json(await client.block(height))
    if genesis is None:
        return head
    return head.with_epoch_proof(await epoch_proof(client, genesis, head.header))


@dataclass
class CheckpointResult:
    previous: CertifiedHead | None
    current: CertifiedHead
    epoch: Genesis  # the validator set (as a genesis document) that certified ``current``
    notices: list[str] = field(default_factory=list)


async def advance_checkpoint(
    client: LedgerClient, genesis: Genesis, store: CheckpointStore, target: CertifiedHead | None = None
) -> CheckpointResult:
    """Prove the node's head (or ``target``) consistent with the stored
    checkpoint, then store it.  Raises :class:`ForkDetected` with both heads.
    Heads of later epochs carry their epoch proof, verified from genesis."""
    cache = EpochCache(genesis)
    if target is not None and not target.epoch_proof:
        target = target.with_epoch_proof(await epoch_proof(client, genesis, target.header))
    new = target or await fetch_head(client, "latest", genesis)
    epoch = new.verify(genesis, cache)
    old = store.get(genesis, cache)
    if old is not None:
        if new.height >= old.height:
            # The node's own block at the checkpoint height must be the one we saw.
            check_same_height(genesis, old, await fetch_head(client, old.height, genesis), cache)
        if new.height > old.height:
            doc = await client.consistency(old.header.log_size, new.header.log_size)
            path = [from_hex(h, length=32, what="consistency path entry")
                    for h in answer_field(doc, "path", list, "consistency")]
            check_extends(genesis, old, new, path, cache)
        else:
            check_extends(genesis, old, new, [], cache)
    store.put(genesis, new)
    return CheckpointResult(previous=old, current=new, epoch=epoch, notices=list(store.notices))


# --------------------------------------------------------------------------
# Whole-chain audit
# --------------------------------------------------------------------------


@dataclass
class AuditReport:
    auditor: ChainAuditor
    seconds: float
    head: CertifiedHead | None

    @property
    def rate(self) -> float:
        return self.auditor.counts.records / self.seconds if self.seconds > 0 else 0.0


async def audit_chain(
    client: LedgerClient,
    genesis: Genesis,
    *,
    verify_signatures: bool = True,
    to_height: int | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> AuditReport:
    """Walk the chain from height 1, recomputing and checking everything.

    ``progress(height, target, records)`` is called after each block.
    """
    started = time.monotonic()
    target = to_height or answer_field(await client.status(), "height", int, "status")
    auditor = ChainAuditor(genesis, verify_signatures=verify_signatures)
    head: CertifiedHead | None = None
    for height in range(1, target + 1):
        doc = await client.block(height, envelopes=True)
        if isinstance(doc, dict) and "envelopes" not in doc:
            raise BundleFormatError("node does not serve block envelopes (?envelopes=1)")
        what = f"block {height}"
        envelopes = [from_b64(e, what="envelope") for e in answer_field(doc, "envelopes", list, what)]
        ids = [from_hex(r, length=32, what="record id") for r in answer_field(doc, "records", list, what)]
        cert = certificate_from_json(answer_field(doc, "certificate", dict, what))
        header = auditor.check_block(from_b64(answer_field(doc, "header", str, what), what="header"), cert,
                                     envelopes, record_ids=ids)
        head = CertifiedHead(header, cert)
        if progress:
            progress(height, target, auditor.counts.records)
    return AuditReport(auditor=auditor, seconds=time.monotonic() - started, head=head)


__all__ = [
    "AuditReport", "CheckpointFileError", "CheckpointResult", "CheckpointStore", "DEFAULT_CHECKPOINTS", "ForkDetected",
    "TraceHop", "TraceReport", "VerificationError", "advance_checkpoint", "audit_chain",
    "epoch_proof", "fetch_head", "trace_and_verify", "verify_any",
]
