"""C2SP tlog-cosignature/v1 (ledger/witness.py, PROTOCOL §13): the bytes a
witness signs, its key id and verifier key, and the refusals; and on a live
cluster, a trusted witness's cosignature accepted, kept across a restart and
served in the checkpoint notes, an untrusted or forged one refused."""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

import pytest

from ledger import note, witness
from ledger.crypto import SigningKey
from ledger.errors import BadSignature
from ledger.note import NoteError

KEY = SigningKey(bytes(range(32)))
NAME = "witness.example.com/w1"
TEXT = note.checkpoint_text("demo.auditledger", 5, bytes(32))
W = witness.Witness(NAME, KEY.public_key)


def test_signed_bytes_key_id_and_vkey_follow_the_spec() -> None:
    assert witness.signed_message(TEXT, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\ndemo.auditledger\n5\n"
        + base64.b64encode(bytes(32)) + b"\n")
    assert W.key_id == hashlib.sha256(NAME.encode() + b"\n\x04" + KEY.public_key).digest()[:4]
    assert witness.parse_vkey(W.vkey) == W
    line = witness.cosign(KEY, NAME, TEXT, 1679315147)
    name, blob = line.removeprefix("\u2014 ").split(" ")
    raw = base64.b64decode(blob)
    assert name == NAME and raw[:4] == W.key_id and struct.unpack(">Q", raw[4:12])[0] == 1679315147
    from ledger.crypto import verify_signature  # over the spec's message, no prefix

    verify_signature(KEY.public_key, b"", witness.signed_message(TEXT, 1679315147), raw[12:])
    got = witness.verify_line(line, [W], TEXT)
    assert (got.witness, got.timestamp) == (W, 1679315147)


def test_refusals() -> None:
    line = witness.cosign(KEY, NAME, TEXT, 7)
    other_text = note.checkpoint_text("demo.auditledger", 6, bytes(32))
    with pytest.raises(BadSignature):
        witness.verify_line(line, [W], other_text)
    with pytest.raises(NoteError):  # not a trusted witness
        witness.verify_line(line, [witness.Witness("other", KEY.public_key)], TEXT)
    with pytest.raises(NoteError):
        witness.verify_line("not a line", [W], TEXT)
    with pytest.raises(NoteError):
        witness.verify_line(line[:-8], [W], TEXT)
    # a validator's note signature (type 0x01 key id) is not a cosignature
    sig = note.sign_text(KEY, TEXT)
    plain = f"\u2014 {NAME} {base64.b64encode(note.key_id(NAME, KEY.public_key) + sig).decode()}"
    with pytest.raises(NoteError):
        witness.verify_line(plain, [W], TEXT)
    for bad in ["x", W.vkey.replace("+", "-", 1), note.vkey(NAME, KEY.public_key),
                W.vkey[:-4] + "AAA=", f"{NAME}+00000000+{W.vkey.split('+')[2]}"]:
        with pytest.raises(ValueError):
            witness.parse_vkey(bad)


@pytest.mark.cluster
async def test_a_node_keeps_and_serves_a_trusted_witness_cosignature(tmp_path: Path) -> None:
    from test_cluster import Submitter, submit

    from harness.localnet import LocalCluster, until

    untrusted = SigningKey(bytes(range(1, 33)))
    edits = {i: [("[log]", f'[witness]\nkeys = "{W.vkey}"\n\n[log]')] for i in range(4)}
    c = LocalCluster(tmp_path / "cluster", 4, toml_edits=edits)
    await c.start_all()
    try:
        env = Submitter(c).envelope()
        await submit(c, 0, [env])
        await c.wait_committed([0, 1, 2, 3], env.id.hex())

        async def cosigned() -> bool:
            got = await c.try_get(0, "/checkpoint")
            return got is not None and got[0] == 200
        await until(cosigned, 30, "a checkpoint")
        session = c.http()
        async with session.get(c.url(0) + "/checkpoint") as answer:
            height = int(answer.headers["Checkpoint-Height"])
            signed = await answer.read()
        text = signed[:signed.index(b"\n\n") + 1]
        line = witness.cosign(KEY, NAME, text, 1_800_000_000)
        url = c.url(0) + f"/v1/checkpoints/{height}/cosignatures"
        async with session.post(url, data=line.encode()) as answer:
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["witness"] == NAME
        for body, code in [(witness.cosign(untrusted, NAME, text, 1), 400),
                           (line.replace(line[-6:-2], "AAAA"), 400), (b"\xff", 400)]:
            async with session.post(url, data=body if isinstance(body, bytes) else body.encode()) as a:
                assert a.status == code, await a.text()
        async with session.post(c.url(0) + "/v1/checkpoints/99999/cosignatures",
                                data=line.encode()) as answer:
            assert answer.status == 404
        _, keys = await c.get(0, "/v1/checkpoint-keys")
        assert keys["witnesses"] == [{"name": NAME, "vkey": W.vkey}]

        async def served() -> bool:
            got = await c.try_get(0, f"/v1/checkpoints/{height}")
            return got is not None and line.encode() + b"\n" in got[1]
        await until(served, 10, "the cosignature in the note")
        # The validators' quorum still verifies with the witness line in the note.
        verifiers = note.verifiers(note.origin(c.genesis.chain), list(c.genesis.validator_keys))
        _, body = await c.get(0, f"/v1/checkpoints/{height}")
        assert len(note.open_note(body, verifiers, 3).signers) >= 3
        # Persisted: served again after a restart.
        c.signal(0, __import__("signal").SIGTERM)
        c.procs[0].wait(20)
        c.start(0)
        await c.wait_connected([0, 1, 2, 3])
        await until(served, 30, "the cosignature after a restart")
    finally:
        await c.stop_all()


@pytest.mark.cluster
async def test_ledger_witness_cosigns_only_a_grown_log(tmp_path: Path) -> None:
    """ledger-witness: keygen prints the vkey the nodes trust; cosign checks
    the quorum and the growth from its last checkpoint, submits, and keeps
    state; a state file of another root at the same size is a fork."""
    import asyncio
    import json

    from click.testing import CliRunner
    from test_cluster import Submitter, submit

    from client.sdk import LedgerClient
    from client.witness import WitnessError, cosign_once, main
    from harness.localnet import LocalCluster, until
    from ledger.keys import load_key_file

    result = CliRunner().invoke(main, ["keygen", "w.example/1", "--out", str(tmp_path / "w.json")])
    assert result.exit_code == 0, result.output
    vkey = result.output.strip()
    kf = load_key_file(tmp_path / "w.json")
    assert witness.parse_vkey(vkey) == witness.Witness("w.example/1", kf.key.public_key)
    edits = {i: [("[log]", f'[witness]\nkeys = "{vkey}"\n\n[log]')] for i in range(4)}
    c = LocalCluster(tmp_path / "cluster", 4, toml_edits=edits)
    await c.start_all()
    state = tmp_path / "state.json"
    try:
        sub = Submitter(c)

        sub_last: list[str] = [""]

        async def commit_one() -> None:
            env = sub.envelope()
            sub_last[0] = env.id.hex()
            await submit(c, 0, [env])
            await c.wait_committed([0, 1, 2, 3], env.id.hex())

            async def quorum() -> bool:
                st = await c.status(0)
                got = await c.try_get(0, f"/v1/checkpoints/{st['height']}") if st else None
                return got is not None and got[0] == 200
            await until(quorum, 30, "a checkpoint at the tip")

        await commit_one()
        async with LedgerClient([c.url(0)], retries=1) as client:
            first = await cosign_once(client, c.genesis, kf.key, kf.name, state, now=1_800_000_000)
            assert first["witness"] == "w.example/1"
            await commit_one()
            second = await cosign_once(client, c.genesis, kf.key, kf.name, state, now=1_800_000_001)
            assert second["log_size"] > first["log_size"]
            _, body = await c.get(0, f"/v1/checkpoints/{second['height']}")
            assert "\u2014 w.example/1 ".encode() in body
            doc = json.loads(state.read_text())
            assert doc["size"] == second["log_size"]
            # ledger-audit export --require-witnesses: the tlog-proof's note
            # carries the witness line, checked against the key given.
            from client.audit.cli import main as audit
            genesis_file = str(c.dir / "genesis.json")
            args = ["export", sub_last[0], "--genesis", genesis_file, "--node", c.url(0),
                    "--format", "tlog-proof", "--witness", vkey, "-o", str(tmp_path / "p.txt")]
            ok = await asyncio.to_thread(CliRunner().invoke, audit, [*args, "--require-witnesses", "1"])
            assert ok.exit_code == 0, ok.output
            assert "witness w.example/1" in ok.output
            other = witness.Witness("w.example/2", SigningKey(bytes(32)).public_key).vkey
            short = await asyncio.to_thread(CliRunner().invoke, audit,
                                            [*args, "--witness", other, "--require-witnesses", "2"])
            assert short.exit_code != 0 and "1 of the trusted witnesses" in short.output
            doc["root"] = "00" * 32  # the same size with another root: a fork
            state.write_text(json.dumps(doc))
            with pytest.raises(WitnessError, match="fork"):
                await cosign_once(client, c.genesis, kf.key, kf.name, state)
    finally:
        await c.stop_all()
