"""Governance proposal files: a ``gov.*`` record (PROTOCOL §9.3) travelling
between the members' hosts while it gathers signatures.

The file is JSON::

    {"format": "auditledger-proposal/1",
     "envelope": "<base64 of the envelope bytes>",
     "record_id": hex, "chain": str, "kind": str, "body": {...},
     "expires_height": int, "signers": [hex, ...]}

Only ``format`` and ``envelope`` are read: the envelope is what counts (the
record, the proposer's signature and every co-signature are in it, and
every signature is verified on reading).  The other fields are rewritten
from the envelope each time the file is written, for people reading it
with a text editor; nothing trusts them.

Pure functions over bytes and documents; the click commands are in
:mod:`client.admin.cli`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ledger.crypto import SigningKey
from ledger.encoding import from_b64, from_hex, to_b64, to_hex
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from ledger.governance import GOV_PREFIX, KINDS, MAX_LIST_ENTRIES, Action, parse_action
from ledger.policy import BadPolicy, policy_from_json
from ledger.records import Envelope, cosign, decode_envelope, make_record, sign_record, verify_signatures

PROPOSAL_FORMAT = "auditledger-proposal/1"
MAX_PROPOSAL_BYTES = 64 * 1024  # an envelope is at most 8 KiB; the rest is informational


class ProposalError(ValueError):
    """A proposal, key or field that cannot be used; ``code`` names why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Authority:
    """Who may sign and how many must: the members and threshold of a
    genesis file, or of a membership document (a node's
    ``GET /v1/membership`` answer, saved to a file).  ``source`` says which,
    for messages."""

    members: Mapping[bytes, str]
    threshold: int
    chain: str | None
    source: str

    @classmethod
    def from_genesis(cls, genesis: Genesis, source: str) -> "Authority":
        return cls({k: m.name for k, m in genesis.members.items()}, genesis.governance_threshold,
                   genesis.chain, source)

    @classmethod
    def from_membership(cls, doc: Any, source: str, chain: str | None) -> "Authority":
        """From ``{"members": [{"name", "pubkey"}], "threshold": int, ...}``."""
        if not isinstance(doc, dict) or not isinstance(doc.get("members"), list) \
                or type(doc.get("threshold")) is not int:
            raise ProposalError("malformed", f"{source} is not a membership document "
                                "(needs 'members' and 'threshold')")
        members: dict[bytes, str] = {}
        for entry in doc["members"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ProposalError("malformed", f"{source}: a member needs 'name' and 'pubkey'")
            try:
                members[from_hex(entry.get("pubkey"), length=32, what="pubkey")] = entry["name"]
            except LedgerError as exc:
                raise ProposalError("malformed", f"{source}: {exc}") from None
        return cls(members, doc["threshold"], chain, source)


@dataclass(frozen=True)
class Proposal:
    envelope: Envelope
    action: Action

    @property
    def signers(self) -> list[bytes]:
        """The proposer first, then each co-signer (ascending key order)."""
        return [key for key, _ in self.envelope.signatures()]

    def to_json(self) -> dict[str, Any]:
        record = self.envelope.record
        return {
            "format": PROPOSAL_FORMAT,
            "envelope": to_b64(self.envelope.envelope_bytes),
            "record_id": to_hex(self.envelope.id),
            "chain": record.chain,
            "kind": record.kind,
            "body": json_body(self.action),
            "expires_height": self.action.expires_height,
            "signers": [to_hex(k) for k in self.signers],
        }


def json_body(action: Action) -> dict[str, Any]:
    """The action's body for people: keys in hex."""
    return {k: to_hex(v) if isinstance(v, bytes) else v for k, v in sorted(action.body.items())}


# --------------------------------------------------------------------------
# Building and signing
# --------------------------------------------------------------------------

def normalise_kind(action: str) -> str:
    """``validator.add`` or ``gov.validator.add`` -> ``gov.validator.add``."""
    action = action.replace("-", ".")  # policy-set, list-add, list-remove
    kind = action if action.startswith(GOV_PREFIX) else GOV_PREFIX + action
    if kind not in KINDS:
        names = ", ".join(sorted(k[len(GOV_PREFIX):] for k in KINDS))
        raise ProposalError("bad_field", f"unknown action {action!r}; one of: {names}")
    return kind


def _pubkey(value: str, name: str) -> bytes:
    """64 hex digits, or the path of a public key file (``{"pubkey": hex}``,
    as ``ledger-cluster keygen`` writes)."""
    if len(value) == 64:
        try:
            return from_hex(value.lower(), length=32, what=name)
        except LedgerError:
            pass
    try:
        doc = json.loads(Path(value).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ProposalError("bad_field", f"{name}={value!r} is neither 64 hex digits nor a "
                            "readable public key file") from None
    if isinstance(doc, dict) and "seed" in doc:
        raise ProposalError("bad_field", f"{value} is a private key file; give the public one")
    try:
        return from_hex(doc.get("pubkey") if isinstance(doc, dict) else None, length=32, what=name)
    except LedgerError as exc:
        raise ProposalError("bad_field", f"{value}: {exc}") from None


def _int(value: str, name: str) -> int:
    try:
        out = int(value, 10)
    except ValueError:
        raise ProposalError("bad_field", f"{name}={value!r} is not an integer") from None
    if out < 0:
        raise ProposalError("bad_field", f"{name} must not be negative")
    return out


def read_policy(path: str) -> bytes:
    """The bytes of the policy in a YAML or JSON file (docs/policy.md),
    checked and compiled as a node will."""
    import yaml  # JSON is YAML: one reader for both

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProposalError("bad_field", f"policy file {path}: {exc}") from None
    try:
        return policy_from_json(doc).policy_bytes
    except BadPolicy as exc:
        raise ProposalError("bad_policy", f"{path}: {exc}") from None


def read_entries(path: str) -> list[str]:
    """A list file: one entry per line; blank lines and ``#`` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProposalError("bad_field", f"list file {path}: {exc}") from None
    entries = sorted({line.strip() for line in lines
                      if line.strip() and not line.lstrip().startswith("#")})
    if len(entries) > MAX_LIST_ENTRIES:
        raise ProposalError("bad_field", f"{path} has {len(entries)} entries, at most "
                            f"{MAX_LIST_ENTRIES} per proposal: split it (split -l)")
    return entries


def parse_fields(pairs: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` words to a body: ``pubkey``/``new_pubkey`` hex or a
    public key file, ``roles`` comma-separated, ``threshold`` an integer,
    ``params`` as ``name:int,name:int``, ``policy`` a YAML/JSON policy
    file, ``entries`` a list file (one per line), anything else a string.  The
    action's own rules (PROTOCOL §9.3 rule 1) are checked after."""
    body: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ProposalError("bad_field", f"field {pair!r} is not NAME=VALUE")
        if name in body:
            raise ProposalError("bad_field", f"field {name!r} given twice")
        if name == "expires_height":
            raise ProposalError("bad_field", "give the expiry with --expires-height")
        if name in ("pubkey", "new_pubkey"):
            body[name] = _pubkey(value, name)
        elif name == "roles":
            body[name] = sorted(set(r for r in value.split(",") if r))
        elif name == "threshold":
            body[name] = _int(value, name)
        elif name == "policy":
            body[name] = read_policy(value)
        elif name == "entries":
            body[name] = read_entries(value)
        elif name == "params":
            params: dict[str, int] = {}
            for item in value.split(","):
                key, colon, number = item.partition(":")
                if not colon:
                    raise ProposalError("bad_field", f"params entry {item!r} is not name:int")
                params[key] = _int(number, f"params {key}")
            body[name] = params
        else:
            body[name] = value
    return body


def propose(kind: str, body: Mapping[str, Any], key: SigningKey, *, chain: str,
            expires_height: int, nonce: int, ts: int) -> Proposal:
    """A new governance record signed by its proposer (``key``)."""
    try:
        record = make_record(chain=chain, submitter=key.public_key, nonce=nonce, ts=ts, kind=kind,
                             origin={"system": "ledger-admin"},
                             body=dict(body, expires_height=expires_height))
        action = parse_action(record)
        return Proposal(sign_record(record, key), action)
    except LedgerError as exc:
        raise ProposalError("bad_field", f"{kind}: {exc}") from None


def add_signature(proposal: Proposal, key: SigningKey) -> Proposal:
    """The proposal with ``key``'s co-signature; a key that signed already
    is refused (``duplicate_signer``) rather than skipped, so that a member
    who signs twice learns it."""
    if key.public_key in proposal.signers:
        raise ProposalError("duplicate_signer",
                            f"key {to_hex(key.public_key)} has signed this proposal already")
    try:
        envelope = cosign(proposal.envelope, [key])
    except LedgerError as exc:
        raise ProposalError("malformed", f"cannot add the signature: {exc}") from None
    return Proposal(envelope, proposal.action)


def check_signer(key: bytes, authority: Authority) -> None:
    if key not in authority.members:
        raise ProposalError("not_a_member",
                            f"key {to_hex(key)} is not a member under {authority.source}")


def check_chain(proposal: Proposal, authority: Authority) -> None:
    chain = proposal.envelope.record.chain
    if authority.chain is not None and chain != authority.chain:
        raise ProposalError("wrong_chain", f"the proposal is for chain {chain!r}, "
                            f"{authority.source} for {authority.chain!r}")


def check_expiry(proposal: Proposal, height: int) -> None:
    """Refused ``expired`` when a block of ``height`` could no longer commit it."""
    if height > proposal.action.expires_height:
        raise ProposalError("expired", f"the proposal expired at height "
                            f"{proposal.action.expires_height}; the chain is at {height}")


def counted_signers(proposal: Proposal, authority: Authority) -> list[bytes]:
    """The distinct signers that are members under ``authority``."""
    return [k for k in dict.fromkeys(proposal.signers) if k in authority.members]


# --------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------

def from_json(doc: Any, source: str) -> Proposal:
    """A proposal from its file's document; every signature is verified."""
    if not isinstance(doc, dict) or doc.get("format") != PROPOSAL_FORMAT:
        raise ProposalError("malformed", f"{source} is not a proposal file "
                            f"(format {PROPOSAL_FORMAT!r})")
    try:
        envelope = decode_envelope(from_b64(doc.get("envelope"), what="envelope"), cosigs=True)
        if not envelope.record.kind.startswith(GOV_PREFIX):
            raise ProposalError("malformed", f"{source}: kind {envelope.record.kind!r} is not "
                                "a governance action")
        action = parse_action(envelope.record)
        verify_signatures(envelope)
    except LedgerError as exc:
        raise ProposalError("malformed", f"{source}: {exc.code}: {exc}") from None
    return Proposal(envelope, action)


def read_proposal(path: Path) -> Proposal:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_PROPOSAL_BYTES + 1)
    except OSError as exc:
        raise ProposalError("malformed", f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_PROPOSAL_BYTES:
        raise ProposalError("malformed", f"{path} is larger than a proposal file can be")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProposalError("malformed", f"{path} is not JSON") from None
    return from_json(doc, str(path))


def write_proposal(path: Path, proposal: Proposal, *, overwrite: bool) -> None:
    """Write atomically (a reader never sees half a file); a new proposal
    never replaces an existing file."""
    text = json.dumps(proposal.to_json(), indent=2) + "\n"
    if not overwrite and path.exists():
        raise ProposalError("exists", f"{path} exists; choose another --out")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=".proposal-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ProposalError("unwritable", f"cannot write {path}: {exc.strerror or exc}") from None


__all__ = ["Authority", "PROPOSAL_FORMAT", "Proposal", "ProposalError",
           "add_signature", "check_chain", "check_expiry", "check_signer", "counted_signers",
           "from_json", "json_body", "normalise_kind", "parse_fields", "propose", "read_proposal",
           "write_proposal"]
