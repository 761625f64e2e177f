"""Verdict bytes built around the record id (ledger/verdicts.py) are the
canonical map of PROTOCOL §10.5, byte for byte."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import canonical
from ledger.policy import Outcome
from ledger.verdicts import Verdict, decode_verdict

_text = st.one_of(st.sampled_from(["", "governance", "breaker:account:acc-1"]),
                  st.text(max_size=300))
_uint = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 127, 128, 2**32]))


def _reference(v: Verdict) -> bytes:
    return canonical({"approvals": v.approvals, "deadline": v.deadline,
                      "outcome": v.outcome.value, "policy": v.policy, "reason": v.reason,
                      "record": v.record, "role": v.role, "rule": v.rule})


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.sampled_from(list(Outcome)), _text, _text,
       st.integers(0, 64), _text, _uint, _uint)
def test_verdict_bytes_are_the_canonical_map(record: bytes, outcome: Outcome, rule: str,
                                             reason: str, approvals: int, role: str,
                                             policy: int, deadline: int) -> None:
    v = Verdict(record, outcome, rule, reason, approvals, role, policy, deadline)
    assert v.to_bytes() == _reference(v)
    assert v.to_bytes() == _reference(v)  # the second time from the cached parts
    other = Verdict(bytes(32), outcome, rule, reason, approvals, role, policy, deadline)
    assert other.to_bytes() == _reference(other)
    if outcome == Outcome.APPROVE or not (approvals or role or deadline):
        if len(rule) <= 256 and len(reason) <= 256 and len(role) <= 256:
            assert decode_verdict(v.to_bytes()) == v


def test_odd_fields_take_the_plain_encoding() -> None:
    v = Verdict(b"\x01" * 32, Outcome.APPROVE, "r", "", 1, "treasury", 1, 5)
    assert v.to_bytes() == _reference(v)
    flag = Verdict(b"\x01" * 32, Outcome.APPROVE, "r", "", True, "treasury", 1, 5)  # type: ignore[arg-type]
    assert flag.to_bytes() == _reference(flag) != v.to_bytes()
    short = Verdict(b"\x01" * 31, Outcome.ALLOW)
    assert short.to_bytes() == _reference(short)
