"""``ledger-audit trace --format dot|svg|png`` (issue 27 item 7): the DOT
text has the verified lineage's structure, record text cannot escape its
quoted label, and Graphviz draws it (when its ``dot`` program is here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fakenode import FakeNode
from test_audit_cli_hostile import DOC, ENVS, MEM, ODD_TEXT, TERMINAL_KIND, run

from client.audit.lineage_dot import dot_string
from client.audit.show import untrusted

QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
GRAPHVIZ = shutil.which("dot")
needs_graphviz = pytest.mark.skipif(
    GRAPHVIZ is None, reason="needs Graphviz's dot: apt-get install graphviz "
                             "(scripts/test does it when run as root)")
# ENVS: root; three children of it (hostile kind, terminal kind, forged
# origin); a record with odd text whose parents are those three; its child.
LEAF = ENVS[5]


@pytest.fixture
def genesis_file(tmp_path: Path) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(DOC))
    return path


@pytest.fixture
def node() -> FakeNode:
    with FakeNode(MEM) as fake:
        yield fake


def trace(node: FakeNode, genesis_file: Path, *args: object) -> Result:
    return run("trace", LEAF.id.hex(), "--node", node.url, "--genesis", genesis_file, *args)


def unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def statements(dot: str) -> list[str]:
    """The DOT text with every quoted string replaced by Q: what is left is
    only our own syntax if no record text got out of its quotes."""
    body = QUOTED.sub("Q", dot)
    return [s.strip() for s in body.strip().removeprefix("digraph lineage {").removesuffix("}")
            .split(";") if s.strip()]


def test_dot_string_escapes_quotes_and_backslashes() -> None:
    assert dot_string('a"b\\N') == '"a\\"b\\\\N"'
    assert unquote(dot_string('x" ] ; y -> z [label="')[1:-1]) == 'x" ] ; y -> z [label="'


def test_trace_dot_structure_and_escaping(node: FakeNode, genesis_file: Path) -> None:
    result = trace(node, genesis_file, "--format", "dot")
    assert result.exit_code == 0, result.output
    dot = result.stdout
    # Nothing but our statements outside quoted strings.
    allowed = re.compile(r"^(graph|node|edge) \[.*\]$|^Q \[label=Q(, .*)?\]$|^Q -> Q( \[style=dotted\])?$")
    for statement in statements(dot):
        assert allowed.match(statement), statement
    # One node per verified record, edges exactly the signed parent links.
    nodes = set(re.findall(r'^  "([0-9a-f]{64})" \[label=', dot, re.M))
    assert nodes == {e.id.hex() for e in ENVS}
    edges = set(re.findall(r'^  "([0-9a-f]{64})" -> "([0-9a-f]{64})";', dot, re.M))
    assert edges == {(e.id.hex(), p.hex()) for e in ENVS for p in e.record.parents}
    # Hostile text is in the labels, escaped for the terminal and for DOT.
    labels = [unquote(m) for m in QUOTED.findall(dot)]
    assert any(untrusted(TERMINAL_KIND).plain in label for label in labels)
    assert any(untrusted(ODD_TEXT).plain[:40] in label for label in labels)
    assert "[/]" in dot and "\x1b" not in dot and "\u202e" not in dot
    # The only DOT escapes are ours: \\ (a backslash), \" and the line break \l.
    for m in QUOTED.findall(dot):
        assert set(re.findall(r"\\(.)", m)) <= {"\\", '"', "l"}, m


def test_trace_text_and_json_unchanged_by_the_option(node: FakeNode, genesis_file: Path) -> None:
    assert trace(node, genesis_file).stdout == trace(node, genesis_file, "--format", "text").stdout
    both = trace(node, genesis_file, "--json", "--format", "dot")
    assert both.exit_code == 2 and "exclude each other" in both.output


@needs_graphviz
def test_graphviz_reads_the_labels_we_meant(node: FakeNode, genesis_file: Path) -> None:
    dot = trace(node, genesis_file, "--format", "dot").stdout
    assert GRAPHVIZ is not None
    doc = json.loads(subprocess.run([GRAPHVIZ, "-Tjson"], input=dot.encode(), check=True,
                                    capture_output=True, timeout=60).stdout)
    assert {o["name"] for o in doc["objects"]} == {e.id.hex() for e in ENVS}
    assert len(doc["edges"]) == sum(len(e.record.parents) for e in ENVS)
    # Drawn, each label line is the text we meant: the record's text as
    # untrusted() shows it (one backslash per escape), nothing more.
    svg = ET.fromstring(subprocess.run([GRAPHVIZ, "-Tsvg"], input=dot.encode(), check=True,
                                       capture_output=True, timeout=60).stdout)
    lines = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert untrusted(TERMINAL_KIND).plain in lines
    assert "[/]" in lines


@needs_graphviz
@pytest.mark.parametrize("fmt,magic", [("svg", b"<svg"), ("png", b"\x89PNG\r\n\x1a\n")])
def test_trace_svg_and_png_files(fmt: str, magic: bytes, node: FakeNode, genesis_file: Path,
                                 tmp_path: Path) -> None:
    out = tmp_path / f"lineage.{fmt}"
    result = trace(node, genesis_file, "--format", fmt, "--output", out)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    if fmt == "svg":
        assert data.startswith(b"<?xml") and magic in data[:400]
        assert data.count(b'class="node"') == len(ENVS)
        assert b"\x1b" not in data
    else:
        assert data.startswith(magic) and len(data) > 1000


def test_svg_without_graphviz_is_a_usage_error(node: FakeNode, genesis_file: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = trace(node, genesis_file, "--format", "svg")
    assert result.exit_code == 2 and "apt-get install graphviz" in result.output
