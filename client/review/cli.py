"""``ledger-review``: the review queue and a reviewer's decisions (PROTOCOL
§10.10, docs/review.md).

``list`` and ``show`` read ``GET /v1/reviews``; ``approve``, ``reject`` and
``escalate`` submit a ``risk.decision`` record signed by the reviewer's key
(which also signs each request, §11), naming the record first and then the
alerts on it (so that the decision's ``ledger-audit trace`` holds the whole
case), wait for its commit and say whether it counted.

Exit status: 0 done (listed, shown, the decision counted); 1 the decision
was committed but did not count (its reason is printed), or ``show`` names
no committed record; 2 usage errors, unreadable key files, and requests the
node refused or could not answer (nothing submitted).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..audit.show import untrusted
from ..errors import LedgerAPIError, LedgerClientError
from ..reviews import DECISIONS
from ..sdk import LedgerClient
from ..types import ReviewItemDoc, ReviewsDoc

EXIT_OK = 0
EXIT_NOT_COUNTED = 1
EXIT_FAILED = 2
MAX_RESTS_ON = 15  # a decision names the record and at most 15 more (§12.2)
T = TypeVar("T")

key_option = click.option(
    "--key", "key_path", required=True, metavar="KEY.json", envvar="LEDGER_KEY_FILE",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Your reviewer key file (a submitter with the role review): it signs the requests "
         "and your decisions.")
node_option = click.option("--node", "nodes", metavar="URL", multiple=True, required=True,
                           help="Node base URL (repeat for failover).")
ca_option = click.option("--ca-file", type=click.Path(dir_okay=False, exists=True,
                                                      path_type=Path),
                         envvar="LEDGER_CA_FILE", help="PEM trust roots for https:// nodes.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _fail(message: str) -> NoReturn:
    click.echo(f"ledger-review: {untrusted(message).plain}", err=True)
    raise SystemExit(EXIT_FAILED)


def _run(key: Path, nodes: tuple[str, ...], ca_file: Path | None,
         call: Callable[[LedgerClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with LedgerClient(list(nodes), key, retries=2 * len(nodes), ca_file=ca_file,
                                auth_key_file=key) as client:
            return await call(client)

    try:
        return asyncio.run(go())
    except LedgerClientError as exc:
        _fail(str(exc))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _age(ms: int) -> str:
    s = ms // 1000
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172_800:
        return f"{s // 3600}h"
    return f"{s // 86_400}d"


def _status(item: ReviewItemDoc) -> str:
    verdict = item.get("verdict")
    if verdict is None:
        return "?"
    text = verdict["status"]
    if text in ("held", "review"):
        counted = len(verdict.get("approved_by", []))
        text += f" {counted}/{verdict.get('approvals_needed', verdict['approvals'])}"
    return text


def _amount(item: ReviewItemDoc) -> str:
    if "amount" not in item:
        return ""
    return f"{item['amount']} {item.get('currency', '')}".strip()


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="auditledger", prog_name="ledger-review")
def main() -> None:
    """Review held records: list the queue, show a case, approve, reject or
    escalate it (docs/review.md).

    Exit status: 0 done; 1 a decision committed that did not count, or no
    such record; 2 usage error or the node refused or could not answer.
    """


@main.command("list")
@click.option("--state", type=click.Choice(("open", "decided")), default="open",
              show_default=True, help="Open records (oldest first) or decided ones.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True,
              help="Records per page.")
@click.option("--after", default=None, metavar="CURSOR", help="The 'next' of a previous page.")
@click.option("--all", "every", is_flag=True, help="Follow every page.")
@key_option
@node_option
@ca_option
@json_option
def list_(state: str, limit: int, after: str | None, every: bool, key_path: Path,
          nodes: tuple[str, ...], ca_file: Path | None, as_json: bool) -> None:
    """List the review queue."""

    async def pages(client: LedgerClient) -> tuple[ReviewsDoc, list[ReviewItemDoc]]:
        page = await client.reviews(state, limit=limit, after=after)
        items = list(page["reviews"])
        while every and page["next"] is not None:
            page = await client.reviews(state, limit=limit, after=page["next"])
            items.extend(page["reviews"])
        return page, items

    last, items = _run(key_path, nodes, ca_file, pages)
    if as_json:
        click.echo(json.dumps({"state": state, "height": last["height"], "open": last["open"],
                               "reviews": items, "next": last["next"]}, sort_keys=True))
        return
    table = Table(title=f"{state} at height {last['height']} ({last['open']} open)")
    table.add_column("record", no_wrap=True, min_width=16)
    for column in ("kind", "amount", "status", "rule", "age", "alerts", "decisions"):
        table.add_column(column)
    for item in items:
        verdict = item.get("verdict")
        table.add_row(item["record"][:16], untrusted(item.get("kind", "?")),
                      untrusted(_amount(item)), _status(item),
                      untrusted(verdict["rule"] if verdict else ""),
                      _age(item.get("age_ms", 0)), str(len(item.get("alerts", []))),
                      str(len(item.get("decisions", []))))
    out = _out()
    out.print(table)
    if last["next"] is not None and not every:
        out.print(f"more: --after {last['next']}")


def _fetch_case(key_path: Path, nodes: tuple[str, ...], ca_file: Path | None,
                record_id: str) -> ReviewItemDoc | None:
    async def get(client: LedgerClient) -> ReviewItemDoc | None:
        try:
            return await client.review_case(record_id)
        except LedgerAPIError as exc:
            if exc.code == "not_found":
                return None
            raise

    return _run(key_path, nodes, ca_file, get)


@main.command("show")
@click.argument("record_id", metavar="ID")
@key_option
@node_option
@ca_option
@json_option
def show(record_id: str, key_path: Path, nodes: tuple[str, ...], ca_file: Path | None,
         as_json: bool) -> None:
    """Show one record as the queue sees it: verdict, age, alerts, decisions."""
    item = _fetch_case(key_path, nodes, ca_file, record_id.lower())
    if item is None:
        if as_json:
            click.echo(json.dumps({"record": record_id, "error": "not_found"}))
        else:
            click.echo(f"NOT FOUND no committed record {untrusted(record_id).plain}", err=True)
        raise SystemExit(EXIT_NOT_COUNTED)
    if as_json:
        click.echo(json.dumps(item, sort_keys=True))
        return
    out = _out()
    verdict = item.get("verdict")
    out.print(Text.assemble(("record ", "bold"), item["record"], " ",
                            untrusted(item.get("kind", "?")), " ", untrusted(_amount(item))))
    if "height" in item:
        out.print(f"  block {item['height']} at {_when(item.get('since', 0))}, "
                  f"{'waited' if 'decided_time' in item else 'waiting'} "
                  f"{_age(item.get('age_ms', 0))}")
        out.print(Text.assemble("  submitter ", item.get("submitter", "")[:16], " origin ",
                                untrusted(json.dumps(item.get("origin", {}), sort_keys=True))))
    if verdict is not None:
        out.print(Text.assemble("  verdict ", untrusted(verdict["outcome"]), " rule ",
                                untrusted(verdict["rule"] or "(default)"), " ",
                                untrusted(verdict["reason"]), "; status ", _status(item)))
    for alert in item.get("alerts", []):
        out.print(Text.assemble("  alert ", alert["record"][:16], " score ",
                                f"{alert['score'] / 10_000:.1f}% by ",
                                untrusted(alert["detector"]), " ",
                                untrusted(alert["version"]), " monitor ",
                                alert["monitor"][:16], f" block {alert['height']}"))
    for d in item.get("decisions", []):
        mark = "counted" if d["counted"] else f"not counted ({d['reason']})"
        out.print(Text.assemble("  ", untrusted(d["decision"]), " ", d["record"][:16],
                                " by ", d["reviewer"][:16], f" block {d['height']} {mark} ",
                                untrusted(d["note"])))
    if item.get("children_truncated"):
        out.print("  (more than 256 records name it; its trace lists them all)")


async def _committed_case(client: LedgerClient, record_id: str,
                          timeout: float) -> ReviewItemDoc:
    """The queue's view of a record just submitted, once it is committed."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return await client.review_case(record_id)
        except LedgerAPIError as exc:
            if exc.code != "not_found" or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def _decide(decision: str) -> click.Command:
    @click.command(decision)
    @click.argument("record_id", metavar="ID")
    @click.option("--note", default="", help="Your words, kept in the decision (256 "
                  "characters at most).")
    @click.option("--no-alerts", is_flag=True,
                  help="Do not name the alerts on the record as parents of the decision.")
    @click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0,
                  show_default=True, help="Seconds to wait for the decision's commit.")
    @key_option
    @node_option
    @ca_option
    @json_option
    def command(record_id: str, note: str, no_alerts: bool, timeout: float, key_path: Path,
                nodes: tuple[str, ...], ca_file: Path | None, as_json: bool) -> None:
        if len(note) > 256:
            raise click.UsageError("--note is at most 256 characters")
        rid = record_id.lower()

        async def go(client: LedgerClient) -> dict[str, Any]:
            rests_on: list[str] = []
            if not no_alerts:
                try:
                    case = await client.review_case(rid)
                except LedgerAPIError as exc:
                    if exc.code != "not_found":
                        raise
                else:
                    rests_on = [a["record"] for a in case.get("alerts", [])][:MAX_RESTS_ON]
            decision_id = await client.decide(rid, decision, note=note, rests_on=rests_on)
            # Read through the queue route, which the role review may read
            # (GET /v1/records needs read): the decision's verdict once committed.
            mine = await _committed_case(client, decision_id, timeout)
            target = await client.review_case(rid)
            verdict, status = mine.get("verdict"), target.get("verdict")
            if verdict is None or status is None:
                raise LedgerClientError("the node does not hold the records' blocks yet")
            return {"decision": decision_id, "kind": decision, "record": rid,
                    "counted": verdict["outcome"] == "allow", "reason": verdict["reason"],
                    "status": status["status"], "rests_on": rests_on}

        doc = _run(key_path, nodes, ca_file, go)
        if as_json:
            click.echo(json.dumps(doc, sort_keys=True))
        else:
            word = "COUNTED" if doc["counted"] else f"NOT COUNTED ({doc['reason']})"
            click.echo(f"{word} {decision} {doc['decision']}; record {rid} is {doc['status']}"
                       + (f"; names {len(doc['rests_on'])} alert(s)" if doc["rests_on"] else ""))
        raise SystemExit(EXIT_OK if doc["counted"] else EXIT_NOT_COUNTED)

    command.help = (f"{decision.capitalize()} the held or in-review record ID: submit a signed "
                    "risk.decision naming it (and the alerts on it), wait for its commit and "
                    "say whether it counted and where ID stands.  Exit 0 counted; 1 committed "
                    "but not counted (self_approval, not_an_approver, repeat_approval, "
                    "approval_expired, escalation_limit, not_held); 2 not submitted.")
    return command


for _name in DECISIONS:
    main.add_command(_decide(_name))
