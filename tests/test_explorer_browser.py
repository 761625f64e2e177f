"""The web explorer in a real browser (headless Chromium) against a live
cluster: its pages load, its in-page verifier passes real records and
their ancestry, names the failed step of a bundle tampered with by a proxy,
and agrees with ledger/verify.py on a set of valid and invalid bundles.

Set ``EXPLORER_SCREENSHOTS=docs/images`` to (re)take the screenshots that
docs/auditors.md shows.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from browser import browser, free_port, open_page  # noqa: F401 (fixture)
from test_cluster import Submitter, submit

from ledger.batch_envelopes import sign_batch
from ledger.blocks import Header, decode_header
from ledger.crypto import SigningKey
from ledger.encoding import canonical
from ledger.errors import VerificationError
from ledger.genesis import parse_genesis
from ledger.keys import load_key_file
from ledger.records import make_record, sign_record
from ledger.verify import verify_bundle
from harness.localnet import LocalCluster, until

pytestmark = pytest.mark.cluster

SHOTS = os.environ.get("EXPLORER_SCREENSHOTS")
HOSTILE_KIND = "<img src=x onerror=\"window.pwned=1\">"
TORSION_KEY = bytes([1]) + bytes(31)  # the identity point
ED25519_L = 2**252 + 27742317777372353535851937790883648493


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Selenium blocks; the cluster helpers and the proxy run on this loop."""
    return await asyncio.to_thread(fn, *args)


def text_of(driver: Any, css: str) -> str:
    return str(driver.find_element("css selector", css).text)


def attr(driver: Any, css: str, name: str) -> str:
    return str(driver.find_element("css selector", css).get_attribute(name))


async def lineage_cluster(tmp_path: Path) -> tuple[LocalCluster, Submitter, list[Any]]:
    c = LocalCluster(tmp_path / "cluster", 4, submitters={"auditor": ["read"]})
    everyone = await c.start_all()
    sub = Submitter(c)
    batch = sub.lineage(3)  # three payments, a settlement of them, a refund of the first
    await submit(c, 0, batch)
    await c.wait_committed(everyone, batch[-1].id.hex())
    await c.wait_committed(everyone, batch[-2].id.hex())
    return c, sub, batch


def screenshot(driver: Any, name: str, height: int) -> None:
    if SHOTS:
        driver.set_window_size(1280, height)
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / name))


async def test_explorer_pages_verify_live_records(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    c, sub, batch = await lineage_cluster(tmp_path)
    try:
        pays, settle, refund = batch[:3], batch[3], batch[4]
        base = c.url(0) + "/explorer/"
        genesis_bytes = (c.dir / "genesis.json").read_bytes()

        # Head: status, the latest C2SP checkpoint's signatures and the
        # tip's certificate, checked in the page.
        async def cosigned() -> bool:
            got = await c.try_get(0, "/checkpoint")
            return got is not None and got[0] == 200
        await until(cosigned, 30, "a cosigned checkpoint on node0")
        await in_thread(open_page, browser, base)
        assert text_of(browser, "#genesis-sha256") == hashlib.sha256(genesis_bytes).hexdigest()
        assert attr(browser, "#block-verdict", "data-ok") == "true"
        assert "of 4 validators" in text_of(browser, "#block-verdict")
        assert attr(browser, "#checkpoint-verdict", "data-ok") == "true"
        assert "of 4 validators" in text_of(browser, "#checkpoint-verdict")
        await check_tampered_checkpoints(c, browser)
        screenshot(browser, "explorer-head.png", 900)

        # The settlement: verified, its three parents drawn and verified too.
        await in_thread(open_page, browser, base + f"#/record/{settle.id.hex()}")
        verdict = text_of(browser, "#record-verdict")
        assert attr(browser, "#record-verdict", "data-ok") == "true", verdict
        signers = int(verdict.split("verified by ")[1].split(" ")[0])
        assert 3 <= signers <= 4 and "of 4 validators" in verdict
        rows = browser.find_elements("css selector", "#lineage-bundles tr.bundle")
        assert {r.get_attribute("data-record-id") for r in rows} == {
            e.id.hex() for e in (settle, *pays)}
        assert all(r.get_attribute("data-ok") == "true" for r in rows)
        nodes = browser.find_elements("css selector", "svg.lineage g.node")
        states = {n.get_attribute("data-id"): n.get_attribute("data-state") for n in nodes}
        assert states == {e.id.hex(): "verified" for e in (settle, *pays)}
        assert len(browser.find_elements("css selector", "svg.lineage line.edge")) == 3
        assert "settlement" in text_of(browser, "#main")
        # No risk.alert or risk.decision among its children (test_explorer_alerts has some).
        assert text_of(browser, "#record-alerts") == text_of(browser, "#record-decisions") == "none"
        _, doc = await c.get(0, f"/v1/records/{settle.id.hex()}")
        if "verdict" in doc:  # PROTOCOL §10.8, and proven by the bundle (§10.11)
            assert attr(browser, "#record-verdict-status", "data-outcome") == \
                str(doc["verdict"]["outcome"])
            # no policy on this chain: a version 1 block proves allow, verified in the page
            assert attr(browser, "#record-verdict-status", "data-verified") == "true"
        screenshot(browser, "explorer-record.png", 1500)

        # The first payment: its children (the settlement and the refund) are
        # drawn, their bundles verified in the page too (looking for alerts).
        await in_thread(open_page, browser, base + f"#/record/{pays[0].id.hex()}")
        nodes = browser.find_elements("css selector", "svg.lineage g.node")
        states = {n.get_attribute("data-id"): n.get_attribute("data-state") for n in nodes}
        assert states == {pays[0].id.hex(): "verified", settle.id.hex(): "verified",
                          refund.id.hex(): "verified"}

        # Record text is shown as text: markup in a kind, origin or body
        # creates no element and runs nothing.
        hostile = sign_record(make_record(
            chain=c.genesis.chain, submitter=sub.key.public_key, nonce=sub.nonce + 100,
            ts=int(time.time() * 1000), kind=HOSTILE_KIND, parents=[settle.id],
            origin={"<b>key</b>": HOSTILE_KIND, "system": "a\u202eb"},
            body={"note": "<script>window.pwned = 1</script>"}), sub.key)
        await submit(c, 0, [hostile])
        await c.wait_committed([0], hostile.id.hex())
        await in_thread(open_page, browser, base + f"#/record/{hostile.id.hex()}")
        assert attr(browser, "#record-verdict", "data-ok") == "true"
        main = text_of(browser, "#main")
        assert HOSTILE_KIND in main and "<script>window.pwned = 1</script>" in main
        assert browser.execute_script(
            "return [document.querySelectorAll('img, b, main script').length, "
            "window.pwned === undefined]") == [0, True]
        kinds = [t.text for t in browser.find_elements("css selector", "svg.lineage text.kind")]
        assert any(k.startswith("<img") for k in kinds), kinds

        # The block holding them lists their ids, its certificate checked.
        _, rec = await c.get(0, f"/v1/records/{settle.id.hex()}")
        await in_thread(open_page, browser, base + f"#/block/{rec['height']}")
        assert attr(browser, "#block-verdict", "data-ok") == "true"
        assert settle.id.hex() in text_of(browser, "#block-records")
        screenshot(browser, "explorer-block.png", 1000)
        await in_thread(open_page, browser, base + "#/blocks")
        assert len(browser.find_elements("css selector", "#blocks tr")) >= 2

        # A record signed as one of a batch (protocol §2): verified in the page.
        batched = sign_batch([make_record(
            chain=c.genesis.chain, submitter=sub.key.public_key, nonce=sub.nonce + 200 + i,
            ts=int(time.time() * 1000), kind="payment", body={"amount": i}) for i in range(3)],
            sub.key)
        await submit(c, 0, list(batched))
        await c.wait_committed([0], batched[-1].id.hex())
        await in_thread(open_page, browser, base + f"#/record/{batched[1].id.hex()}")
        assert attr(browser, "#record-verdict", "data-ok") == "true"

        # The page's verifier agrees with ledger/verify.py, step for step.
        await cross_check(c, browser, base, settle.id.hex(), pays[0].id.hex(),
                          batched[1].id.hex())

        # An auditor's own genesis file replaces the node's: one with another
        # validator set makes the same record fail at "validators".
        doc = json.loads(genesis_bytes)
        doc["validators"][0]["pubkey"] = SigningKey(bytes(32)).public_key.hex()
        theirs = tmp_path / "their-genesis.json"
        theirs.write_text(json.dumps(doc))
        await in_thread(open_page, browser, base + f"#/record/{settle.id.hex()}")
        await in_thread(load_genesis_file, browser, theirs)
        assert text_of(browser, "#genesis-sha256") == hashlib.sha256(theirs.read_bytes()).hexdigest()
        assert "loaded from your file their-genesis.json" in text_of(browser, "#genesis")
        assert attr(browser, "#record-verdict", "data-step") == "validators"
    finally:
        await c.stop_all()


def load_genesis_file(driver: Any, path: Path) -> None:
    """Choose ``path`` in the page's genesis file input and wait until the
    page has verified again against it."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element("id", "genesis-file").send_keys(str(path))
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "const s = document.getElementById('genesis');"
        "return s.textContent.includes('loaded from your file')"
        " && document.getElementById('main').getAttribute('data-state') === 'ready'"))


# -- the JS-level cross-check --------------------------------------------------


def python_step(bundle: Any, genesis: Any) -> str:
    try:
        verify_bundle(bundle, genesis)
    except VerificationError as exc:
        return exc.step
    return "ok"


def with_envelope(bundle: dict[str, Any], envelope: bytes, record_id: bytes) -> dict[str, Any]:
    out = copy.deepcopy(bundle)
    out["envelope"] = base64.b64encode(envelope).decode()
    out["record_id"] = record_id.hex()
    return out


def signed_by(key: SigningKey, chain: str, nonce: int) -> Any:
    record = make_record(chain=chain, submitter=key.public_key, nonce=nonce, ts=1_700_000_000_000,
                         kind="payment", origin={"system": "x"}, body={"amount": 1})
    return sign_record(record, key)


def batch_cases(own: dict[str, Any]) -> dict[str, Any]:
    """A batched record's bundle, and its batch path or form damaged."""
    import msgpack

    value = msgpack.unpackb(base64.b64decode(own["envelope"]), raw=False)
    record_id = bytes.fromhex(own["record_id"])

    def with_batch(**changes: Any) -> dict[str, Any]:
        return with_envelope(own, canonical({**value, "batch": {**value["batch"], **changes}}),
                             record_id)

    path = list(value["batch"]["path"])
    return {
        "valid batched": own,
        "batch path too short": with_batch(path=path[:-1] or [bytes(32)] * 2),
        "batch path forged": with_batch(path=[bytes(32)] + path[1:]),
        "batch index moved": with_batch(index=(value["batch"]["index"] + 1) % value["batch"]["size"]),
        "batch size 1": with_batch(size=1, index=0),
        "batch with cosigs": with_envelope(own, canonical({**value, "cosigs": [
            {"key": bytes(32), "sig": bytes(64)}]}), record_id),
        "batch extra key": with_batch(extra=1),
    }


def cases(c: LocalCluster, own: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """Named bundles: two real ones and mutations aimed at each step."""
    demo = load_key_file(c.dir / "keys" / "demo.json").key
    auditor = load_key_file(c.dir / "keys" / "auditor.json").key
    chain = c.genesis.chain
    env = base64.b64decode(own["envelope"])
    header = decode_header(base64.b64decode(own["header"]))

    def edit(fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        out = copy.deepcopy(own)
        fn(out)
        return out

    def header_like(**changes: Any) -> str:
        fields = {k: getattr(header, k) for k in ("chain", "height", "prev", "time", "proposer",
                                                  "tx_count", "tx_root", "log_size", "log_root",
                                                  "validators")}
        return base64.b64encode(Header(**{**fields, **changes}).header_bytes).decode()

    def record_env(record_bytes: bytes, sig: bytes = bytes(64)) -> bytes:
        return canonical({"record": record_bytes, "sig": sig})

    import msgpack  # the plain packer: it writes what canonical() refuses to

    record_map = msgpack.unpackb(msgpack.unpackb(env, raw=False)["record"], raw=False)
    unsorted = msgpack.packb(dict(reversed(list(record_map.items()))), use_bin_type=True)
    floaty = msgpack.packb({**record_map, "body": {"amount": 1.5}}, use_bin_type=True)
    long_bin = (b"\x82\xa6record\xc5" + len(msgpack.unpackb(env, raw=False)["record"])
                .to_bytes(2, "big") + msgpack.unpackb(env, raw=False)["record"] + env[-68:])
    sig = env[-64:]
    s_plus_l = sig[:32] + (int.from_bytes(sig[32:], "little") + ED25519_L).to_bytes(32, "little")
    other_chain = signed_by(demo, "elsewhere", 1)
    stranger = signed_by(SigningKey(bytes(range(32))), chain, 2)
    reader = signed_by(auditor, chain, 3)
    # The identity point as a key, and R = identity, S = 0: the equation
    # holds for every message; libsodium refuses keys and R of small order.
    torsion = make_record(chain=chain, submitter=TORSION_KEY, nonce=4, ts=1_700_000_000_000,
                          kind="payment")
    torsion_env = canonical({"record": torsion.record_bytes, "sig": TORSION_KEY + bytes(32)})
    return {
        "valid": own,
        "valid parent": parent,
        "no format": edit(lambda b: b.pop("format")),
        "other format": edit(lambda b: b.update(format="auditledger-proof/2")),
        "extra key": edit(lambda b: b.update(note="x")),
        "leaf_index string": edit(lambda b: b.update(leaf_index=str(b["leaf_index"]))),
        "negative height": edit(lambda b: b.update(height=-1)),
        "uppercase id": edit(lambda b: b.update(record_id=b["record_id"].upper())),
        "base64 without padding": edit(lambda b: b.update(envelope=b["envelope"].rstrip("="))
                                       if b["envelope"].endswith("=") else b.update(envelope="A")),
        "certificate extra key": edit(lambda b: b["certificate"].update(extra=1)),
        "other chain": edit(lambda b: b.update(chain="elsewhere")),
        "truncated envelope": with_envelope(own, env[:-1], bytes.fromhex(own["record_id"])),
        "bin16 envelope": with_envelope(own, long_bin, bytes.fromhex(own["record_id"])),
        "unsorted record": with_envelope(own, record_env(unsorted), hashlib.sha256(unsorted).digest()),
        "float in body": with_envelope(own, record_env(floaty), hashlib.sha256(floaty).digest()),
        "wrong record id": edit(lambda b: b.update(record_id=parent["record_id"])),
        "record of another chain": with_envelope(own, other_chain.envelope_bytes, other_chain.id),
        "unknown submitter": with_envelope(own, stranger.envelope_bytes, stranger.id),
        "submitter without role": with_envelope(own, reader.envelope_bytes, reader.id),
        "small-order key and R": with_envelope(own, torsion_env, torsion.id),
        "flipped signature": with_envelope(own, env[:-1] + bytes([env[-1] ^ 1]),
                                           bytes.fromhex(own["record_id"])),
        # S + L (still below 2^256) satisfies the equation; libsodium refuses it.
        "S + L": with_envelope(own, env[:-64] + s_plus_l, bytes.fromhex(own["record_id"])),
        "header not msgpack": edit(lambda b: b.update(header="wQ==")),
        "header of another chain": edit(lambda b: b.update(header=header_like(chain="elsewhere"))),
        "other validator set": edit(lambda b: b.update(header=header_like(validators=bytes(32)))),
        "height off by one": edit(lambda b: b.update(height=b["height"] + 1)),
        "flipped inclusion": edit(lambda b: b["inclusion"].__setitem__(
            0, f"{int(b['inclusion'][0][:2], 16) ^ 1:02x}" + b["inclusion"][0][2:])),
        "long inclusion": edit(lambda b: b["inclusion"].append("00" * 32)),
        "other leaf": edit(lambda b: b.update(leaf_index=b["leaf_index"] ^ 1)),
        "certificate for another block": edit(lambda b: b["certificate"].update(block="11" * 32)),
        "certificate height": edit(lambda b: b["certificate"].update(height=b["height"] + 1)),
        "flipped precommit": edit(lambda b: b["certificate"]["signatures"][0].update(
            sig=("00" if b["certificate"]["signatures"][0]["sig"][:2] != "00" else "01")
            + b["certificate"]["signatures"][0]["sig"][2:])),
        "signer twice": edit(lambda b: b["certificate"]["signatures"].append(
            dict(b["certificate"]["signatures"][0]))),
        "signer not in genesis": edit(lambda b: b["certificate"]["signatures"][0].update(
            validator=9)),
        "other round": edit(lambda b: b["certificate"].update(round=b["certificate"]["round"] + 1)),
        "below quorum": edit(lambda b: b["certificate"].update(
            signatures=b["certificate"]["signatures"][:2])),
    }


JS_CHECKPOINTS = """
const [genesisText, named, done] = arguments;
Promise.all([import('/explorer/verify.js'), import('/explorer/checkpoint.js')])
.then(async ([v, cp]) => {
  const genesis = await v.parseGenesis(JSON.parse(genesisText));
  const out = {};
  for (const [name, note] of Object.entries(named)) {
    const r = await cp.verifyCheckpoint(note, genesis);
    out[name] = r.ok ? 'ok' : r.message;
  }
  done(out);
}).catch((e) => done({error: String(e)}));
"""


async def check_tampered_checkpoints(c: LocalCluster, driver: Any) -> None:
    """The page's checkpoint verifier refuses a changed root and a note
    with fewer than a quorum of validator signatures."""
    _, note = await c.get(0, "/checkpoint")
    text, sigs = note.decode().split("\n\n")
    lines = text.split("\n")
    root = bytearray(base64.b64decode(lines[2]))
    root[0] ^= 1
    flipped = "\n".join([*lines[:2], base64.b64encode(bytes(root)).decode()]) + "\n\n" + sigs
    two = text + "\n\n" + "\n".join(sigs.split("\n")[:2]) + "\n"
    got = await in_thread(driver.execute_async_script, JS_CHECKPOINTS,
                          (c.dir / "genesis.json").read_text(),
                          {"served": note.decode(), "flipped": flipped, "two": two})
    assert got["served"] == "ok", got
    assert "does not verify" in got["flipped"], got
    assert "2 validator signatures verify; 3 are needed" == got["two"], got


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
}).catch((e) => done({error: String(e)}));
"""


async def cross_check(c: LocalCluster, driver: Any, base: str, record: str, parent: str,
                      batched: str) -> None:
    _, own = await c.get(0, f"/v1/records/{record}/proof")
    _, par = await c.get(0, f"/v1/records/{parent}/proof")
    _, bat = await c.get(0, f"/v1/records/{batched}/proof")
    named = cases(c, own, par) | batch_cases(bat)
    # The cluster's genesis, with one more submitter: the identity point.
    doc = json.loads((c.dir / "genesis.json").read_text())
    doc["submitters"].append({"name": "torsion", "pubkey": TORSION_KEY.hex(), "roles": ["submit"]})
    genesis_text = json.dumps(doc)
    genesis = parse_genesis(doc)
    expected = {name: python_step(b, genesis) for name, b in named.items()}
    await in_thread(open_page, driver, base)
    got = await in_thread(driver.execute_async_script, JS_VERDICTS, genesis_text, named)
    assert got == expected
    # The set covers every step of the verifier, so agreement means something.
    assert set(expected.values()) == {"ok", *VERIFY_STEPS}, set(expected.values())


VERIFY_STEPS = ("bundle", "format", "chain", "envelope", "record_id", "record_chain", "submitter",
                "role", "batch_path", "signature", "header", "header_chain", "validators", "height",
                "inclusion", "certificate_block", "certificate_height", "certificate", "quorum")


# -- a tampering proxy ---------------------------------------------------------


class TamperProxy:
    """Serves the node's answers, with the record's own bundle in trace
    answers damaged as ``mode`` says ("inclusion", "signature" or None)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode: str | None = None
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.forward)
        self.session = aiohttp.ClientSession()
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def forward(self, request: web.Request) -> web.Response:
        async with self.session.get(self.upstream + request.path_qs) as answer:
            body = await answer.read()
            headers = {k: v for k, v in answer.headers.items()
                       if k.lower() in ("content-type", "content-security-policy")}
        if request.path.endswith("/trace") and answer.status == 200 and self.mode:
            doc = json.loads(body)
            own = doc["bundles"][0]
            if self.mode == "inclusion":
                first = own["inclusion"][0]
                own["inclusion"][0] = f"{int(first[:2], 16) ^ 0x80:02x}" + first[2:]
            elif self.mode == "signature":
                env = bytearray(base64.b64decode(own["envelope"]))
                env[-1] ^= 0x01  # the last byte of the submitter's signature
                own["envelope"] = base64.b64encode(bytes(env)).decode()
            body = json.dumps(doc).encode()
        return web.Response(body=body, status=answer.status, headers=headers)


async def test_explorer_names_the_failed_step_of_a_tampered_bundle(
        tmp_path: Path, browser: Any) -> None:  # noqa: F811
    c, sub, batch = await lineage_cluster(tmp_path)
    proxy = TamperProxy(c.url(0))
    try:
        base = await proxy.start() + "/explorer/"
        settle = batch[3].id.hex()
        page = base + f"#/record/{settle}"
        # Through the proxy, untouched: verified.
        await in_thread(open_page, browser, page)
        assert attr(browser, "#record-verdict", "data-ok") == "true"
        for mode in ("inclusion", "signature"):
            proxy.mode = mode
            await in_thread(open_page, browser, page)
            assert attr(browser, "#record-verdict", "data-ok") == "false"
            assert attr(browser, "#record-verdict", "data-step") == mode
            assert f'FAILED at step "{mode}"' in text_of(browser, "#record-verdict")
            # The parents' bundles were not touched and still verify.
            rows = browser.find_elements("css selector", "#lineage-bundles tr.bundle")
            assert [r.get_attribute("data-ok") for r in rows] == ["false", "true", "true", "true"]
            node = browser.find_element("css selector", f'svg.lineage g[data-id="{settle}"]')
            assert node.get_attribute("data-state") == "failed"
            if mode == "inclusion":
                screenshot(browser, "explorer-tampered.png", 900)
    finally:
        await proxy.stop()
        await c.stop_all()
