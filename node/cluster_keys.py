"""``ledger-cluster keygen`` and ``ledger-cluster genesis`` (PROTOCOL §7, §9.1).

Keys are made where they live: ``keygen`` writes the private key file (0600)
and a public file, and only the public file leaves the machine.  ``genesis``
assembles the genesis document from public files alone and refuses a private
key file, so a key never has to be copied to be listed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import click

from ledger.crypto import SigningKey
from ledger.encoding import from_hex
from ledger.errors import BadEncoding, GenesisError
from ledger.genesis import parse_genesis
from ledger.keys import write_key_file

from .tls_certs import load_or_make_ca, make_node_cert

PUBLIC_SUFFIX = ".pub.json"


class PublicFileError(ValueError):
    """A public key file is missing, malformed, or is a private key file."""


def public_doc(name: str, key: SigningKey) -> dict[str, str]:
    return {"name": name, "pubkey": key.public_key.hex()}


def keygen(name: str, out: Path) -> tuple[Path, Path]:
    """Write ``out/NAME.json`` (private, 0600) and ``out/NAME.pub.json``;
    refuses to overwrite either."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad key name {name!r}")
    private, public = out / f"{name}.json", out / f"{name}{PUBLIC_SUFFIX}"
    for path in (private, public):
        if path.exists():
            raise FileExistsError(f"{path} exists; a key is never overwritten")
    key = SigningKey.generate()
    write_key_file(private, name, key)
    fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(public_doc(name, key), indent=2) + "\n")
    return private, public


def read_public(path: str | Path) -> tuple[str, str]:
    """``(name, pubkey hex)`` of a public file; a private key file is refused."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PublicFileError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PublicFileError(f"{path} is not JSON: {exc}") from None
    if isinstance(doc, dict) and "seed" in doc:
        raise PublicFileError(f"{path} is a private key file: pass its {PUBLIC_SUFFIX} file")
    if not isinstance(doc, dict) or set(doc) != {"name", "pubkey"} \
            or not isinstance(doc["name"], str):
        raise PublicFileError(f"{path} needs exactly name and pubkey")
    try:
        from_hex(doc["pubkey"], length=32, what="pubkey")
    except BadEncoding as exc:
        raise PublicFileError(f"{path}: {exc}") from None
    return doc["name"], doc["pubkey"]


def assemble_genesis(
    chain: str,
    validators: Sequence[str],
    members: Sequence[str] = (),
    submitters: Sequence[str] = (),
    threshold: int | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The genesis document from public files: ``validators`` as
    ``PATH[@HOST:PORT]``, ``members`` as ``PATH``, ``submitters`` as
    ``PATH:ROLE[,ROLE...]``.  Checked by :func:`parse_genesis` before it is
    returned."""
    doc: dict[str, Any] = {"chain": chain, "validators": [], "submitters": []}
    for spec in validators:
        path, _, address = spec.rpartition("@") if "@" in spec else (spec, "", "")
        name, pubkey = read_public(path)
        doc["validators"].append({"name": name, "pubkey": pubkey, "address": address})
    for spec in submitters:
        path, sep, roles = spec.rpartition(":")
        if not sep or not roles:
            raise PublicFileError(f"submitter {spec!r} is not PATH:ROLE[,ROLE...]")
        name, pubkey = read_public(path)
        doc["submitters"].append({"name": name, "pubkey": pubkey,
                                  "roles": sorted(set(roles.split(",")))})
    if members:
        doc["members"] = [dict(zip(("name", "pubkey"), read_public(p))) for p in members]
    if threshold is not None:
        doc["governance_threshold"] = threshold
    from node.cluster import DEFAULT_PARAMS  # here: node.cluster registers these commands

    doc["params"] = dict(DEFAULT_PARAMS, **(params or {}))
    parse_genesis(doc)  # refuse now what every node would refuse later
    return doc


@click.command("keygen")
@click.option("--name", required=True, help="the key's name (an organisation, node or service)")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="directory for NAME.json (private, 0600) and NAME.pub.json")
@click.option("--tls-host", "tls_hosts", multiple=True, metavar="HOST",
              help="also write a TLS certificate for HOST (repeatable; the host of the node's "
                   "genesis address first): OUT/NAME.pem and OUT/NAME.key (0600)")
@click.option("--ca", "ca_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="with --tls-host: the directory of the CA that signs it (ca.pem, ca.key), "
                   "made there if absent; default OUT/ca")
def keygen_command(name: str, out: Path, tls_hosts: tuple[str, ...],
                   ca_dir: Path | None) -> None:
    """Make a key where it will live; only NAME.pub.json leaves this machine."""
    if ca_dir is not None and not tls_hosts:
        raise click.UsageError("--ca only applies with --tls-host")
    try:
        private, public = keygen(name, out)
    except (ValueError, FileExistsError) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"wrote {private} (private, 0600) and {public} (public: share this one)")
    if tls_hosts:
        ca = load_or_make_ca(ca_dir or out / "ca")
        cert, key = make_node_cert(ca, out, name, list(tls_hosts))
        click.echo(f"wrote {cert} (TLS certificate for {', '.join(tls_hosts)}) and {key} "
                   f"(private, 0600), signed by {(ca_dir or out / 'ca') / 'ca.pem'}")


@click.command("genesis")
@click.option("--chain", required=True, help="the chain id (1..64 characters)")
@click.option("--validator", "validators", multiple=True, required=True,
              help="PUB[@HOST:PORT]: a validator's public file and address, in index order")
@click.option("--member", "members", multiple=True,
              help="PUB: a member's (an organisation administrator's) public file")
@click.option("--submitter", "submitters", multiple=True,
              help="PUB:ROLE[,ROLE...]: a submitter's public file and roles")
@click.option("--threshold", type=int, default=None,
              help="members needed for a governance action (default: a strict majority)")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def genesis_command(chain: str, validators: tuple[str, ...], members: tuple[str, ...],
                    submitters: tuple[str, ...], threshold: int | None, out: Path) -> None:
    """Assemble genesis.json from public files only."""
    if out.exists():
        raise click.UsageError(f"{out} exists; write the genesis to a new file")
    try:
        doc = assemble_genesis(chain, validators, members, submitters, threshold)
    except (PublicFileError, GenesisError) as exc:
        raise click.UsageError(str(exc)) from None
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    click.echo(f"wrote {out}: chain {chain!r}, {len(validators)} validators, "
               f"{len(members)} members, {len(submitters)} submitters")
