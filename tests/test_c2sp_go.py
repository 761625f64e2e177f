"""Our checkpoints and proofs, verified by Go's reference packages only.

A small Go program (tests/go/c2spcheck) is built against Debian's
golang.org/x/mod/sumdb/note and tlog, offline, and checks live checkpoints
of a 4-node cluster: a quorum of distinct validator signatures, a record's
inclusion from a c2sp.org/tlog-proof@v1 file, and consistency between two
checkpoints; tampered inputs are rejected.  With -witnesses, the same
program checks C2SP tlog-cosignature/v1 cosignatures that ledger-witness
made on an exported tlog-proof and a served checkpoint (crypto/ed25519 over
the spec's message: x/mod 0.7.0 has no verifier for key type 0x04).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.localnet import LocalCluster, until
from tests.test_cluster import Submitter, submit

pytestmark = pytest.mark.cluster

HERE = Path(__file__).parent
GOCODE = Path("/usr/share/gocode")
NOTE_PKG = GOCODE / "src/golang.org/x/mod/sumdb/note"
INSTALL = "apt-get install -y golang-go golang-golang-x-mod-dev"


@pytest.fixture(scope="module")
def c2spcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not NOTE_PKG.is_dir():
        pytest.skip(f"needs Go and golang.org/x/mod from Debian ({INSTALL})")
    work = tmp_path_factory.mktemp("go")
    shutil.copy(HERE / "go" / "c2spcheck" / "main.go", work / "main.go")
    # GOPATH mode against Debian's packaged sources: no module proxy, no network.
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOCODE), GOPROXY="off", GOFLAGS="",
               GOCACHE=str(work / "cache"), CGO_ENABLED="0")
    subprocess.run([go, "build", "-o", str(work / "c2spcheck"), "main.go"], cwd=work, env=env,
                   check=True, capture_output=True, timeout=240)
    return work / "c2spcheck"


def cli(name: str, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / name), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def run(tool: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 4)
    try:
        yield c
    finally:
        await c.stop_all()
        for i in range(c.n):
            print(f"---- node{i} log tail ----\n{c.tail(i, 15)}")


async def cosigned(c: LocalCluster, node: int, min_size: int) -> bytes:
    """The node's latest cosigned checkpoint once its log has min_size leaves."""
    found: list[bytes] = []

    async def ok() -> bool:
        got = await c.try_get(node, "/checkpoint")
        if got is None or got[0] != 200 or int(got[1].split(b"\n")[1]) < min_size:
            return False
        found.append(got[1])
        return True

    await until(ok, 30, f"a cosigned checkpoint of size >= {min_size} on node{node}")
    return found[-1]


async def test_go_verifies_checkpoints_inclusion_and_consistency(
        cluster: LocalCluster, c2spcheck: Path, tmp_path: Path) -> None:
    c = cluster
    await c.start_all()
    sub = Submitter(c)
    first = [sub.envelope() for _ in range(3)]
    await submit(c, 0, first)
    for e in first:
        await c.wait_committed([0, 1, 2, 3], e.id.hex())
    status, keys = await c.get(1, "/v1/checkpoint-keys")
    assert status == 200 and keys["quorum"] == 3 and len(keys["keys"]) == 4
    assert keys["origin"] == c.genesis.chain + ".auditledger"
    # The auditor's keys, derived by the Go program from the genesis file
    # alone; the node serves the same strings.
    derived = run(c2spcheck, "vkeys", c.dir / "genesis.json")
    assert derived.returncode == 0 and derived.stderr == "quorum 3\n", derived.stderr
    assert derived.stdout == "".join(k["vkey"] + "\n" for k in keys["keys"])
    vkeys = tmp_path / "vkeys"
    vkeys.write_text(derived.stdout)
    old = await cosigned(c, 2, 3)
    (tmp_path / "old").write_bytes(old)
    ok = run(c2spcheck, "checkpoint", vkeys, 3, tmp_path / "old")
    assert ok.returncode == 0, ok.stderr
    old_height = await _height_of(c, 2, old)
    assert (await c.get(3, f"/v1/checkpoints/{old_height}"))[0] == 200
    status, doc = await c.get(3, "/v1/checkpoints/99999")
    assert (status, doc["error"]) == (404, "not_found")
    status, doc = await c.get(3, "/v1/checkpoints/x1")
    assert (status, doc["error"]) == (400, "bad_request")
    status, doc = await c.get(3, f"/v1/records/{first[0].id.hex()}/proof?format=xml")
    assert (status, doc["error"]) == (400, "bad_request")

    second = [sub.envelope() for _ in range(4)]
    await submit(c, 3, second)
    for e in second:
        await c.wait_committed([0, 1, 2, 3], e.id.hex())
    old_size = int(old.split(b"\n")[1])
    new = await cosigned(c, 0, old_size + 4)
    new_size = int(new.split(b"\n")[1])
    (tmp_path / "new").write_bytes(new)
    status, cons = await c.get(0, f"/v1/consistency?from={old_size}&to={new_size}")
    assert status == 200
    (tmp_path / "cons").write_text("".join(base64.b64encode(bytes.fromhex(h)).decode() + "\n"
                                           for h in cons["path"]))
    ok = run(c2spcheck, "consistency", vkeys, 3, tmp_path / "old", tmp_path / "new",
             tmp_path / "cons")
    assert ok.returncode == 0, ok.stderr

    # Inclusion of a record from the first batch, through the tlog-proof file.
    rid = first[1].id.hex()
    status, proof = await c.get(1, f"/v1/records/{rid}/proof?format=tlog-proof")
    assert status == 200 and proof.startswith(b"c2sp.org/tlog-proof@v1\nindex ")
    (tmp_path / "proof").write_bytes(proof)
    (tmp_path / "entry").write_bytes(first[1].envelope_bytes)
    ok = run(c2spcheck, "inclusion", vkeys, 3, tmp_path / "proof", tmp_path / "entry")
    assert ok.returncode == 0, ok.stderr
    # The exported file is the one the auditor CLI writes too.
    cli = subprocess.run([str(Path(sys.executable).parent / "ledger-audit"), "export", rid,
                          "--genesis", str(c.dir / "genesis.json"), "--node", c.url(2),
                          "--format", "tlog-proof", "--output", str(tmp_path / "cli.tlog-proof")],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    ok = run(c2spcheck, "inclusion", vkeys, 3, tmp_path / "cli.tlog-proof", tmp_path / "entry")
    assert ok.returncode == 0, ok.stderr

    # Tampering: a flipped byte in the root, a stranger's signatures, a wrong index.
    lines = old.split(b"\n")
    root = bytearray(base64.b64decode(lines[2]))
    root[0] ^= 1
    lines[2] = base64.b64encode(bytes(root))
    (tmp_path / "bad-root").write_bytes(b"\n".join(lines))
    bad = run(c2spcheck, "checkpoint", vkeys, 3, tmp_path / "bad-root")
    assert bad.returncode == 1 and "note.Open" in bad.stderr, bad.stderr

    stranger_vkeys = tmp_path / "stranger"
    stranger_vkeys.write_text(_stranger_vkeys(keys["origin"]))
    bad = run(c2spcheck, "checkpoint", stranger_vkeys, 3, tmp_path / "old")
    assert bad.returncode == 1, bad.stdout
    bad = run(c2spcheck, "checkpoint", vkeys, 3, _with_foreign_signatures(tmp_path, old))
    assert bad.returncode == 1 and "validator signatures verify" in bad.stderr, bad.stderr

    index = int(proof.split(b"\n")[1].split(b" ")[1])
    (tmp_path / "bad-index").write_bytes(proof.replace(f"index {index}\n".encode(),
                                                       f"index {index + 1}\n".encode(), 1))
    bad = run(c2spcheck, "inclusion", vkeys, 3, tmp_path / "bad-index", tmp_path / "entry")
    assert bad.returncode == 1 and "CheckRecord" in bad.stderr, bad.stderr


async def _height_of(c: LocalCluster, node: int, signed: bytes) -> int:
    """The block whose log size the checkpoint states (the first such block)."""
    size = int(signed.split(b"\n")[1])
    height = 1
    while True:
        status, block = await c.get(node, f"/v1/blocks/{height}")
        assert status == 200
        if block["fields"]["log_size"] == size:
            return height
        height += 1


def _stranger_vkeys(origin: str) -> str:
    from ledger import note
    from ledger.crypto import SigningKey
    keys = note.verifiers(origin, [SigningKey(bytes([0x40 + i]) * 32).public_key
                                   for i in range(4)])
    return "".join(v.vkey + "\n" for v in keys)


def _with_foreign_signatures(tmp_path: Path, signed: bytes) -> Path:
    """One genuine validator signature plus two from a non-validator key that
    claims validator names: only one verifies under the validators' keys."""
    from ledger import note
    from ledger.crypto import SigningKey
    text, sigs = signed.split(b"\n\n", 1)
    text += b"\n"
    origin = text.split(b"\n")[0].decode()
    stranger = SigningKey(b"\x55" * 32)
    fake = note.verifiers(origin, [stranger.public_key] * 4)
    forged = note.format_note(text, {1: note.sign_text(stranger, text),
                                     2: note.sign_text(stranger, text)}, fake)
    out = tmp_path / "foreign"
    out.write_bytes(text + b"\n" + sigs.split(b"\n")[0] + b"\n" + forged.split(b"\n\n")[1])
    return out


async def test_go_verifies_witness_cosignatures(c2spcheck: Path, tmp_path: Path) -> None:
    """Two witnesses made with ledger-witness cosign the tip; Go checks their
    cosignatures (and the validators' quorum) on the tlog-proof ledger-audit
    exports and on the served checkpoint, and refuses tampered ones."""
    vkeys_w = []
    for i in (1, 2):
        made = cli("ledger-witness", "keygen", f"witness.example/w{i}", "--out", tmp_path / f"w{i}.json")
        assert made.returncode == 0, made.stderr
        vkeys_w.append(made.stdout.strip())
    edits = {i: [("[log]", f'[witness]\nkeys = "{" ".join(vkeys_w)}"\n\n[log]')] for i in range(4)}
    c = LocalCluster(tmp_path / "cluster", 4, toml_edits=edits)
    try:
        await c.start_all()
        sub = Submitter(c)
        envs = [sub.envelope() for _ in range(3)]
        await submit(c, 0, envs)
        for e in envs:
            await c.wait_committed([0, 1, 2, 3], e.id.hex())
        height = (await c.status(0) or {})["height"]

        async def at_tip() -> bool:
            got = await c.try_get(0, f"/v1/checkpoints/{height}")
            return got is not None and got[0] == 200
        await until(at_tip, 30, "a checkpoint at the tip")
        _, keys = await c.get(0, "/v1/checkpoint-keys")
        vkeys = tmp_path / "vkeys"
        vkeys.write_text("".join(k["vkey"] + "\n" for k in keys["keys"]))
        wkeys = tmp_path / "wkeys"
        wkeys.write_text("".join(v + "\n" for v in vkeys_w))
        genesis = c.dir / "genesis.json"
        before = int(time.time())
        for i in (1, 2):
            done = cli("ledger-witness", "cosign", "--node", c.url(0), "--genesis", genesis,
                       "--key", tmp_path / f"w{i}.json", "--state", tmp_path / f"w{i}.state")
            assert done.returncode == 0, done.stderr
        after = int(time.time())

        rid = envs[2].id.hex()
        exported = cli("ledger-audit", "export", rid, "--genesis", genesis, "--node", c.url(0),
                       "--format", "tlog-proof", *[a for v in vkeys_w for a in ("--witness", v)],
                       "--require-witnesses", 2, "--output", tmp_path / "proof")
        assert exported.returncode == 0, exported.stderr + exported.stdout
        (tmp_path / "entry").write_bytes(envs[2].envelope_bytes)
        witnessed = ["-witnesses", wkeys, "-wquorum"]
        ok = run(c2spcheck, *witnessed, 2, "inclusion", vkeys, 3, tmp_path / "proof",
                 tmp_path / "entry")
        assert ok.returncode == 0, ok.stderr
        stamps = {line.split()[1]: int(line.split()[-1]) for line in ok.stdout.splitlines()
                  if line.startswith("witness ")}
        assert set(stamps) == {"witness.example/w1", "witness.example/w2"}, ok.stdout
        assert all(before <= t <= after for t in stamps.values()), (stamps, before, after)
        _, served = await c.get(0, f"/v1/checkpoints/{height}")
        (tmp_path / "note").write_bytes(served)
        assert run(c2spcheck, *witnessed, 2, "checkpoint", vkeys, 3, tmp_path / "note").returncode == 0
        short = run(c2spcheck, *witnessed, 3, "checkpoint", vkeys, 3, tmp_path / "note")
        assert short.returncode == 1 and "2 witness cosignatures verify, 3 needed" in short.stderr

        # Tampering.  A cosignature whose timestamp is changed: note.Open
        # refuses the note (a trusted key's signature that does not verify).
        text, sigs = served.split(b"\n\n", 1)
        lines = sigs.decode().splitlines()
        w1 = next(i for i, line in enumerate(lines) if line.startswith("\u2014 witness.example/w1 "))
        blob = bytearray(base64.b64decode(lines[w1].split(" ")[2]))
        blob[4:12] = struct.pack(">Q", struct.unpack(">Q", blob[4:12])[0] + 1)
        moved = lines.copy()
        moved[w1] = f"\u2014 witness.example/w1 {base64.b64encode(bytes(blob)).decode()}"
        (tmp_path / "moved").write_text(text.decode() + "\n\n" + "\n".join(moved) + "\n")
        bad = run(c2spcheck, *witnessed, 1, "checkpoint", vkeys, 3, tmp_path / "moved")
        assert bad.returncode == 1 and "witness.example/w1" in bad.stderr, bad.stderr
        # The checkpoint's root changed under the witness lines alone (the
        # validators' keys replaced by strangers', whose lines are ignored).
        root = bytearray(base64.b64decode(text.split(b"\n")[2]))
        root[0] ^= 1
        forged = b"\n".join([*text.split(b"\n")[:2], base64.b64encode(bytes(root))])
        (tmp_path / "forged").write_bytes(forged + b"\n\n" + sigs)
        stranger = tmp_path / "stranger"
        stranger.write_text(_stranger_vkeys(keys["origin"]))
        assert run(c2spcheck, *witnessed, 1, "checkpoint", stranger, 0,
                   tmp_path / "note").returncode == 0  # the control: the true root passes
        bad = run(c2spcheck, *witnessed, 1, "checkpoint", stranger, 0, tmp_path / "forged")
        assert bad.returncode == 1 and "invalid signature" in bad.stderr, bad.stderr
        # A key not trusted, claiming a trusted witness's name: its line is
        # not the witness's (another key id), so it does not count.
        from ledger import witness
        from ledger.crypto import SigningKey
        fake = witness.cosign(SigningKey(b"\x66" * 32), "witness.example/w2", text + b"\n", after)
        kept = [line for line in lines if not line.startswith("\u2014 witness.example/w2 ")]
        (tmp_path / "fake").write_text(text.decode() + "\n\n" + "\n".join([*kept, fake]) + "\n")
        bad = run(c2spcheck, *witnessed, 2, "checkpoint", vkeys, 3, tmp_path / "fake")
        assert bad.returncode == 1 and "1 witness cosignatures verify, 2 needed" in bad.stderr
        # A validator's key is no witness key (type 0x01, not 0x04).
        (tmp_path / "typed").write_text(keys["keys"][0]["vkey"] + "\n")
        bad = run(c2spcheck, "-witnesses", tmp_path / "typed", "-wquorum", 1, "checkpoint",
                  vkeys, 3, tmp_path / "note")
        assert bad.returncode == 1 and "type 0x04" in bad.stderr, bad.stderr
    finally:
        await c.stop_all()
