"""The explorer's version 2 verifier on chains that use the policy
governance kinds (gov.policy.set, gov.list.add, gov.list.remove, with
gov.params.set's policy_engine / policy_max_cost) and the risk kinds
(risk.alert, risk.tier, risk.breaker.close): in headless Chromium, the page
(verify2.js, epochs.js, policy.js, risk.js) gives the verdict
ledger/verify_epochs.py gives - "ok" or the same failed step - on bundles
whose governance lists carry such records, valid and refused, and on risk
records of the right and the wrong shape or role.

The one known difference is asserted too: the page checks a policy's
bytes, fields, lexical rules and cost, but does not compile its CEL rules,
so a policy whose rule does not compile is refused by Python only.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from browser import browser  # noqa: F401 (fixture)
from govhelpers import gov_record
from helpers import FIXED_TS, make_envelope, make_keys
from test_explorer_epochs import JS_VERDICTS, origin, python_step  # noqa: F401 (fixture)
from test_verify_epochs import CHAIN, GENESIS, MKEYS, SKEY, EpochChain

from ledger.encoding import canonical
from ledger.errors import LedgerError
from ledger.policy.rules import POLICY_DOMAIN, policy_from_json
from ledger.proofs import build_bundle_v2
from ledger.records import Envelope, make_record, sign_record

MON, REV = make_keys(2, 4_000_000)


class LaxChain(EpochChain):
    """An EpochChain that commits governance records an honest quorum would
    refuse (applying only the valid ones), so bundles can carry them."""

    def commit(self, envelopes: Sequence[Envelope], **_: Any) -> Any:
        height = self.height + 1
        lax = self.membership
        for env in envelopes:
            try:
                lax = lax.apply(height, [env])
            except LedgerError:
                pass  # refused: in the block, not in the membership
        self.membership = _Applied(self.membership, lax)  # type: ignore[assignment]
        header = super().commit(envelopes)
        self.membership = lax
        return header


class _Applied:
    """What EpochChain.commit sees: the membership before the block (for its
    validator set), whose apply answers the lax one."""

    def __init__(self, before: Any, after: Any) -> None:
        self.before, self.after = before, after

    def at(self, height: int) -> Any:
        return self.before.at(height)

    def apply(self, height: int, envelopes: Any) -> Any:
        return self.after


def gov(nonce: int, kind: str, **body: Any) -> Envelope:
    return gov_record(CHAIN, MKEYS[:2], nonce, kind, body)


def policy(version: int, when: str = "record.body.amount > 5000", **extra: Any) -> bytes:
    return policy_from_json({"name": "limits", "version": version, "rules": [
        {"name": "large", "when": when, "then": {"outcome": "review", "reason": "large"}}],
        **extra}).policy_bytes


def raw_policy(version: int, when: str, **changes: Any) -> bytes:
    """Policy bytes in canonical form, however invalid their content."""
    body = {"default": {"outcome": "allow"}, "engine": 1, "lookups": {}, "name": "limits",
            "rules": [{"name": "r", "then": {"outcome": "deny", "reason": "x"}, "when": when}],
            "version": version, "windows": {}, **changes}
    return POLICY_DOMAIN + canonical(body)


def risk(key: Any, nonce: int, kind: str, body: dict[str, Any], parents: Sequence[bytes] = (),
         origin: dict[str, str] | None = None) -> Envelope:
    record = make_record(chain=CHAIN, submitter=key.public_key, nonce=nonce, ts=FIXED_TS, kind=kind,
                         origin=origin or {"system": "monitor"}, body=body, parents=parents)
    return sign_record(record, key)


ALERT = {"score": 870_000, "reasons": [{"feature": "amount_z", "points": 600_000}],
         "detector": "hst", "version": "1"}
TIER = {"tier": "high", "detector": "hst", "version": "1"}


def build() -> tuple[LaxChain, dict[str, Envelope]]:
    c = LaxChain()
    e: dict[str, Envelope] = {}
    e["early"] = make_envelope(SKEY, CHAIN, 1)
    c.commit([e["early"]])                                                        # 1
    e["add_mon"] = gov(11, "gov.submitter.add", name="monitor", pubkey=MON.public_key,
                       roles=["monitor", "submit"])
    e["add_rev"] = gov(12, "gov.submitter.add", name="reviewer", pubkey=REV.public_key,
                       roles=["review", "submit"])
    e["policy1"] = gov(13, "gov.policy.set", policy=policy(1))
    e["list_add"] = gov(14, "gov.list.add", list="blocked", entries=["acct:1", "acct:2"])
    c.commit([e["add_mon"], e["add_rev"], e["policy1"], e["list_add"]])          # 2
    e["list_remove"] = gov(15, "gov.list.remove", list="blocked", entries=["acct:2"])
    e["params"] = gov(16, "gov.params.set", params={"policy_max_cost": 100})
    e["payment"] = make_envelope(SKEY, CHAIN, 2, origin={"account": "acct:7"})
    c.commit([e["list_remove"], e["params"], e["payment"]])                     # 3
    pid = e["payment"].id
    e["alert"] = risk(MON, 1, "risk.alert", ALERT, [pid])
    e["tier"] = risk(MON, 2, "risk.tier", TIER, [pid], {"account": "acct:7"})
    e["close"] = risk(REV, 1, "risk.breaker.close", {"scope": "account", "value": "acct:7"}, [pid])
    e["alert_by_reviewer"] = risk(REV, 2, "risk.alert", ALERT, [pid])
    e["alert_no_parent"] = risk(MON, 3, "risk.alert", ALERT)
    e["tier_no_account"] = risk(MON, 4, "risk.tier", TIER, [pid])
    e["close_by_monitor"] = risk(MON, 5, "risk.breaker.close", {"scope": "account", "value": "x"})
    e["alert_big_score"] = risk(MON, 6, "risk.alert", {**ALERT, "score": 1_000_001}, [pid])
    # Refused governance (LaxChain commits them; neither verifier may accept them).
    e["same_version"] = gov(21, "gov.policy.set", policy=policy(1, "record.body.amount > 9"))
    e["too_costly"] = gov(22, "gov.policy.set", policy=policy(
        2, "record.body.items.exists(x, x > 1 && x < 9 && x != 5)"))
    e["float_rule"] = gov(23, "gov.policy.set", policy=raw_policy(2, "record.body.amount > 1.5"))
    e["bad_function"] = gov(24, "gov.policy.set", policy=raw_policy(2, "timestamp(record.ts) > 1"))
    e["nested"] = gov(25, "gov.policy.set", policy=raw_policy(
        2, "record.parents.all(p, p.exists(q, q == 1))"))
    e["unknown_window"] = gov(26, "gov.policy.set", policy=raw_policy(
        2, "velocity.acct_1h.count > 3"))
    e["no_domain"] = gov(27, "gov.policy.set", policy=policy(2)[len(POLICY_DOMAIN):])
    e["not_normal"] = gov(28, "gov.policy.set", policy=raw_policy(
        2, "record.body.amount > 9", default="allow"))
    e["engine_2"] = gov(29, "gov.policy.set", policy=raw_policy(2, "record.body.amount > 9", engine=2))
    e["unsorted_entries"] = gov(30, "gov.list.add", list="blocked", entries=["b", "a"])
    e["bad_list_name"] = gov(31, "gov.list.add", list="Blocked", entries=["a"])
    e["list_extra_field"] = gov(32, "gov.list.remove", list="blocked", entries=["a"], note="x")
    e["no_compile"] = gov(33, "gov.policy.set", policy=raw_policy(2, "record.body.amount > "))
    # Consensus params outside their bounds (ledger/params.py): param_out_of_range.
    e["zero_timeout"] = gov(34, "gov.params.set", params={"timeout_propose_ms": 0})
    e["huge_block"] = gov(35, "gov.params.set", params={"max_block_records": 100_001})
    c.commit([e[k] for k in ("alert", "tier", "close", "alert_by_reviewer", "alert_no_parent",
                             "tier_no_account", "close_by_monitor", "alert_big_score",
                             "same_version", "too_costly", "float_rule", "bad_function",
                             "nested", "unknown_window", "no_domain", "not_normal", "engine_2",
                             "unsorted_entries", "bad_list_name", "list_extra_field",
                             "no_compile", "zero_timeout", "huge_block")])       # 4
    e["policy2"] = gov(41, "gov.policy.set", policy=policy(2, "record.body.amount > 10"))
    e["list_a"] = gov(42, "gov.list.add", list="blocked", entries=["acct:9"])
    e["list_b"] = gov(43, "gov.list.add", list="blocked", entries=["acct:8", "acct:9"])
    c.commit([e["policy2"], e["list_a"], e["list_b"]])                           # 5
    e["late"] = make_envelope(SKEY, CHAIN, 3)
    c.commit([e["late"]])                                                         # 6
    return c, e


CHAIN_P, ENVS_P = build()
POLICY_GOV = ["policy1", "list_add", "list_remove", "params"]


def bundle(name: str, governance: Sequence[str] = ()) -> dict[str, Any]:
    """The version 2 bundle of ENVS_P[name], carrying what proof_ids picks
    and the named governance records too."""
    env = ENVS_P[name]
    height, _ = CHAIN_P.locations[env.id]
    ids = CHAIN_P.membership.proof_ids(env.record.submitter, height)
    ids += [ENVS_P[g].id for g in governance if ENVS_P[g].id not in ids]
    return json.loads(json.dumps(build_bundle_v2(CHAIN_P, env.id, ids)))


def cases() -> dict[str, Any]:
    refused = ["same_version", "too_costly", "float_rule", "bad_function", "nested",
               "unknown_window", "no_domain", "not_normal", "engine_2", "unsorted_entries",
               "bad_list_name", "list_extra_field", "zero_timeout", "huge_block"]
    out = {
        "payment with policy and list governance": bundle("payment", POLICY_GOV[:2]),
        "late with every valid policy record": bundle("late", [*POLICY_GOV, "policy2", "list_a"]),
        "the policy record itself": bundle("policy2", POLICY_GOV),
        "a list record itself": bundle("list_remove", POLICY_GOV[:2]),
        "alert": bundle("alert", POLICY_GOV),
        "tier": bundle("tier"),
        "breaker close": bundle("close"),
        "alert by a reviewer": bundle("alert_by_reviewer"),
        "alert without parent": bundle("alert_no_parent"),
        "tier without account": bundle("tier_no_account"),
        "breaker close by a monitor": bundle("close_by_monitor"),
        "alert score above 10^6": bundle("alert_big_score"),
        # Without the params record, the costly policy is within the default bound.
        "costly policy, params not carried": bundle("late", ["policy1", "too_costly"]),
        "conflicting list changes": bundle("late", ["list_a", "list_b"]),
    }
    for name in refused:
        out[f"refused: {name}"] = bundle("late", [*POLICY_GOV, name])
    return out


def test_page_and_ledger_agree_on_policy_and_risk_kinds(browser: Any, origin: str) -> None:  # noqa: F811
    named = cases()
    expected = {name: python_step(b) for name, b in named.items()}
    # The cases mean something: these verify, those are refused where they should be.
    assert {k: v for k, v in expected.items() if not k.startswith("refused")} == {
        "payment with policy and list governance": "ok",
        "late with every valid policy record": "ok",
        "the policy record itself": "ok",
        "a list record itself": "ok",
        "alert": "ok", "tier": "ok", "breaker close": "ok",
        "alert by a reviewer": "role", "alert without parent": "risk",
        "tier without account": "risk", "breaker close by a monitor": "role",
        "alert score above 10^6": "risk",
        "costly policy, params not carried": "ok",
        "conflicting list changes": "governance_record",
    }
    assert all(v == "governance_record" for k, v in expected.items() if k.startswith("refused"))
    browser.get(origin + "/")
    got = browser.execute_async_script(JS_VERDICTS, json.dumps(GENESIS.raw), named)
    assert got == expected


def test_the_page_does_not_compile_cel(browser: Any, origin: str) -> None:  # noqa: F811
    """A rule that passes the page's checks but not CEL's compiler: the
    validators refuse it (Python's verifier does too); the page cannot tell."""
    named = {"no_compile": bundle("late", [*POLICY_GOV, "no_compile"])}
    assert python_step(named["no_compile"]) == "governance_record"
    browser.get(origin + "/")
    got = browser.execute_async_script(JS_VERDICTS, json.dumps(GENESIS.raw), named)
    assert got == {"no_compile": "ok"}


RULES = [
    "record.body.amount > 5000", "record.body.amount > 1.5", "record.body.amount > 1e3",
    "record.body.amount > .5", "record.body.amount > 0x1F && record.body.amount < 10u",
    'record.body.note == "a \\" b" || record.origin.system.startsWith("pos")',
    "record.body.note == 'it''s'", 'record.kind == """multi\nline"""', "r'raw\\d' == record.kind",
    "record.body.items.exists(x, x > 1 && x < 9)", "record.body.items.map(x, x * 2).size() > 1",
    "record.body.items.all(p, p.exists(q, q == 1))", "record.body.items.exists(record, true)",
    "size(record.parents) > 2 && has(record.body.amount)", "timestamp(record.ts) > 1",
    "matches(record.kind, 'x')", "velocity.acct_1m.count > 3 && velocity.acct_1m.sum < 9",
    "listed.sanctioned || listed.known", "risk.tier >= 2 && block.time > 0",
    "record.body.amount > \u0661\u0662", "record.body.amount\u00a0> 3", "record.body.amount\u2028> 3",
    "record.kind == '\u00e9t\u00e9' && record.body.amount > 3", "record.body.amount > 3 # x",
    "   ", "", "x" * 2049, "record.body[\"amount\"] > 3", "int(record.body.amount) != 3",
    "(record.body.amount > 3) ? true : false", "record.body.items.filter(x, (x > 1)).size() == 2",
]


def test_the_page_lexes_rules_as_ledger_policy_does(browser: Any, origin: str) -> None:  # noqa: F811
    """policy.js's port of ledger/policy/cel.py's lexer: the same rules pass
    or fail its checks, with the same paths and the same static cost."""
    from ledger.policy.cel import BadPolicy, analyse, rule_cost

    expected = []
    for rule in RULES:
        try:
            reads = analyse(rule)
        except BadPolicy:
            expected.append({"ok": False})
            continue
        expected.append({"ok": True, "paths": sorted(".".join(p) for p in reads.paths),
                         "cost": rule_cost(rule)})
    assert {e["ok"] for e in expected} == {True, False}
    browser.get(origin + "/")
    got = browser.execute_async_script("""
        const [rules, done] = arguments;
        import('/explorer/policy.js').then((m) => done(rules.map((r) => m.lexRule(r))))
          .catch((e) => done({error: String(e && e.stack || e)}));""", RULES)
    assert got == expected
