"""The open records (held for approvals, open for review) kept incrementally
(ledger/held.py, ledger/approvals.py): a block's pass writes its changes over
the committed records instead of a copy of them, the commit applies those
changes, and the expired ones are found through a deadline index.  Checked
against the plain way, block by block on random histories: a fresh state
each block, copied from the committed records, that looks at every open
record for expiry - the same verdicts, transitions, root and open records."""

from __future__ import annotations

import random
from typing import Any

from helpers import as_genesis, genesis_doc, make_envelope, make_keys
from policy_fakes import LimitPolicy

from ledger.breakers import Breakers
from ledger.approvals import DEFAULT_APPROVAL_WINDOW_MS, VerdictState
from ledger.held import Deadlines, Held, HeldOverlay
from ledger.membership import Membership
from ledger.policy import Outcome
from ledger.records import Envelope
from ledger.risk import DECISION

VALIDATORS = make_keys(4)
SUBS = make_keys(6, 2_000_000)


def _state() -> Any:
    doc = genesis_doc(VALIDATORS, SUBS, "test")
    for i, sub in enumerate(doc["submitters"]):
        sub["roles"] = (["review", "submit", "treasury"] if i in (1, 2, 3)
                        else ["review", "submit"] if i == 4 else ["submit"])
    return Membership.from_genesis(as_genesis(doc)).at(1)


def _history(rng: random.Random, blocks: int) -> list[tuple[int, list[Envelope]]]:
    """Blocks of payments (some large: approve(2, treasury); some flagged:
    review), approvals and review decisions naming earlier records, at block
    times that now and then pass the approval window."""
    out: list[tuple[int, list[Envelope]]] = []
    seen: list[bytes] = []
    held: list[bytes] = []  # large or flagged payments: what approvals and decisions aim at
    t, nonce = 1_700_000_000_000, 0
    for _ in range(blocks):
        t += rng.choice([1000] * 6 + [DEFAULT_APPROVAL_WINDOW_MS // 2,
                                      DEFAULT_APPROVAL_WINDOW_MS + 1])
        envs = []
        for _ in range(rng.randrange(0, 12)):
            nonce += 1
            key = rng.choice(SUBS)
            pick = rng.randrange(10)
            aim = rng.choice(held[-20:] if held and rng.random() < 0.8 else seen[-30:] or [b""])
            if pick < 4 or not seen:
                kind = "flagged" if pick == 0 else "payment"
                amount = rng.choice([50, 500, 50_000, 900_000])
                env = make_envelope(key, "test", nonce, kind=kind, body={
                    "amount": amount, "currency": "EUR"})
                if kind == "flagged" or amount > 10_000:
                    held.append(env.id)
            elif pick < 7:
                env = make_envelope(key, "test", nonce, parents=[aim],
                                    kind="approval", body={})
            else:
                env = make_envelope(key, "test", nonce, parents=[aim],
                                    kind=DECISION, body={"decision": rng.choice(
                                        ["approve", "approve", "reject", "escalate"]),
                                        "note": ""})
            envs.append(env)
            seen.append(env.id)
        out.append((t, envs))
    return out


def _no_record(record_id: bytes) -> None:
    return None


class _EveryOpenRecord(Deadlines):
    """Every open record due at any time: the pass over all of them."""

    def __init__(self, held: dict[bytes, Held]) -> None:
        super().__init__()
        self.held = held

    def due(self, time_ms: int) -> list[bytes]:
        return list(self.held)


def test_incremental_open_records_match_a_full_pass_each_block() -> None:
    state = _state()
    for seed in range(6):
        rng = random.Random(seed)
        fast = VerdictState(LimitPolicy(limit=10_000, approvals=2), lookup=_no_record)
        plain_engine = LimitPolicy(limit=10_000, approvals=2)
        plain_held: dict[bytes, Held] = {}
        plain_version, plain_breakers = fast.version, Breakers()
        leaf = 0
        ended = 0
        for height, (t, envs) in enumerate(_history(rng, 60), start=1):
            plain = VerdictState(plain_engine, plain_held, plain_version, plain_breakers,
                                 lookup=_no_record)
            plain._deadlines = _EveryOpenRecord(plain.held)  # looked at for expiry
            got = fast.compute(state, height, t, envs, leaf)
            want = plain.compute(state, height, t, envs, leaf)
            assert got.root == want.root and got.verdicts == want.verdicts
            assert got.transitions == want.transitions and got.entries == want.entries
            fast.commit(height, t, got)
            plain.commit(height, t, want)  # the engine's and the breakers' state
            plain_held = dict(plain_held)  # the block's changes over a copy
            for record, entry in want.held.items():
                if entry is None:
                    plain_held.pop(record, None)  # opened and ended in the block: absent
                else:
                    plain_held[record] = entry
            assert fast.held == plain_held
            ends = {tr.record for tr in got.transitions}
            opened = {v.record for v in got.verdicts if v.outcome in (Outcome.APPROVE,
                                                                     Outcome.REVIEW)}
            assert not ends & fast.held.keys() and opened - ends <= fast.held.keys()
            assert all(h.review or h.deadline >= t for h in fast.held.values())
            plain_version = plain.version
            leaf += len(envs)
            ended += len(got.transitions)
        assert ended > 0 and fast.held  # the histories do end and keep records open


def test_deadlines_due_is_every_entry_below_the_time() -> None:
    rng = random.Random(3)
    entries = [Held(bytes([i % 256, i // 256]) * 16, b"s" * 32, i, 1, "treasury",
                    rng.randrange(0, 1000), review=rng.random() < 0.2) for i in range(400)]
    deadlines = Deadlines({h.record: h for h in entries[:100]})
    for h in entries[100:]:
        deadlines.add(h)
    approve = [h for h in entries if not h.review]
    for t in [0, 1, 5, 250, 999, 1000, 2000]:
        assert sorted(deadlines.due(t)) == sorted(h.record for h in approve if h.deadline < t)
    # advance keeps what is still open below the time, drops what is not
    still = {h.record: h for h in approve if h.deadline < 500 and h.leaf_index % 2}
    deadlines.advance(500, still)
    assert set(deadlines.due(500)) >= set(still)


def test_overlay_reads_like_a_dict_written_the_same_way() -> None:
    rng = random.Random(9)
    keys = [bytes([i]) * 32 for i in range(30)]

    def entry(k: bytes, n: int) -> Held:
        return Held(k, b"s" * 32, n, 1, "treasury", n)

    base = {k: entry(k, 0) for k in keys[:15]}
    overlay, copy = HeldOverlay(base), dict(base)
    for n in range(400):
        k = rng.choice(keys)
        if rng.random() < 0.5:
            overlay[k] = copy[k] = entry(k, n)
        elif k in copy:
            del overlay[k]
            del copy[k]
        assert (k in overlay) == (k in copy) and overlay.get(k) == copy.get(k)
        assert dict(overlay) == copy and len(overlay) == len(copy)
    assert base == {k: entry(k, 0) for k in keys[:15]}  # never written
