"""``ledger-audit replay-policy``: re-derive every committed verdict
(PROTOCOL §10.9) from the blocks a node serves and the first genesis."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ledger.encoding import from_b64
from ledger.errors import VerificationError
from ledger.policy import load_policy_engine
from ledger.policy_replay import PolicyDisagreement, PolicyReplay
from ledger.records import Envelope, Record, decode_committed_envelope
from ledger.risk import ALERT
from ledger.verify import verify_certified_header

from ..sdk import LedgerClient
from .common import console, load_genesis_file, print_json
from .remote_cmds import _run, genesis_option, json_option, node_option


@click.command("replay-policy")
@genesis_option
@node_option
@click.option("--from", "first", type=click.IntRange(min=1), default=1, show_default=True,
              help="First height whose verdicts are compared.")
@click.option("--to", "last", type=click.IntRange(min=1), default=None,
              help="Last height (default: the node's tip).")
@json_option
def replay_policy(genesis_path: Path, nodes: tuple[str, ...], first: int, last: int | None,
                  as_json: bool) -> None:
    """Re-evaluate the policy in force over blocks FROM..TO and compare with
    every committed verdict; exit 1 naming the first disagreement.  The
    policy state is rebuilt from block 1 (each block's certificate checked
    against the genesis validators)."""
    genesis = load_genesis_file(genesis_path).genesis

    async def work(client: LedgerClient) -> dict[str, Any]:
        top = last if last is not None else (await client.block("latest"))["height"]
        flagged: dict[bytes, Record] = {}
        replay = PolicyReplay(genesis, load_policy_engine(), lookup=flagged.get)
        compared = 0
        for height in range(1, top + 1):
            doc: Any = await client.block(height, envelopes=True)
            header = verify_certified_header(from_b64(doc["header"], what="header"),
                                             doc["certificate"], genesis)
            envelopes = [decode_committed_envelope(from_b64(e, what="envelope"))
                         for e in doc.get("envelopes", [])]
            await _fetch_flagged(client, envelopes, flagged)
            entries = doc.get("verdicts")
            raw = None if entries is None else [from_b64(e, what="verdict") for e in entries]
            replay.block(header, envelopes, raw, compare=height >= first)
            if height >= first:
                compared += len(envelopes)
        return {"agree": True, "from": first, "to": top, "records_compared": compared,
                "policy_version": replay.state.engine.version}

    try:
        doc = _run(nodes, as_json, work)
    except PolicyDisagreement as exc:
        d = exc.disagreement
        report = {"agree": False, "height": d.height, "entry": d.index,
                  "record": d.record.hex() if d.record else None, "message": str(exc)}
        if as_json:
            print_json(report)
        else:
            console().print(f"[bold red]DISAGREE[/] {exc}")
        sys.exit(1)
    except VerificationError as exc:
        console().print(f"[bold red]INVALID[/] at step {exc.step}: {exc}")
        sys.exit(1)
    if as_json:
        print_json(doc)
    else:
        console().print(f"[bold green]AGREE[/] every verdict of blocks {doc['from']}.."
                        f"{doc['to']} ({doc['records_compared']} records) is what the policy "
                        "in force gives")


async def _fetch_flagged(client: LedgerClient, envelopes: list[Envelope],
                         flagged: dict[bytes, Record]) -> None:
    """The records the block's alerts flag in earlier blocks (the circuit
    breakers read their scopes, PROTOCOL §12.3), fetched from the node: a
    record id is the hash of the record, so a record whose id matches is
    the committed one, whoever served it.  Kept for later alerts."""
    here = {env.id for env in envelopes}
    for env in envelopes:
        record = env.record
        if record.kind != ALERT or len(record.parents) != 1:
            continue
        parent = record.parents[0]
        if parent in here or parent in flagged:
            continue
        doc: Any = await client.record(parent.hex())
        found = decode_committed_envelope(from_b64(doc["envelope"], what="envelope")).record
        if found.id != parent:
            raise VerificationError(f"the node served another record for {parent.hex()}",
                                    step="verdicts")
        flagged[parent] = found
