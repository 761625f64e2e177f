"""PolicyState.to_bytes packs its map without the canonical walk
(ledger/policy/state.py): the same bytes as ``canonical`` of the map it
stands for, with the sorted lists it keeps between saves dropped when
governance changes a list."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import canonical
from ledger.policy import policy_from_json
from ledger.policy.state import STATE_DOMAIN, PolicyState, WindowSet, state_from_bytes
from ledger.records import make_record

POLICY = policy_from_json({
    "name": "p", "version": 3, "default": "allow",
    "windows": {"w": {"by": "origin.account", "ms": 60_000}},
    "rules": [{"name": "r", "when": "velocity.w.count > 2", "then": "review"}]})


def walked(state: PolicyState) -> bytes:
    """The map as the canonical walk encodes it (what to_bytes wrote before)."""
    return STATE_DOMAIN + canonical({
        "height": state.height,
        "lists": {name: sorted(entries) for name, entries in state.lists.items()},
        "policy": state.policy.policy_bytes if state.policy is not None else None,
        "tiers": dict(state.tiers),
        "time_ms": state.time_ms,
        "windows": {name: _entries_by_key(wset) for name, wset in state.windows.items()},
    })


def _entries_by_key(wset: WindowSet) -> dict[str, list[list[int]]]:
    """Each key's ``[time, amount]`` entries in the order they were added."""
    out: dict[str, list[list[int]]] = {}
    for t, keys, amounts in wset.order:
        for key, a in zip(keys, amounts):
            out.setdefault(key, []).append([t, a])
    return out


# Any Unicode, so that code-point order meets UTF-8 byte order beyond ASCII.
names = st.text(min_size=1, max_size=6)
uint64 = st.integers(min_value=0, max_value=2**64 - 1)


@settings(max_examples=150, deadline=None)
@given(height=uint64, time_ms=uint64, with_policy=st.booleans(),
       lists=st.dictionaries(names, st.sets(names, max_size=8), max_size=4),
       tiers=st.dictionaries(names, st.integers(min_value=1, max_value=3), max_size=5),
       windows=st.dictionaries(names, st.lists(st.tuples(names, st.integers(0, 100), uint64),
                                               max_size=10), max_size=3),
       prune_at=st.none() | st.integers(0, 150))
def test_state_bytes_are_the_canonical_map(height: int, time_ms: int, with_policy: bool,
                                           lists: dict[str, set[str]], tiers: dict[str, int],
                                           windows: dict[str, list[tuple[str, int, int]]],
                                           prune_at: int | None) -> None:
    state = PolicyState(height=height, time_ms=time_ms, lists=lists, tiers=tiers,
                        policy=POLICY if with_policy else None)
    for wname, entries in windows.items():
        wset = state.windows[wname] = WindowSet()
        for key, t, amount in sorted(entries, key=lambda e: e[1]):
            wset.add(key, t, amount)
        if prune_at is not None:
            wset.prune(prune_at, 50)
        assert wset.entries == sum(w[0] for w in wset.keys.values())
    assert state.entries() == sum(len(e) for e in windows.values()) or prune_at is not None
    data = state.to_bytes()
    assert data == walked(state)
    assert state.to_bytes() == data  # the kept sorted lists give the same bytes again
    assert state_from_bytes(data).to_bytes() == data


def gov(kind: str, body: dict[str, Any]) -> Any:
    return make_record(chain="c", submitter=bytes(32), nonce=1, ts=0, kind=kind,
                       origin={}, body=body)


def test_a_list_changed_by_governance_is_sorted_again() -> None:
    state = PolicyState()
    state.commit(1, 10, [(gov("gov.list.add", {"list": "known", "entries": ["b", "a"]}),
                          frozenset())])
    first = state.to_bytes()
    assert first == walked(state)
    state.commit(2, 20, [(gov("gov.list.add", {"list": "known", "entries": ["c", "0"]}),
                          frozenset())])
    assert state.to_bytes() == walked(state) != first
    state.commit(3, 30, [(gov("gov.list.remove", {"list": "known", "entries": ["a", "c"]}),
                          frozenset())])
    assert state.to_bytes() == walked(state)
    assert state_from_bytes(state.to_bytes()).lists == {"known": {"b", "0"}}
