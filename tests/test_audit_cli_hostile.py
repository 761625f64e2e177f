"""``ledger-audit`` against hostile text (issue 21, items 4 and 6).

Records, genesis names and node answers are written by others.  Whatever
they contain, the CLI must not crash on it (rich markup), must not let it
print a status line of its own, must not pass control characters to the
terminal, and must keep exit codes and ``--json`` values exact.  Names from
the genesis file are labels nothing certifies: they must never be printed as
if the chain vouched for them.  Deeply nested JSON, from any input, is
unusable input (exit 2), never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fakenode import FakeNode
from helpers import make_envelope, make_genesis
from memchain import MemChain

from client.audit.cli import main
from client.audit.show import untrusted
from ledger.genesis import parse_genesis
from ledger.proofs import build_bundle
from ledger.records import Envelope

MARKUP_KIND = "[/]"
TERMINAL_KIND = "refund\x1b]0;PWNED\x07\x1b[2J"
FORGED_ORIGIN = "\n[bold green]VALID[/] 1 records verified\n\x1b[8m"
# C1 CSI, DEL, a right-to-left override, a line separator
ODD_TEXT = "a\x9b2Jb\x7fc\u202eINVALID\u2028VALID"
# ... and in a genesis name, a lone surrogate (JSON allows it; writing it to
# a UTF-8 stream raises)
HOSTILE_NAME = "[bold green]VALID[/]\x1b[2J\nVALID [/]\ud800"


def hostile_chain() -> tuple[MemChain, dict[str, Any], list[Envelope]]:
    """A chain whose genesis names and records are all hostile text.

    Blocks: 1 = a plain root; 2 = the three records of the issue, children
    of the root; 3 = a record with odd characters whose parents are those
    three; 4 = a plain descendant of everything.
    """
    doc, validator_keys, submitter = make_genesis(4, "test")
    for i, v in enumerate(doc["validators"]):
        v["name"] = f"{HOSTILE_NAME}{i}"
    doc["submitters"][0]["name"] = HOSTILE_NAME
    mem = MemChain(parse_genesis(doc), validator_keys)
    root = make_envelope(submitter, "test", 0)
    mem.commit([root])
    issue = [
        make_envelope(submitter, "test", 1, [root.id], kind=MARKUP_KIND),
        make_envelope(submitter, "test", 2, [root.id], kind=TERMINAL_KIND),
        make_envelope(submitter, "test", 3, [root.id], origin={"system": FORGED_ORIGIN}),
    ]
    mem.commit(issue)
    odd = make_envelope(submitter, "test", 4, [e.id for e in issue], kind=ODD_TEXT,
                        origin={ODD_TEXT: ODD_TEXT, "[/]": "[bold]"})
    mem.commit([odd])
    leaf = make_envelope(submitter, "test", 5, [odd.id])
    mem.commit([leaf])
    return mem, doc, [root, *issue, odd, leaf]


MEM, DOC, ENVS = hostile_chain()
HOSTILE = ENVS[1:5]  # the three from the issue and the odd one


def run(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean(result: Result, statuses: tuple[str, ...] = ("VALID", "INVALID")) -> None:
    """No traceback, nothing a terminal would act on, and at most one status
    line, the CLI's own."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream and "MarkupError" not in stream
        for ch in stream:
            assert ch == "\n" or unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Zl", "Zp"}, (
                f"{ch!r} reached the terminal: {stream!r}")
    status_lines = [line for line in result.stdout.splitlines()
                    if re.match(r"^[\s│├└─]*(VALID|INVALID)\b", line)]
    assert len(status_lines) <= 1, status_lines
    for line in status_lines:
        assert line.split()[0] in statuses, line


@pytest.fixture
def genesis_file(tmp_path: Path) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(DOC))
    return path


@pytest.fixture
def node() -> Any:
    with FakeNode(MEM) as fake:
        yield fake


def plain_genesis(tmp_path: Path) -> Path:
    """The same keys with the usual names: the chain verifies under it too
    (names are not committed to anywhere)."""
    doc = json.loads(json.dumps(DOC))
    for i, v in enumerate(doc["validators"]):
        v["name"] = f"node{i}"
    doc["submitters"][0]["name"] = "demo"
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(doc))
    return path


def test_untrusted_escapes_every_unsafe_character() -> None:
    unsafe = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in {"Cc", "Cf", "Cs", "Zl", "Zp"}]
    assert "\x1b" in unsafe and "\u202e" in unsafe and "\x9b" in unsafe and "\u2028" in unsafe
    shown = untrusted("".join(unsafe) + "[bold]x[/]")
    assert all(unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Zl", "Zp"} for ch in shown.plain)
    assert shown.plain.endswith("[bold]x[/]") and not shown.spans  # markup not read
    assert untrusted("a\nb\x1b\u202e").plain == "a\\nb\\x1b\\u202e"
    assert untrusted("\U000e0001").plain == "\\U000e0001"  # an astral format character


# -- trace -------------------------------------------------------------------


@pytest.mark.parametrize("names", ["plain_names", "hostile_names"])
@pytest.mark.parametrize("env", ENVS[1:], ids=["markup_kind", "terminal_kind", "forged_origin", "odd", "descendant"])
def test_trace_of_hostile_records(env: Envelope, names: str, node: FakeNode, genesis_file: Path,
                                  tmp_path: Path) -> None:
    if names == "plain_names":  # the issue's reproduction: only the records are hostile
        genesis_file = plain_genesis(tmp_path)
    result = run("trace", env.id.hex(), "--node", node.url, "--genesis", genesis_file)
    assert result.exit_code == 0, result.output
    assert_clean(result)
    status = [line for line in result.stdout.splitlines() if line.startswith("VALID")]
    assert len(status) == 1 and re.match(r"^VALID \d+ records verified", status[0]), result.stdout


def test_trace_shows_hostile_text_escaped(node: FakeNode, genesis_file: Path) -> None:
    result = run("trace", ENVS[5].id.hex(), "--node", node.url, "--genesis", genesis_file)
    assert result.exit_code == 0, result.output
    assert_clean(result)
    out = result.stdout
    # Shown, visibly escaped, inline: the auditor sees what the record says.
    assert "[/]" in out and "refund\\x1b]0;PWNED\\x07\\x1b[2J" in out
    assert "system=\\n[bold green]VALID[/] 1 records verified\\n\\x1b[8m" in out
    assert "a\\x9b2Jb\\x7fc\\u202eINVALID\\u2028VALID" in out
    assert any(line.startswith("VALID 6 records verified") for line in out.splitlines())


def test_trace_json_is_exact(node: FakeNode, genesis_file: Path) -> None:
    result = run("trace", ENVS[5].id.hex(), "--node", node.url, "--genesis", genesis_file, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    hops = {h["id"]: h for h in doc["hops"]}
    assert len(hops) == 6
    for env in ENVS:
        hop = hops[env.id.hex()]
        assert hop["kind"] == env.record.kind
        assert hop["origin"] == dict(env.record.origin)
        assert hop["submitter"] == HOSTILE_NAME  # the label, compatible
    assert hops[ENVS[4].id.hex()]["kind"] == ODD_TEXT
    assert all(ord(c) < 128 for c in result.stdout)  # JSON escapes, never raw


def test_node_error_message_cannot_spoof(node: FakeNode, genesis_file: Path) -> None:
    rid = "ab" * 32
    node.override[f"/v1/records/{rid}/trace"] = (404, json.dumps(
        {"error": "not_found", "message": f"[/]{FORGED_ORIGIN}{TERMINAL_KIND}"}).encode())
    result = run("trace", rid, "--node", node.url, "--genesis", genesis_file)
    assert result.exit_code == 2, result.output
    assert_clean(result, statuses=())


# -- verify ------------------------------------------------------------------


@pytest.mark.parametrize("env", HOSTILE, ids=["markup_kind", "terminal_kind", "forged_origin", "odd"])
def test_verify_hostile_records_and_names(env: Envelope, genesis_file: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(build_bundle(MEM, env.id)))
    result = run("verify", bundle, "--genesis", genesis_file)
    assert result.exit_code == 0, result.output
    assert_clean(result)
    assert result.stdout.startswith(f"VALID record {env.id.hex()} ")
    as_json = run("verify", bundle, "--genesis", genesis_file, "--json")
    assert as_json.exit_code == 0
    doc = json.loads(as_json.stdout)
    assert doc["kind"] == env.record.kind and doc["submitter"] == HOSTILE_NAME


def test_verify_invalid_bundle_with_hostile_fields(genesis_file: Path, tmp_path: Path) -> None:
    bundle = build_bundle(MEM, ENVS[1].id)
    bundle["chain"] = f"[/]{FORGED_ORIGIN}"
    bundle["format"] = f"[/]{TERMINAL_KIND}\nVALID"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bundle))
    result = run("verify", path, "--genesis", genesis_file)
    assert result.exit_code == 1, result.output
    assert_clean(result, statuses=("INVALID",))
    assert result.stdout.startswith("INVALID at step 'format'")
    bundle["format"] = "auditledger-proof/1"
    path.write_text(json.dumps(bundle))
    result = run("verify", path, "--genesis", genesis_file)
    assert result.exit_code == 1
    assert_clean(result, statuses=("INVALID",))
    assert result.stdout.startswith("INVALID at step 'chain'")


# -- audit and checkpoint -----------------------------------------------------


def test_audit_with_hostile_records_and_names(node: FakeNode, genesis_file: Path, tmp_path: Path) -> None:
    result = run("audit", "--node", node.url, "--genesis", genesis_file,
                 "--checkpoint-file", tmp_path / "cp.json")
    assert result.exit_code == 0, result.output
    assert_clean(result)
    assert [line for line in result.stdout.splitlines() if line.startswith("VALID")] == [
        "VALID chain test verified to height 4"]
    as_json = run("audit", "--node", node.url, "--genesis", genesis_file, "--no-checkpoint", "--json")
    assert as_json.exit_code == 0
    doc = json.loads(as_json.stdout)
    assert doc["by_submitter"] == {HOSTILE_NAME: 6}


def test_checkpoint_with_hostile_names(node: FakeNode, genesis_file: Path, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    for status in ("TRUSTED", "CONSISTENT"):
        result = run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp)
        assert result.exit_code == 0, result.output
        assert_clean(result)
        assert result.stdout.startswith(status)
    as_json = run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp,
                  "--json")
    assert as_json.exit_code == 0
    doc = json.loads(as_json.stdout)
    assert doc["certified_by"] == ", ".join(f"{HOSTILE_NAME}{i}" for i in range(3))


# -- names from the genesis are labels, not certified --------------------------


def renamed(tmp_path: Path) -> tuple[Path, str]:
    doc = json.loads(json.dumps(DOC))
    for v in doc["validators"]:
        v["name"] = "MALLORY"
    doc["submitters"][0]["name"] = "MALLORY"
    raw = json.dumps(doc).encode()
    path = tmp_path / "renamed.json"
    path.write_bytes(raw)
    return path, hashlib.sha256(raw).hexdigest()


def assert_names_only_as_labels(out: str, digest: str) -> None:
    lines = out.splitlines()
    header = [i for i, line in enumerate(lines) if "not certified" in line]
    assert len(header) == 1, out
    assert digest in lines[header[0]]
    for i, line in enumerate(lines):
        if "MALLORY" in line:
            assert i > header[0] and line.startswith("  "), f"uncertified name outside the labels: {line!r}"
    assert "MALLORY" in out  # still shown, as a label


def test_renamed_genesis_verify(tmp_path: Path) -> None:
    path, digest = renamed(tmp_path)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(build_bundle(MEM, ENVS[0].id)))
    result = run("verify", bundle, "--genesis", path)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    submitter = ENVS[0].record.submitter.hex()[:16]
    assert first.startswith("VALID") and f"key {submitter}" in first
    assert_names_only_as_labels(result.stdout, digest)
    doc = json.loads(run("verify", bundle, "--genesis", path, "--json").stdout)
    assert doc["genesis_sha256"] == digest and doc["submitter"] == "MALLORY"
    assert doc["submitter_pubkey"] == ENVS[0].record.submitter.hex()


def test_renamed_genesis_trace_checkpoint_audit(node: FakeNode, tmp_path: Path) -> None:
    path, digest = renamed(tmp_path)
    outputs = [
        run("trace", ENVS[5].id.hex(), "--node", node.url, "--genesis", path),
        run("checkpoint", "--node", node.url, "--genesis", path, "--checkpoint-file", tmp_path / "cp.json"),
        run("audit", "--node", node.url, "--genesis", path, "--no-checkpoint"),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert_names_only_as_labels(result.stdout, digest)
    checkpoint = json.loads(run("checkpoint", "--node", node.url, "--genesis", path, "--checkpoint-file",
                                tmp_path / "cp.json", "--json").stdout)
    assert checkpoint["genesis_sha256"] == digest
    assert [v["index"] for v in checkpoint["certified_by_validators"]] == [0, 1, 2]


# -- deeply nested JSON is unusable input: exit 2, a message --------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


def assert_unusable(result: Result, mention: str) -> None:
    assert result.exit_code == 2, (result.output, result.exc_info)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output and "RecursionError" not in result.output
    assert mention in result.output


def test_deep_bundle_and_genesis_exit_2(genesis_file: Path, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_bytes(DEEP)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(build_bundle(MEM, ENVS[0].id)))
    assert_unusable(run("verify", deep, "--genesis", genesis_file), "nested")
    assert_unusable(run("verify", bundle, "--genesis", deep), "nested")
    deep_object = tmp_path / "deep_object.json"
    deep_object.write_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    assert_unusable(run("verify", bundle, "--genesis", deep_object), "nested")


def test_deep_checkpoint_file_exit_2(node: FakeNode, genesis_file: Path, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    cp.write_bytes(DEEP)
    assert_unusable(run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp),
                    "nested")
    cp.write_bytes(b"{not json")
    assert_unusable(run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp),
                    "checkpoint")
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert_unusable(run("checkpoint", "--node", node.url, "--genesis", genesis_file,
                        "--checkpoint-file", blocked / "cp.json"), "checkpoint file")
    cp.write_text(json.dumps({"test": {"header": 5, "certificate": []}}))
    assert_unusable(run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp),
                    "malformed")


def test_deep_node_answer_exit_2(node: FakeNode, genesis_file: Path, tmp_path: Path) -> None:
    rid = ENVS[0].id.hex()
    node.override[f"/v1/records/{rid}/trace"] = (200, DEEP)
    assert_unusable(run("trace", rid, "--node", node.url, "--genesis", genesis_file), "nested")
    node.override["/v1/blocks/latest"] = (200, DEEP)
    assert_unusable(run("checkpoint", "--node", node.url, "--genesis", genesis_file,
                        "--checkpoint-file", tmp_path / "cp.json"), "nested")


# -- well-formed JSON of the wrong shape is a named failure, not a traceback --

@pytest.mark.parametrize("path, body", [
    ("/v1/status", b"[]"),
    ("/v1/status", b'{"height": "7"}'),
    ("/v1/blocks/1", b'{"header": 1, "certificate": {}, "records": [], "envelopes": []}'),
    ("/v1/blocks/1", b'{"envelopes": "x"}'),
    ("/v1/blocks/1", b"[1, 2]"),
])
def test_audit_of_a_malformed_node_answer_fails_by_name(node: FakeNode, genesis_file: Path,
                                                       path: str, body: bytes) -> None:
    node.override[path] = (200, body)
    result = run("audit", "--node", node.url, "--genesis", genesis_file, "--no-checkpoint")
    assert result.exit_code == 1, (result.output, result.exc_info)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output and "INVALID" in result.output


def test_checkpoint_with_a_malformed_consistency_answer_fails_by_name(
        node: FakeNode, genesis_file: Path, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    head = node.chain.height
    node.override["/v1/blocks/latest"] = (200, json.dumps(node.block(2, False)).encode())
    assert run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp).exit_code == 0
    node.override["/v1/blocks/latest"] = (200, json.dumps(node.block(head, False)).encode())
    node.override["/v1/consistency"] = (200, b'{"path": null}')
    result = run("checkpoint", "--node", node.url, "--genesis", genesis_file, "--checkpoint-file", cp)
    assert result.exit_code == 1, (result.output, result.exc_info)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "consistency" in result.output
