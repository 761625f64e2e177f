"""Every relative link in README.md and docs/*.md points to a file of the repository.

A clone has nothing outside it (the contract used to be linked as
``../shared/PROTOCOL.md``, which no clone has).  Anchors (``#section``) are
checked against the target file's headings, the way GitHub derives them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _anchor(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def _links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [m.group(1) for m in LINK.finditer(text)]


def test_the_docs_exist() -> None:
    names = {p.name for p in DOCS}
    assert {"README.md", "operators.md", "sdk.md", "auditors.md", "protocol.md",
            "performance.md", "design.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for link in _links(doc):
        if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists() or ROOT not in (path, *path.parents):
            broken.append(f"{link}: no such file in the repository")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_the_anchor_rule() -> None:
    assert _anchor("Configuration: `node.toml`") == "configuration-nodetoml"
    assert _anchor("LevelDB table reads: pread or mmap") == "leveldb-table-reads-pread-or-mmap"
    assert _anchor("5. Proof bundle (JSON), what an auditor verifies offline") == (
        "5-proof-bundle-json-what-an-auditor-verifies-offline")
