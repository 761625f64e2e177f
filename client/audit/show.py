"""How ``ledger-audit`` prints what others wrote, and who vouches for it.

Record kinds and origins, genesis names, chain ids, node error messages:
all of it is written by someone other than the auditor, and all of it goes
through :func:`untrusted` before it reaches a terminal.  The result is a
:class:`rich.text.Text`, which rich never parses as markup, so ``[/]`` is
shown as ``[/]`` instead of raising ``MarkupError`` and ``[bold green]`` has
no effect; and every character a terminal could act on (C0 and C1 controls,
DEL, bidi overrides and other format characters, line and paragraph
separators, lone surrogates) is replaced by a visible escape such as
``\\n``, ``\\x1b`` or ``\\u202e``, so a value stays on its line and cannot move the
cursor, retitle the window or start a line of its own.  ``--json`` output
does not go through here: it carries the exact values, JSON-escaped.

The chain certifies keys, not names: a header commits to the validators'
public keys (PROTOCOL §4) and a record to its submitter's key (signed).  So
the human-readable output names validators by index and key fingerprint
(:func:`fingerprint`), submitters by key fingerprint, and prints names from
the auditor's genesis file only in a separate block of labels headed by
that file's SHA-256 (:func:`labels`).
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

from rich.text import Text

from ledger.genesis import Genesis

# Unicode categories a terminal may act on or that change how a line reads:
# Cc (C0, DEL, C1), Cf (bidi overrides and isolates, zero-width characters),
# Cs (lone surrogates: not even encodable), Zl and Zp (line/paragraph separators).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
FINGERPRINT_BYTES = 8


def _visible(ch: str) -> str:
    if unicodedata.category(ch) not in _ESCAPED_CATEGORIES:
        return ch
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def untrusted(value: object, style: str = "") -> Text:
    """``value`` as inert text: no markup, no control characters, one line.

    Use ``untrusted(value).plain`` where a plain string is needed (messages
    that click writes to standard error)."""
    text = value if isinstance(value, str) else str(value)
    return Text("".join(_visible(ch) for ch in text), style=style)


def fingerprint(pubkey: bytes) -> str:
    """A key's fingerprint: its first 8 bytes in hex (16 characters), which
    is how the key's hex in the genesis file and in the record begins."""
    return pubkey[:FINGERPRINT_BYTES].hex()


def validator_ref(genesis: Genesis, index: int) -> str:
    """``#2 (key 1a2b…)``: what the chain certifies about a validator (its
    place in the key list the headers commit to, and its key)."""
    return f"#{index} (key {fingerprint(genesis.validators[index].pubkey)})"


def validators_ref(genesis: Genesis, indices: Iterable[int]) -> str:
    return ", ".join(validator_ref(genesis, i) for i in indices if 0 <= i < genesis.n)


def labels(genesis: Genesis, genesis_sha256: str, *, validators: Iterable[int] = (),
           submitters: Iterable[bytes] = (), epoch: Genesis | None = None,
           epochs: Iterable[tuple[Genesis, Iterable[int]]] = ()) -> list[Text]:
    """The names the auditor's genesis file gives to the validators and
    submitters mentioned above, headed by the file's SHA-256.  Nothing on the
    chain certifies a name; compare the digest with the one the chain's
    operators publish before relying on these.

    ``validators`` are indexes into ``epoch``, the validator set in force
    where they signed (default: the genesis set); ``epochs`` gives more
    (set, indexes) pairs.  A validator or submitter that governance added
    after genesis is labelled with the name its governance record gave."""
    rows: list[Text] = []
    epochs = list(epochs)  # read twice below
    named_in_file = {v.pubkey: v.name for v in genesis.validators}
    seen: set[bytes] = set()
    for where, indexes in [(epoch or genesis, validators), *epochs]:
        for index in sorted(set(indexes)):
            if not 0 <= index < where.n or where.validators[index].pubkey in seen:
                continue
            key = where.validators[index].pubkey
            seen.add(key)
            name = named_in_file.get(key)
            rows.append(Text.assemble(f"  validator {validator_ref(where, index)}: ",
                                      untrusted(name if name is not None else where.validators[index].name),
                                      "" if name is not None else " (key from a governance record)"))
    later = {k: s for e, _ in [(epoch or genesis, ()), *epochs] for k, s in e.submitters.items()}
    for key in sorted(set(submitters)):
        submitter = genesis.submitters.get(key)
        if submitter is not None:
            rows.append(Text.assemble(f"  submitter key {fingerprint(key)}: ", untrusted(submitter.name)))
        elif key in later:
            rows.append(Text.assemble(f"  submitter key {fingerprint(key)}: ", untrusted(later[key].name),
                                      " (named by a governance record)"))
    if not rows:
        return []
    head = Text(f"Labels from your genesis file (sha256 {genesis_sha256}), not certified by the chain:",
                style="dim")
    return [head, *rows]
