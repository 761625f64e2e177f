"""Who may do what at each height: genesis plus committed governance (PROTOCOL §9).

Pure and deterministic: a :class:`Membership` is derived from the genesis
document and the governance records of committed blocks, in log order, and
nothing else (no clock, no floats, no node state), so every validator and
every auditor derives the same one.  The action vocabulary and its checks
live in :mod:`ledger.governance`; this module keeps the history and answers
"what was in force at height h".
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

from .encoding import to_hex
from .errors import (
    ConflictingProposal,
    ForbiddenRole,
    GovernanceError,
    KeyRotated,
    NotAMember,
    Paused,
    ProposalExpired,
    TooFewSignatures,
    TooFewValidators,
    UnknownSubmitter,
    UnreachableThreshold,
    WrongChain,
)
from .genesis import Genesis, Member, Submitter, Validator, validators_hash
from .governance import GOV_PREFIX, Action, parse_action
from .records import SUBMIT_ROLE, Envelope, verify_signatures
from .risk import RISK_PREFIX, check_risk_record

MIN_VALIDATORS = 4
VALIDATOR_DELAY = 2  # a validator-set change committed at H is in force from H + 2
OTHER_DELAY = 1      # every other action from H + 1
CACHED_HEIGHTS = 256  # states kept by Membership.at (shared along a chain of apply)
_ALL_IN_FORCE = -1  # Membership.at's cache key of the state with every change in force


@dataclass(frozen=True)
class State:
    """The membership in force at some height.  ``made_by`` maps name the
    governance record that made each fact (absent: genesis made it)."""

    validators: tuple[Validator, ...]
    submitters: Mapping[bytes, Submitter]
    members: Mapping[bytes, Member]
    threshold: int
    params: Mapping[str, Any]
    paused: frozenset[tuple[str, str]]
    rotated_out: frozenset[bytes]
    made_by: Mapping[tuple[str, ...], bytes] = field(default_factory=dict)
    policy_version: int = 0  # of the policy installed (PROTOCOL §10.2); 0: none

    @cached_property
    def validators_hash(self) -> bytes:
        # A State is immutable: computed once (a node asks for it on every
        # vote, header and epoch lookup).
        return validators_hash([v.pubkey for v in self.validators])

    def is_paused(self, envelope: Envelope) -> tuple[str, str] | None:
        """The first paused scope the record lies in, if any (PROTOCOL §9.3)."""
        if not self.paused:
            return None
        record = envelope.record
        candidates = [("submitter", to_hex(record.submitter)), ("kind", record.kind)]
        if "account" in record.origin:
            candidates.append(("account", record.origin["account"]))
        if "system" in record.origin:
            candidates.append(("system", record.origin["system"]))
        for scope in candidates:
            if scope in self.paused:
                return scope
        return None

    def as_genesis(self, genesis: Genesis) -> Genesis:
        """``genesis`` with this state's validators, submitters and members:
        the checks written against a genesis (certificates, headers, records)
        then judge against this epoch."""
        validators = tuple(replace(v, index=i) for i, v in enumerate(self.validators))
        return replace(genesis, validators=validators, submitters=dict(self.submitters),
                       params=dict(self.params), validators_hash=self.validators_hash,
                       members=dict(self.members), governance_threshold=self.threshold)

    def to_json(self) -> dict[str, Any]:
        """The JSON answer of ``GET /v1/membership`` (PROTOCOL §9.7), without its ``height``."""
        made = {"/".join(k): to_hex(v) for k, v in sorted(self.made_by.items())}
        return {
            "validators": [{"index": i, "name": v.name, "pubkey": to_hex(v.pubkey),
                            "address": v.address} for i, v in enumerate(self.validators)],
            "submitters": [{"name": s.name, "pubkey": to_hex(s.pubkey), "roles": sorted(s.roles)}
                           for s in sorted(self.submitters.values(), key=lambda s: s.pubkey)],
            "members": [{"name": m.name, "pubkey": to_hex(m.pubkey)}
                        for m in sorted(self.members.values(), key=lambda m: m.pubkey)],
            "threshold": self.threshold,
            "params": dict(self.params),
            "paused": [{"scope": s, "value": v} for s, v in sorted(self.paused)],
            "made_by": made,
        }


def genesis_state(genesis: Genesis) -> State:
    return State(
        validators=tuple(genesis.validators),
        submitters=dict(genesis.submitters),
        members=dict(genesis.members),
        threshold=genesis.governance_threshold,
        params=dict(genesis.params),
        paused=frozenset(),
        rotated_out=frozenset(),
    )


@dataclass(frozen=True)
class Change:
    """One committed governance record: what it does and from when."""

    committed: int   # the height of the block that committed it
    effective: int   # the first height it is in force at
    record_id: bytes
    action: Action


def effective_height(action: Action, committed: int) -> int:
    return committed + (VALIDATOR_DELAY if action.changes_validators else OTHER_DELAY)


def _check_invariants(state: State) -> None:
    """Rules 8 and 9 of PROTOCOL §9.3 over a projected state."""
    if len(state.validators) < MIN_VALIDATORS:
        raise TooFewValidators(
            f"the change leaves {len(state.validators)} validators, at least {MIN_VALIDATORS} "
            "are needed")
    if not 1 <= state.threshold <= len(state.members):
        raise UnreachableThreshold(
            f"threshold {state.threshold} with {len(state.members)} members")


class Membership:
    """Genesis plus the governance records committed so far, in log order.

    Immutable: :meth:`apply` returns a new one.  A node's chain store keeps
    one (as does each verifier), applies each committed block to it, and
    asks :meth:`at` for the set that judges a height."""

    def __init__(self, genesis: Genesis, changes: Sequence[Change] = (), height: int = 0) -> None:
        self.genesis = genesis
        self.changes = tuple(changes)
        self.height = height  # the last block applied (0: none)
        self._base = genesis_state(genesis)
        self._cache: dict[int, State] = {}
        # From this height on every change is in force: one state for all of
        # them (cached under _ALL_IN_FORCE), not a fold of every change per
        # new height (a node asks for each height it judges).
        self._all_in_force = max((c.effective for c in self.changes), default=0)
        # validators hash -> the first genesis with that set (validator_genesis)
        self._sets: dict[bytes, Genesis] = {}
        self._bundle_changes: tuple[tuple[Change, bool, frozenset[str]], ...] | None = None

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> "Membership":
        return cls(genesis)

    def _fold(self, changes: Iterable[Change]) -> State:
        state = self._base
        for change in changes:
            state = change.action.apply(state, change.record_id)
        return state

    def at(self, height: int) -> State:
        """The membership in force at ``height``: every change effective at
        or below it, applied in log order."""
        cache = self._cache
        state = cache.get(height)
        if state is None:
            if height >= self._all_in_force:
                state = cache.get(_ALL_IN_FORCE)
                if state is None:
                    state = self._fold(self.changes)
            else:
                state = self._fold(c for c in self.changes if c.effective <= height)
            if len(cache) >= CACHED_HEIGHTS:  # a node asks about ever new heights
                cache.clear()
            cache[height] = state
            if height >= self._all_in_force:
                cache[_ALL_IN_FORCE] = state
        return state

    def validator_genesis(self, height: int) -> Genesis:
        """The first genesis with the validator set in force at ``height``
        (indexes renumbered, its hash): what consensus and certificate checks
        need of an epoch (PROTOCOL §9.9).  Its other fields are the first
        genesis's; ask :meth:`at` for the rest of the membership."""
        state = self.at(height)
        key = state.validators_hash
        found = self._sets.get(key)
        if found is None:
            if key == self.genesis.validators_hash:
                found = self.genesis
            else:
                validators = tuple(replace(v, index=i) for i, v in enumerate(state.validators))
                found = replace(self.genesis, validators=validators, validators_hash=key)
            self._sets[key] = found
        return found

    def projected(self) -> State:
        """Every committed change applied, in force yet or not."""
        return self._fold(self.changes)

    def epochs(self) -> list[tuple[int, bytes]]:
        """``(first height, validators hash)`` for each validator set so far."""
        out = [(1, self._base.validators_hash)]
        for change in self.changes:
            if change.action.changes_validators:
                out.append((change.effective, self.at(change.effective).validators_hash))
        return out

    def proof_ids(self, submitter: bytes, height: int) -> list[bytes]:
        """The governance records a version 2 bundle for a record of
        ``submitter`` committed at ``height`` carries (PROTOCOL §9.6), in log
        order: every change committed below ``height`` to the validators,
        members or threshold, and those that made ``submitter``'s key (back
        through its rotations)."""
        keys = {to_hex(submitter)}
        chosen: list[bytes] = []
        for change, everyone, made in reversed(self._changes_for_bundles()):
            if change.committed >= height:
                continue
            if everyone:
                chosen.append(change.record_id)
            elif made & keys:
                chosen.append(change.record_id)
                keys.update(made)
        return chosen[::-1]

    def _changes_for_bundles(self) -> tuple[tuple[Change, bool, frozenset[str]], ...]:
        """The changes :meth:`proof_ids` may pick, in log order, each with
        whether it changed the validators or members (every bundle after it
        carries it) and the submitter keys (hex) it made or re-keyed.  Its
        other kinds (parameters, policy, lists, scopes) no bundle carries: a
        list's change targets each of its entries, so :meth:`Action.targets`
        over them is work per entry.  Computed once (a Membership is immutable)."""
        if self._bundle_changes is None:
            out = []
            for change in self.changes:
                action = change.action
                if action.changes_validators or action.kind.startswith("gov.member.") \
                        or action.kind == "gov.threshold.set":
                    out.append((change, True, frozenset[str]()))
                elif action.kind.startswith("gov.submitter."):
                    out.append((change, False, frozenset(
                        t[1] for t in action.targets() if t[0] == "submitter")))
            self._bundle_changes = tuple(out)
        return self._bundle_changes

    # -- judging records -----------------------------------------------------

    def check_governance(self, envelope: Envelope, height: int, *,
                         signatures: bool = True) -> Change:
        """The change a governance record makes when committed in a block of
        ``height``, after the checks of PROTOCOL §9.3 in their order; raises
        the first that fails.  ``signatures=False`` skips Ed25519 only (for a
        caller that verified this exact envelope already)."""
        action = parse_action(envelope.record)                        # rule 1
        if signatures:
            verify_signatures(envelope)                               # rule 2
        in_force = self.at(height)
        signers = [key for key, _ in envelope.signatures()]
        for key in signers:                                           # rule 3
            if key not in in_force.members:
                raise NotAMember(f"signer {to_hex(key)} is not a member at height {height}")
        if len(set(signers)) < in_force.threshold or not in_force.members:  # rule 4
            raise TooFewSignatures(
                f"{len(set(signers))} distinct members signed, the threshold at height "
                f"{height} is {in_force.threshold}")
        if height > action.expires_height:                            # rule 5
            raise ProposalExpired(
                f"expires at height {action.expires_height}, committed at {height}")
        effective = effective_height(action, height)
        targets = action.targets()
        for earlier in self.changes:                                  # rule 6
            if earlier.effective == effective and targets & earlier.action.targets():
                raise ConflictingProposal(
                    f"record {to_hex(earlier.record_id)} changes the same "
                    f"{sorted(targets & earlier.action.targets())[0][0]} at height {effective}")
        after = action.apply(self.projected(), envelope.id)           # rule 7
        _check_invariants(after)                                      # rules 8, 9
        return Change(committed=height, effective=effective, record_id=envelope.id,
                      action=action)

    def check_record(self, envelope: Envelope, height: int, *, signatures: bool = True,
                     paused: bool = True) -> None:
        """A non-governance record in a block of ``height`` (PROTOCOL §9.4):
        submitter and role in force, key not rotated out, scope not paused,
        co-signers known.  ``paused=False`` skips the scope (a node taking
        back records it acknowledged before a pause: they wait for the
        resume)."""
        check_record_in(self.at(height), envelope, height, signatures=signatures, paused=paused)

    def check(self, envelope: Envelope, height: int, *, signatures: bool = True,
              paused: bool = True, governance: bool | None = None,
              state: State | None = None) -> None:
        """Either check, by the record's kind.  A caller checking a whole
        block may pass what it knows already: ``governance``,
        :func:`is_governance` of the envelope, and ``state``,
        ``self.at(height)``."""
        if is_governance(envelope) if governance is None else governance:
            self.check_governance(envelope, height, signatures=signatures)
        else:
            check_record_in(self.at(height) if state is None else state, envelope, height,
                            signatures=signatures, paused=paused)

    # -- committing ----------------------------------------------------------

    def apply(self, height: int, envelopes: Sequence[Envelope], *,
              signatures: bool = True) -> "Membership":
        """The membership after a committed block of ``height`` holding
        ``envelopes`` (in log order).  Only governance records change it;
        an invalid one raises (a block holding it is invalid).  ``height`` may
        repeat the last one (a verifier applying one record of a block at a
        time) but never go back."""
        if height < self.height:
            raise GovernanceError(f"block {height} applied after block {self.height}")
        current = self
        for envelope in envelopes:
            if not is_governance(envelope):
                continue
            change = current.check_governance(envelope, height, signatures=signatures)
            current = Membership(self.genesis, current.changes + (change,), height)
            current._sets = self._sets
        if current is self:
            if height == self.height:
                return self
            # The same changes answer every height the same: keep what was
            # folded (a node applies every block, most without governance).
            same = Membership(self.genesis, self.changes, height)
            same._cache = self._cache
            same._sets = self._sets
            return same
        return current


def is_governance(envelope: Envelope) -> bool:
    return envelope.record.kind.startswith(GOV_PREFIX)


def check_record_in(state: State, envelope: Envelope, height: int, *, signatures: bool = True,
                    paused: bool = True) -> None:
    """A non-governance record in a block of ``height`` against ``state``, the
    membership in force there (PROTOCOL §9.4):
    submitter and role in force, key not rotated out, scope not paused,
    co-signers known.  ``paused=False`` skips the scope."""
    record = envelope.record
    if record.submitter in state.rotated_out:
        raise KeyRotated(f"submitter key {to_hex(record.submitter)} was rotated out "
                         f"before height {height}")
    submitter = state.submitters.get(record.submitter)
    if submitter is None:
        raise UnknownSubmitter(
            f"submitter {to_hex(record.submitter)} is not a submitter at height {height}")
    if SUBMIT_ROLE not in submitter.roles:
        raise ForbiddenRole(f"submitter {submitter.name!r} lacks the {SUBMIT_ROLE!r} role")
    if record.kind.startswith(RISK_PREFIX):
        check_risk_record(record, submitter)
    scope = state.is_paused(envelope) if paused else None
    if scope is not None:
        raise Paused(f"{scope[0]} {scope[1]!r} is paused at height {height}")
    for key, _ in envelope.signatures()[1:]:
        if key not in state.submitters and key not in state.members:
            raise UnknownSubmitter(f"co-signer {to_hex(key)} is neither a submitter nor "
                                   f"a member at height {height}")
    if signatures:
        verify_signatures(envelope)


def check_envelope(membership: Membership, envelope: Envelope, height: int, *,
                   signatures: bool = True, paused: bool = True,
                   governance: bool | None = None, state: State | None = None) -> None:
    """What a node checks of one record for a block of ``height`` (PROTOCOL
    §2 and §9.4): the chain, then :meth:`Membership.check` (``governance``
    and ``state`` as there)."""
    record = envelope.record
    if record.chain != membership.genesis.chain:
        raise WrongChain(f"record is for chain {record.chain!r}, "
                         f"not {membership.genesis.chain!r}")
    membership.check(envelope, height, signatures=signatures, paused=paused,
                     governance=governance, state=state)
