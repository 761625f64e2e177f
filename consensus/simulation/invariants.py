"""Invariant checkers, independent of the consensus code they judge.

Online (as events happen): agreement across honest validators, honest
validators never sign two different votes/proposals for one slot and never
send what they signed before persisting it (the persistence contract across
crashes), evidence never names an honest validator.  At the end of a run: validity and integrity of every honest
chain, re-derived from scratch with ``ledger`` primitives only (Merkle roots,
``verify_envelope``, ``verify_certificate``), and liveness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.messages import Message, Proposal, SignedVote
from consensus.state import PersistedState
from consensus.votes import Evidence
from ledger.blocks import ZERO_HASH, Certificate, Header, verify_certificate
from ledger.encoding import to_hex
from ledger.errors import LedgerError
from ledger.genesis import record_time_window
from ledger.genesis import Genesis
from ledger.membership import Membership, is_governance
from ledger.merkle import root
from ledger.records import Envelope, verify_envelope

from .app import SimChain
from .crypto_cache import cached_verify, verify_envelope_once


@dataclass
class Checker:
    genesis: Genesis
    honest_validators: frozenset[int]
    violations: list[str] = field(default_factory=list)
    _first_commit: dict[int, tuple[bytes, str]] = field(default_factory=dict)
    # Every key an honest endpoint holds (evidence against one is a violation).
    honest_keys: frozenset[bytes] = frozenset()
    _signed: dict[tuple[str, int, int, str], bytes | None] = field(default_factory=dict)
    _verified_envelopes: set[bytes] = field(default_factory=set)
    _verified_certs: set[tuple[bytes, bytes]] = field(default_factory=set)

    def fail(self, text: str) -> None:
        self.violations.append(text)

    # ------------------------------------------------------------------
    # Online checks
    # ------------------------------------------------------------------

    def on_commit(self, who: str, header: Header) -> None:
        first = self._first_commit.get(header.height)
        if first is None:
            self._first_commit[header.height] = (header.hash, who)
        elif first[0] != header.hash:
            self.fail(
                f"agreement: {who} committed {to_hex(header.hash)[:12]} at height {header.height}, "
                f"{first[1]} committed {to_hex(first[0])[:12]}"
            )

    def on_signed(self, who: str, validator: int | None, msg: Message) -> None:
        """An honest validator (index ``validator`` in the set of the
        message's height; None: not in it) signed (sent or persisted) ``msg``."""
        if isinstance(msg, SignedVote):
            if msg.validator != validator:
                return  # a forwarded vote of someone else
            key: tuple[str, int, int, str] = (who, msg.height, msg.round, msg.type.value)
            block = msg.block
        elif isinstance(msg, Proposal):
            if validator is None:
                self.fail(f"epochs: {who} proposed at h{msg.height} outside the validator set")
                return
            key = (who, msg.height, msg.round, "proposal")
            block = msg.block_hash
        else:
            return
        if key not in self._signed:
            self._signed[key] = block
        elif self._signed[key] != block:
            self.fail(f"double-sign: honest {who} signed two {key[3]}s at h{key[1]} r{key[2]}")

    def on_sent_after_persist(self, who: str, validator: int | None, msg: Message,
                              stored: PersistedState | None) -> None:
        """What an honest validator signs leaves it only once persisted."""
        if isinstance(msg, SignedVote) and msg.validator == validator:
            if stored is None or msg not in stored.votes:
                self.fail(f"persist-before-send: {who} sent a {msg.type} h{msg.height} r{msg.round} "
                          f"that its persisted state does not hold")
        elif isinstance(msg, Proposal) and (stored is None or stored.height != msg.height
                                            or stored.proposed_round < msg.round):
            self.fail(f"persist-before-send: {who} sent a proposal h{msg.height} r{msg.round} before persisting it")

    def on_evidence(self, who: str, ev: Evidence, accused: bytes | None = None) -> None:
        """``accused``: the key of ``ev.validator`` in the set of its height
        (without it, the index is judged against the genesis set)."""
        honest = accused in self.honest_keys if accused is not None \
            else ev.validator in self.honest_validators
        if honest:
            self.fail(f"evidence: {who} holds evidence against honest validator v{ev.validator} "
                      f"at h{ev.first.height}")

    # ------------------------------------------------------------------
    # End-of-run checks
    # ------------------------------------------------------------------

    def check_chain(self, who: str, chain: SimChain) -> None:
        # The membership re-derived from this chain's own blocks (PROTOCOL
        # §9.3): each header and certificate is judged by the set in force
        # at its height, each governance record against the rules.
        membership = Membership.from_genesis(self.genesis)
        leaves: list[bytes] = []
        index_of: dict[bytes, int] = {}
        nonces: set[tuple[bytes, int]] = set()
        prev: Header | None = None
        for i, header in enumerate(chain.headers):
            envelopes, cert = chain.blocks[i], chain.certificates[i]
            where = f"{who} h{i + 1}"
            self._check_header_links(where, header, prev, i + 1, membership)
            self._check_certificate(where, header, cert, membership)
            if not envelopes or header.tx_count != len(envelopes):
                self.fail(f"integrity: {where} has {len(envelopes)} records, tx_count {header.tx_count}")
            block_leaves = [e.leaf_hash for e in envelopes]
            if header.tx_root != root(block_leaves):
                self.fail(f"integrity: {where} tx_root mismatch")
            window = record_time_window(self.genesis.params)
            for env in envelopes:
                self._check_record(where, env, index_of, nonces, len(leaves))
                if not window.contains(env.record.ts, header.time):
                    self.fail(f"validity: {where} record {to_hex(env.id)[:12]}: "
                              f"{window.explain(env.record.ts, header.time)}")
                index_of[env.id] = len(leaves)
                leaves.append(env.leaf_hash)
            if header.log_size != len(leaves) or header.log_root != root(leaves):
                self.fail(f"integrity: {where} log_size/log_root do not match the log")
            try:
                membership = membership.apply(i + 1, envelopes)
            except LedgerError as exc:
                self.fail(f"validity: {where} governance does not apply: {exc}")
            prev = header

    def _check_header_links(self, where: str, header: Header, prev: Header | None, height: int,
                            membership: Membership) -> None:
        if header.height != height or header.chain != self.genesis.chain:
            self.fail(f"integrity: {where} has height {header.height} / chain {header.chain!r}")
        if header.prev != (prev.hash if prev else ZERO_HASH):
            self.fail(f"integrity: {where} prev does not link to the previous block")
        if header.validators != membership.at(height).validators_hash:
            self.fail(f"integrity: {where} validators hash differs from the set in force")
        if prev is not None and header.time < prev.time:
            self.fail(f"integrity: {where} time goes backwards")

    def _check_certificate(self, where: str, header: Header, cert: Certificate,
                           membership: Membership) -> None:
        key = (header.hash, cert.to_bytes())
        if key in self._verified_certs:
            return
        try:
            verify_certificate(cert, header, membership.validator_genesis(header.height), cached_verify)
        except LedgerError as exc:
            self.fail(f"certificate: {where}: {exc}")
            return
        self._verified_certs.add(key)

    def _check_record(self, where: str, env: Envelope, index_of: dict[bytes, int],
                      nonces: set[tuple[bytes, int]], position: int) -> None:
        rid = to_hex(env.id)[:12]
        if env.leaf_hash not in self._verified_envelopes and not is_governance(env):
            try:
                verify_envelope(env, self.genesis, signature=False)
                verify_envelope_once(env)
                self._verified_envelopes.add(env.leaf_hash)
            except LedgerError as exc:
                self.fail(f"validity: {where} record {rid} is invalid: {exc}")
        if env.id in index_of:
            self.fail(f"validity: {where} record {rid} committed twice")
        key = (env.record.submitter, env.record.nonce)
        if key in nonces:
            self.fail(f"validity: {where} record {rid} reuses a nonce")
        nonces.add(key)
        for parent in env.record.parents:
            if index_of.get(parent, position) >= position:
                self.fail(f"validity: {where} record {rid} has a parent not committed before it")

    def check_liveness(self, who: str, chain: SimChain, required: list[bytes], deadline: int) -> None:
        missing = [r for r in required if r not in chain.index_of]
        if missing:
            self.fail(
                f"liveness: {who} misses {len(missing)} of {len(required)} records at t={deadline}ms "
                f"(height {chain.height})"
            )
