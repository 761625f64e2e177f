"""``ledger-cluster init`` writes exactly the files of PROTOCOL §7."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

from ledger.genesis import parse_genesis
from ledger.keys import load_key_file
from node.settings_chain import DEFAULT_BLOCK_RECORDS, LimitsSettings


def test_init_writes_protocol_files(tmp_path: Path) -> None:
    d = tmp_path / "c"
    proc = subprocess.run([sys.executable, "-m", "node.cluster", "init", "--nodes", "4",
                           "--dir", str(d), "--base-port", "7900"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((d / "genesis.json").read_text())
    assert set(doc) == {"chain", "validators", "submitters", "members", "params"}
    assert re.fullmatch(r"demo-[0-9a-f]{16}", doc["chain"])  # fresh per init (issue 23)
    genesis = parse_genesis(doc)
    assert [v.address for v in genesis.validators] == [f"127.0.0.1:{7900 + i}" for i in range(4)]
    assert [s["name"] for s in doc["submitters"]] == ["demo"]
    assert doc["submitters"][0]["roles"] == ["read", "submit"]
    assert [m["name"] for m in doc["members"]] == [f"member{i}" for i in range(4)]
    assert genesis.governance_threshold == 3
    for name in ["node0", "node1", "node2", "node3", "demo", "member0", "member3"]:
        path = d / "keys" / f"{name}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        key_doc = json.loads(path.read_text())
        assert set(key_doc) == {"name", "pubkey", "seed"} and key_doc["name"] == name
        key = load_key_file(path)
        if name.startswith("node"):
            assert genesis.validators[int(name[4:])].pubkey == key.pubkey
        elif name.startswith("member"):
            assert key.pubkey in genesis.members
        else:
            assert key.pubkey in genesis.submitters
    for i in range(4):
        assert (d / f"node{i}" / "node.toml").exists()
    # The block cap in genesis, in each node.toml and a node's own default
    # are the one value (node/settings_chain.py).
    assert doc["params"]["max_block_records"] == DEFAULT_BLOCK_RECORDS == 4000
    for i in range(4):
        toml = tomllib.loads((d / f"node{i}" / "node.toml").read_text())
        assert toml["limits"]["max_block_records"] == DEFAULT_BLOCK_RECORDS
    assert LimitsSettings().max_block_records == DEFAULT_BLOCK_RECORDS
    again = subprocess.run([sys.executable, "-m", "node.cluster", "init", "--nodes", "4",
                            "--dir", str(d)], capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already holds a cluster" in again.stderr


def test_init_chain_option(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "node.cluster", "init", "--nodes", "1",
                           "--dir", str(tmp_path), "--chain", "prod-eu"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "genesis.json").read_text())["chain"] == "prod-eu"


def test_two_inits_are_two_chains(tmp_path: Path) -> None:
    chains = []
    for d in ("a", "b"):
        proc = subprocess.run([sys.executable, "-m", "node.cluster", "init", "--nodes", "1",
                               "--dir", str(tmp_path / d)], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        chains.append(json.loads((tmp_path / d / "genesis.json").read_text())["chain"])
    assert chains[0] != chains[1]
