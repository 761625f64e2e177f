"""A policy's per-record pass, specialised once per installed policy.

:func:`build` turns a :class:`~ledger.policy.evaluator.CompiledPolicy` into
one Python function that judges a whole block: each field a window or a
lookup reads is fetched once per record, each window's key once (kept for
:meth:`PolicyState.commit`, so committing the block does not compute them
again), velocity, lookups and risk tier are plain locals, and the memo key
is built from them without a dictionary of inputs.  CEL's input map is
built only when the memo does not know the key.  The function is generated
source (names and literals of the policy go in as constants, never as
text), compiled with :func:`compile` once per policy.

It computes exactly what the reference path of the evaluator does (the
same velocity, lookups and tiers, the same CEL input on a memo miss): the
differential test (tests/test_policy_fastpath.py) runs both over random
policies and blocks.  A memo key here is a tuple of the record's kind and
one part per path the rules read:

- an integer compared only with integer literals: ``bisect_left +
  bisect_right`` of the literals (an int that names the interval and
  whether it equals a literal), or ``(RAW, part)`` for a value that is not
  an int64 (another type, or out of range);
- a ``listed.<name>`` boolean, a velocity count or sum, the risk tier: the
  value itself (always a bool, resp. an int, at that position);
- any other value: :func:`ledger.policy.evaluator._part` of it (``str``
  as is);
- last, when the rules read windows or the block: whether a window's sum
  or the block's height or time is beyond int64 (CEL then refuses the
  whole input, so every rule fails, also one that reads none of them).

Policies that read a whole input map (``velocity``, ``listed.x.y``, ...)
get no fast path (``build`` returns None) and use the reference path.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .engine import Decision, Outcome, RecordInput
from .state import PolicyState

if TYPE_CHECKING:
    from .evaluator import CompiledPolicy

INT64 = 2**63
_RAW = object()
_EMPTY: dict[str, Any] = {}
_NO_ENTRIES: frozenset[str] = frozenset()
_RECORD_ATTRS = ("kind", "ts", "nonce", "id", "submitter", "parents")
_INLINE_LITERALS = 4

# run(state, height, time_ms, records, miss, memo) -> (decisions, window pairs)
FastPass = Callable[[PolicyState, int, int, Sequence[RecordInput], Callable[..., Decision],
                     dict[tuple[Any, ...], Decision]],
                    tuple[list[Decision], list[list[tuple[str, int]]]]]


def interval(lits: tuple[int, ...], value: Any, part: Callable[[Any], Any]) -> Any:
    """The memo-key part of ``value`` for a path compared only with ``lits``."""
    if type(value) is int and -INT64 <= value < INT64:
        return bisect_left(lits, value) + bisect_right(lits, value)
    return (_RAW, part(value))


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}

    def const(self, value: Any) -> str:
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _field_expr(src: _Source, name: str) -> str:
    """``state.field_value`` of one field, as an expression over the locals."""
    if name == "kind":
        return "kind"
    if name == "submitter":
        return "r.submitter.hex()"
    if name.startswith("origin."):
        return f"origin.get({src.const(name[7:])})"
    return f"body.get({src.const(name[5:])})"


def _interval_code(src: _Source, lits: tuple[int, ...]) -> str:
    """:func:`interval` of the local ``v`` (an int), as an expression."""
    if len(lits) <= _INLINE_LITERALS:
        return " + ".join(f"(v > {c}) + (v >= {c})" for c in lits) or "0"
    return f"bl({src.const(lits)}, v) + br({src.const(lits)}, v)"


def build(compiled: CompiledPolicy, part: Callable[[Any], Any],
          missing: object) -> FastPass | None:
    """The block pass of ``compiled`` (see the module text), or None when a
    rule reads an input map whole."""
    policy = compiled.policy
    read_windows = set(compiled.windows)
    read_lookups = list(compiled.lookups)
    for p in compiled.paths:
        names = p.names
        root = names[0]
        if root == "velocity" and not (len(names) == 3 and names[2] in ("count", "sum")):
            return None
        if root == "listed" and len(names) != 2:
            return None
        if root == "risk" and names != ("risk", "tier"):
            return None
        if root == "block" and names not in (("block", "height"), ("block", "time_ms")):
            return None
    roots = compiled.roots
    src = _Source()
    e = src.emit
    e(0, "def run(state, height, time_ms, records, miss, memo):")
    e(1, "memo_get = memo.get")
    e(1, "out = []")
    e(1, "append = out.append")
    e(1, "windows = state.windows")
    e(1, "lists = state.lists")
    e(1, "tiers = state.tiers")
    windows = list(policy.windows.items())
    fields: dict[str, str] = {}

    def field(name: str) -> str:
        if name not in fields:
            fields[name] = f"f{len(fields)}"
        return fields[name]

    for i, (wname, window) in enumerate(windows):
        field(window.by)
        e(1, f"pairs{i} = []")
        e(1, f"add{i} = pairs{i}.append")
        if wname in read_windows:
            e(1, f"ws = windows.get({src.const(wname)})")
            e(1, f"K{i} = ws.keys if ws is not None else EMPTY")
            e(1, f"cut{i} = time_ms - {window.ms}")
            e(1, f"ib{i} = {{}}")
    lookup_vars: dict[str, str] = {}
    for j, lname in enumerate(read_lookups):
        lookup = policy.lookups[lname]
        for f in lookup.key:
            field(f)
        e(1, f"L{j} = lists.get({src.const(lookup.list)})")
        e(1, f"if L{j} is None: L{j} = NO_ENTRIES")
        lookup_vars[lname] = f"l{j}"
    if "risk" in roots:
        field("origin.account")
    # Memo-key parts constant over the block.
    block_parts: dict[int, str] = {}
    for n, p in enumerate(compiled.paths):
        if p.names[0] == "block":
            block_parts[n] = f"bp{n}"
            value = "height" if p.names[1] == "height" else "time_ms"
            if p.literals is not None:
                e(1, f"bp{n} = interval({src.const(p.literals)}, {value}, part)")
            else:
                e(1, f"bp{n} = {value}")
    if "block" in roots:
        e(1, "block = {'height': height, 'time_ms': time_ms}")
        e(1, f"bover = height >= {INT64} or time_ms >= {INT64}")
    e(1, "for item in records:")
    e(2, "r = item.record")
    e(2, "kind = r.kind")
    e(2, "gov = kind.startswith('gov.')")
    e(2, "body = r.body")
    e(2, "origin = r.origin")
    if windows:
        e(2, "a = body.get('amount')")
        e(2, "if type(a) is not int or a < 0: a = 0")
    for name, var in fields.items():
        e(2, f"{var} = {_field_expr(src, name)}")
    for i, (wname, window) in enumerate(windows):
        f = fields[window.by]
        skip = "gov" if window.kinds is None else f"gov or kind not in {src.const(window.kinds)}"
        e(2, f"if {skip}: k{i} = None")
        e(2, f"elif type({f}) is str: k{i} = {f}")
        e(2, f"elif type({f}) is int: k{i} = str({f})")
        e(2, f"else: k{i} = None")
        e(2, f"if k{i} is not None:")
        e(3, f"add{i}((k{i}, a))")
        if wname in read_windows:
            e(3, f"w = K{i}.get(k{i})")
            e(3, "if w is None:")
            e(4, f"c{i} = 0; s{i} = 0")
            e(3, "else:")
            e(4, f"c{i} = w.count; s{i} = w.total")
            e(4, "entries = w.entries")
            e(4, f"if entries[0][0] <= cut{i}:")  # a key's entries are never empty
            e(5, "for t_, a_ in entries:")
            e(6, f"if t_ > cut{i}: break")
            e(6, f"c{i} -= 1; s{i} -= a_")
            e(3, f"p = ib{i}.get(k{i})")
            e(3, f"p = (1, a) if p is None else (p[0] + 1, p[1] + a)")
            e(3, f"ib{i}[k{i}] = p")
            e(3, f"c{i} += p[0]; s{i} += p[1]")
            e(2, "else:")
            e(3, f"c{i} = 0; s{i} = 0")
    e(2, "if gov:")
    e(3, "append(allow)")  # governance is never held by the policy it governs
    e(3, "continue")
    for j, lname in enumerate(read_lookups):
        keyf = [fields[f] for f in policy.lookups[lname].key]
        cond = " and ".join(f"type({f}) is str" for f in keyf)
        joined = " + ':' + ".join(keyf)
        e(2, f"l{j} = {cond} and ({joined}) in L{j}")
    if "risk" in roots:
        acc = fields["origin.account"]
        e(2, f"tier = tiers.get({acc}, 0) if {acc} else 0")
    if "submitter" in roots:
        e(2, "roles = tuple(sorted(item.submitter_roles))")
    else:
        e(2, "roles = ()")
    window_index = {wname: i for i, (wname, _) in enumerate(windows)}
    parts: list[str] = []
    for n, p in enumerate(compiled.paths):
        names = p.names
        root = names[0]
        if root == "block":
            parts.append(block_parts[n])
            continue
        # "int": always an int (a window sum beyond int64 is in the key's
        # last part, where every rule fails); "same": a value that parts as itself.
        known_type = "int"
        if root == "velocity":
            i = window_index[names[1]]
            value = f"c{i}" if names[2] == "count" else f"s{i}"
        elif root == "listed":
            value, known_type = lookup_vars[names[1]], "same"
        elif root == "risk":
            value = "tier"
        else:
            known_type = ""
            if root == "record" and len(names) == 3 and names[1] in ("body", "origin"):
                value = f"{names[1]}.get({src.const(names[2])}, MISSING)"
            elif root == "record" and len(names) == 2 and names[1] in _RECORD_ATTRS:
                value = f"r.{names[1]}"  # str, int (never bool), bytes or a tuple of bytes
                known_type = "same" if p.literals is None else ""
            else:  # record.* and submitter.* read only the record and roles
                value = f"{src.const(p.get)}(r, roles, None)"
        if known_type == "same" or (known_type == "int" and p.literals is None):
            parts.append(value)
            continue
        e(2, f"v = {value}")
        if known_type == "int":
            assert p.literals is not None
            e(2, f"q{n} = {_interval_code(src, p.literals)}")
        elif p.literals is not None:
            code = _interval_code(src, p.literals)
            e(2, f"if type(v) is int and {-INT64} <= v < {INT64}: q{n} = {code}")
            e(2, f"else: q{n} = (RAW, part(v))")
        else:
            e(2, f"q{n} = v if type(v) is str else part(v)")
        parts.append(f"q{n}")
    # CEL refuses the whole input when an int of it is beyond int64 (a
    # window's sum can be): whether one is, is part of the key.
    over = [f"s{window_index[w]} >= {INT64}" for w in compiled.windows
            if "velocity" in roots]
    if "block" in roots:
        over.insert(0, "bover")
    if over:
        e(2, f"over = {' or '.join(over)}")
        parts.append("over")
    e(2, f"key = (kind, {''.join(q + ', ' for q in parts)})")
    e(2, "d = memo_get(key)")
    e(2, "if d is None:")
    act: list[str] = []
    if "block" in roots:
        act.append("'block': block")
    if "velocity" in roots:
        vel = ", ".join(f"{src.const(w)}: {{'count': c{window_index[w]}, 'sum': "
                        f"s{window_index[w]}}}" for w in compiled.windows)
        act.append(f"'velocity': {{{vel}}}")
    if "listed" in roots:
        lst = ", ".join(f"{src.const(lname)}: {lookup_vars[lname]}" for lname in read_lookups)
        act.append(f"'listed': {{{lst}}}")
    if "risk" in roots:
        act.append("'risk': {'tier': tier}")
    e(3, f"d = miss(r, item.submitter_roles, key, {{{', '.join(act)}}})")
    e(2, "append(d)")
    e(1, f"return out, [{''.join(f'pairs{i}, ' for i in range(len(windows)))}]")
    namespace: dict[str, Any] = dict(src.consts)
    namespace.update(
        EMPTY=_EMPTY, NO_ENTRIES=_NO_ENTRIES, MISSING=missing, RAW=_RAW,
        part=part, interval=interval, bl=bisect_left, br=bisect_right,
        allow=Decision(Outcome.ALLOW, policy_version=policy.version))
    program = compile("\n".join(src.lines) + "\n",
                      f"<policy {policy.name} v{policy.version}>", "exec")
    exec(program, namespace)  # the source above: names and literals of the policy are constants
    run: FastPass = namespace["run"]
    return run
