"""A velocity window's counts (ledger/policy/state.py ``WindowSet``) against
its entries counted one by one: after adds and prunes, a window read at a
later block's time (``stale`` of the entries that time has passed, not yet
pruned) gives each key's count and sum of the entries inside it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.policy.state import WindowSet

KEYS = st.sampled_from(["a", "b", "c", "d"])
# Blocks: (time step, entries (key, amount), whether a commit prunes after it).
BLOCKS = st.lists(st.tuples(st.integers(0, 40), st.lists(st.tuples(KEYS, st.integers(0, 9)),
                                                         max_size=5), st.booleans()),
                  max_size=12)


@settings(max_examples=300, deadline=None)
@given(blocks=BLOCKS, ms=st.integers(1, 60), later=st.integers(0, 80), one_by_one=st.booleans())
def test_a_window_read_later_counts_the_entries_inside_it(
        blocks: list[tuple[int, list[tuple[str, int]], bool]], ms: int, later: int,
        one_by_one: bool) -> None:
    wset = WindowSet()
    entries: list[tuple[int, str, int]] = []
    now = 0
    for step, block, prune in blocks:
        now += step
        if one_by_one:
            for key, amount in block:
                wset.add(key, now, amount)
        else:
            wset.add_all(now, [k for k, _ in block], [a for _, a in block])
        entries += [(now, k, a) for k, a in block]
        if prune:
            wset.prune(now, ms)
            entries = [e for e in entries if e[0] > now - ms]
    assert wset.entries == len(entries)
    assert wset.total == sum(a for _, _, a in entries)
    cutoff = now + later - ms  # a next block's window, ``later`` ms on
    stale = wset.stale(cutoff)
    for key in ("a", "b", "c", "d"):
        inside = [a for t, k, a in entries if k == key and t > cutoff]
        assert wset.at(key, stale) == (len(inside), sum(inside))
    by_key = wset.by_key()
    assert list(by_key) == sorted({k for _, k, _ in entries})
    for key, pairs in by_key.items():
        assert pairs == [(t, a) for t, k, a in entries if k == key]
