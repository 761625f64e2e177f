"""``ledger-admin approve ID``: an approver's signed approval of a held
record (PROTOCOL §10.7), and its outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from ..errors import LedgerClientError
from ..sdk import LedgerClient
from ..types import VerdictDoc


@click.command("approve")
@click.argument("record_id", metavar="ID")
@click.option("--key", "key_path", required=True, metavar="KEY.json", envvar="LEDGER_KEY_FILE",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Your approver key file: a submitter holding the role the verdict names; "
                   "it signs the approval record and the request.")
@click.option("--node", "nodes", metavar="URL", multiple=True, required=True,
              help="Node base URL (repeat for failover).")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              envvar="LEDGER_CA_FILE", help="PEM trust roots for https:// nodes.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds to wait for the approval's commit.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def approve(record_id: str, key_path: Path, nodes: tuple[str, ...], ca_file: Path | None,
            timeout: float, as_json: bool) -> None:
    """Approve the held record ID: submit a record of kind ``approval``
    naming it, wait for its commit and print whether it counted and where
    ID stands.  Exit 0: counted; 1: committed but not counted (the reason is
    printed: self_approval, not_an_approver, repeat_approval,
    approval_expired, not_held); 2: not submitted (refused, unreachable)."""

    async def go() -> tuple[str, VerdictDoc, VerdictDoc]:
        async with LedgerClient(list(nodes), key_path, retries=2 * len(nodes),
                                ca_file=ca_file, auth_key_file=key_path) as client:
            approval = await client.approve(record_id)
            mine = await client.verdict(approval, timeout)
            return approval, mine, await client.verdict(record_id, timeout)

    try:
        approval, mine, target = asyncio.run(go())
    except LedgerClientError as exc:
        click.echo(f"NOT SUBMITTED {exc}", err=True)
        raise SystemExit(2) from None
    counted = mine["outcome"] == "allow"
    doc: dict[str, Any] = {"approval": approval, "counted": counted, "reason": mine["reason"],
                           "record": record_id, "status": target["status"]}
    if as_json:
        import json

        click.echo(json.dumps(doc, sort_keys=True))
    else:
        word = "COUNTED" if counted else f"NOT COUNTED ({mine['reason']})"
        click.echo(f"{word} approval {approval}; record {record_id} is {target['status']}")
    raise SystemExit(0 if counted else 1)
