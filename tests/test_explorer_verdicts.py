"""The explorer's verdict-proof verifier (node/explorer/static/verdict.js)
against ledger/verify_verdicts.py, in headless Chromium: on real bundles of a
chain with a policy (allowed, denied, review, held, approved, expired
records; a transition after a validator change, in a version 2 bundle) and
on tampered ones, both give the same answer - the verified outcome and
status, or the same failed step - and the tampered cases reach every step of
VERDICT_STEPS.  The page's modules are served by a plain HTTP server."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from browser import browser, open_page  # noqa: F401 (fixture)
from test_verdict_proofs import (
    MEMBERS,
    NEW_VALIDATOR,
    SUBS,
    World,
    _approve,
    _b64,
    _chain,
    _commit,
    _pay,
    _retarget,
    _served,
    review_bundles,
)

from ledger.errors import VerificationError
from ledger.records import decode_envelope
from ledger.verdict_store import verdict_doc
from ledger.proofs import build_bundle
from ledger.verify import verify_bundle
from ledger.verify_verdicts import VERDICT_STEPS
from node.explorer import Explorer

FILES = Explorer().files


class _Static(BaseHTTPRequestHandler):
    """/ is an empty page, /explorer/x the explorer's files; with ``node``
    set (a :class:`FakeNode`), the routes the record page reads too."""

    node: FakeNode | None = None

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        name = self.path.removeprefix("/explorer/")
        answer = None if self.node is None else self.node.answer(self.path)
        if answer is not None:
            body, kind = answer, "application/json"
        elif self.path == "/":
            body, kind = b"<!doctype html><title>verdicts</title>", "text/html"
        elif name == "":
            body, kind = FILES["index.html"], "text/html"
        elif name in FILES:
            kind = "text/css" if name.endswith(".css") else "text/javascript"
            body = FILES[name]
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class FakeNode:
    """The three answers the record page reads, from an in-process chain:
    the genesis, the record with its verdict (the node's word, §10.8), and a
    trace of one bundle, passed through ``edit`` (to strip or forge its
    verdict proof)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.edit: Any = lambda bundle: bundle

    def answer(self, path: str) -> bytes | None:
        chain = self.world.chain
        if path == "/v1/genesis":
            return json.dumps(self.world.genesis.raw).encode()
        parts = path.split("?")[0].split("/")
        if len(parts) < 4 or parts[1:3] != ["v1", "records"]:
            return None
        rid = bytes.fromhex(parts[3])
        if parts[4:] == ["trace"]:
            bundle = self.edit(_served(chain, rid))
            return json.dumps({"record": rid.hex(), "bundles": [bundle], "edges": [],
                               "children": [], "frontier": []}).encode()
        location = chain.record_location(rid)
        rv = chain.record_verdict(rid)
        assert location is not None and rv is not None
        raw = chain.envelope_at(location[1])
        env = decode_envelope(raw, cosigs=True)
        return json.dumps({"id": rid.hex(), "status": "committed", "height": location[0],
                           "leaf_index": location[1], "verdict": verdict_doc(rv, None),
                           "envelope": _b64(raw), "record": env.record.to_json()}).encode()


@pytest.fixture
def origin() -> Iterator[str]:
    _Static.node = None
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Static)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def python_answer(bundle: Any, genesis: Any) -> str:
    try:
        found = verify_bundle(bundle, genesis).verdict
    except VerificationError as exc:
        return exc.step
    if found is None:
        return "ok:none"
    return f"ok:{found.verdict.outcome.value}:{found.status.value}:{found.transition_height}"


JS_ANSWERS = """
const [genesisText, named, done] = arguments;
import('/explorer/verify.js').then(async (m) => {
  const genesis = await m.parseGenesis(JSON.parse(genesisText));
  const out = {};
  for (const [name, bundle] of Object.entries(named)) {
    const r = await m.verdict(bundle, genesis);
    const v = r.ok ? r.proven.verdict : null;
    out[name] = !r.ok ? r.step : v === null ? 'ok:none'
      : `ok:${v.verdict.outcome}:${v.status}:${v.transition ? v.transitionHeight : 0}`;
  }
  done(out);
}).catch((e) => done({error: String(e && e.stack || e)}));
"""


def _edit(bundle: dict[str, Any], fn: Any) -> dict[str, Any]:
    out = copy.deepcopy(bundle)
    fn(out)
    return out


def cases(w: World) -> dict[str, dict[str, Any]]:
    denied, approved = w.bundle(w.denied), w.bundle(w.approved)
    t = approved["verdict"]["transition"]
    out: dict[str, dict[str, Any]] = {
        name: w.bundle(getattr(w, name))
        for name in ("allowed", "denied", "review", "held", "approved", "expired", "same")}
    out["no_proof"] = json.loads(json.dumps(build_bundle(w.chain, w.allowed.id)))
    out["later_block"] = json.loads(json.dumps(build_bundle(w.chain, w.allowed.id, 3)))

    def verdict(**change: Any) -> dict[str, Any]:
        return _edit(denied, lambda b: b["verdict"].update(change))

    def transition(**change: Any) -> dict[str, Any]:
        return _edit(approved, lambda b: b["verdict"]["transition"].update(change))

    out.update({
        "later_with_proof": dict(out["later_block"], verdict=denied["verdict"]),
        "better_outcome": verdict(entry=_retarget(denied["verdict"], outcome="allow", rule="",
                                                  reason="")),
        "other_record": verdict(entry=out["allowed"]["verdict"]["entry"]),
        "not_a_verdict": verdict(entry=_b64(b"\x81\xa1x\x01")),
        "small_size": verdict(size=2),
        "bad_path": verdict(path=["00" * 32] + denied["verdict"]["path"][1:]),
        "short_path": verdict(path=denied["verdict"]["path"][:-1]),
        "shape_extra": verdict(extra=1),
        "shape_path": verdict(path=["AB" * 32]),
        "shape_size": verdict(size=-1),
        "transition_early_expiry": transition(entry=_retarget(t, status="expired")),
        "transition_other_approvers": transition(entry=_retarget(t, approvals=[bytes(32)] * 2)),
        "transition_is_verdict": transition(entry=approved["verdict"]["entry"]),
        "transition_index": transition(index=0),
        "transition_path": transition(path=["00" * 32]),
        "transition_height": transition(height=1),
        "transition_below": transition(height=0),
        "transition_certificate": transition(certificate={
            **t["certificate"], "signatures": t["certificate"]["signatures"][:2]}),
        "transition_on_allow": _edit(out["allowed"],
                                     lambda b: b["verdict"].update(transition=t)),
        "transition_shape": transition(index="1"),
    })
    return out


def epoch_cases() -> tuple[Any, dict[str, dict[str, Any]]]:
    chain = _chain(members=True)
    big = _pay(SUBS[0], 1, 50_000)
    _commit(chain, [big])
    from govhelpers import gov_record

    add = gov_record("test", MEMBERS[:2], 1, "gov.validator.add",
                     {"name": "v4", "pubkey": NEW_VALIDATOR.public_key,
                      "address": "10.0.0.4:7700"})
    _commit(chain, [add, _approve(SUBS[1], 1, big.id)])
    _commit(chain, [_pay(SUBS[4], 1, 1)])
    _commit(chain, [_pay(SUBS[4], 2, 1)])
    _commit(chain, [_approve(SUBS[2], 2, big.id)])
    v2 = _served(chain, big.id)
    v1 = dict(v2, format="auditledger-proof/1")
    del v1["governance"]
    return chain.genesis, {"epoch_v2": v2, "epoch_as_v1": v1}


JS_EPOCH = """
const [genesisText, proof, height, done] = arguments;
Promise.all([import('/explorer/verify.js'), import('/explorer/verify2.js'), import('/explorer/bytes.js')])
.then(async ([v, v2, b]) => {
  const genesis = await v.parseGenesis(JSON.parse(genesisText));
  const entries = v2.epochProofOf(proof);
  const epoch = await v2.epochAt(entries, height, genesis);
  done({keys: entries.map((e) => Object.keys(e).sort().join(",")),
        validators: b.toHex(epoch.validatorsHash)});
}).catch((e) => done({error: String(e && e.stack || e)}));
"""


def test_an_epoch_proof_from_a_bundle_with_a_verdict_proof(browser: Any, origin: str) -> None:  # noqa: F811
    """The block page builds an epoch proof from the served bundle of the
    governance record that changed the validators; under a policy that
    bundle carries ``verdict``, which is no part of the epoch proof."""
    chain = _chain(members=True)
    from govhelpers import gov_record

    add = gov_record("test", MEMBERS[:2], 1, "gov.validator.add",
                     {"name": "v4", "pubkey": NEW_VALIDATOR.public_key,
                      "address": "10.0.0.4:7700"})
    _commit(chain, [_pay(SUBS[4], 1, 1)])
    _commit(chain, [add])
    _commit(chain, [_pay(SUBS[4], 2, 1)])
    _commit(chain, [_pay(SUBS[4], 3, 1)])
    proof = _served(chain, add.id)
    assert "verdict" in proof
    browser.get(origin + "/")
    got = browser.execute_async_script(JS_EPOCH, json.dumps(chain.genesis.raw), proof, 4)
    assert "error" not in got, got
    assert all("verdict" not in keys for keys in got["keys"])
    assert got["validators"] == chain.membership.at(4).validators_hash.hex()


def test_page_and_ledger_agree_on_verdict_proofs(browser: Any, origin: str) -> None:  # noqa: F811
    w = World()
    named = cases(w)
    expected = {name: python_answer(b, w.genesis) for name, b in named.items()}
    browser.get(origin + "/")
    got = browser.execute_async_script(JS_ANSWERS, json.dumps(w.genesis.raw), named)
    assert got == expected
    assert expected["denied"] == "ok:deny:denied:0"
    assert expected["approved"] == "ok:approve:approved:3"
    assert expected["no_proof"] == expected["later_block"] == "ok:none"
    genesis, more = epoch_cases()
    expected_more = {name: python_answer(b, genesis) for name, b in more.items()}
    got_more = browser.execute_async_script(JS_ANSWERS, json.dumps(genesis.raw), more)
    assert got_more == expected_more == {"epoch_v2": "ok:approve:approved:5",
                                         "epoch_as_v1": "transition_header"}
    genesis, reviews = review_bundles()
    expected_reviews = {name: python_answer(b, genesis) for name, b in reviews.items()}
    got_reviews = browser.execute_async_script(JS_ANSWERS, json.dumps(genesis.raw), reviews)
    assert got_reviews == expected_reviews == {"review_approved": "ok:review:approved:2",
                                               "review_rejected": "ok:review:rejected:2",
                                               "held_rejected": "ok:approve:rejected:3"}
    # The cases reach every verdict step, so agreeing means something.
    steps = set(expected.values()) | set(expected_more.values())
    assert set(VERDICT_STEPS) <= steps, sorted(set(VERDICT_STEPS) - steps)


def _page(driver: Any, origin: str, record: bytes) -> dict[str, str]:
    open_page(driver, f"{origin}/explorer/#/record/{record.hex()}")
    box = driver.find_element("css selector", "#record-verdict")
    status = driver.find_element("css selector", "#record-verdict-status")
    return {"ok": box.get_attribute("data-ok"), "step": box.get_attribute("data-step"),
            "verified": status.get_attribute("data-verified"),
            "outcome": status.get_attribute("data-outcome"),
            "status": status.get_attribute("data-status") or "", "text": status.text}


def test_the_record_page_labels_a_proven_verdict_verified(browser: Any, origin: str) -> None:  # noqa: F811
    w = World()
    _Static.node = node = FakeNode(w)
    got = _page(browser, origin, w.approved.id)
    assert (got["ok"], got["verified"], got["outcome"], got["status"]) == (
        "true", "true", "approve", "approved"), got
    assert "Verified in this page" in got["text"] and "block 3" in got["text"]
    got = _page(browser, origin, w.held.id)
    assert (got["verified"], got["status"]) == ("true", "held")
    assert "A later decision is not excluded" in got["text"]
    got = _page(browser, origin, w.denied.id)
    assert (got["verified"], got["outcome"], got["status"]) == ("true", "deny", "denied")
    assert "no_blocked" in got["text"]
    # A bundle without the proof: the node's word, said so.
    node.edit = lambda b: {k: v for k, v in b.items() if k != "verdict"}
    got = _page(browser, origin, w.denied.id)
    assert (got["ok"], got["verified"], got["outcome"]) == ("true", "false", "deny")
    assert "The node's word, not verified" in got["text"]
    # A forged verdict: the bundle fails at its step, the verdict is not vouched for.
    node.edit = lambda b: _edit(b, lambda x: x["verdict"].update(
        entry=_retarget(x["verdict"], outcome="allow", rule="", reason="")))
    got = _page(browser, origin, w.denied.id)
    assert (got["ok"], got["step"], got["verified"]) == ("false", "verdict_inclusion", "false")
    assert "the record's bundle did not verify" in got["text"]
