"""``ledger-audit`` commands that talk to a node: consistency, trace, audit, checkpoint.

The node is never trusted: everything it returns is checked with the pure
verifiers in ``ledger`` against the genesis file, and every text it or a
record carries is printed through :func:`~client.audit.show.untrusted`.
Exit status: 0 valid, 1 invalid (the failed step is named; a fork prints
both certified heads), 2 usage errors, an unreachable node, a node answer
that is not JSON (or nested too deeply to read), or an unusable checkpoint
file.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ledger.checkpoint import CertifiedHead, ForkDetected
from ledger.encoding import from_hex
from ledger.errors import VerificationError
from ledger.genesis import Genesis
from ledger.verdicts import verdict_lines
from ledger.verify import parse_consistency

from ..errors import LedgerClientError
from ..sdk import LedgerClient
from ..trace import DEFAULT_MAX_RECORDS
from .common import (
    EXIT_USAGE,
    GenesisFile,
    console,
    fail_invalid,
    iso8601_ms,
    load_genesis_file,
    print_json,
    read_json,
)
from .remote import (
    DEFAULT_CHECKPOINTS,
    CheckpointFileError,
    CheckpointStore,
    TraceReport,
    answer_field,
    advance_checkpoint,
    audit_chain,
    epoch_proof,
    fetch_head,
    trace_and_verify,
)
from .lineage_dot import FORMATS, RenderError, render, to_dot
from .show import fingerprint, labels, untrusted, validators_ref
from .verify_cmd import verdict_doc

T = TypeVar("T")

_nodes_option = click.option("--node", "nodes", metavar="URL", multiple=True,
                             help="Node base URL, e.g. https://127.0.0.1:7700 (repeat for "
                                  "failover).")
CA_FILE_META = "ledger_audit.ca_file"
KEY_FILE_META = "ledger_audit.key_file"
_key_file_option = click.option(
    "--key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="LEDGER_KEY_FILE", show_envvar=True, expose_value=False,
    callback=lambda ctx, _param, value: ctx.meta.__setitem__(KEY_FILE_META, value),
    help="Key file that signs every request (protocol §11): a key the chain registered "
         "with the audit or read role. Without it only a chain with public_read answers.")
_ca_file_option = click.option(
    "--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="LEDGER_CA_FILE", show_envvar=True, expose_value=False,
    callback=lambda ctx, _param, value: ctx.meta.__setitem__(CA_FILE_META, value),
    help="PEM trust roots for https:// nodes (a cluster's own CA, e.g. tls/ca.pem); "
         "default: the system's roots.")


def node_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--node URL`` (repeatable), ``--ca-file`` and ``--key``."""
    return _nodes_option(_ca_file_option(_key_file_option(f)))
genesis_option = click.option("--genesis", "genesis_path", metavar="GENESIS.json", required=True,
                              type=click.Path(dir_okay=False, path_type=Path),
                              help="The chain's genesis file: the only thing trusted.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
checkpoint_option = click.option(
    "--checkpoint-file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CHECKPOINTS,
    show_default=True, help="Where the last verified head of each chain is kept.")


def _run(nodes: tuple[str, ...], as_json: bool, work: Callable[[LedgerClient], Awaitable[T]]) -> T:
    """Run ``work`` with a read-only client; map failures to the exit contract."""
    if not nodes:
        raise click.UsageError("--node URL is required")

    async def go() -> T:
        ctx = click.get_current_context(silent=True)
        ca_file = ctx.meta.get(CA_FILE_META) if ctx is not None else None
        key_file = ctx.meta.get(KEY_FILE_META) if ctx is not None else None
        async with LedgerClient(list(nodes), retries=2 * len(nodes), ca_file=ca_file,
                                auth_key_file=key_file) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except ForkDetected as exc:
        _report_fork(exc, as_json)
    except VerificationError as exc:
        fail_invalid(exc, as_json)
    except LedgerClientError as exc:
        if as_json:
            print_json({"valid": None, "error": getattr(exc, "code", "client_error"), "message": str(exc)})
        else:
            console().print(Text.assemble(("UNREACHABLE", "bold yellow"), " ", untrusted(exc)))
        click.get_current_context().exit(EXIT_USAGE)
    except CheckpointFileError as exc:
        if as_json:
            print_json({"valid": None, "error": "checkpoint_file", "message": str(exc)})
        else:
            console().print(Text.assemble(("UNUSABLE", "bold yellow"), " ", untrusted(exc)))
        click.get_current_context().exit(EXIT_USAGE)
    raise AssertionError("unreachable")


def _report_fork(exc: ForkDetected, as_json: bool) -> None:
    evidence = exc.evidence()
    if as_json:
        print_json({"valid": False, "step": "fork", "message": str(exc), "evidence": evidence})
    else:
        out = console()
        out.print(Text.assemble(("FORK", "bold red"), " ", untrusted(exc)))
        out.print("Both heads are certified by a quorum of the validators in force at their heights "
                  "(derived from your genesis file); keep them as evidence:")
        print_json(evidence)
    click.get_current_context().exit(1)


def _signers(head_or_cert: Any, genesis: Genesis) -> str:
    """The signers' names from the genesis file, for ``--json``'s
    compatible ``certified_by`` (labels: the chain certifies indices and keys)."""
    return ", ".join(genesis.validators[v].name for v, _ in head_or_cert.signatures if v < genesis.n)


def _signer_indices(cert: Any, genesis: Genesis) -> list[int]:
    return [v for v, _ in cert.signatures if 0 <= v < genesis.n]


def _print_labels(out: Console, genesis_file: GenesisFile, *, validators: Iterable[int] = (),
                  submitters: Iterable[bytes] = (), epoch: Genesis | None = None,
                  epochs: Iterable[tuple[Genesis, Iterable[int]]] = ()) -> None:
    for line in labels(genesis_file.genesis, genesis_file.sha256, validators=validators,
                       submitters=submitters, epoch=epoch, epochs=epochs):
        out.print(line)


def _print_notices(notices: Iterable[str], as_json: bool) -> None:
    """What the checkpoint store did with an old file (to standard error)."""
    for notice in notices:
        click.echo(f"note: {untrusted(notice).plain}", err=True)


# --------------------------------------------------------------------------


@click.command("consistency")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@genesis_option
@node_option
@click.option("--proof", "proof_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Consistency path JSON ({from,to,path}); otherwise fetched from --node.")
@json_option
def consistency(old: str, new: str, genesis_path: Path, nodes: tuple[str, ...],
                proof_path: Path | None, as_json: bool) -> None:
    """Prove block NEW's log extends block OLD's.

    OLD and NEW are block JSON files (as served by GET /v1/blocks/H) or
    heights fetched from --node. Both certificates are checked, then the
    RFC 9162 consistency path between their log sizes.
    """
    genesis = load_genesis_file(genesis_path).genesis
    proof = read_json(proof_path, "'--proof'") if proof_path else None

    def local_head(arg: str) -> CertifiedHead | None:
        if arg.isdigit() or arg == "latest":
            return None
        try:
            return CertifiedHead.from_json(read_json(arg, f"'{arg}'"))
        except VerificationError as exc:
            fail_invalid(exc, as_json)

    heads = [local_head(old), local_head(new)]

    async def work(client: LedgerClient | None) -> tuple[CertifiedHead, CertifiedHead, list[bytes]]:
        resolved = []
        for arg, head in zip((old, new), heads):
            if head is None:
                assert client is not None
                head = await fetch_head(client, arg, genesis)
            elif client is not None and not head.epoch_proof:
                # a head of a later epoch is verified with the proof of its validator set
                head = head.with_epoch_proof(await epoch_proof(client, genesis, head.header))
            resolved.append(head)
        a, b = resolved
        if proof is not None:
            path = list(parse_consistency(proof).path)
        elif a.header.log_size == b.header.log_size:
            path = []
        else:
            assert client is not None
            doc = await client.consistency(a.header.log_size, b.header.log_size)
            path = [from_hex(h, length=32, what="path entry")
                    for h in answer_field(doc, "path", list, "consistency")]
        from ledger.checkpoint import check_extends

        check_extends(genesis, a, b, path)
        return a, b, path

    if nodes:
        a, b, path = _run(nodes, as_json, work)
    elif None in heads or proof is None:
        raise click.UsageError("give --node, or two block files and --proof")
    else:
        try:
            a, b, path = asyncio.run(work(None))
        except ForkDetected as exc:
            _report_fork(exc, as_json)
            return
        except VerificationError as exc:
            fail_invalid(exc, as_json)
    doc = {"valid": True, "old": {"height": a.height, "log_size": a.header.log_size, "hash": a.header.hash.hex()},
           "new": {"height": b.height, "log_size": b.header.log_size, "hash": b.header.hash.hex()},
           "path_length": len(path)}
    if as_json:
        print_json(doc)
    else:
        console().print(Text.assemble(("CONSISTENT", "bold green"),
                                      f" block {a.height} (log {a.header.log_size}) is a prefix of "
                                      f"block {b.height} (log {b.header.log_size}); both certified"))


# --------------------------------------------------------------------------


def _verdict_suffix(verified: Any) -> tuple[Text, ...]:
    """``; verdict deny (rule r, ..., policy version 1), denied`` when the
    hop's bundle proves its verdict (PROTOCOL §10.11), else nothing."""
    found = verified.verdict
    if found is None:
        return ()
    return (Text("; verdict "), untrusted(verdict_lines(found.verdict)),
            Text(f", {found.status.value}"))


def _trace_tree(report: TraceReport, genesis: Genesis) -> Tree:
    def _epoch(hop: Any) -> Genesis:
        # the validator set the hop's certificate indexes refer to
        return hop.verified.epoch or genesis

    def label(rid: str) -> Text:
        hop = report.hops[rid]
        rec = hop.verified.envelope.record
        origin = Text(", ").join(Text.assemble(untrusted(k), "=", untrusted(v)) for k, v in rec.origin.items())
        return Text.assemble(
            untrusted(rec.kind, "bold"), f" {rid[:16]}… by key ", (fingerprint(rec.submitter), "cyan"),
            " origin(", origin, f") block {hop.verified.height} at {iso8601_ms(hop.verified.header.time)} "
            f"certified by validators {validators_ref(_epoch(hop), _signer_indices(hop.verified.certificate, _epoch(hop)))}",
            *_verdict_suffix(hop.verified))

    def grow(node: Tree, rid: str, seen: frozenset[str]) -> None:
        for parent in report.hops[rid].parents:
            if parent in report.hops and parent not in seen:
                grow(node.add(label(parent)), parent, seen | {parent})
            elif parent not in report.hops:
                why = "not fetched" if report.stopped else "beyond depth"
                node.add(Text(f"{parent[:16]}… ({why})", style="dim"))
        trip = report.trips.get(rid)
        if trip is not None:
            e = trip.entry
            branch = node.add(Text.assemble(
                ("breaker ", "bold"), untrusted(f"{e.scope}:{e.value}"),
                f" opened in block {trip.header.height} at {iso8601_ms(trip.header.time)} "
                f"(entry {trip.index}, proven) by {len(e.records)} alerts:"))
            for alert in (a.hex() for a in e.records):
                if alert in report.hops and alert not in seen:
                    grow(branch.add(label(alert)), alert, seen | {alert})

    tree = Tree(label(report.root))
    grow(tree, report.root, frozenset({report.root}))
    return tree


@click.command("trace")
@click.argument("record_id", metavar="ID")
@genesis_option
@node_option
@click.option("--depth", type=click.IntRange(min=0), default=None, help="How many generations of parents.")
@click.option("--max-records", type=click.IntRange(min=1), default=DEFAULT_MAX_RECORDS, show_default=True,
              help="Stop fetching ancestors after this many records (the output says so).")
@json_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: a tree; dot: a Graphviz graph; svg, png: that graph drawn by Graphviz.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the dot, svg or png to this file instead of standard output.")
def trace(record_id: str, genesis_path: Path, nodes: tuple[str, ...], depth: int | None, max_records: int,
          as_json: bool, fmt: str, output: Path | None) -> None:
    """Walk a record back through its parents, verifying every hop's proof."""
    if as_json and fmt != "text":
        raise click.UsageError("--json and --format dot|svg|png exclude each other")
    if output is not None and fmt == "text":
        raise click.UsageError("--output needs --format dot, svg or png")
    genesis_file = load_genesis_file(genesis_path)
    genesis = genesis_file.genesis
    report = _run(nodes, as_json,
                  lambda c: trace_and_verify(c, record_id.lower(), genesis, depth, max_records))
    if fmt != "text":
        _write_picture(report, genesis, fmt, output)
        return
    if as_json:
        print_json({"valid": True, "record": report.root, "children": report.children,
                    "missing_beyond_depth": report.missing, "genesis_sha256": genesis_file.sha256,
                    "stopped_at_max_records": report.stopped,
                    "more_children": report.more_children,
                    "hops": [{"id": rid, "kind": h.verified.envelope.record.kind,
                              "submitter": h.verified.submitter_name,
                              "submitter_pubkey": h.verified.envelope.record.submitter.hex(),
                              "origin": dict(h.verified.envelope.record.origin),
                              "height": h.verified.height, "time": iso8601_ms(h.verified.header.time),
                              "parents": h.parents,
                              "certified_by": [v for v, _ in h.verified.certificate.signatures],
                              "verdict": None if h.verified.verdict is None
                              else verdict_doc(h.verified.verdict)}
                             for rid, h in report.hops.items()],
                    "breakers": [t.to_json() for t in report.trips.values()]})
        return
    out = console()
    out.print(_trace_tree(report, genesis))
    # The children are the node's word (a record names its parents, not its
    # children): ids only, and through untrusted() like anything it says.
    children = untrusted(", ".join(c[:16] for c in report.children) or "none")
    out.print(Text.assemble(("VALID", "bold green"), f" {len(report.hops)} records verified; "
                            f"{len(report.children)} direct children: ", children))
    if report.stopped:
        # The missing ids come from signed records' parents, yet print them
        # through untrusted() like everything else a node hands over.
        out.print(Text.assemble(("INCOMPLETE", "bold yellow"),
                                f" stopped after {max_records} records (--max-records); "
                                f"{len(report.missing)} ancestors not fetched; trace one of them "
                                "to continue: ", untrusted(", ".join(report.missing[:8]))))
    if report.more_children:
        out.print(Text(f"more direct children exist than the {len(report.children)} listed",
                       style="yellow"))
    hops = report.hops.values()
    epochs = [(h.verified.epoch or genesis, _signer_indices(h.verified.certificate, h.verified.epoch or genesis))
              for h in hops]
    _print_labels(out, genesis_file, epochs=epochs,
                  submitters={h.verified.envelope.record.submitter for h in hops})


def _write_picture(report: TraceReport, genesis: Genesis, fmt: str, output: Path | None) -> None:
    """The verified lineage as DOT, or drawn by Graphviz; only verified
    records (and the ids they name) are in it."""
    dot = to_dot(report, genesis)
    try:
        data = dot.encode("utf-8") if fmt == "dot" else render(dot, fmt)
    except RenderError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    if output is None:
        if fmt == "png" and sys.stdout.isatty():
            raise click.UsageError("a PNG is not for the terminal: pass --output FILE")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise click.BadParameter(untrusted(f"cannot write {output}: {exc.strerror or exc}").plain,
                                 param_hint="'--output'") from None


# --------------------------------------------------------------------------


@click.command("audit")
@genesis_option
@node_option
@click.option("--signatures/--no-signatures", default=True, show_default=True,
              help="Also verify every record's submitter signature.")
@click.option("--to-height", type=click.IntRange(min=1), default=None, help="Stop at this height.")
@checkpoint_option
@click.option("--no-checkpoint", is_flag=True, help="Do not read or update the checkpoint file.")
@json_option
def audit(genesis_path: Path, nodes: tuple[str, ...], signatures: bool, to_height: int | None,
          checkpoint_file: Path, no_checkpoint: bool, as_json: bool) -> None:
    """Walk the whole chain from height 1: prev links, tx_root and log_root
    recomputed from the envelopes, every certificate, optionally every
    signature; then prove the audited head consistent with the checkpoint."""
    genesis_file = load_genesis_file(genesis_path)
    genesis = genesis_file.genesis
    store = CheckpointStore(checkpoint_file)

    async def work(client: LedgerClient) -> Any:
        with Progress(TextColumn("[bold]audit[/]"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[records]} records"), TimeRemainingColumn(),
                      console=console(), disable=as_json, transient=False) as bar:
            task = bar.add_task("blocks", total=None, records=0)

            def progress(height: int, target: int, records: int) -> None:
                bar.update(task, completed=height, total=target, records=records)

            report = await audit_chain(client, genesis, verify_signatures=signatures,
                                       to_height=to_height, progress=progress)
        cp = None
        if report.head is not None and not no_checkpoint:
            cp = await advance_checkpoint(client, genesis, store, report.head)
        return report, cp

    report, cp = _run(nodes, as_json, work)
    counts = report.auditor.counts
    doc = {"valid": True, "height": report.auditor.height, "blocks": counts.blocks, "records": counts.records,
           "signatures_checked": counts.signatures_checked, "certificates_checked": counts.certificates_checked,
           "by_submitter": counts.submitters, "seconds": round(report.seconds, 3),
           "records_per_second": round(report.rate, 1),
           "checkpoint_previous_height": cp.previous.height if cp and cp.previous else None,
           "by_submitter_key": counts.submitter_keys, "genesis_sha256": genesis_file.sha256,
           "governance_records": counts.governance_records,
           "validator_sets": [{"from_height": h, "validators_hash": v} for h, v in counts.epochs]}
    if cp is not None:
        _print_notices(cp.notices, as_json)
    if as_json:
        print_json(doc)
        return
    table = Table(title="audit report", show_header=False)
    for key, value in doc.items():
        if key in ("by_submitter", "by_submitter_key", "genesis_sha256", "validator_sets"):
            continue  # names are labels (below); keys are shown by fingerprint
        table.add_row(key, str(value))
    for key_hex, count in counts.submitter_keys.items():
        table.add_row(f"records by submitter key {fingerprint(bytes.fromhex(key_hex))}", str(count))
    for height, vhash in counts.epochs:
        table.add_row(f"validator set from height {height}", vhash[:16])
    out = console()
    out.print(table)
    out.print(Text.assemble(("VALID", "bold green"), " chain ", untrusted(genesis.chain),
                            f" verified to height {doc['height']}"))
    _print_labels(out, genesis_file, submitters=[bytes.fromhex(k) for k in counts.submitter_keys],
                  epoch=report.auditor.epoch_at(report.auditor.height))


@click.command("checkpoint")
@genesis_option
@node_option
@checkpoint_option
@json_option
def checkpoint(genesis_path: Path, nodes: tuple[str, ...], checkpoint_file: Path, as_json: bool) -> None:
    """Prove the node's certified head extends the last one you verified, then remember it.

    On a fork (two certified heads that cannot both be true) both heads are
    printed as evidence and the exit status is 1.
    """
    genesis_file = load_genesis_file(genesis_path)
    genesis = genesis_file.genesis
    store = CheckpointStore(checkpoint_file)
    result = _run(nodes, as_json, lambda c: advance_checkpoint(c, genesis, store))
    prev = result.previous
    epoch = result.epoch  # the set in force at the head: its certificate's indexes refer to it
    signers = _signer_indices(result.current.certificate, epoch)
    _print_notices(result.notices, as_json)
    doc = {"valid": True, "chain": genesis.chain, "height": result.current.height,
           "log_size": result.current.header.log_size, "hash": result.current.header.hash.hex(),
           "previous_height": prev.height if prev else None,
           "certified_by": _signers(result.current.certificate, epoch),
           "certified_by_validators": [{"index": v, "pubkey": epoch.validators[v].pubkey.hex()}
                                       for v in signers],
           "genesis_sha256": genesis_file.sha256,
           "checkpoint_key": CheckpointStore.key(genesis),
           "epoch_proof_records": len(result.current.epoch_proof)}
    if as_json:
        print_json(doc)
        return
    out = console()
    certified = f"certified by validators {validators_ref(epoch, signers)}"
    if prev is None:
        out.print(Text.assemble(("TRUSTED", "bold green"), f" first checkpoint: height {doc['height']} "
                                f"(log {doc['log_size']}), {certified}"))
    else:
        out.print(Text.assemble(("CONSISTENT", "bold green"), f" height {prev.height} → {doc['height']} "
                                f"(log {prev.header.log_size} → {doc['log_size']}), {certified}"))
    _print_labels(out, genesis_file, validators=signers, epoch=epoch)
