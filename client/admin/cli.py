"""``ledger-admin``: governance proposals signed by members (PROTOCOL §9.3).

A proposal is made on one host (``propose``), carried as a file to each
member in turn, who adds a signature with their own key (``sign``, offline),
inspected at any point (``show``) and sent to a node once enough members
signed (``submit``).  Only the proposal file travels; keys stay where they
live.

Exit status: 0 done, 1 the node refused the proposal for good (its code is
printed), 2 unusable input: a malformed or unreadable file, a duplicate
signer, a key that is not a member, an expired proposal, a proposal for
another chain, an unreachable node.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.text import Text

from ledger.encoding import to_hex
from ledger.errors import LedgerError
from ledger.keys import KeyFile, KeyFileError, load_key_file

from ..audit.common import EXIT_USAGE, console, load_genesis_file, print_json, read_json
from ..audit.show import fingerprint, untrusted
from ..errors import LedgerClientError
from ..sdk import LedgerClient
from .proposal import (
    Authority,
    Proposal,
    ProposalError,
    add_signature,
    check_chain,
    check_expiry,
    check_signer,
    counted_signers,
    json_body,
    normalise_kind,
    parse_fields,
    propose,
    read_proposal,
    write_proposal,
)

EXIT_REFUSED = 1

key_option = click.option("--key", "key_path", required=True, metavar="KEY.json",
                          type=click.Path(dir_okay=False, path_type=Path),
                          help="Your member key file (stays on this host).")
genesis_option = click.option("--genesis", "genesis_path", metavar="GENESIS.json",
                              type=click.Path(dir_okay=False, path_type=Path),
                              help="The chain's genesis file: its chain id, members and threshold.")
membership_option = click.option(
    "--membership", "membership_path", metavar="MEMBERSHIP.json",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The members and threshold in force now (a node's GET /v1/membership answer, saved); "
         "overrides the genesis file's.")
height_option = click.option("--height", type=click.IntRange(min=0), default=None,
                             help="The chain's height now: refuse a proposal that has expired.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def refuse(exc: ProposalError | KeyFileError | LedgerClientError, as_json: bool = False) -> NoReturn:
    code = getattr(exc, "code", "key_file")
    if as_json:
        print_json({"ok": False, "error": code, "message": str(exc)})
    else:
        click.echo(f"ledger-admin: refused ({code}): {untrusted(str(exc)).plain}", err=True)
    raise SystemExit(EXIT_USAGE)


def _key(path: Path) -> KeyFile:
    try:
        return load_key_file(path)
    except KeyFileError as exc:
        refuse(exc)


def _authority(genesis_path: Path | None, membership_path: Path | None) -> Authority | None:
    chain = None
    authority = None
    if genesis_path is not None:
        genesis = load_genesis_file(genesis_path).genesis
        authority = Authority.from_genesis(genesis, f"genesis file {genesis_path}")
        chain = genesis.chain
    if membership_path is not None:
        doc = read_json(membership_path, "'--membership'")
        try:
            authority = Authority.from_membership(doc, f"membership file {membership_path}", chain)
        except ProposalError as exc:
            refuse(exc)
    return authority


def _read(path: Path) -> Proposal:
    try:
        return read_proposal(path)
    except ProposalError as exc:
        refuse(exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="auditledger", prog_name="ledger-admin")
def main() -> None:
    """Governance proposals: propose, sign (offline, one member at a time), show, submit.

    Exit status: 0 done, 1 refused by the node, 2 unusable input (malformed
    file, duplicate signer, non-member key, expired proposal, wrong chain,
    unreachable node).
    """


@main.command("propose")
@click.argument("action")
@click.argument("fields", nargs=-1)
@key_option
@genesis_option
@membership_option
@click.option("--expires-height", type=click.IntRange(min=0), required=True,
              help="The last height whose block may commit the proposal.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the proposal file (never overwritten).")
@click.option("--nonce", type=click.IntRange(min=0, max=2**64 - 1), default=None,
              help="The record's nonce (default: random).")
def propose_cmd(action: str, fields: tuple[str, ...], key_path: Path, genesis_path: Path | None,
                membership_path: Path | None, expires_height: int, out: Path,
                nonce: int | None) -> None:
    """Write a new proposal of ACTION (e.g. validator.add) with FIELDS (NAME=VALUE), signed by you.

    Fields: name, address, scope, value as text; pubkey and new_pubkey as 64
    hex digits or a public key file; roles comma-separated; threshold an
    integer; params as name:int,name:int; policy=RULES.yaml a policy file
    (action policy-set); list=NAME entries=FILE one entry per line (actions
    list-add, list-remove).  The genesis file (required)
    names the chain; you must be one of its members (or of --membership's).
    """
    if genesis_path is None:
        raise click.UsageError("--genesis is required (it names the chain)")
    key = _key(key_path)
    authority = _authority(genesis_path, membership_path)
    assert authority is not None and authority.chain is not None
    try:
        check_signer(key.pubkey, authority)
        proposal = propose(normalise_kind(action), parse_fields(fields), key.key,
                           chain=authority.chain, expires_height=expires_height,
                           nonce=secrets.randbits(63) if nonce is None else nonce,
                           ts=int(time.time() * 1000))
        write_proposal(out, proposal, overwrite=False)
    except ProposalError as exc:
        refuse(exc)
    _print_summary(proposal, authority)


@main.command("sign")
@click.argument("path", metavar="PROPOSAL", type=click.Path(dir_okay=False, path_type=Path))
@key_option
@genesis_option
@membership_option
@height_option
def sign_cmd(path: Path, key_path: Path, genesis_path: Path | None, membership_path: Path | None,
             height: int | None) -> None:
    """Add your co-signature to PROPOSAL (rewritten in place).

    Needs --genesis or --membership to check that you are a member and the
    proposal is for that chain.
    """
    authority = _authority(genesis_path, membership_path)
    if authority is None:
        raise click.UsageError("give --genesis or --membership")
    key = _key(key_path)
    proposal = _read(path)
    try:
        check_chain(proposal, authority)
        check_signer(key.pubkey, authority)
        if height is not None:
            check_expiry(proposal, height)
        proposal = add_signature(proposal, key.key)
        write_proposal(path, proposal, overwrite=True)
    except ProposalError as exc:
        refuse(exc)
    _print_summary(proposal, authority)


def _show_doc(proposal: Proposal, authority: Authority | None, height: int | None) -> dict[str, Any]:
    record = proposal.envelope.record
    doc: dict[str, Any] = {
        "record_id": to_hex(proposal.envelope.id), "chain": record.chain, "kind": record.kind,
        "body": json_body(proposal.action), "expires_height": proposal.action.expires_height,
        "proposer": to_hex(record.submitter),
        "signers": [{"pubkey": to_hex(k),
                     "member": authority.members.get(k) if authority else None}
                    for k in proposal.signers],
    }
    if authority is not None:
        counted = counted_signers(proposal, authority)
        doc.update(threshold=authority.threshold, member_signatures=len(counted),
                   threshold_met=len(counted) >= authority.threshold,
                   wrong_chain=authority.chain is not None and record.chain != authority.chain,
                   judged_by=authority.source)
    if height is not None:
        doc.update(height=height, expired=height > proposal.action.expires_height)
    return doc


def _print_summary(proposal: Proposal, authority: Authority | None, height: int | None = None) -> None:
    doc = _show_doc(proposal, authority, height)
    out = console()
    out.print(Text.assemble(("proposal ", "bold"), doc["record_id"], " ", untrusted(doc["kind"], "bold"),
                            " on chain ", untrusted(doc["chain"])))
    for name, value in doc["body"].items():
        out.print(Text.assemble("  ", untrusted(name), " = ", untrusted(value)))
    out.print(f"  expires after height {doc['expires_height']}"
              + (f" (EXPIRED: the chain is at {height})" if doc.get("expired") else ""))
    for i, signer in enumerate(doc["signers"]):
        role = "proposer" if i == 0 else "co-signer"
        who = Text.assemble("member ", untrusted(signer["member"])) if signer["member"] is not None \
            else Text("not a member" if authority else "membership unknown", style="yellow")
        out.print(Text.assemble(f"  {role} key {fingerprint(bytes.fromhex(signer['pubkey']))}: ", who))
    if authority is None:
        out.print("  threshold: unknown (give --genesis or --membership)")
        return
    if doc["wrong_chain"]:
        out.print(Text.assemble(("  WRONG CHAIN", "bold red"), ": ", untrusted(authority.source),
                                " is for chain ", untrusted(authority.chain or "")))
    verdict = ("threshold met", "bold green") if doc["threshold_met"] else ("threshold not met", "bold yellow")
    out.print(Text.assemble("  ", verdict, f": {doc['member_signatures']} of {doc['threshold']} "
                            "member signatures under ", untrusted(authority.source)))


@main.command("show")
@click.argument("path", metavar="PROPOSAL", type=click.Path(dir_okay=False, path_type=Path))
@genesis_option
@membership_option
@height_option
@json_option
def show_cmd(path: Path, genesis_path: Path | None, membership_path: Path | None,
             height: int | None, as_json: bool) -> None:
    """Print PROPOSAL's action, fields, signers, expiry, and whether the threshold is met."""
    authority = _authority(genesis_path, membership_path)
    proposal = _read(path)
    if as_json:
        print_json(_show_doc(proposal, authority, height))
    else:
        _print_summary(proposal, authority, height)


@main.command("submit")
@click.argument("path", metavar="PROPOSAL", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--node", "nodes", metavar="URL", multiple=True, required=True,
              help="Node base URL (repeat for failover).")
@click.option("--key", "key_path", metavar="KEY.json", envvar="LEDGER_KEY_FILE",
              show_envvar=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key file that signs the request (protocol §11): your member key, or a "
                   "key with the submit role. Nodes refuse unsigned requests unless they run "
                   "with auth.insecure_open.")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              envvar="LEDGER_CA_FILE", show_envvar=True,
              help="PEM trust roots for https:// nodes (a cluster's own CA, e.g. tls/ca.pem).")
@json_option
def submit_cmd(path: Path, nodes: tuple[str, ...], key_path: Path | None, ca_file: Path | None,
               as_json: bool) -> None:
    """Send PROPOSAL to a node and print its answer.

    The chain's height is asked first: an expired proposal is not sent
    (exit 2).  A refusal for good prints the node's code (exit 1).
    """
    proposal = _read(path)

    async def go() -> dict[str, Any]:
        async with LedgerClient(list(nodes), retries=2 * len(nodes), ca_file=ca_file,
                                auth_key_file=key_path) as client:
            status = await client.status()
            height = status.get("height") if isinstance(status, dict) else None
            if type(height) is int:
                check_expiry(proposal, height + 1)
            (result,) = await client.submit_envelopes([proposal.envelope.envelope_bytes])
            return dict(result)

    try:
        result = asyncio.run(go())
    except (ProposalError, LedgerClientError) as exc:
        refuse(exc, as_json)
    except LedgerError as exc:  # pragma: no cover - submit_envelopes maps these
        refuse(ProposalError(exc.code, str(exc)), as_json)
    record_id = to_hex(proposal.envelope.id)
    if "error" in result:
        if as_json:
            print_json({"ok": False, "record_id": record_id, **result})
        else:
            console().print(Text.assemble(("REFUSED", "bold red"), " ", untrusted(result.get("error")),
                                          ": ", untrusted(result.get("message", ""))))
        raise SystemExit(EXIT_REFUSED)
    if as_json:
        print_json({"ok": True, "record_id": record_id, **result})
    else:
        console().print(Text.assemble(("SUBMITTED", "bold green"), f" {record_id}: ",
                                      untrusted(result.get("status"))))


# An approver's command (PROTOCOL §10.7); its own module, as it signs records.
from .approve_cmd import approve as _approve  # noqa: E402

main.add_command(_approve)
