"""CEL rules: static checks, compilation, and what each rule reads (PROTOCOL §10.2).

The engine is Google's cel-cpp through ``cel-expr-python`` (the comparison
with the other Python CEL packages is in docs/design.md).  Before the CEL
type checker sees a rule, a small lexer refuses what the protocol forbids
and CEL would accept: float literals, functions outside :data:`FUNCTIONS`
(``timestamp``, ``duration``, ``double``, ``matches`` ... ; CEL has no clock,
and these are the ways to reach time or floats), nested comprehensions (the
static cost bound, :func:`rule_cost`), and comprehension variables that hide
an input.

The lexer also names the input **paths** a rule reads (``record.body.amount``,
``velocity.acct_1m.count``, ...): the evaluator keys its memo of verdicts on
their values, so that a record whose inputs equal an earlier record's gets
that record's rule results without a CEL call (see
:mod:`ledger.policy.evaluator`).  A path compared only with integer literals
(``record.body.amount < 5000``) is marked: its value matters only through its
position among those literals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel as _cel

from ..errors import GovernanceError

ENGINE_VERSION = 1  # cel-expr-python 0.1.3 with the function set below
ROOTS = ("block", "listed", "record", "risk", "submitter", "velocity")
FUNCTIONS = frozenset({
    "size", "has", "int", "string", "contains", "startsWith", "endsWith",
    "all", "exists", "exists_one", "map", "filter", "lowerAscii", "upperAscii",
})
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
MAX_RULE_CHARS = 2048
# A comprehension runs over a list inside one record (at most 8 KiB, so at
# most 8192 items); its body's tokens count that many times.
COMPREHENSION_FACTOR = 8192
_CMP = frozenset({"<", "<=", ">", ">=", "==", "!="})
_OPEN = frozenset({"START", "(", "&&", "||", "?", ":", ",", "["})
_CLOSE = frozenset({"END", ")", "]", "&&", "||", "?", ":", ","})

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>[rRbB]{0,2}(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<float>(?:\d+\.\d*|\.\d+|\d+)[eE][+-]?\d+|\d+\.\d*|\.\d+)
  | (?P<num>0[xX][0-9a-fA-F]+[uU]?|\d+[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||<=|>=|==|!=|[-+*/%<>!?:.,()\[\]{}])
""", re.VERBOSE)


class BadPolicy(GovernanceError):
    """A policy that cannot be installed: malformed, or a rule that does not compile."""

    code = "bad_policy"


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int  # 0-based character offset in the rule


def tokenize(source: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise BadPolicy(f"column {pos + 1}: unexpected character {source[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    return out


@dataclass(frozen=True)
class Reads:
    """What a rule reads: paths (tuples of names from a root), and the int
    literals each path is compared with where that is all it is used for."""

    paths: frozenset[tuple[str, ...]]
    compared: dict[tuple[str, ...], frozenset[int]]  # only-compared-with-literals paths


def _literal(tok: Token | None) -> int | None:
    if tok is None or tok.kind != "num" or tok.text[-1] in "uU":
        return None
    text = tok.text
    return int(text, 16) if text[:2] in ("0x", "0X") else int(text, 10)


def analyse(source: str) -> Reads:
    """Check ``source`` lexically and name what it reads; raises
    :class:`BadPolicy` with the column of the first offence."""
    if not source.strip() or len(source) > MAX_RULE_CHARS:
        raise BadPolicy(f"a rule is 1..{MAX_RULE_CHARS} characters")
    toks = tokenize(source)
    paths: set[tuple[str, ...]] = set()
    safe: dict[tuple[str, ...], set[int]] = {}
    unsafe: set[tuple[str, ...]] = set()
    depth_stack: list[int] = []  # paren depth at which each open comprehension started
    paren = 0

    def at(i: int) -> Token | None:
        return toks[i] if 0 <= i < len(toks) else None

    def kind_of(i: int) -> str:
        t = at(i)
        if t is None:
            return "START" if i < 0 else "END"
        return t.text if t.kind == "op" else t.kind

    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "float":
            raise BadPolicy(f"column {tok.pos + 1}: floats are not allowed ({tok.text})")
        if tok.text == "(":
            paren += 1
        elif tok.text == ")":
            paren -= 1
            while depth_stack and depth_stack[-1] > paren:
                depth_stack.pop()
        if tok.kind != "ident":
            i += 1
            continue
        after = at(i + 1)
        before = at(i - 1)
        is_call = after is not None and after.text == "("
        if is_call:
            if tok.text not in FUNCTIONS:
                raise BadPolicy(f"column {tok.pos + 1}: function {tok.text!r} is not allowed "
                                f"(allowed: {', '.join(sorted(FUNCTIONS))})")
            if tok.text in MACROS and before is not None and before.text == ".":
                if depth_stack:
                    raise BadPolicy(f"column {tok.pos + 1}: nested comprehensions are not allowed")
                var = at(i + 2)
                if var is not None and var.kind == "ident" and var.text in ROOTS:
                    raise BadPolicy(f"column {var.pos + 1}: {var.text!r} names an input")
                depth_stack.append(paren + 1)
            i += 1
            continue
        if tok.text not in ROOTS or (before is not None and before.text == "."):
            i += 1
            continue
        # A path: root(.name)* not followed by a call of its last name.
        j = i
        parts = [tok.text]
        while (at(j + 1) is not None and at(j + 1).text == "."  # type: ignore[union-attr]
               and at(j + 2) is not None and at(j + 2).kind == "ident"):  # type: ignore[union-attr]
            if at(j + 3) is not None and at(j + 3).text == "(":  # type: ignore[union-attr]
                break
            parts.append(at(j + 2).text)  # type: ignore[union-attr]
            j += 2
        path = tuple(parts)
        paths.add(path)
        lit_after = _literal(at(j + 2)) if kind_of(j + 1) in _CMP else None
        lit_before = _literal(at(i - 2)) if kind_of(i - 1) in _CMP else None
        if lit_after is not None and kind_of(i - 1) in _OPEN and kind_of(j + 3) in _CLOSE:
            safe.setdefault(path, set()).add(lit_after)
        elif lit_before is not None and kind_of(i - 3) in _OPEN and kind_of(j + 1) in _CLOSE:
            safe.setdefault(path, set()).add(lit_before)
        else:
            unsafe.add(path)
        i = j + 1
    compared = {p: frozenset(v) for p, v in safe.items() if p not in unsafe}
    return Reads(frozenset(paths), compared)


def rule_cost(source: str) -> int:
    """The static worst-case cost of one evaluation of ``source``: its tokens,
    those inside a comprehension counted :data:`COMPREHENSION_FACTOR` times."""
    cost = 0
    toks = tokenize(source)
    inside: list[int] = []
    paren = 0
    for i, tok in enumerate(toks):
        if tok.text == "(":
            paren += 1
            if i >= 1 and toks[i - 1].text in MACROS and i >= 2 and toks[i - 2].text == ".":
                inside.append(paren)
        elif tok.text == ")":
            if inside and inside[-1] == paren:
                inside.pop()
            paren -= 1
        cost += COMPREHENSION_FACTOR if inside else 1
    return cost


_ENV: Any = None


def env() -> Any:
    """The one CEL environment: the six inputs, dynamically typed inside."""
    global _ENV
    if _ENV is None:
        t = _cel.Type
        _ENV = _cel.NewEnv(variables={
            "record": t.Map(t.STRING, t.DYN), "submitter": t.Map(t.STRING, t.DYN),
            "block": t.Map(t.STRING, t.INT), "velocity": t.Map(t.STRING, t.Map(t.STRING, t.INT)),
            "listed": t.Map(t.STRING, t.BOOL), "risk": t.Map(t.STRING, t.INT),
        })
    return _ENV


_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*?)\n")


def compile_rule(source: str) -> Any:
    """The compiled program of a boolean rule; raises :class:`BadPolicy`
    with CEL's line, column and message if it does not compile."""
    try:
        program = env().compile(source)
    except RuntimeError as exc:
        m = _POSITION.search(str(exc))
        where = f"line {m.group(1)}, column {m.group(2)}: {m.group(3)}" if m else str(exc)
        raise BadPolicy(where) from None
    kind = program.return_type().name().lower()
    if kind not in ("bool", "dyn"):
        raise BadPolicy(f"a rule must be a boolean expression, this one is {kind}")
    return program


def compile_list(sources: list[str]) -> Any:
    """One program answering every rule of ``sources`` as a list of booleans."""
    return env().compile("[" + ", ".join(f"({s})" for s in sources) + "]")
