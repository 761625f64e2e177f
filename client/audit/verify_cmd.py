"""``ledger-audit verify BUNDLE.json --genesis GENESIS.json [--json]``.

Checks a PROTOCOL §5 proof bundle offline, with nothing but the genesis file
(:func:`ledger.verify.verify_bundle`), with its verdict proof (§10.11) when
it carries one.  Exit 0, a one-line summary and the verified verdict when
valid; exit 1 naming the failed step when not (a bad verdict proof too);
exit 2 when an input file is unreadable, not JSON, or the genesis is
malformed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.text import Text

from ledger.errors import VerificationError
from ledger.verdicts import Status, verdict_lines
from ledger.verify import VerifiedBundle, verify_bundle
from ledger.verify_verdicts import VerifiedVerdict

from .common import console, fail_invalid, iso8601_ms, load_genesis_file, print_json, read_json
from .show import fingerprint, labels, untrusted, validators_ref


def summary(verified: VerifiedBundle, genesis_sha256: str | None = None) -> dict[str, Any]:
    """What a valid bundle proves, as JSON.  ``submitter`` is the name the
    genesis file gives the key (a label, not certified by the chain);
    ``submitter_pubkey`` and ``certified_by`` (validator indices) are."""
    record = verified.envelope.record
    doc: dict[str, Any] = {
        "valid": True,
        "record_id": verified.record_id.hex(),
        "chain": verified.header.chain,
        "submitter": verified.submitter_name,
        "submitter_pubkey": record.submitter.hex(),
        "kind": record.kind,
        "height": verified.height,
        "block_hash": verified.header.hash.hex(),
        "block_time": iso8601_ms(verified.header.time),
        "leaf_index": verified.leaf_index,
        "log_size": verified.header.log_size,
        "signers": len(verified.certificate.signatures),
        "certified_by": [v for v, _ in verified.certificate.signatures],
    }
    # PROTOCOL §10.11: what the bundle proves about the record's verdict (null: nothing)
    doc["verdict"] = None if verified.verdict is None else verdict_doc(verified.verdict)
    if genesis_sha256 is not None:
        doc["genesis_sha256"] = genesis_sha256
    return doc


def verdict_doc(found: VerifiedVerdict) -> dict[str, Any]:
    """The verified verdict as JSON; ``proven_by`` says how: ``verdict_root``
    (its entry under the header's root) or ``header_version_1`` (a block
    that commits no verdicts: allow, policy 0)."""
    doc = found.to_json()
    doc["proven_by"] = "verdict_root" if found.committed else "header_version_1"
    return doc


def verdict_text(verified: VerifiedBundle) -> Text:
    """One line: the verified verdict and status, or that none is proven."""
    found = verified.verdict
    if found is None:
        return Text("  verdict: not proven by this bundle (no verdict proof, or a bundle "
                    "against a later block; GET /v1/records/{id} gives the node's word)",
                    style="dim")
    where = (f"its entry {found.index} under the verdict root of block {verified.height}"
             if found.committed else f"block {verified.height} is version 1: no policy")
    final = (f" at block {found.transition_height} by a proven transition"
             if found.transition is not None else
             " as of this bundle (a later decision is not excluded)"
             if found.status in (Status.HELD, Status.REVIEW) else "")
    return Text.assemble("  verdict: ", untrusted(verdict_lines(found.verdict)),
                         f", status {found.status.value}{final} (verified: {where})")


@click.command("verify")
@click.argument("bundle_path", metavar="BUNDLE.json",
                type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--genesis", "genesis_path", metavar="GENESIS.json", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The chain's genesis file: the only thing trusted.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(bundle_path: Path, genesis_path: Path, as_json: bool) -> None:
    """Verify a proof bundle offline against the genesis file.

    Checks the envelope's canonical encoding, record id, chain, submitter
    role and signature, the RFC 9162 inclusion of the envelope in the
    block's log, the header's validator set, and the quorum certificate;
    then the record's verdict entry and its path to the header's verdict
    root, and the transition that decided it, when the bundle carries them.
    Prints the verified verdict (outcome, rule, policy version, status).
    BUNDLE.json may be '-' for standard input.
    """
    genesis_file = load_genesis_file(genesis_path)
    genesis = genesis_file.genesis
    bundle = read_json(bundle_path, "'BUNDLE.json'")
    try:
        verified = verify_bundle(bundle, genesis)
    except VerificationError as exc:
        fail_invalid(exc, as_json)
    doc = summary(verified, genesis_file.sha256)
    if as_json:
        print_json(doc)
        return
    submitter = verified.envelope.record.submitter
    out = console()
    out.print(Text.assemble(
        ("VALID", "bold green"),
        f" record {doc['record_id']} by submitter key {fingerprint(submitter)} "
        f"at height {doc['height']} ({doc['block_time']}), certified by validators "
        f"{validators_ref(verified.epoch or genesis, doc['certified_by'])}"))
    out.print(verdict_text(verified))
    for line in labels(genesis, genesis_file.sha256, validators=doc["certified_by"], submitters=[submitter],
                       epoch=verified.epoch):
        out.print(line)
