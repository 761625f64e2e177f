"""Whole-chain audit as a pure, incremental check over bytes and genesis.

:class:`ChainAuditor` is fed blocks in height order (header bytes,
certificate, envelopes) and raises a :class:`VerificationError` naming the
first broken step: prev link, header fields, tx_root and log_root recomputed
from the envelopes, the certificate, and optionally every record's signature.
It keeps O(log n) state (a :class:`MerkleFrontier`), so a chain of any length
is audited in constant memory (plus the chain's governance records).  The
node's catch-up uses the same checks on blocks fetched from peers.

Across epochs (PROTOCOL §9): the auditor replays governance records as it
walks, with :meth:`ledger.membership.Membership.apply`, so each header's
``validators`` and certificate are checked against the set in force at its
height, and each record against the submitters in force there; a block
holding an invalid governance record is invalid.  From the first genesis
alone, whatever changed since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .blocks import ZERO_HASH, Certificate, Header, decode_header, verify_certificate
from .crypto import digest_equal
from .errors import HeaderError, RecordIdMismatch, ValidatorSetMismatch, WrongChain
from .frontier import MerkleFrontier
from .genesis import Genesis
from .membership import Membership, State, check_record_in, genesis_state, is_governance
from .merkle import root
from .records import Envelope, decode_envelope, verify_signatures


@dataclass
class AuditCounts:
    blocks: int = 0
    records: int = 0
    signatures_checked: int = 0
    certificates_checked: int = 0
    # records per submitter name (from the genesis file, or the governance
    # record that added the key: a label nothing on the chain certifies; a
    # governance record counts under its proposing member's name), and per
    # submitter public key (hex; signed)
    submitters: dict[str, int] = field(default_factory=dict)
    submitter_keys: dict[str, int] = field(default_factory=dict)
    governance_records: int = 0
    # (first height, validators hash hex) of each validator set met, in order
    epochs: list[tuple[int, str]] = field(default_factory=list)


class ChainAuditor:
    """Checks consecutive certified blocks from height 1 (or from a trusted state)."""

    def __init__(self, genesis: Genesis, *, verify_signatures: bool = True) -> None:
        self.genesis = genesis
        self.verify_signatures = verify_signatures
        # Genesis plus the governance records audited so far (PROTOCOL §9):
        # judges each block's header, certificate and records.
        self.membership = Membership.from_genesis(genesis)
        self.frontier = MerkleFrontier()
        self.tip: Header | None = None
        self.counts = AuditCounts()
        self.membership = Membership.from_genesis(genesis)
        # The set in force at the last height checked, and how many changes
        # were in force then: the in-force set only grows with the height, so
        # the count names it and the state is refolded only when it moves.
        self._in_force = -1
        self._state: State = genesis_state(genesis)
        self._epoch = genesis
        self.last_envelopes: list[Envelope] = []

    def epoch_at(self, height: int) -> Genesis:
        """The genesis document with the validators, submitters and members
        in force at ``height`` (a height not below the last one checked)."""
        in_force = sum(1 for c in self.membership.changes if c.effective <= height)
        if in_force != self._in_force:
            self._state = self.membership.at(height)
            self._epoch = self._state.as_genesis(self.genesis)
            self._in_force = in_force
            vhash = self._epoch.validators_hash.hex()
            if not self.counts.epochs or self.counts.epochs[-1][1] != vhash:
                self.counts.epochs.append((height, vhash))
        return self._epoch

    @property
    def height(self) -> int:
        return self.tip.height if self.tip else 0

    def check_block(
        self,
        header_bytes: bytes,
        certificate: Certificate,
        envelopes: Sequence[bytes],
        *,
        record_ids: Sequence[bytes] | None = None,
    ) -> Header:
        """Verify the next block and advance; raises on the first failure.

        State only advances when every check passed, so a caller may report
        the failure and stop with the auditor still at the last good block.
        """
        header = decode_header(header_bytes)
        epoch = self.epoch_at(header.height) if header.height == self.height + 1 else self.genesis
        self._check_header_links(header, epoch)
        decoded = [self._check_envelope(e, header) for e in envelopes]
        membership = self.membership.apply(header.height, decoded, signatures=False)
        if record_ids is not None:
            if len(record_ids) != len(decoded) or any(
                not digest_equal(a, b.id) for a, b in zip(record_ids, decoded)
            ):
                raise RecordIdMismatch(f"block {header.height}: record ids do not match the envelopes")
        if header.tx_count != len(decoded):
            raise HeaderError(f"block {header.height}: tx_count {header.tx_count} but {len(decoded)} envelopes")
        leaf_hashes = [e.leaf_hash for e in decoded]
        if not digest_equal(root(leaf_hashes), header.tx_root):
            raise HeaderError(f"block {header.height}: tx_root does not match the envelopes")
        frontier = self.frontier.copy()
        frontier.extend(leaf_hashes)
        if frontier.size != header.log_size:
            raise HeaderError(f"block {header.height}: log_size {header.log_size}, recomputed {frontier.size}")
        if not digest_equal(frontier.root(), header.log_root):
            raise HeaderError(f"block {header.height}: log_root does not match the recomputed log")
        verify_certificate(certificate, header, epoch)
        # Governance records change the membership of later heights (and an
        # invalid one makes the block invalid); the state before stays if not.
        membership = self.membership.apply(header.height, decoded, signatures=False) \
            if any(is_governance(e) for e in decoded) else self.membership
        # Every check passed: advance.
        self.membership = membership
        self.frontier = frontier
        self.tip = header
        # The block's envelopes, decoded once here, for a caller that reads
        # the records too (the risk monitor scores them).
        self.last_envelopes = decoded
        self.counts.blocks += 1
        self.counts.records += len(decoded)
        self.counts.certificates_checked += 1
        # Counted per distinct submitter (a block's records mostly share a few).
        per_key: dict[bytes, int] = {}
        for env in decoded:
            submitter = env.record.submitter
            per_key[submitter] = per_key.get(submitter, 0) + 1
            if is_governance(env):
                self.counts.governance_records += 1
        for submitter, n in per_key.items():
            sub = epoch.submitters.get(submitter)
            member = epoch.members.get(submitter)
            name = sub.name if sub else member.name if member else submitter.hex()
            self.counts.submitters[name] = self.counts.submitters.get(name, 0) + n
            key = submitter.hex()
            self.counts.submitter_keys[key] = self.counts.submitter_keys.get(key, 0) + n
        return header

    def _check_header_links(self, header: Header, epoch: Genesis) -> None:
        if header.chain != self.genesis.chain:
            raise WrongChain(f"block {header.height} is for chain {header.chain!r}")
        if not digest_equal(header.validators, epoch.validators_hash):
            raise ValidatorSetMismatch(f"block {header.height}: validator set differs from the "
                                       "set in force at its height")
        expected_height = self.height + 1
        if header.height != expected_height:
            raise HeaderError(f"expected height {expected_height}, got {header.height}")
        prev = self.tip.hash if self.tip else ZERO_HASH
        if not digest_equal(header.prev, prev):
            raise HeaderError(f"block {header.height}: prev does not link to block {self.height}")
        if self.tip is not None and header.time < self.tip.time:
            raise HeaderError(f"block {header.height}: time goes backwards")
        if not 0 <= header.proposer < epoch.n:
            raise HeaderError(f"block {header.height}: proposer {header.proposer} is not a validator")

    def _check_envelope(self, envelope_bytes: bytes, header: Header) -> Envelope:
        """Form and chain always; with signatures, every signature and the
        record's standing at its height (PROTOCOL §9.4; a governance
        record's rules are checked when the block is applied)."""
        env = decode_envelope(envelope_bytes, cosigs=True)
        if env.record.chain != self.genesis.chain:
            raise WrongChain(f"block {header.height}: a record is for chain {env.record.chain!r}")
        if self.verify_signatures:
            if is_governance(env):
                verify_signatures(env)
            else:
                check_record_in(self._state, env, header.height)
            self.counts.signatures_checked += 1
        return env
