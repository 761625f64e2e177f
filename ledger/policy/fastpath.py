"""A policy's per-record pass, specialised once per installed policy.

:func:`build` turns a :class:`~ledger.policy.evaluator.CompiledPolicy` into
one Python function that judges a whole block.  The function is generated
source (names and literals of the policy go in as constants, never as
text), compiled with :func:`compile` once per policy.

Per kind: each kind a rule or a window names (and ``risk.tier``) gets its
own branch, every other kind shares one.  A branch knows statically which
rules apply, so it reads only the fields, lookups, windows and tier those
rules read, and its memo key holds only their paths; which windows count
the kind is known too.  Each window key is computed once per record (by
field: windows on the same field share it) and kept, with the record's
amount, for :meth:`PolicyState.commit`, so committing
the block computes no key again; the block's governance and risk-tier
records are kept too (the only others commit reads).  CEL's input map is
built only when the memo does not know the key, then whole (every window,
lookup and the tier, as the reference path builds it).

It computes exactly what the reference path of the evaluator does: the
differential test (tests/test_policy_fastpath.py) runs both over random
policies and blocks.  A memo key is a tuple of the record's kind and one
part per path the kind's rules read:

- an integer compared only with integer literals: ``bisect_left +
  bisect_right`` of the literals (an int that names the interval and
  whether it equals a literal), or ``(RAW, part)`` for a value that is not
  an int64 (another type, or out of range);
- a ``listed.<name>`` boolean, a velocity count or sum, the risk tier: the
  value itself (always a bool, resp. an int, at that position);
- any other value: :func:`ledger.policy.evaluator._part` of it (``str``
  as is);
- last, when any rule reads windows or the block: whether a window's sum
  or the block's height or time is beyond int64 (CEL then refuses the
  whole input, so every rule fails, also one that reads none of them).
  No sum can be when the windows' totals (``WindowSet.total``) plus the
  block's amounts so far are below 2^63: then no key's sum is looked up
  for it.

Which rules apply depends on the kind only, and a rule's result only on
the paths it reads (and the whole-input refusal above), so a key without
the other rules' paths is exact.  Policies that read a whole input map
(``velocity``, ``listed.x.y``, ...) get no fast path (``build`` returns
None) and use the reference path.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .engine import BlockInputs, Decision, Outcome, RecordInput
from .state import COUNT, RISK_TIER_KIND, SUM, KeyCount, PolicyState

if TYPE_CHECKING:
    from .evaluator import CompiledPolicy

INT64 = 2**63
_RAW = object()
_EMPTY: dict[str, Any] = {}
_NO_ENTRIES: frozenset[str] = frozenset()
_RECORD_ATTRS = ("kind", "ts", "nonce", "id", "submitter", "parents")
_INLINE_LITERALS = 4
_HEX_CACHE = 4096

# Each window's entries of a block, in log order: the records' window keys
# and amounts (every entry's time is the block's).
BlockEntries = list[tuple[list[str], list[int]]]
# run(state, height, time_ms, records, miss, memo) -> (decisions, each
# window's entries, the governance and risk-tier records)
FastPass = Callable[[PolicyState, int, int, Sequence[RecordInput], Callable[..., Decision],
                     dict[tuple[Any, ...], Decision]],
                    tuple[list[Decision], BlockEntries, list[RecordInput]]]


def interval(lits: tuple[int, ...], value: Any, part: Callable[[Any], Any]) -> Any:
    """The memo-key part of ``value`` for a path compared only with ``lits``."""
    if type(value) is int and -INT64 <= value < INT64:
        return bisect_left(lits, value) + bisect_right(lits, value)
    return (_RAW, part(value))


def velocity(keys: dict[str, KeyCount], ibc: dict[str, int], ibs: dict[str, int],
             key: str | None) -> tuple[int, int]:
    """Count and sum of a window for a record counted under ``key`` (None:
    not counted): the committed ``keys`` plus ``ibc`` and ``ibs``, which
    hold by key the block's records up to it less the window's stale
    entries (``WindowSet.stale``)."""
    if key is None:
        return 0, 0
    w = keys.get(key)
    if w is None:
        return ibc[key], ibs[key]
    return w[COUNT] + ibc[key], w[SUM] + ibs[key]


def hex_cache() -> tuple[dict[bytes, str], Callable[[bytes], str]]:
    """``bytes.hex`` through a bounded cache (a submitter's key, per
    record): the cache, read first, and what fills it."""
    cache: dict[bytes, str] = {}

    def hexof(key: bytes) -> str:
        if len(cache) >= _HEX_CACHE:
            cache.clear()
        value = cache[key] = key.hex()
        return value
    return cache, hexof


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


def _interval_code(src: _Source, lits: tuple[int, ...]) -> str:
    """:func:`interval` of the local ``v`` (an int), as an expression."""
    if len(lits) <= _INLINE_LITERALS:
        return " + ".join(f"(v > {c}) + (v >= {c})" for c in lits) or "0"
    return f"bl({src.const(lits)}, v) + br({src.const(lits)}, v)"


def _supported(compiled: CompiledPolicy) -> bool:
    """Whether every path names one count, sum, lookup, the tier or a block field."""
    for p in compiled.paths:
        names = p.names
        root = names[0]
        if root == "velocity" and not (len(names) == 3 and names[2] in ("count", "sum")):
            return False
        if root == "listed" and len(names) != 2:
            return False
        if root == "risk" and names != ("risk", "tier"):
            return False
        if root == "block" and names not in (("block", "height"), ("block", "time_ms")):
            return False
    return True


class _Builder:
    """The source of one policy's block pass."""

    def __init__(self, compiled: CompiledPolicy) -> None:
        self.c = compiled
        self.policy = compiled.policy
        self.src = _Source()
        self.windows = list(self.policy.windows.items())
        self.widx = {name: i for i, (name, _) in enumerate(self.windows)}
        self.read_windows = set(compiled.windows)   # read by some rule
        self.lookups = list(compiled.lookups)        # read by some rule
        self.lvar = {name: f"l{j}" for j, name in enumerate(self.lookups)}
        self.fields: dict[str, str] = {}
        self.over = "velocity" in compiled.roots or "block" in compiled.roots
        self.av = False  # the branch holds body.amount (or MISSING) in ``av``

    def field(self, name: str) -> str:
        if name not in self.fields:
            self.fields[name] = f"f{len(self.fields)}"
        return self.fields[name]

    def read_field(self, depth: int, name: str, done: set[str]) -> str:
        """Emit the read of a field (``state.field_value``) once per branch."""
        var = self.field(name)
        if name in done:
            return var
        done.add(name)
        e, src = self.src.emit, self.src
        if name == "kind":
            e(depth, f"{var} = kind")
        elif name == "submitter":
            e(depth, f"{var} = HX.get(r.submitter)")
            e(depth, f"if {var} is None: {var} = hexof(r.submitter)")
        elif name.startswith("origin."):
            e(depth, f"{var} = origin.get({src.const(name[7:])})")
        else:
            e(depth, f"{var} = body.get({src.const(name[5:])})")
        return var

    def lookup(self, depth: int, lname: str, done: set[str]) -> None:
        keyf = [self.read_field(depth, f, done) for f in self.policy.lookups[lname].key]
        cond = " and ".join(f"type({f}) is str" for f in keyf)
        joined = " + ':' + ".join(keyf)
        j = self.lookups.index(lname)
        self.src.emit(depth, f"{self.lvar[lname]} = {cond} and ({joined}) in L{j}")

    def tier(self, depth: int, done: set[str]) -> None:
        acc = self.read_field(depth, "origin.account", done)
        self.src.emit(depth, f"tier = tiers.get({acc}, 0) if {acc} and tiers else 0")

    def header(self) -> None:
        e, src = self.src.emit, self.src
        e(0, "def run(state, height, time_ms, records, miss, memo):")
        e(1, "memo_get = memo.get")
        e(1, "out = []")
        e(1, "append = out.append")
        e(1, "special = []")
        e(1, "keep = special.append")
        e(1, "windows = state.windows")
        e(1, "lists = state.lists")
        e(1, "tiers = state.tiers")
        totals = []
        for i, (wname, window) in enumerate(self.windows):
            # Each window's entries of the block as two lists (keys, amounts;
            # every entry's time is the block's): no object per entry.
            e(1, f"keys{i} = []; ka{i} = keys{i}.append")
            e(1, f"amts{i} = []; aa{i} = amts{i}.append")
            if wname in self.read_windows:
                e(1, f"ws = windows.get({src.const(wname)})")
                e(1, "if ws is None:")
                e(2, f"K{i} = EMPTY; T{i} = 0; ibc{i} = {{}}; ibs{i} = {{}}")
                e(1, "else:")
                e(2, f"K{i} = ws.keys; T{i} = ws.total")
                # The block's records so far by key, count and sum, from minus
                # the entries its time has passed (ints only, so the dicts
                # stay out of the cyclic collector's sight).
                e(2, f"ibc{i}, ibs{i} = ws.stale(time_ms - {window.ms})")
                totals.append(f"T{i}")
        if totals:
            # No key's sum (committed entries + the block's so far) can
            # reach 2^63 while the block's amounts so far stay below lim.
            e(1, f"lim = {INT64} - max({', '.join(totals)}, 0)")
            e(1, "bs = 0")
        for j, lname in enumerate(self.lookups):
            e(1, f"L{j} = lists.get({src.const(self.policy.lookups[lname].list)})")
            e(1, f"if L{j} is None: L{j} = NO_ENTRIES")
        for n, p in enumerate(self.c.paths):
            if p.names[0] == "block":
                value = "height" if p.names[1] == "height" else "time_ms"
                if p.literals is not None:
                    e(1, f"bp{n} = interval({src.const(p.literals)}, {value}, part)")
                else:
                    e(1, f"bp{n} = {value}")
        if "block" in self.c.roots:
            e(1, "block = {'height': height, 'time_ms': time_ms}")
            e(1, f"bover = height >= {INT64} or time_ms >= {INT64}")

    def branch(self, depth: int, kind: str | None) -> None:
        """The code judging a record of ``kind`` (None: a kind no rule or
        window names, governance excluded by the caller)."""
        e, c = self.src.emit, self.c
        rules = [i for i, r in enumerate(c.rules)
                 if r.kinds is None or (kind is not None and kind in r.kinds)]
        reads: set[tuple[str, ...]] = set()
        for i in rules:
            reads |= c.rule_paths[i]
        counting = [i for i, (_, w) in enumerate(self.windows)
                    if w.kinds is None or (kind is not None and kind in w.kinds)]
        my_windows = {p[1] for p in reads if p[0] == "velocity"}
        my_lookups = [name for name in self.lookups if ("listed", name) in reads]
        done: set[str] = set()
        if kind == RISK_TIER_KIND:
            e(depth, "keep(RecordInput(r, rl))")
        e(depth, "body = r.body")
        e(depth, "origin = r.origin")
        self.av = bool(counting) and ("record", "body", "amount") in reads
        if counting:
            if self.av:
                e(depth, "av = body.get('amount', MISSING)")
                e(depth, "a = av if type(av) is int and av >= 0 else 0")
            else:
                e(depth, "a = body.get('amount')")
                e(depth, "if type(a) is not int or a < 0: a = 0")
            if any(self.windows[i][0] in self.read_windows for i in counting):
                e(depth, "bs += a")
        keyvar: dict[int, str] = {}
        for i in counting:
            by = self.windows[i][1].by
            kv = f"k_{self.field(by)}"
            if kv not in keyvar.values():
                f = self.read_field(depth, by, done)
                if by in ("kind", "submitter"):  # always a str
                    e(depth, f"{kv} = {f}")
                    keyvar[i] = kv
                    continue
                e(depth, f"if type({f}) is str: {kv} = {f}")
                e(depth, f"elif type({f}) is int: {kv} = str({f})")
                e(depth, f"else: {kv} = None")
            keyvar[i] = kv
        for i, (wname, _) in enumerate(self.windows):
            mine = wname in my_windows
            if i not in counting:
                if mine:
                    e(depth, f"c{i} = 0; s{i} = 0")
                continue
            kv = keyvar[i]
            e(depth, f"if {kv} is not None:")
            e(depth + 1, f"ka{i}({kv}); aa{i}(a)")
            if wname in self.read_windows:
                e(depth + 1, f"pc = ibc{i}.get({kv}, 0) + 1; ibc{i}[{kv}] = pc")
                e(depth + 1, f"ps = ibs{i}.get({kv}, 0) + a; ibs{i}[{kv}] = ps")
            if mine:
                e(depth + 1, f"w = K{i}.get({kv})")
                e(depth + 1, "if w is None:")
                e(depth + 2, f"c{i} = pc; s{i} = ps")
                e(depth + 1, "else:")
                e(depth + 2, f"c{i} = w[{COUNT}] + pc; s{i} = w[{SUM}] + ps")
                e(depth, f"else: c{i} = 0; s{i} = 0")
        for lname in my_lookups:
            self.lookup(depth, lname, done)
        if ("risk", "tier") in reads:
            self.tier(depth, done)
        if any(p[0] == "submitter" for p in reads):
            e(depth, "roles = tuple(sorted(rl))")
        elif any(p[0] == "record" and not (len(p) == 3 and p[1] in ("body", "origin")) and
                 not (len(p) == 2 and p[1] in _RECORD_ATTRS) for p in reads):
            e(depth, "roles = ()")  # a getter's argument
        parts = self.parts(depth, reads)
        if self.over:
            over: list[str] = []
            if "block" in c.roots:
                over.append("bover")
            if "velocity" in c.roots:
                exact = [f"s{i} >= {INT64}" if wname in my_windows else
                         f"velocity(K{i}, ibc{i}, ibs{i}, {keyvar[i]})[1] >= {INT64}"
                         for i, (wname, _) in enumerate(self.windows)
                         if wname in self.read_windows and i in counting]
                if exact:
                    over.append(f"(bs >= lim and ({' or '.join(exact)}))")
            e(depth, f"over = {' or '.join(over) or 'False'}")
            parts.append("over")
        e(depth, f"key = (kind, {''.join(q + ', ' for q in parts)})")
        e(depth, "d = memo_get(key)")
        e(depth, "if d is None:")
        self.miss(depth + 1, counting, keyvar, my_windows, my_lookups, reads, done)
        e(depth, "append(d)")

    def parts(self, depth: int, reads: set[tuple[str, ...]]) -> list[str]:
        """Emit the memo-key parts of the paths in ``reads``; their names."""
        e, src = self.src.emit, self.src
        parts: list[str] = []
        for n, p in enumerate(self.c.paths):
            names = p.names
            if names not in reads:
                continue
            root = names[0]
            if root == "block":
                parts.append(f"bp{n}")
                continue
            # "int": always an int (a window sum beyond int64 is in the key's
            # last part, where every rule fails); "same": a value that parts as itself.
            known_type = "int"
            if root == "velocity":
                i = self.widx[names[1]]
                value = f"c{i}" if names[2] == "count" else f"s{i}"
            elif root == "listed":
                value, known_type = self.lvar[names[1]], "same"
            elif root == "risk":
                value = "tier"
            else:
                known_type = ""
                if names == ("record", "body", "amount") and self.av:
                    value = "av"
                elif root == "record" and len(names) == 3 and names[1] in ("body", "origin"):
                    value = f"{names[1]}.get({src.const(names[2])}, MISSING)"
                elif root == "record" and len(names) == 2 and names[1] in _RECORD_ATTRS:
                    value = f"r.{names[1]}"  # str, int (never bool), bytes or a tuple of bytes
                    known_type = "same" if p.literals is None else ""
                else:  # record.* and submitter.* read only the record and roles
                    value = f"{src.const(p.get)}(r, roles, None)"
            if known_type == "same" or (known_type == "int" and p.literals is None):
                parts.append(value)
                continue
            e(depth, f"v = {value}")
            if known_type == "int":
                assert p.literals is not None
                e(depth, f"q{n} = {_interval_code(src, p.literals)}")
            elif p.literals is not None:
                code = _interval_code(src, p.literals)
                e(depth, f"if type(v) is int and {-INT64} <= v < {INT64}: q{n} = {code}")
                e(depth, f"else: q{n} = (RAW, part(v))")
            else:
                e(depth, f"q{n} = v if type(v) is str else part(v)")
            parts.append(f"q{n}")
        return parts

    def miss(self, depth: int, counting: list[int], keyvar: dict[int, str],
             my_windows: set[str], my_lookups: list[str], reads: set[tuple[str, ...]],
             done: set[str]) -> None:
        """On a memo miss: what the branch skipped, then CEL's whole input."""
        e, src, roots = self.src.emit, self.src, self.c.roots
        for wname in self.c.windows:
            i = self.widx[wname]
            if wname in my_windows:
                continue
            if i in counting:
                e(depth, f"c{i}, s{i} = velocity(K{i}, ibc{i}, ibs{i}, {keyvar[i]})")
            else:
                e(depth, f"c{i} = 0; s{i} = 0")
        inner = set(done)
        for lname in self.lookups:
            if lname not in my_lookups:
                self.lookup(depth, lname, inner)
        if "risk" in roots and ("risk", "tier") not in reads:
            self.tier(depth, inner)
        act: list[str] = []
        if "block" in roots:
            act.append("'block': block")
        if "velocity" in roots:
            vel = ", ".join(f"{src.const(w)}: {{'count': c{self.widx[w]}, 'sum': "
                            f"s{self.widx[w]}}}" for w in self.c.windows)
            act.append(f"'velocity': {{{vel}}}")
        if "listed" in roots:
            lst = ", ".join(f"{src.const(n)}: {self.lvar[n]}" for n in self.lookups)
            act.append(f"'listed': {{{lst}}}")
        if "risk" in roots:
            act.append("'risk': {'tier': tier}")
        e(depth, f"d = miss(r, rl, key, {{{', '.join(act)}}})")

    def build(self) -> str:
        e, src = self.src.emit, self.src
        self.header()
        named: set[str] = set()
        for rule in self.c.rules:
            named |= rule.kinds or set()
        for _, window in self.windows:
            named |= window.kinds or set()
        named.add(RISK_TIER_KIND)
        branches = sorted(named)
        # The records and their roles as two lists (BlockInputs: no object
        # per record), zipped: zip reuses its pair while nothing keeps it.
        e(1, "if type(records) is BlockInputs:")
        e(2, "recs = records.records; rls = records.roles")
        e(1, "else:")
        e(2, "recs = [i.record for i in records]; rls = [i.submitter_roles for i in records]")
        e(1, "for r, rl in zip(recs, rls):")
        e(2, "kind = r.kind")
        e(2, f"b = {src.const({k: n for n, k in enumerate(branches)})}.get(kind, -1)")
        e(2, "if b < 0:")
        e(3, "if kind.startswith('gov.'):")
        e(4, "keep(RecordInput(r, rl))")
        e(4, "append(allow)")  # governance is never held by the policy it governs
        e(4, "continue")
        self.branch(3, None)
        for n, kind in enumerate(branches):
            e(2, f"elif b == {n}:")
            if kind.startswith("gov."):
                e(3, "keep(RecordInput(r, rl))")
                e(3, "append(allow)")
            else:
                self.branch(3, kind)
        entries = "".join(f"(keys{i}, amts{i}), " for i in range(len(self.windows)))
        e(1, f"return out, [{entries}], special")
        return "\n".join(src.lines) + "\n"


def build(compiled: CompiledPolicy, part: Callable[[Any], Any],
          missing: object) -> FastPass | None:
    """The block pass of ``compiled`` (see the module text), or None when a
    rule reads an input map whole."""
    if not _supported(compiled):
        return None
    builder = _Builder(compiled)
    text = builder.build()
    policy = compiled.policy
    cache, hexof = hex_cache()
    namespace: dict[str, Any] = dict(builder.src.consts)
    namespace.update(
        EMPTY=_EMPTY, NO_ENTRIES=_NO_ENTRIES, MISSING=missing, RAW=_RAW,
        part=part, interval=interval, velocity=velocity, bl=bisect_left, br=bisect_right,
        HX=cache, hexof=hexof, BlockInputs=BlockInputs, RecordInput=RecordInput,
        allow=Decision(Outcome.ALLOW, policy_version=policy.version))
    program = compile(text, f"<policy {policy.name} v{policy.version}>", "exec")
    exec(program, namespace)  # the source above: names and literals of the policy are constants
    run: FastPass = namespace["run"]
    run.source = text  # type: ignore[attr-defined]
    return run
