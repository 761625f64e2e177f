"""The explorer's version 2 verifier (node/explorer/static/verify2.js and
epochs.js) against ledger/verify_epochs.py, in headless Chromium: on a chain
whose validator set, members and submitters change (tests/test_verify_epochs
's, extended), both give the same verdict - "ok" or the same failed step -
on real and tampered version 2 bundles, every step of V2_STEPS among them;
and the validator set the page derives from an epoch proof (protocol §9.7)
for each height is the one in force there.

The page's modules are served by a plain HTTP server: no cluster is needed
(nodes do not apply validator-set changes yet, protocol §9 Status).
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from browser import browser  # noqa: F401 (fixture)
from govhelpers import gov_record
from helpers import certify, make_envelope
from test_verify_epochs import CHAIN, GENESIS, MKEYS, NEW, VKEYS, EpochChain, build

from ledger.batch_envelopes import sign_batch
from ledger.blocks import Header, decode_header
from ledger.errors import VerificationError
from ledger.proofs import build_bundle, build_bundle_v2
from ledger.records import cosign, make_record
from ledger.verify import verify_bundle, verify_certified_header
from ledger.verify_epochs import V2_STEPS, walk_governance
from node.explorer import Explorer

FILES = Explorer().files


class _Static(BaseHTTPRequestHandler):
    """/ is an empty page (an origin to import the modules from); /explorer/x
    serves the explorer's files as the node does."""

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        name = self.path.removeprefix("/explorer/")
        if self.path == "/":
            body, kind = b"<!doctype html><title>epochs</title>", "text/html"
        elif name in FILES:
            body = FILES[name]
            kind = "text/javascript" if name.endswith(".js") else "text/plain"
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


@pytest.fixture
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Static)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def extended() -> tuple[EpochChain, dict[str, Any]]:
    """tests/test_verify_epochs's chain, then: a submitter's roles narrowed, a
    kind paused, a batch, multi-signed records (an honest quorum would refuse
    some of these; the verifiers must too)."""
    c, e = build()
    e["roles"] = gov_record(CHAIN, MKEYS[:2], 6, "gov.submitter.roles",
                            {"pubkey": NEW[2].public_key, "roles": ["read"]})
    e["pause"] = gov_record(CHAIN, MKEYS[:2], 7, "gov.scope.pause",
                            {"scope": "kind", "value": "refund"})
    e["add_m"] = gov_record(CHAIN, MKEYS[:2], 8, "gov.member.add",
                            {"name": "org3", "pubkey": NEW[4].public_key})
    c.commit([e["roles"], e["pause"], e["add_m"]])                            # 9
    e["no_role"] = make_envelope(NEW[2], CHAIN, 3)
    e["paused"] = make_envelope(NEW[3], CHAIN, 3, kind="refund")
    e["cosigned"] = cosign(make_envelope(NEW[3], CHAIN, 4), [MKEYS[0]])
    e["stranger_cosig"] = cosign(make_envelope(NEW[3], CHAIN, 5), [NEW[5]])
    e["batch"] = sign_batch([make_record(chain=CHAIN, submitter=NEW[3].public_key, nonce=10 + i,
                                         ts=1_700_000_000_000, kind="payment",
                                         body={"amount": i}) for i in range(3)], NEW[3])
    e["gov_by_new_member"] = gov_record(CHAIN, [NEW[4], MKEYS[0]], 9, "gov.params.set",
                                        {"params": {"x": 1}})
    c.commit([e["no_role"], e["paused"], e["cosigned"], e["stranger_cosig"], *e["batch"],
              e["gov_by_new_member"]])                                        # 10
    e["other_chain"] = make_envelope(NEW[3], "elsewhere", 6)
    return c, e


CHAIN_X, ENVS_X = extended()


def bundle_of(env: Any) -> dict[str, Any]:
    height, _ = CHAIN_X.locations[env.id]
    ids = CHAIN_X.membership.proof_ids(env.record.submitter, height)
    return json.loads(json.dumps(build_bundle_v2(CHAIN_X, env.id, ids)))


def python_step(bundle: Any) -> str:
    try:
        verify_bundle(bundle, GENESIS.raw)
    except VerificationError as exc:
        return exc.step
    return "ok"


def with_envelope(bundle: dict[str, Any], envelope: bytes, record_id: bytes) -> dict[str, Any]:
    out = copy.deepcopy(bundle)
    out["envelope"] = base64.b64encode(envelope).decode()
    out["record_id"] = record_id.hex()
    return out


def flip_hex(text: str) -> str:
    return ("0" if text[0] != "0" else "1") + text[1:]


def cases() -> dict[str, Any]:
    e = ENVS_X
    target = bundle_of(e["target"])
    header = decode_header(base64.b64decode(target["header"]))
    env = base64.b64decode(target["envelope"])

    def edit(fn: Callable[[dict[str, Any]], Any], base: dict[str, Any] = target) -> dict[str, Any]:
        out = copy.deepcopy(base)
        fn(out)
        return out

    def header_like(**changes: Any) -> str:
        fields = {k: getattr(header, k) for k in ("chain", "height", "prev", "time", "proposer",
                                                  "tx_count", "tx_root", "log_size", "log_root",
                                                  "validators")}
        return base64.b64encode(Header(**{**fields, **changes}).header_bytes).decode()

    def wrong_set_certificate(b: dict[str, Any]) -> None:
        entry = b["governance"][2]  # the removal, block 6: five validators, one re-keyed
        epoch = CHAIN_X.membership.at(6).as_genesis(GENESIS)
        old = [VKEYS[0], VKEYS[1], VKEYS[2], VKEYS[3], NEW[0]]
        entry["certificate"] = certify(CHAIN_X.headers[5], old, epoch,
                                       signers=[0, 1, 2, 3]).to_json()

    forged = gov_record(CHAIN, MKEYS[:1], 77, "gov.validator.add",
                        {"name": "x", "pubkey": NEW[5].public_key, "address": ""})
    from memchain import MemChain
    mini = MemChain(GENESIS, VKEYS)
    mini.commit([forged])
    other = e["other_chain"]
    return {
        "valid target": target,
        "valid s2": bundle_of(e["s2"]),
        "valid early (no governance)": bundle_of(e["early"]),
        "valid governance record": bundle_of(e["remove_v"]),
        "valid by a key since rotated": bundle_of(e["old_key_before"]),
        "valid multi-signed": bundle_of(e["cosigned"]),
        "valid batched": bundle_of(e["batch"][1]),
        "valid governance by a new member": bundle_of(e["gov_by_new_member"]),
        "version 1 of a later epoch": json.loads(json.dumps(build_bundle(CHAIN_X, e["target"].id))),
        "governance not a list": edit(lambda b: b.update(governance="x")),
        "no governance key": edit(lambda b: b.pop("governance")),
        "format 3": edit(lambda b: b.update(format="auditledger-proof/3")),
        "extra key": edit(lambda b: b.update(note=1)),
        "other chain": edit(lambda b: b.update(chain="elsewhere")),
        "entry without certificate": edit(lambda b: b["governance"][0].pop("certificate")),
        "entry of another chain": edit(lambda b: b["governance"][0].update(chain="elsewhere")),
        "entry repeated": edit(lambda b: b["governance"].insert(1, copy.deepcopy(b["governance"][0]))),
        "entry swapped": edit(lambda b: b["governance"].reverse()),
        "entry leaf outside its block": edit(lambda b: b["governance"][0].update(
            leaf_index=b["governance"][0]["leaf_index"] - 1)),
        "validator change omitted": edit(lambda b: b["governance"].pop(1)),
        "entry inclusion flipped": edit(lambda b: b["governance"][1]["inclusion"].__setitem__(
            0, flip_hex(b["governance"][1]["inclusion"][0]))),
        "entry certified by the wrong set": edit(wrong_set_certificate),
        "entry below quorum": edit(lambda b: b["governance"][0]["certificate"].update(
            signatures=b["governance"][0]["certificate"]["signatures"][:2])),
        "forged governance record": edit(lambda b: b["governance"].__setitem__(
            0, json.loads(json.dumps(build_bundle(mini, forged.id))))),
        "entry record id wrong": edit(lambda b: b["governance"][0].update(
            record_id=b["governance"][1]["record_id"])),
        "truncated envelope": with_envelope(target, env[:-1], e["target"].id),
        "wrong record id": edit(lambda b: b.update(record_id="00" * 32)),
        "record of another chain": with_envelope(target, other.envelope_bytes, other.id),
        "key rotated out": bundle_of(e["old_key_after"]),
        "submitter without role": bundle_of(e["no_role"]),
        "pause not carried": bundle_of(e["paused"]),  # §9.6 carries no pauses: it rests
        "paused kind": with_pause(bundle_of(e["paused"])),  # on the certificate, unless shown
        "unknown co-signer": bundle_of(e["stranger_cosig"]),
        "flipped signature": with_envelope(target, env[:-1] + bytes([env[-1] ^ 1]), e["target"].id),
        "batch path forged": batch_forged(bundle_of(e["batch"][1])),
        "header not msgpack": edit(lambda b: b.update(header="wQ==")),
        "header of another chain": edit(lambda b: b.update(header=header_like(chain="elsewhere"))),
        "genesis validator set": edit(lambda b: b.update(header=header_like(
            validators=GENESIS.validators_hash))),
        "version 2 header (verdicts)": edit(lambda b: b.update(header=header_like(
            verdicts=bytes(32)))),  # decodes (§10.6); certified for no block
        "version 1 header with verdicts": edit(lambda b: b.update(header=raw_header(
            header, v=1, verdicts=bytes(32)))),
        "version 2 header without verdicts": edit(lambda b: b.update(header=raw_header(
            header, v=2))),
        "height off by one": edit(lambda b: b.update(height=b["height"] + 1)),
        "leaf of another block": edit(lambda b: b.update(leaf_index=b["leaf_index"] - 3)),
        "flipped inclusion": edit(lambda b: b["inclusion"].__setitem__(0, flip_hex(b["inclusion"][0]))),
        "certificate for another block": edit(lambda b: b["certificate"].update(block="11" * 32)),
        "certificate height": edit(lambda b: b["certificate"].update(height=b["height"] + 1)),
        "flipped precommit": edit(lambda b: b["certificate"]["signatures"][0].update(
            sig=flip_hex(b["certificate"]["signatures"][0]["sig"]))),
        "below quorum": edit(lambda b: b["certificate"].update(
            signatures=b["certificate"]["signatures"][:2])),
    }


def raw_header(header: Header, **changes: Any) -> str:
    """Canonical header bytes with fields set as given, however invalid."""
    from ledger.encoding import canonical

    fields = {"v": 1, **{k: getattr(header, k) for k in (
        "chain", "height", "prev", "time", "proposer", "tx_count", "tx_root", "log_size",
        "log_root", "validators")}}
    return base64.b64encode(canonical({**fields, **changes})).decode()


def with_pause(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle with the pause of its kind among its governance entries."""
    pause = json.loads(json.dumps(build_bundle(CHAIN_X, ENVS_X["pause"].id)))
    bundle["governance"] = sorted([*bundle["governance"], pause], key=lambda b: b["leaf_index"])
    return bundle


def batch_forged(bundle: dict[str, Any]) -> dict[str, Any]:
    import msgpack

    from ledger.encoding import canonical

    value = msgpack.unpackb(base64.b64decode(bundle["envelope"]), raw=False)
    value["batch"]["path"] = [bytes(32)] + value["batch"]["path"][1:]
    return with_envelope(bundle, canonical(value), bytes.fromhex(bundle["record_id"]))


JS_VERDICTS = """
const [genesisText, named, done] = arguments;
import('/explorer/verify.js').then(async (m) => {
  const genesis = await m.parseGenesis(JSON.parse(genesisText));
  const out = {};
  for (const [name, bundle] of Object.entries(named)) {
    const v = await m.verdict(bundle, genesis);
    out[name] = v.ok ? 'ok' : v.step;
  }
  done(out);
}).catch((e) => done({error: String(e && e.stack || e)}));
"""


def test_page_and_ledger_agree_on_version_2_bundles(browser: Any, origin: str) -> None:  # noqa: F811
    named = cases()
    expected = {name: python_step(b) for name, b in named.items()}
    browser.get(origin + "/")
    got = browser.execute_async_script(JS_VERDICTS, json.dumps(GENESIS.raw), named)
    assert got == expected
    # The cases reach every step of the version 2 verifier, so agreeing means
    # something ("risk": a risk.* record's shape, tests/test_explorer_policy_gov.py).
    assert set(expected.values()) == {"ok", *V2_STEPS} - {"risk"}, \
        sorted(set(V2_STEPS) - set(expected.values()))


def epoch_proof(height: int) -> list[Any]:
    """What the page builds from a node's answers for a block of ``height``:
    the proof of the record named ``made_by.validators`` there (protocol §9.7)."""
    made = CHAIN_X.membership.at(height).to_json()["made_by"]
    if "validators" not in made:
        return []
    rid = bytes.fromhex(made["validators"])
    height_of, _ = CHAIN_X.locations[rid]
    record = next(e for e in ENVS_X.values() if getattr(e, "id", None) == rid)
    ids = CHAIN_X.membership.proof_ids(record.record.submitter, height_of)
    return [json.loads(json.dumps(build_bundle_v2(CHAIN_X, rid, ids)))]


JS_BLOCKS = """
const [genesisText, blocks, done] = arguments;
Promise.all([import('/explorer/verify.js'), import('/explorer/verify2.js')])
.then(async ([v, v2]) => {
  const genesis = await v.parseGenesis(JSON.parse(genesisText));
  const cache = v2.epochCache(genesis);
  const out = [];
  for (const b of blocks) {
    const entries = b.proof.length ? v2.epochProofOf(b.proof[0]) : [];
    const epoch = await v2.epochAt(entries, b.height, genesis, cache);
    const r = await v.verifyCertifiedBlock(b.header, b.certificate, epoch);
    const onGenesis = await v.verifyCertifiedBlock(b.header, b.certificate, genesis);
    out.push([r.ok ? r.signers.length + '/' + r.epoch.n : r.step, onGenesis.ok ? 'ok' : onGenesis.step]);
  }
  done(out);
}).catch((e) => done({error: String(e && e.stack || e)}));
"""


def test_block_pages_check_against_the_set_in_force(browser: Any, origin: str) -> None:  # noqa: F811
    blocks = []
    expected = []
    for height in range(1, CHAIN_X.height + 1):
        header, cert = CHAIN_X.headers[height - 1], CHAIN_X.certificates[height - 1]
        proof = epoch_proof(height)
        entries = [*proof[0]["governance"], {**proof[0], "format": "auditledger-proof/1"}] \
            if proof else []
        for entry in entries:
            entry.pop("governance", None)
        epoch = walk_governance(entries, GENESIS).at(height).as_genesis(GENESIS)
        verify_certified_header(header.header_bytes, cert, epoch)  # Python: valid in its epoch
        genesis_set = header.validators == GENESIS.validators_hash
        expected.append([f"{len(cert.signatures)}/{epoch.n}", "ok" if genesis_set else "validators"])
        blocks.append({"height": height, "header": base64.b64encode(header.header_bytes).decode(),
                       "certificate": cert.to_json(), "proof": proof})
    browser.get(origin + "/")
    got = browser.execute_async_script(JS_BLOCKS, json.dumps(GENESIS.raw), blocks)
    assert got == expected
    # Heights 4-7 have five validators, 8 on four again (a different four).
    assert [g[0].split("/")[1] for g in got] == ["4", "4", "4", "5", "5", "5", "5", "4", "4", "4"]
