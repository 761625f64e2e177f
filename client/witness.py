"""``ledger-witness``: a C2SP witness of one chain (docs/protocol.md §13).

``cosign`` fetches a recent checkpoint from a node, checks that a quorum of
the validators in force at its height signed it (derived from genesis,
PROTOCOL §9.7), checks that the log grew from the last
checkpoint this witness cosigned (an RFC 9162 consistency proof from the
node, verified here; the same size needs the same root), cosigns it
(tlog-cosignature/v1) and submits the cosignature to the node.  The last
cosigned checkpoint is kept in a state file, written only after the node
accepted the cosignature.  ``keygen`` makes a witness key and prints the
verifier key operators put in ``[witness] keys``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from ledger import note, witness
from ledger.crypto import SigningKey, digest_equal
from ledger.encoding import from_hex
from ledger.errors import VerificationError
from ledger.genesis import Genesis, load_genesis
from ledger.keys import load_key_file, write_key_file
from ledger.merkle import verify_consistency

from .errors import LedgerAPIError
from .sdk import LedgerClient

LOOK_BACK = 16  # heights below the tip tried for a checkpoint carrying a quorum


class WitnessError(Exception):
    """The checkpoint is not one this witness may cosign."""


def read_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not {"origin", "size", "root", "height"} <= set(doc):
        raise WitnessError(f"{path} is not a witness state file")
    return doc


def write_state(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


async def latest_checkpoint(client: LedgerClient, genesis: Genesis) -> tuple[int, note.Checkpoint]:
    """The highest checkpoint among the last heights that carries a quorum
    of the validators in force at its height, verified: that set is derived
    from genesis through the block's epoch proof (PROTOCOL §9.7; genesis's
    set until a validator change), and the note must state the certified
    block's log."""
    from .audit.remote import fetch_head

    origin = note.origin(genesis.chain)
    tip = int((await client.status())["height"])
    for height in range(tip, max(0, tip - LOOK_BACK), -1):
        try:
            body = await client._request("GET", f"/v1/checkpoints/{height}", raw=True)
        except LedgerAPIError as exc:
            if exc.code == "not_found":
                continue
            raise
        head = await fetch_head(client, height, genesis)
        epoch = head.verify(genesis)
        keys = note.verifiers(origin, [v.pubkey for v in epoch.validators])
        checkpoint = note.open_note(body, keys, epoch.quorum)
        if checkpoint.origin != origin:
            raise WitnessError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
        if checkpoint.log_size != head.header.log_size \
                or not digest_equal(checkpoint.log_root, head.header.log_root):
            raise WitnessError(f"the checkpoint of height {height} does not state its "
                               "certified block's log")
        return height, checkpoint
    raise WitnessError(f"no checkpoint with a quorum in the last {LOOK_BACK} heights")


async def check_growth(client: LedgerClient, state: dict[str, Any] | None,
                       checkpoint: note.Checkpoint) -> None:
    """The log of ``checkpoint`` extends the one last cosigned."""
    if state is None:
        return
    old_size, old_root = int(state["size"]), from_hex(state["root"], length=32)
    if state["origin"] != checkpoint.origin:
        raise WitnessError("the state file is of another log")
    if checkpoint.log_size < old_size:
        raise WitnessError(f"the log shrank: size {checkpoint.log_size}, last cosigned {old_size}")
    if checkpoint.log_size == old_size:
        if not digest_equal(checkpoint.log_root, old_root):
            raise WitnessError(f"two roots for log size {old_size}: a fork")
        return
    doc = await client.consistency(old_size, checkpoint.log_size)
    path = [from_hex(h, length=32) for h in doc["path"]]
    verify_consistency(old_size, checkpoint.log_size, old_root, checkpoint.log_root, path)


async def cosign_once(client: LedgerClient, genesis: Genesis, key: SigningKey, name: str,
                      state_path: Path, now: int | None = None) -> dict[str, Any]:
    """Verify, cosign and submit the latest checkpoint; the node's answer."""
    state = read_state(state_path)
    height, checkpoint = await latest_checkpoint(client, genesis)
    await check_growth(client, state, checkpoint)
    line = witness.cosign(key, name, checkpoint.text, int(time.time()) if now is None else now)
    answer: dict[str, Any] = await client._request(
        "POST", f"/v1/checkpoints/{height}/cosignatures", data=line.encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"})
    write_state(state_path, {"origin": checkpoint.origin, "size": checkpoint.log_size,
                             "root": checkpoint.log_root.hex(), "height": height})
    return {**answer, "log_size": checkpoint.log_size}


@click.group()
@click.version_option(package_name="auditledger", prog_name="ledger-witness")
def main() -> None:
    """A C2SP witness of an auditledger chain (docs/protocol.md §13)."""


@main.command()
@click.argument("name")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key file to write (mode 0600).")
def keygen(name: str, out: Path) -> None:
    """Make a witness key NAME (a schema-less URL such as
    witness.example.com/w1); prints its verifier key for [witness] keys."""
    key = SigningKey.generate()
    try:
        w = witness.Witness(name, key.public_key)
        witness.parse_vkey(w.vkey)  # refuses a name the format cannot carry
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    write_key_file(out, name, key)
    click.echo(w.vkey)


@main.command()
@click.option("--node", "nodes", multiple=True, required=True, help="Node API base URL.")
@click.option("--genesis", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The witness key file (ledger-witness keygen).")
@click.option("--state", "state_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Where the last cosigned checkpoint is kept.")
@click.option("--auth-key", "auth_key", type=click.Path(exists=True, dir_okay=False),
              help="Key file registered with the nodes, to sign requests (protocol §11).")
@click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False),
              help="PEM trust roots for https nodes.")
def cosign(nodes: tuple[str, ...], genesis: str, key_file: str, state_file: Path,
           auth_key: str | None, ca_file: str | None) -> None:
    """Verify the latest checkpoint against genesis and the last one
    cosigned, cosign it and submit the cosignature; exit 1 if refused."""
    g = load_genesis(genesis)
    kf = load_key_file(key_file)

    async def run() -> dict[str, Any]:
        async with LedgerClient(list(nodes), auth_key_file=auth_key, ca_file=ca_file,
                                retries=1) as client:
            return await cosign_once(client, g, kf.key, kf.name, state_file)
    try:
        click.echo(json.dumps(asyncio.run(run())))
    except (WitnessError, LedgerAPIError, VerificationError) as exc:
        click.echo(f"ledger-witness: not cosigned: {exc}", err=True)
        sys.exit(1)
