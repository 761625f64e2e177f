"""docs/policy.md: its example policy, and each of the five examples it names;
ledger-admin builds the proposals that install a policy and a list."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from govhelpers import gov_genesis
from test_policy_engine import T0, gov, rec

from client.admin.cli import main
from ledger.keys import write_key_file
from ledger.policy import Outcome, decode_policy, load_policy_engine, policy_from_json

DOC = (Path(__file__).resolve().parent.parent / "docs" / "policy.md").read_text()
POLICY = yaml.safe_load(re.search(r"```yaml\n(.*?)```", DOC, re.S).group(1))  # type: ignore[union-attr]
LISTS = {"known_accounts": ["acc-1"], "sanctioned_countries": ["IR", "KP"],
         "licensed_corridors": ["acc-1:DE:FR"]}


def engine() -> Any:
    e = load_policy_engine()
    block = [gov("gov.policy.set", {"policy": policy_from_json(POLICY).policy_bytes})]
    block += [gov("gov.list.add", {"list": n, "entries": sorted(v)}, i + 1)
              for i, (n, v) in enumerate(sorted(LISTS.items()))]
    e.commit_block(1, T0, block, ())
    return e


def test_example_1_small_payment_from_a_known_account() -> None:
    e = engine()
    assert e.evaluate_one(2, T0, rec(body={"amount": 4999, "currency": "EUR"})).outcome \
        is Outcome.ALLOW
    assert e.evaluate_one(2, T0, rec(body={"amount": 5000, "currency": "EUR"})).outcome \
        is Outcome.REVIEW
    stranger = rec(origin={"account": "acc-2", "country": "DE"})
    assert e.evaluate_one(2, T0, stranger).outcome is Outcome.REVIEW


def test_example_2_two_treasury_approvers_above_10000_eur() -> None:
    v = engine().evaluate_one(2, T0, rec(body={"amount": 1_000_001, "currency": "EUR"}))
    assert (v.outcome, v.approvals, v.role, v.rule) == (Outcome.APPROVE, 2, "treasury", "large")


def test_example_3_sanctioned_country() -> None:
    v = engine().evaluate_one(2, T0, rec(origin={"account": "acc-1", "country": "KP"}))
    assert (v.outcome, v.reason) == (Outcome.DENY, "sanctioned_country")


def test_example_4_more_than_20_payments_a_minute() -> None:
    e = engine()
    block = [rec(nonce=i) for i in range(21)]
    assert [v.outcome for v in e.evaluate_block(2, T0, block)][-2:] == [
        Outcome.ALLOW, Outcome.REVIEW]


def test_example_5_unlicensed_corridor() -> None:
    e = engine()
    ok = e.evaluate_one(2, T0, rec("transfer", body={"to_country": "FR"}))
    no = e.evaluate_one(2, T0, rec("transfer", body={"to_country": "US"}))
    assert ok.outcome is Outcome.REVIEW  # licensed: no rule denies, the default holds
    assert (no.outcome, no.reason) == (Outcome.DENY, "unlicensed_corridor")


def test_ledger_admin_builds_policy_and_list_proposals(tmp_path: Path) -> None:
    genesis, _, members, _ = gov_genesis(4, 3)
    write_key_file(tmp_path / "admin.json", "org0", members[0])
    (tmp_path / "genesis.json").write_text(json.dumps(genesis.raw))
    (tmp_path / "rules.yaml").write_text(re.search(r"```yaml\n(.*?)```", DOC, re.S).group(1))  # type: ignore[union-attr]
    (tmp_path / "countries.txt").write_text("# sanctioned\nKP\nIR\n\nKP\n")
    common = ["--key", str(tmp_path / "admin.json"), "--genesis", str(tmp_path / "genesis.json"),
              "--expires-height", "100"]
    run = CliRunner().invoke
    res = run(main, ["propose", "policy-set", f"policy={tmp_path / 'rules.yaml'}", *common,
                     "--out", str(tmp_path / "p.proposal")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "p.proposal").read_text())
    assert doc["kind"] == "gov.policy.set"
    assert decode_policy(bytes.fromhex(doc["body"]["policy"])).name == "payments"
    res = run(main, ["propose", "list-add", "list=sanctioned_countries",
                     f"entries={tmp_path / 'countries.txt'}", *common,
                     "--out", str(tmp_path / "l.proposal")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "l.proposal").read_text())["body"]["entries"] == ["IR", "KP"]
    (tmp_path / "bad.yaml").write_text("name: x\nversion: 1\nrules:\n"
                                       "  - {name: r, when: 'record.body.amount < 1.5', then: allow}\n")
    res = run(main, ["propose", "policy-set", f"policy={tmp_path / 'bad.yaml'}", *common,
                     "--out", str(tmp_path / "b.proposal")], catch_exceptions=False)
    assert res.exit_code == 2 and "bad_policy" in res.output and "floats" in res.output
    assert not (tmp_path / "b.proposal").exists()

