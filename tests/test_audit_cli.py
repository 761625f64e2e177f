"""``ledger-audit verify``: exit 0 valid, 1 invalid (naming the step), 2 usage
or unreadable input.  Through click's CliRunner, and once through the
installed console script."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from memchain import build_chain

from client.audit.cli import COMMANDS, main
from client.audit.common import iso8601_ms
from ledger.proofs import build_bundle

MEM, DOC, VKEYS, SKEY, ENVS = build_chain((3, 1, 4, 2))
BUNDLE = build_bundle(MEM, ENVS[5].id)
RECORD_ID = ENVS[5].id.hex()
BLOCK_TIME = iso8601_ms(MEM.header(3).time)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"bundle": tmp_path / "bundle.json", "genesis": tmp_path / "genesis.json"}
    paths["bundle"].write_text(json.dumps(BUNDLE))
    paths["genesis"].write_text(json.dumps(DOC))
    return paths


def run(*args: Any, input: str | None = None) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_iso8601() -> None:
    assert iso8601_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso8601_ms(1_700_000_003_042) == "2023-11-14T22:13:23.042Z"
    assert iso8601_ms(2**63) .endswith("after the epoch")


def test_valid_bundle_one_line_summary(files: dict[str, Path]) -> None:
    result = run("verify", files["bundle"], "--genesis", files["genesis"])
    assert result.exit_code == 0, result.output
    line, verdict, *labels = result.output.strip().splitlines()
    assert line.startswith("VALID")
    # a version 1 block commits no verdicts: allow, no policy (PROTOCOL §10.11)
    assert verdict.startswith("  verdict: allow (no policy), status allowed (verified: block 3")
    assert RECORD_ID in line and "height 3" in line
    assert f"by submitter key {SKEY.public_key.hex()[:16]}" in line
    assert BLOCK_TIME in line and BLOCK_TIME == "2023-11-14T22:13:23.000Z"
    # The submitter's name is a label from the genesis file, below the summary.
    assert "demo" not in line
    assert labels[0].startswith("Labels from your genesis file (sha256 ")
    assert f"  submitter key {SKEY.public_key.hex()[:16]}: demo" in labels


def test_valid_bundle_json(files: dict[str, Path]) -> None:
    result = run("verify", files["bundle"], "--genesis", files["genesis"], "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["valid"] is True
    assert doc["record_id"] == RECORD_ID
    assert doc["submitter"] == "demo"
    assert doc["height"] == 3 and doc["leaf_index"] == 5
    assert doc["block_time"] == BLOCK_TIME
    assert doc["block_hash"] == MEM.header(3).hash.hex()


def test_bundle_from_stdin(files: dict[str, Path]) -> None:
    result = run("verify", "-", "--genesis", files["genesis"], input=json.dumps(BUNDLE))
    assert result.exit_code == 0, result.output


def _tampered(mutate: Any) -> dict[str, Any]:
    b = copy.deepcopy(BUNDLE)
    mutate(b)
    return b


@pytest.mark.parametrize(
    "mutate,step,message",
    [
        (lambda b: b["inclusion"].__setitem__(0, "00" * 32), "inclusion",
         "computed root does not match"),
        (lambda b: b.__setitem__("record_id", ENVS[0].id.hex()), "record_id", "H(record_bytes)"),
        (lambda b: b["certificate"]["signatures"].pop(), "quorum", "quorum is 3 of 4"),
        (lambda b: b.__setitem__("format", "x"), "format", "not 'auditledger-proof/1'"),
        (lambda b: b.__setitem__("height", 4), "height", "header height 3"),
        (lambda b: b.__setitem__("extra", 1), "bundle", "extra ['extra']"),
    ],
)
def test_invalid_bundle_names_the_step(
    files: dict[str, Path], mutate: Any, step: str, message: str, tmp_path: Path
) -> None:
    bad = write(tmp_path / "bad.json", _tampered(mutate))
    result = run("verify", bad, "--genesis", files["genesis"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"INVALID at step '{step}': ")
    assert message in result.output
    as_json = run("verify", bad, "--genesis", files["genesis"], "--json")
    assert as_json.exit_code == 1
    doc = json.loads(as_json.output)
    assert doc["valid"] is False and doc["step"] == step and message in doc["message"]


def test_wrong_genesis_is_invalid_not_usage(files: dict[str, Path], tmp_path: Path) -> None:
    other = write(tmp_path / "other.json", dict(DOC, chain="other"))
    result = run("verify", files["bundle"], "--genesis", other)
    assert result.exit_code == 1
    assert "step 'chain'" in result.output


def test_bundle_that_is_json_but_not_an_object(files: dict[str, Path], tmp_path: Path) -> None:
    result = run("verify", write(tmp_path / "list.json", [BUNDLE]), "--genesis", files["genesis"])
    assert result.exit_code == 1
    assert "step 'bundle'" in result.output


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\xff\xfe\x00", b'{"format": 1, "format": 2}'],
)
def test_unparseable_bundle_exits_2(files: dict[str, Path], tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    result = run("verify", path, "--genesis", files["genesis"])
    assert result.exit_code == 2, result.output
    assert "BUNDLE.json" in result.output


def test_missing_and_unreadable_files_exit_2(files: dict[str, Path], tmp_path: Path) -> None:
    result = run("verify", tmp_path / "missing.json", "--genesis", files["genesis"])
    assert result.exit_code == 2 and "cannot read" in result.output
    result = run("verify", files["bundle"], "--genesis", tmp_path / "missing.json")
    assert result.exit_code == 2 and "--genesis" in result.output
    result = run("verify", tmp_path, "--genesis", files["genesis"])  # a directory
    assert result.exit_code == 2
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.json"
        locked.write_text(json.dumps(BUNDLE))
        locked.chmod(0)
        result = run("verify", locked, "--genesis", files["genesis"])
        assert result.exit_code == 2 and "cannot read" in result.output


@pytest.mark.parametrize(
    "genesis",
    [b"{not json", b"[]", b'{"chain": "test"}', json.dumps(dict(DOC, validators=[])).encode()],
)
def test_bad_genesis_exits_2(files: dict[str, Path], tmp_path: Path, genesis: bytes) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(genesis)
    result = run("verify", files["bundle"], "--genesis", path)
    assert result.exit_code == 2, result.output
    assert "--genesis" in result.output


def test_usage_errors_exit_2(files: dict[str, Path]) -> None:
    assert run("verify", files["bundle"]).exit_code == 2            # no --genesis
    assert run("verify", "--genesis", files["genesis"]).exit_code == 2  # no bundle
    assert run("nonsense").exit_code == 2
    assert run("verify", files["bundle"], "--genesis", files["genesis"], "--bogus").exit_code == 2


def test_group_lists_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
    assert run("--version").exit_code == 0


def test_verify_does_not_load_the_network_client(files: dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "from client.audit.cli import main\n"
        f"try:\n    main(['verify', {str(files['bundle'])!r}, '--genesis', {str(files['genesis'])!r}])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'aiohttp' not in sys.modules and 'asyncio' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)


def test_installed_console_script(files: dict[str, Path], tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ledger-audit"
    assert script.exists(), f"{script} missing: is the project installed (pip install -e .)?"
    ok = subprocess.run([str(script), "verify", str(files["bundle"]), "--genesis",
                         str(files["genesis"])], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("VALID") and RECORD_ID in ok.stdout
    bad = write(tmp_path / "bad.json", _tampered(lambda b: b["inclusion"].pop()))
    invalid = subprocess.run([str(script), "verify", str(bad), "--genesis", str(files["genesis"]),
                              "--json"], capture_output=True, text=True)
    assert invalid.returncode == 1
    assert json.loads(invalid.stdout)["step"] == "inclusion"
    usage = subprocess.run([str(script), "verify", str(tmp_path / "nope.json"), "--genesis",
                            str(files["genesis"])], capture_output=True, text=True)
    assert usage.returncode == 2
