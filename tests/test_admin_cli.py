"""``ledger-admin``: a proposal made in one organisation's directory, signed
in two others' (only the proposal file moves), shown, submitted to a fake
node; and each refusal (exit 2)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from govhelpers import EXTRA_SEED_BASE, gov_genesis
from helpers import make_keys
from sdk_fakes import FakeNode, serve

from client.admin.cli import main
from ledger.keys import write_key_file
from ledger.membership import Membership
from ledger.records import decode_envelope

GENESIS, VKEYS, MKEYS, SKEY = gov_genesis(4, 3)  # threshold: 2 of 3
NEW = make_keys(1, EXTRA_SEED_BASE)[0]


def admin(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def org_dir(tmp_path: Path, i: int) -> Path:
    """An organisation's directory: its own member key and the public genesis."""
    d = tmp_path / f"org{i}"
    d.mkdir()
    write_key_file(d / "admin.json", f"org{i}", MKEYS[i])
    (d / "genesis.json").write_text(json.dumps(GENESIS.raw))
    return d


def carry(src: Path, dst_dir: Path) -> Path:
    """The proposal file, and only it, goes to the next organisation."""
    dst = dst_dir / "proposal.json"
    shutil.copyfile(src, dst)
    return dst


def make_proposal(tmp_path: Path, expires: int = 100) -> tuple[list[Path], Path]:
    orgs = [org_dir(tmp_path, i) for i in range(3)]
    a = orgs[0]
    res = admin("propose", "validator.add", "name=v4", f"pubkey={NEW.public_key.hex()}",
                "address=10.0.0.4:7700", "--key", a / "admin.json", "--genesis", a / "genesis.json",
                "--expires-height", expires, "--out", a / "proposal.json", "--nonce", 7)
    assert res.exit_code == 0, res.output
    assert "threshold not met: 1 of 2" in res.output
    return orgs, a / "proposal.json"


def test_propose_sign_elsewhere_show_and_submit(tmp_path: Path) -> None:
    orgs, path = make_proposal(tmp_path)
    for org in orgs[1:]:
        path = carry(path, org)
        res = admin("sign", path, "--key", org / "admin.json", "--genesis", org / "genesis.json",
                    "--height", 10)
        assert res.exit_code == 0, res.output
    res = admin("show", path, "--genesis", orgs[0] / "genesis.json")
    assert res.exit_code == 0, res.output
    assert "threshold met: 3 of 2 member signatures" in res.output
    assert "member org1" in res.output and "member org2" in res.output
    doc = json.loads(admin("show", path, "--genesis", orgs[2] / "genesis.json", "--json").output)
    assert doc["threshold_met"] is True and doc["kind"] == "gov.validator.add"
    assert doc["body"]["pubkey"] == NEW.public_key.hex()
    # The envelope is what a validator judges: a valid governance record at height 10.
    envelope = decode_envelope(
        __import__("base64").b64decode(json.loads(path.read_text())["envelope"]), cosigs=True)
    change = Membership.from_genesis(GENESIS).check_governance(envelope, 10)
    assert change.effective == 12

    node = FakeNode()

    async def go() -> Result:
        async with serve(node) as urls:
            return await asyncio.to_thread(admin, "submit", path, "--node", urls[0])

    res = asyncio.run(go())
    assert res.exit_code == 0, res.output
    assert "SUBMITTED" in res.output and envelope.id.hex() in res.output
    assert node.received == [envelope.envelope_bytes]


def test_submit_reports_the_nodes_refusal(tmp_path: Path) -> None:
    _, path = make_proposal(tmp_path)
    rid = json.loads(path.read_text())["record_id"]
    node = FakeNode(refuse_codes={rid: "too_few_signatures"})

    async def go() -> Result:
        async with serve(node) as urls:
            return await asyncio.to_thread(admin, "submit", path, "--node", urls[0])

    res = asyncio.run(go())
    assert res.exit_code == 1 and "REFUSED too_few_signatures" in res.output


def _refused(res: Result, code: str) -> None:
    assert res.exit_code == 2, res.output
    assert f"refused ({code})" in res.output


def test_duplicate_signer_is_refused(tmp_path: Path) -> None:
    orgs, path = make_proposal(tmp_path)
    before = path.read_bytes()
    _refused(admin("sign", path, "--key", orgs[0] / "admin.json", "--genesis",
                   orgs[0] / "genesis.json"), "duplicate_signer")
    assert path.read_bytes() == before  # nothing changed
    b = carry(path, orgs[1])
    assert admin("sign", b, "--key", orgs[1] / "admin.json", "--genesis", orgs[1] / "genesis.json").exit_code == 0
    _refused(admin("sign", b, "--key", orgs[1] / "admin.json", "--genesis",
                   orgs[1] / "genesis.json"), "duplicate_signer")


def test_non_member_key_is_refused(tmp_path: Path) -> None:
    orgs, path = make_proposal(tmp_path)
    write_key_file(tmp_path / "stranger.json", "stranger", SKEY)  # a submitter, not a member
    _refused(admin("sign", path, "--key", tmp_path / "stranger.json", "--genesis",
                   orgs[0] / "genesis.json"), "not_a_member")
    _refused(admin("propose", "scope.pause", "scope=kind", "value=payment", "--key",
                   tmp_path / "stranger.json", "--genesis", orgs[0] / "genesis.json",
                   "--expires-height", 9, "--out", tmp_path / "p2.json"), "not_a_member")
    # under a membership file where org1 was removed, org1 is no member
    membership = Membership.from_genesis(GENESIS).at(1).to_json()
    membership["members"] = [m for m in membership["members"] if m["name"] != "org1"]
    (tmp_path / "membership.json").write_text(json.dumps(membership))
    _refused(admin("sign", path, "--key", orgs[1] / "admin.json", "--membership",
                   tmp_path / "membership.json"), "not_a_member")


def test_expired_proposal_is_refused_when_signing_and_submitting(tmp_path: Path) -> None:
    orgs, path = make_proposal(tmp_path, expires=5)
    _refused(admin("sign", path, "--key", orgs[1] / "admin.json", "--genesis",
                   orgs[1] / "genesis.json", "--height", 6), "expired")
    assert "EXPIRED" in admin("show", path, "--height", 6).output
    node = FakeNode()
    for _ in range(5):  # the chain is at height 5: the next block is 6
        node.blocks.append([])

    async def go() -> Result:
        async with serve(node) as urls:
            return await asyncio.to_thread(admin, "submit", path, "--node", urls[0])

    _refused(asyncio.run(go()), "expired")
    assert node.received == []


def test_malformed_files_are_refused(tmp_path: Path) -> None:
    orgs, path = make_proposal(tmp_path)
    doc: dict[str, Any] = json.loads(path.read_text())
    cases = {
        "notjson.json": "{not json",
        "format.json": json.dumps(dict(doc, format="something/1")),
        "b64.json": json.dumps(dict(doc, envelope="!!!")),
        "sig.json": json.dumps(dict(doc, envelope=doc["envelope"][:-8] + "AAAAAAA=")),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        _refused(admin("show", tmp_path / name), "malformed")
        _refused(admin("sign", tmp_path / name, "--key", orgs[1] / "admin.json",
                       "--genesis", orgs[1] / "genesis.json"), "malformed")
    _refused(admin("show", tmp_path / "missing.json"), "malformed")
    # a bad field value never makes a proposal
    _refused(admin("propose", "validator.add", "name=v4", "pubkey=zz", "address=x", "--key",
                   orgs[0] / "admin.json", "--genesis", orgs[0] / "genesis.json",
                   "--expires-height", 9, "--out", tmp_path / "p3.json"), "bad_field")
    _refused(admin("propose", "validator.add", "name=v4", "--key", orgs[0] / "admin.json",
                   "--genesis", orgs[0] / "genesis.json", "--expires-height", 9,
                   "--out", tmp_path / "p4.json"), "bad_field")
    assert not (tmp_path / "p3.json").exists() and not (tmp_path / "p4.json").exists()


def test_show_escapes_text_from_the_file(tmp_path: Path) -> None:
    orgs = [org_dir(tmp_path, 0)]
    res = admin("propose", "scope.pause", "scope=system", "value=evil\x1b]0;pwn\x07[bold]",
                "--key", orgs[0] / "admin.json", "--genesis", orgs[0] / "genesis.json",
                "--expires-height", 9, "--out", tmp_path / "p.json")
    assert res.exit_code == 0, res.output
    out = admin("show", tmp_path / "p.json").output
    assert "\x1b" not in out and "\\x1b]0;pwn\\x07[bold]" in out
