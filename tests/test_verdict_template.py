"""A block's verdicts made from one template per policy decision
(ledger/verdicts.py VerdictTemplate, the common case of ledger/approvals.py's
judge): the same verdict objects and bytes as ``Verdict.of`` and
``to_bytes``, for any decision; and whole blocks judged the fast way equal
the record-by-record way (approvals, review decisions, held and review
records among them)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_fakes import LimitPolicy
from test_held_incremental import _history, _no_record, _state

from ledger.approvals import VerdictState, _Judge, approval_window
from ledger.policy import Decision, Outcome, RecordInput
from ledger.verdicts import BlockVerdictList, Verdict, VerdictTemplate, verdict_root

texts = st.text(max_size=300)


class SharedDecisions(LimitPolicy):
    """LimitPolicy giving records it decides alike one Decision object, as
    the CEL evaluator's memo does (the judge keeps one template per object)."""

    def __init__(self) -> None:
        super().__init__(limit=10_000, approvals=2)
        self.interned: dict[Decision, Decision] = {}

    def evaluate_block(self, height: int, time_ms: int,
                       records: Sequence[RecordInput]) -> list[Decision]:
        return [self.interned.setdefault(d, d)
                for d in super().evaluate_block(height, time_ms, records)]


@settings(max_examples=300, deadline=None)
@given(outcome=st.sampled_from(list(Outcome)), rule=texts, reason=texts,
       approvals=st.integers(0, 100), role=texts, policy=st.integers(0, 2**40),
       deadline=st.integers(0, 2**62), record=st.binary(min_size=32, max_size=32))
def test_a_template_makes_what_verdict_of_makes(outcome: Outcome, rule: str, reason: str,
                                                approvals: int, role: str, policy: int,
                                                deadline: int, record: bytes) -> None:
    decision = Decision(outcome, rule, reason, approvals, role, policy)
    want = Verdict.of(record, decision, deadline)
    template = VerdictTemplate(Verdict.of(bytes(32), decision, deadline))
    got = template.verdict(record)
    assert got == want and template.entry(got.record) == want.to_bytes()
    other = bytes(31) + b"\x01"
    assert template.entry(other) == Verdict.of(other, decision, deadline).to_bytes()


def test_blocks_judged_by_template_equal_record_by_record() -> None:
    state = _state()
    shared = 0
    for seed in range(4):
        rng = random.Random(100 + seed)
        fast = VerdictState(SharedDecisions(), lookup=_no_record)
        leaf = 0
        for height, (t, envs) in enumerate(_history(rng, 40), start=1):
            inputs_engine = fast.engine
            got = fast.compute(state, height, t, envs, leaf)
            judge = _Judge(fast.held, fast._deadlines, state, t, approval_window(state.params),
                           inputs_engine.version, set(), {})
            verdicts = [judge._verdict(env, n, d)
                        for n, (env, d) in enumerate(zip(envs, got.decisions), start=leaf)]
            transitions = judge.transitions()
            entries = [v.to_bytes() for v in verdicts] + [x.to_bytes() for x in transitions]
            assert list(got.verdicts) == verdicts and got.transitions == transitions
            assert got.entries == entries and got.root == verdict_root(entries, len(verdicts))
            assert got.held == judge.held.changes
            shared += len(got.decisions) - len({id(d) for d in got.decisions})
            fast.commit(height, t, got)
            leaf += len(envs)
    assert shared > 100  # decisions shared among records: templates reused
    # ... and among blocks (an approve template again only for a new deadline)
    assert fast._templates


def test_block_verdict_list_reads_as_the_verdicts_it_stands_for() -> None:
    """The verdict pass keeps a template per shared decision and makes each
    record's verdict when it is read: the list reads, slices and compares as
    the verdicts themselves."""
    decision = Decision(Outcome.APPROVE, "big", "", 2, "treasury", 3)
    template = VerdictTemplate(Verdict.of(bytes(32), decision, 99))
    ids = [bytes([i]) * 32 for i in range(4)]
    own = Verdict(ids[2], Outcome.ALLOW, "governance", policy=3)
    lazy = BlockVerdictList(ids, [template, template, own, template])
    want = [Verdict.of(ids[0], decision, 99), Verdict.of(ids[1], decision, 99), own,
            Verdict.of(ids[3], decision, 99)]
    assert len(lazy) == 4 and list(lazy) == want and lazy == want
    assert lazy[-1] == want[-1] and lazy[1:3] == want[1:3] and lazy[2] is own
    assert lazy != want[:3] and lazy != [*want[:3], own]
    with pytest.raises(ValueError):
        BlockVerdictList(ids, [template])
