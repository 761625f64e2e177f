"""Held.to_bytes and encode_entries pack as they stand, without the
canonical walk (ledger/held.py, ledger/verdicts.py): the same bytes as
``canonical`` of what they stand for, and they read back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import canonical
from ledger.held import Held
from ledger.verdicts import decode_entries, encode_entries

ids = st.binary(min_size=32, max_size=32)
uint64 = st.integers(min_value=0, max_value=2**64 - 1)
pairs = st.lists(st.tuples(ids, ids), max_size=4).map(tuple)


@settings(max_examples=200, deadline=None)
@given(record=ids, submitter=ids, leaf_index=uint64, approvals=st.integers(0, 64),
       role=st.text(max_size=12), deadline=uint64, approvers=pairs, review=st.booleans(),
       since=uint64, escalations=pairs)
def test_held_bytes_are_the_canonical_map(record: bytes, submitter: bytes, leaf_index: int,
                                          approvals: int, role: str, deadline: int,
                                          approvers: tuple[tuple[bytes, bytes], ...],
                                          review: bool, since: int,
                                          escalations: tuple[tuple[bytes, bytes], ...]) -> None:
    held = Held(record, submitter, leaf_index, approvals, role, deadline, approvers, review,
                since, escalations)
    data = held.to_bytes()
    assert data == canonical({
        "approvals": approvals, "approvers": [list(a) for a in approvers],
        "deadline": deadline, "escalations": [list(e) for e in escalations],
        "leaf_index": leaf_index, "record": record, "review": review, "role": role,
        "since": since, "submitter": submitter})
    assert Held.from_bytes(data) == held


@settings(max_examples=100, deadline=None)
@given(entries=st.lists(st.binary(max_size=300), max_size=40))
def test_entries_bytes_are_the_canonical_array(entries: list[bytes]) -> None:
    data = encode_entries(entries)
    assert data == canonical(entries)
    assert decode_entries(data) == entries
