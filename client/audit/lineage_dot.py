"""Lineage pictures for ``ledger-audit trace --format dot|svg|png``.

The DOT text is written here, from a verified :class:`TraceReport`; SVG and
PNG are Graphviz's rendering of it (its ``dot`` program, Debian package
``graphviz``).  The Python bindings on PyPI (``graphviz``, ``pydot``) run
the same program and add nothing we need, so none is a dependency: writing
the DOT ourselves keeps the escaping of record text in one small place.

Record kinds and origins are written by submitters.  Each goes through
:func:`~client.audit.show.untrusted` (no control characters, one line) and
then :func:`dot_string` (a quoted DOT string in which ``"`` and ``\\`` are
escaped, so no record text can close the string, start a statement of its
own, or be read as one of Graphviz's label escapes such as ``\\N``).
"""

from __future__ import annotations

import shutil
import subprocess

from ledger.genesis import Genesis

from .remote import TraceReport
from .show import fingerprint, untrusted

FORMATS = ("text", "dot", "svg", "png")
MAX_LABEL_CHARS = 48
MAX_ORIGIN_LINES = 4
RENDER_TIMEOUT_S = 60


class RenderError(Exception):
    """Graphviz is missing or failed; the message says which."""


def dot_string(text: str) -> str:
    """``text`` as one quoted DOT string that means exactly these characters."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[:MAX_LABEL_CHARS - 1] + "…"


def _shown(value: object) -> str:
    return _clip(untrusted(value).plain)


def _label(lines: list[str]) -> str:
    # Lines are joined with DOT's left-justified line break, added after
    # escaping so it is the only escape sequence in the label.
    return '"' + "".join(dot_string(line)[1:-1] + "\\l" for line in lines) + '"'


def to_dot(report: TraceReport, genesis: Genesis) -> str:
    """The lineage as a DOT digraph: an edge from each record to each parent
    it names (children above their parents), each verified record with its
    kind, id, origin, block and certifying validators; parents not fetched
    and the node-reported children drawn dashed and dotted."""
    out = ["digraph lineage {",
           '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.3, ranksep=0.5];',
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
           'fillcolor="#e5f5e8", color="#3b8f4c"];',
           '  edge [color="#7a8793", arrowsize=0.7];']
    for rid, hop in report.hops.items():
        record = hop.verified.envelope.record
        epoch = hop.verified.epoch or genesis  # the set the certificate's indexes refer to
        signers = " ".join(f"#{v}" for v, _ in hop.verified.certificate.signatures
                           if 0 <= v < epoch.n)
        lines = [_shown(record.kind), f"{rid[:16]}…"]
        origin = list(record.origin.items())
        lines += [_shown(f"{k}={v}") for k, v in origin[:MAX_ORIGIN_LINES]]
        if len(origin) > MAX_ORIGIN_LINES:
            lines.append(f"(+{len(origin) - MAX_ORIGIN_LINES} origin entries)")
        lines += [f"key {fingerprint(record.submitter)}",
                  f"block {hop.verified.height}, certified by {signers}"]
        extra = ", penwidth=2.5" if rid == report.root else ""
        out.append(f"  {dot_string(rid)} [label={_label(lines)}{extra}];")
    why = "not fetched" if report.stopped else "beyond depth"
    for rid in report.missing:
        out.append(f"  {dot_string(rid)} [label={_label([f'{rid[:16]}…', why])}, "
                   'style="rounded,dashed", fillcolor="#f4f5f7", color="#7a8793"];')
    for rid in report.children:
        if rid not in report.hops:
            out.append(f"  {dot_string(rid)} [label={_label([f'{rid[:16]}…', 'child (node says)'])}, "
                       'style="rounded,dotted,filled", fillcolor="#e8f0fb", color="#4a73b0"];')
    for rid, hop in report.hops.items():
        for parent in hop.parents:
            out.append(f"  {dot_string(rid)} -> {dot_string(parent)};")
    for rid in report.children:
        out.append(f"  {dot_string(rid)} -> {dot_string(report.root)} [style=dotted];")
    out.append("}")
    return "\n".join(out) + "\n"


def render(dot: str, fmt: str) -> bytes:
    """Graphviz's ``dot -T<fmt>`` of ``dot`` (``svg`` or ``png``)."""
    program = shutil.which("dot")
    if program is None:
        raise RenderError("Graphviz's 'dot' program is not installed (Debian: apt-get install "
                          "graphviz); --format dot writes the graph without it")
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot.encode("utf-8"),
                              capture_output=True, timeout=RENDER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"Graphviz did not finish within {RENDER_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise RenderError("Graphviz failed: " + untrusted(done.stderr.decode("utf-8", "replace")
                                                          .strip()[:500]).plain)
    return done.stdout
