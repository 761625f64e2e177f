"""``ledger-audit export ID``: a record's proof, verified, written for others.

``--format json`` writes the PROTOCOL §5 bundle; ``--format tlog-proof``
writes the record's inclusion in the node's latest cosigned C2SP checkpoint
(PROTOCOL §6.1), which Go's ``golang.org/x/mod/sumdb/note`` and ``tlog``
check without our code.  Either is verified against the genesis file before
it is written: the node is not trusted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.text import Text

from ledger import note, witness
from ledger.checkpoint import CertifiedHead
from ledger.crypto import digest_equal
from ledger.encoding import from_b64
from ledger.verify import verify_bundle

from ..sdk import LedgerClient
from .common import console, load_genesis_file, print_json
from .remote import fetch_head
from .remote_cmds import _run, genesis_option, json_option, node_option


@click.command("export")
@click.argument("record_id", metavar="ID")
@genesis_option
@node_option
@click.option("--format", "fmt", type=click.Choice(["json", "tlog-proof"]), default="json",
              show_default=True, help="The PROTOCOL §5 bundle, or a c2sp.org/tlog-proof@v1 file.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
@click.option("--witness", "witness_keys", multiple=True, metavar="VKEY",
              help="A witness verifier key you trust (PROTOCOL §13); repeatable.")
@click.option("--require-witnesses", type=click.IntRange(min=0), default=0, show_default=True,
              help="With tlog-proof: refuse unless this many of the --witness keys cosigned "
                   "the checkpoint.")
@json_option
def export(record_id: str, genesis_path: Path, nodes: tuple[str, ...], fmt: str,
           output: Path | None, witness_keys: tuple[str, ...], require_witnesses: int,
           as_json: bool) -> None:
    """Fetch a record's proof, verify it against the genesis file, write it."""
    genesis = load_genesis_file(genesis_path).genesis
    try:
        trusted = [witness.parse_vkey(k) for k in witness_keys]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--witness") from None
    if require_witnesses and fmt != "tlog-proof":
        raise click.UsageError("--require-witnesses needs --format tlog-proof (a checkpoint)")
    if require_witnesses > len(trusted):
        raise click.UsageError(f"--require-witnesses {require_witnesses} with "
                               f"{len(trusted)} --witness keys")

    async def work(client: LedgerClient) -> tuple[bytes, str]:
        bundle = await client.proof(record_id)
        verify_bundle(bundle, genesis)
        if fmt == "json":
            return json.dumps(bundle, indent=2).encode() + b"\n", f"height {bundle['height']}"
        data = await client.tlog_proof(record_id)
        origin = note.origin(genesis.chain)
        head = await _checkpoint_head(client, note.parse_tlog_proof(data).note)
        epoch = head.verify(genesis)  # genesis's set, or the one its epoch proof derives
        keys = note.verifiers(origin, [v.pubkey for v in epoch.validators])
        proof, cp = note.verify_tlog_proof(data, from_b64(bundle["envelope"], what="envelope"),
                                           origin, keys, epoch.quorum)
        if cp.log_size != head.header.log_size \
                or not digest_equal(cp.log_root, head.header.log_root):
            raise note.NoteError(f"the checkpoint does not state block {head.height}'s log")
        if proof.index != bundle["leaf_index"]:
            raise note.NoteError(f"tlog-proof index {proof.index}; the record is leaf "
                                 f"{bundle['leaf_index']}")
        cosigned = witness.cosigners(data, trusted, cp.text)
        if len(cosigned) < require_witnesses:
            raise note.NoteError(f"{len(cosigned)} of the trusted witnesses cosigned the "
                                 f"checkpoint; {require_witnesses} are required")
        names = "".join(f", witness {c.witness.name}" for c in cosigned)
        return data, (f"checkpoint size {cp.log_size} signed by validators "
                      f"{', '.join(map(str, cp.signers))}{names}")

    async def _checkpoint_head(client: LedgerClient, signed: bytes) -> CertifiedHead:
        """The certified head (with its epoch proof) of the block whose log
        the checkpoint states: validators sign a block's checkpoint with
        their keys in force at its height (PROTOCOL §6, §9.9).  Blocks hold
        at least one record, so one block has that log size; found by
        bisection over the node's blocks, then checked against the note."""
        size = note.parse_text(signed[:signed.find(b"\n\n") + 1])[1]
        low, high = 1, int((await client.status())["height"])
        while low < high:
            mid = (low + high) // 2
            if int((await client.block(mid))["fields"]["log_size"]) < size:
                low = mid + 1
            else:
                high = mid
        return await fetch_head(client, low, genesis)

    data, what = _run(nodes, as_json, work)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    output.write_bytes(data)
    if as_json:
        print_json({"valid": True, "format": fmt, "output": str(output), "proof": what})
    else:
        console().print(Text.assemble(("VERIFIED", "bold green"),
                                      f" {fmt} written to {output} ({what})"))
