"""Witness cosignatures (PROTOCOL §13, C2SP tlog-cosignature/v1) in the
explorer: node/explorer/static/checkpoint.js's verifyCosignatures agrees
with ledger/witness.py on valid, moved, forged and foreign cosignature
lines and on keys that are not cosignature keys; and on a live cluster the
head page lists a witness's cosignature of the latest checkpoint, verified
in the page."""

from __future__ import annotations

import asyncio
import base64
import struct
from pathlib import Path
from typing import Any

import pytest
from browser import browser, open_page  # noqa: F401 (fixture)
from test_explorer_epochs import origin  # noqa: F401 (fixture)

from ledger import note, witness
from ledger.crypto import SigningKey
from ledger.errors import BadSignature
from ledger.note import NoteError

W1 = witness.Witness("w.example/1", SigningKey(b"\x31" * 32).public_key)
W2 = witness.Witness("w.example/2", SigningKey(b"\x32" * 32).public_key)
K1 = SigningKey(b"\x31" * 32)
TEXT = note.checkpoint_text("demo.auditledger", 7, bytes(range(32)))
OTHER = note.checkpoint_text("demo.auditledger", 8, bytes(range(32)))


def signed(text: bytes, *lines: str) -> str:
    return text.decode() + "\n" + "".join(line + "\n" for line in lines)


def moved(line: str) -> str:
    name, blob = line.removeprefix("\u2014 ").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[4:12] = struct.pack(">Q", struct.unpack(">Q", raw[4:12])[0] + 1)
    return f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}"


def python_view(note_text: str, vkey: str) -> Any:
    """What ledger/witness.py says of ``vkey``'s cosignature on the note."""
    try:
        w = witness.parse_vkey(vkey)
    except ValueError:
        return {"ok": False}
    text = note_text[:note_text.rindex("\n\n") + 1].encode()
    for line in note_text[note_text.rindex("\n\n") + 2:-1].split("\n"):
        try:
            got = witness.verify_line(line, [w], text)
        except NoteError:
            continue  # not this witness's line
        except BadSignature:
            return {"ok": False}
        return {"ok": True, "timestamp": got.timestamp}
    return None


def test_page_and_ledger_agree_on_cosignatures(browser: Any, origin: str) -> None:  # noqa: F811
    good = witness.cosign(K1, W1.name, TEXT, 1_800_000_000)
    stranger = witness.cosign(SigningKey(b"\x33" * 32), W1.name, TEXT, 5)  # claims W1's name
    notes = {
        "valid": signed(TEXT, good),
        "timestamp moved": signed(TEXT, moved(good)),
        "other checkpoint": signed(OTHER, good),
        "a stranger claiming the name": signed(TEXT, stranger),
        "no witness line": signed(TEXT),
    }
    vkeys = [W1.vkey, W2.vkey, note.vkey(W1.name, W1.public_key)]  # the last: type 01
    cases = [(name, n, vkey) for name, n in notes.items() for vkey in vkeys]
    expected = [python_view(n, vkey) for _, n, vkey in cases]
    assert {"ok": True, "timestamp": 1_800_000_000} in expected and {"ok": False} in expected
    browser.get(origin + "/")
    got = browser.execute_async_script("""
        const [cases, done] = arguments;
        import('/explorer/checkpoint.js').then(async (m) => {
          const out = [];
          for (const [, text, vkey] of cases) {
            const [r] = await m.verifyCosignatures(text, [vkey]);
            out.push(r === null ? null : r.ok ? {ok: true, timestamp: Number(r.timestamp)} : {ok: false});
          }
          done(out);
        }).catch((e) => done({error: String(e && e.stack || e)}));""", cases)
    assert dict(zip([f"{c[0]} / {c[2][:14]}" for c in cases], got)) == \
        dict(zip([f"{c[0]} / {c[2][:14]}" for c in cases], expected))


@pytest.mark.cluster
async def test_head_page_lists_a_verified_witness_cosignature(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    from test_cluster import Submitter, submit

    from harness.localnet import LocalCluster, until

    edits = {i: [("[log]", f'[witness]\nkeys = "{W1.vkey} {W2.vkey}"\n\n[log]')] for i in range(4)}
    c = LocalCluster(tmp_path / "cluster", 4, toml_edits=edits)
    try:
        everyone = await c.start_all()
        env = Submitter(c).envelope()
        await submit(c, 0, [env])
        await c.wait_committed(everyone, env.id.hex())
        height = (await c.status(0) or {})["height"]

        async def at_tip() -> bool:
            got = await c.try_get(0, "/checkpoint")
            return got is not None and got[0] == 200 and int(got[1].split(b"\n")[1]) == 1
        await until(at_tip, 30, "the checkpoint of the tip")
        _, body = await c.get(0, f"/v1/checkpoints/{height}")
        line = witness.cosign(K1, W1.name, body[:body.index(b"\n\n") + 1], 1_800_000_000)
        async with c.http().post(c.url(0) + f"/v1/checkpoints/{height}/cosignatures",
                                 data=line.encode()) as answer:
            assert answer.status == 200, await answer.text()
        await asyncio.to_thread(open_page, browser, c.url(0) + "/explorer/")
        items = browser.find_elements("css selector", "#checkpoint-witnesses li")
        got = {i.get_attribute("data-witness"): (i.get_attribute("data-ok"), i.text) for i in items}
        assert got[W1.name][0] == "true" and "2027-01-15T08:00:00.000Z" in got[W1.name][1]
        assert got[W2.name][0] == "absent"
    finally:
        await c.stop_all()
