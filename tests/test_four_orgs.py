"""docs/operators.md "Four organisations, four machines", run on one host:
one directory per organisation, keys made in each, only public files
copied to the assembler, then four nodes commit a record that verifies
against the assembled genesis.  Also the refusals of ``keygen`` and
``genesis``."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ledger.genesis import parse_genesis
from ledger.keys import load_key_file
from ledger.records import make_record, sign_record
from ledger.verify import verify_bundle
from node.cluster import node_toml
from node.cluster_keys import PublicFileError, assemble_genesis
from harness.localnet import FAST_PARAMS, free_base_port

ORGS = ["a", "b", "c", "d"]


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "node.cluster", *args], capture_output=True,
                          text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def make_keys(tmp: Path) -> tuple[dict[str, Path], Path]:
    """Steps 1 and 2: keys in each organisation's directory; public files
    copied to the assembler's."""
    orgs = {o: tmp / f"org-{o}" for o in ORGS}
    shared = tmp / "assembler"
    shared.mkdir()
    for o, home in orgs.items():
        cli("keygen", "--name", f"org-{o}", "--out", str(home / "keys"))
        cli("keygen", "--name", f"admin-{o}", "--out", str(home / "keys"))
    cli("keygen", "--name", "pos-eu", "--out", str(orgs["a"] / "service"))
    for home in orgs.values():
        for public in home.rglob("*.pub.json"):
            shutil.copy(public, shared / public.name)
    return orgs, shared


def test_keygen_writes_private_0600_and_public(tmp_path: Path) -> None:
    cli("keygen", "--name", "org-a", "--out", str(tmp_path))
    private, public = tmp_path / "org-a.json", tmp_path / "org-a.pub.json"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    pub = json.loads(public.read_text())
    assert set(pub) == {"name", "pubkey"} and pub["pubkey"] == load_key_file(private).pubkey.hex()
    again = cli("keygen", "--name", "org-a", "--out", str(tmp_path), ok=False)
    assert again.returncode != 0 and "never overwritten" in again.stderr


def test_genesis_refuses_private_files_and_bad_thresholds(tmp_path: Path) -> None:
    for name in ("v0", "v1", "v2", "v3", "m0"):
        cli("keygen", "--name", name, "--out", str(tmp_path))
    validators = [str(tmp_path / f"v{i}.pub.json") for i in range(4)]
    with pytest.raises(PublicFileError, match="private key file"):
        assemble_genesis("c", validators[:3] + [str(tmp_path / "v3.json")])
    proc = cli("genesis", "--chain", "c", *sum((["--validator", v] for v in validators), []),
               "--member", str(tmp_path / "m0.pub.json"), "--threshold", "2",
               "--out", str(tmp_path / "g.json"), ok=False)
    assert proc.returncode != 0 and "governance_threshold 2" in proc.stderr
    assert not (tmp_path / "g.json").exists()
    proc = cli("genesis", "--chain", "c", *sum((["--validator", v] for v in validators), []),
               "--validator", validators[0], "--out", str(tmp_path / "g.json"), ok=False)
    assert "duplicate pubkey" in proc.stderr


@pytest.mark.cluster
def test_four_organisations_walk(tmp_path: Path) -> None:
    orgs, shared = make_keys(tmp_path)
    # only public files crossed
    assert all("seed" not in json.loads(p.read_text()) for p in shared.iterdir())
    base = free_base_port(4)
    args = ["genesis", "--chain", "payments-test"]
    for i, o in enumerate(ORGS):
        args += ["--validator", f"{shared}/org-{o}.pub.json@127.0.0.1:{base + i}"]
    for o in ORGS:
        args += ["--member", f"{shared}/admin-{o}.pub.json"]
    args += ["--submitter", f"{shared}/pos-eu.pub.json:submit", "--out", f"{shared}/genesis.json"]
    cli(*args)
    doc = json.loads((shared / "genesis.json").read_text())
    genesis = parse_genesis(doc)
    assert [v.name for v in genesis.validators] == [f"org-{o}" for o in ORGS]
    assert genesis.governance_threshold == 3 and len(genesis.members) == 4
    # FAST_PARAMS: the test's nodes need not wait out production timeouts
    doc["params"].update(FAST_PARAMS)
    (shared / "genesis.json").write_text(json.dumps(doc, indent=2))
    digest = hashlib.sha256((shared / "genesis.json").read_bytes()).hexdigest()
    procs = []
    try:
        for i, (o, home) in enumerate(orgs.items()):
            shutil.copy(shared / "genesis.json", home / "genesis.json")
            assert hashlib.sha256((home / "genesis.json").read_bytes()).hexdigest() == digest
            toml = node_toml(i, base + i, tls=False, auth=False).replace('name = "node', 'name = "org-').replace(
                f'"org-{i}"', f'"org-{o}"').replace(
                f'key_file = "../keys/node{i}.json"', f'key_file = "keys/org-{o}.json"').replace(
                'genesis = "../genesis.json"', 'genesis = "genesis.json"')
            (home / "node.toml").write_text(toml)
            log = open(home / "node.log", "wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "node.main", "--config", str(home / "node.toml")],
                stdout=log, stderr=subprocess.STDOUT))
            log.close()
        url = f"http://127.0.0.1:{base}"
        deadline = time.monotonic() + 60
        service = load_key_file(orgs["a"] / "service" / "pos-eu.json").key
        record = make_record(chain="payments-test", submitter=service.public_key, nonce=1,
                             ts=int(time.time() * 1000), kind="payment",
                             origin={"system": "pos"}, body={"amount": 1250})
        envelope = sign_record(record, service)
        body = {"envelopes": [base64.b64encode(envelope.envelope_bytes).decode()]}
        while True:
            try:
                answer = http("POST", f"{url}/v1/records", body)["results"][0]
                if answer.get("status") in ("accepted", "duplicate", "committed"):
                    if http("GET", f"{url}/v1/records/{record.id.hex()}")["status"] == "committed":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (orgs["a"] / "node.log").read_text()[-3000:]
            time.sleep(0.2)
        bundle = http("GET", f"{url}/v1/records/{record.id.hex()}/proof")
        # the auditor holds only the genesis file, as read from disk
        auditor_genesis = json.loads((orgs["d"] / "genesis.json").read_text())
        assert verify_bundle(bundle, auditor_genesis).submitter_name == "pos-eu"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
