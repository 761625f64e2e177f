"""The shapes of what the SDK returns and accepts, for type checkers.

Each answer type is a :class:`~typing.TypedDict` over the JSON document the
node sends (docs/protocol.md §5 and §6), with the node's own keys: the SDK
hands back the decoded JSON unchanged, so ``doc["height"]`` keeps working
and these types only tell a type checker (and a reader) which keys exist
and what they hold.  Nothing is checked at run time; a key marked
``NotRequired`` is present only in the cases its comment names.

Hashes, ids and signatures are lowercase hex strings; ``envelope`` and
``header`` are standard base64.  (No ``from __future__ import annotations``
here: ``NotRequired`` must stay visible at run time for
``__required_keys__`` to be right.)
"""

from typing import Any, Mapping, NotRequired, Required, Sequence, TypedDict


class RecordSpec(TypedDict, total=False):
    """One record for :meth:`LedgerClient.submit_many`: the keyword
    arguments of :meth:`LedgerClient.submit`."""

    kind: Required[str]
    origin: Mapping[str, str]
    body: Mapping[str, Any]
    parents: Sequence[str | bytes]  # ids of earlier records, hex or 32 bytes
    ts: int  # ms since the epoch; the client's clock when omitted


class SubmitResult(TypedDict, total=False):
    """One envelope's result of a submission: ``id`` and ``status``
    (``accepted``, ``duplicate`` or ``committed``) when a node took it,
    ``error`` (a protocol §6 code) and ``message`` when it was refused."""

    id: str
    status: str
    error: str
    message: str


class RecordFields(TypedDict):
    """A decoded record (protocol §2), bytes as hex."""

    v: int
    chain: str
    submitter: str
    nonce: int
    ts: int
    kind: str
    origin: dict[str, str]
    body: dict[str, Any]
    parents: list[str]


class VerdictDoc(TypedDict):
    """A record's verdict (PROTOCOL §10.8, §10.9)."""

    outcome: str  # allow, deny, approve, review
    rule: str
    reason: str
    approvals: int
    role: str
    policy_version: int
    deadline: int
    status: str  # allowed, denied, review, held, approved, expired, rejected
    final_height: NotRequired[int]
    approved_by: NotRequired[list[dict[str, str]]]   # held or review
    approvals_needed: NotRequired[int]                # held or review: k plus escalations
    escalated_by: NotRequired[list[dict[str, str]]]  # held or review, once escalated


class ReviewAlertDoc(TypedDict):
    """A ``risk.alert`` naming a queued record (PROTOCOL §10.10)."""

    record: str
    height: int
    monitor: str  # the alert's submitter key
    score: int    # parts per million
    detector: str
    version: str


class ReviewDecisionDoc(TypedDict):
    """A ``risk.decision`` or ``approval`` naming a queued record first."""

    record: str
    height: int
    kind: str      # risk.decision or approval
    decision: str  # approve, reject or escalate (an approval record: approve)
    reviewer: str  # the decision's submitter key
    note: str
    counted: bool  # its verdict was allow
    reason: str    # its verdict's reason when it did not count


class ReviewItemDoc(TypedDict):
    """One record of ``GET /v1/reviews``; only ``record`` when the node does
    not hold the record's block (state sync)."""

    record: str
    height: NotRequired[int]
    kind: NotRequired[str]
    submitter: NotRequired[str]
    origin: NotRequired[dict[str, str]]
    amount: NotRequired[int]       # body.amount, when an integer
    currency: NotRequired[str]     # body.currency, when a string
    since: NotRequired[int]        # block time (ms) of its block
    age_ms: NotRequired[int]       # tip time - since; decided: decided_time - since
    decided_time: NotRequired[int]  # decided: block time of its transition's block
    verdict: NotRequired[VerdictDoc]
    alerts: NotRequired[list[ReviewAlertDoc]]
    decisions: NotRequired[list[ReviewDecisionDoc]]
    children_truncated: NotRequired[bool]


class ReviewsDoc(TypedDict):
    """``GET /v1/reviews`` (PROTOCOL §10.10): one page of the review queue."""

    state: str   # open or decided
    height: int  # the node's tip
    time: int    # the tip's block time (ms)
    open: int    # records open at the tip
    reviews: list[ReviewItemDoc]
    next: str | None  # pass as after= for the next page


class RecordDoc(TypedDict):
    """``GET /v1/records/{id}``."""

    id: str
    status: str  # "pending" or "committed"
    height: NotRequired[int]  # committed records only: the record's block
    leaf_index: NotRequired[int]  # committed records only: its position in the log
    envelope: str
    record: RecordFields
    verdict: NotRequired[VerdictDoc]  # committed records (PROTOCOL §10.8)


class SignatureDoc(TypedDict):
    validator: int  # 0-based index in the genesis validator list
    sig: str


class CertificateDoc(TypedDict):
    """A block's certificate: a quorum of precommits (protocol §4)."""

    height: int
    round: int
    block: str  # the header hash
    signatures: list[SignatureDoc]


class TransitionProofDoc(TypedDict):
    """The transition that decided a held record, in its own certified block (protocol §10.11)."""

    height: int
    header: str
    certificate: CertificateDoc
    entry: str  # base64 transition bytes
    index: int
    size: int
    path: list[str]


class VerdictProofDoc(TypedDict):
    """A record's verdict entry and its path to the header's verdict root (protocol §10.11)."""

    entry: str  # base64 verdict bytes
    size: int  # the block's entry count
    path: list[str]
    transition: NotRequired[TransitionProofDoc]


class BundleDoc(TypedDict):
    """A proof bundle (protocol §5), what ``verify_bundle`` checks offline."""

    format: str
    chain: str
    record_id: str
    leaf_index: int
    envelope: str
    height: int  # the anchoring header's height
    header: str
    inclusion: list[str]
    certificate: CertificateDoc
    # Version 2 bundles (protocol §9.6): the governance records, each with
    # its own bundle, that lead from genesis to the record's membership.
    governance: NotRequired[list[dict[str, Any]]]
    # The record's verdict proof (protocol §10.11), when its block is version 2.
    verdict: NotRequired[VerdictProofDoc]


class BreakerTripDoc(TypedDict):
    """The trip of the breaker that sent ``record`` to review: its breaker
    entry in the certified block that committed it (protocol §6, §10.5)."""

    record: str
    height: int
    header: str
    certificate: CertificateDoc
    entry: str  # base64 breaker entry bytes
    index: int
    size: int
    path: list[str]


class TraceDoc(TypedDict):
    """``GET /v1/records/{id}/trace``: a record and its ancestors."""

    record: str
    bundles: list[BundleDoc]
    edges: list[list[str]]  # [child id, parent id] pairs
    children: list[str]  # the record's direct children
    truncated: NotRequired[bool]  # present (true) when the node's limit cut the trace short
    # From nodes that page traces (protocol §6 "The trace answer"):
    frontier: NotRequired[list[str]]  # parents whose bundles are not in this answer
    children_next: NotRequired[str]  # cursor: more children follow this id
    # Records in the trace that a breaker sent to review: the trip, whose
    # alerts' bundles are in ``bundles`` (protocol §6 "The trace answer").
    breakers: NotRequired[list[BreakerTripDoc]]


class HeaderFields(TypedDict):
    """A decoded block header (protocol §4), bytes as hex."""

    v: int
    chain: str
    height: int
    prev: str
    time: int
    proposer: int
    tx_count: int
    tx_root: str
    log_size: int
    log_root: str
    validators: str
    verdicts: NotRequired[str]  # version 2 headers: the verdict root (protocol §10.6)


class BlockDoc(TypedDict):
    """``GET /v1/blocks/{height}``."""

    height: int
    hash: str
    header: str
    fields: HeaderFields
    certificate: CertificateDoc
    records: list[str]  # the block's record ids, in log order
    envelopes: NotRequired[list[str]]  # with envelopes=True only
    verdicts: NotRequired[list[str]]  # with envelopes=True, version 2 blocks: verdict entries (§10.5)


# "from" is a keyword, so this one is spelled the functional way.
ConsistencyDoc = TypedDict("ConsistencyDoc", {"from": int, "to": int, "path": list[str]})
ConsistencyDoc.__doc__ = """``GET /v1/consistency``: the RFC 9162 proof that the log of ``from``
leaves is a prefix of the log of ``to`` leaves."""


class PeerDoc(TypedDict):
    """One validator link in the status document."""

    index: int
    name: str
    address: str
    connected: bool
    inbound: NotRequired[bool]
    queued: NotRequired[int]
    height: NotRequired[int | None]  # the peer's last known height


class StatusDoc(TypedDict):
    """``GET /v1/status``."""

    chain: str
    node: str
    validator: int | None  # this node's validator index; None for a non-validator
    height: int
    log_size: int
    log_root: str
    peers: list[PeerDoc]
    mempool: int  # records waiting for a block
    round: NotRequired[int]
    syncing: NotRequired[bool]
