"""A checker that cannot fail proves nothing: deliberately broken replicas
(consensus/simulation/broken.py) must be caught, and the same seeds must be
clean with the real replica.

Seed ranges start near a known hit so the searches stay short; the search
itself is deterministic.  Forks from a missing lock need an unlucky schedule
and are rare in random runs, so the lock is also shown on a scripted
schedule at the end.  If the simulator changes, find new seeds with
``scripts/simulate --broken X --behaviour B --runs N --keep-going``.
"""

from __future__ import annotations

import pytest

from consensus.messages import SignedVote
from consensus.simulation.app import SimChain
from consensus.simulation.bench import Bench
from consensus.simulation.invariants import Checker
from consensus.simulation.runner import run_scenario
from ledger.blocks import Certificate
from ledger.encoding import H

CASES = [
    # broken replica, n, byzantine, behaviour, violation kinds, seeds to search
    ("ignore-lock", 4, 1, "amnesia", ("agreement",), range(250, 280)),
    ("ignore-lock", 7, 2, "amnesia", ("agreement",), range(220, 240)),
    ("double-count", 4, 1, "equivocate", ("agreement",), range(0, 40)),
    ("double-count", 4, 1, "amnesia", ("agreement",), range(120, 200)),
    ("double-count", 4, 1, "mixed", ("agreement",), range(75, 130)),
    ("double-count", 7, 2, "mixed", ("agreement",), range(25, 60)),
    ("small-quorum", 4, 1, "double-vote", ("agreement",), range(75, 130)),
    ("small-quorum", 7, 2, "mixed", ("agreement",), range(0, 30)),
    ("no-validation", 4, 1, "invalid", ("validity", "integrity"), range(0, 30)),
    ("no-timeout", 4, 1, "withhold", ("liveness",), range(0, 30)),
    ("send-before-persist", 4, 1, "mixed", ("persist-before-send",), range(0, 10)),
    ("forgetful", 4, 1, "mixed", ("persist-before-send",), range(0, 10)),
]


def _first_hit(broken: str, n: int, byzantine: int, behaviour: str, kinds: tuple[str, ...],
               seeds: range) -> tuple[int, str] | None:
    for seed in seeds:
        result = run_scenario(seed, n, byzantine, behaviour, broken=broken)
        for violation in result.violations:
            if violation.split(":")[0] in kinds:
                return seed, violation
    return None


@pytest.mark.parametrize("broken,n,byzantine,behaviour,kinds,seeds", CASES,
                         ids=[f"{c[0]}-n{c[1]}-{c[3]}" for c in CASES])
def test_broken_replica_is_caught(broken: str, n: int, byzantine: int, behaviour: str,
                                  kinds: tuple[str, ...], seeds: range) -> None:
    hit = _first_hit(broken, n, byzantine, behaviour, kinds, seeds)
    assert hit is not None, f"{broken}: no {kinds} violation in seeds {seeds}"
    seed, violation = hit
    assert violation.split(":")[0] in kinds
    correct = run_scenario(seed, n, byzantine, behaviour)
    assert correct.ok, correct.violations


def test_forgetful_replica_double_signs_after_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the ordering check off, the double-sign checker alone catches a
    replica that does not persist its votes: after a crash it signs again."""
    monkeypatch.setattr(Checker, "on_sent_after_persist", lambda *args, **kwargs: None)
    hit = _first_hit("forgetful", 4, 0, "mixed", ("double-sign",), range(30, 80))
    assert hit is not None
    assert run_scenario(hit[0], 4, 0, "mixed").ok


# --------------------------------------------------------------------------
# The checkers on hand-made bad chains
# --------------------------------------------------------------------------


def _chain() -> tuple[Bench, SimChain]:
    bench = Bench()
    bench.start()
    for _ in range(2):
        bench.submit(bench.records(2))
        bench.deliver()
    return bench, bench.nodes[0].chain


def test_agreement_checker() -> None:
    bench, chain = _chain()
    checker = Checker(bench.genesis, frozenset(range(4)))
    checker.on_commit("n0", chain.headers[0])
    checker.on_commit("n1", chain.headers[0])
    assert not checker.violations
    from dataclasses import replace

    checker.on_commit("n2", replace(chain.headers[0], time=chain.headers[0].time + 1, header_bytes=b""))
    assert checker.violations and checker.violations[0].startswith("agreement")


def test_double_sign_and_evidence_checkers() -> None:
    from consensus.messages import sign_vote
    from consensus.votes import Evidence
    from ledger.blocks import Vote

    bench, _ = _chain()
    checker = Checker(bench.genesis, frozenset({0, 1, 2}))
    a = sign_vote(Vote("prevote", "sim", 5, 0, H(b"a")), 1, bench.keys[1])
    b = sign_vote(Vote("prevote", "sim", 5, 0, None), 1, bench.keys[1])
    checker.on_signed("n1", 1, a)
    checker.on_signed("n1", 1, a)
    assert not checker.violations
    checker.on_signed("n1", 1, b)
    checker.on_evidence("n0", Evidence(a, b))
    assert [v.split(":")[0] for v in checker.violations] == ["double-sign", "evidence"]


def test_chain_checkers_catch_tampering() -> None:
    bench, chain = _chain()
    checker = Checker(bench.genesis, frozenset(range(4)))
    checker.check_chain("n0", chain)
    assert not checker.violations
    cert = chain.certificates[1]
    chain.certificates[1] = Certificate(cert.height, cert.round, cert.block, cert.signatures[:2])
    chain.blocks[0] = chain.blocks[0] + (chain.blocks[0][0],)
    checker.check_chain("n0", chain)
    kinds = {v.split(":")[0] for v in checker.violations}
    assert {"certificate", "integrity", "validity"} <= kinds


def test_liveness_checker() -> None:
    bench, chain = _chain()
    checker = Checker(bench.genesis, frozenset(range(4)))
    checker.check_liveness("n0", chain, [H(b"never committed")], 1000)
    assert checker.violations[0].startswith("liveness")


# --------------------------------------------------------------------------
# The lock, on a scripted schedule (the classic counterexample)
# --------------------------------------------------------------------------


def _lock_counterexample(factory: type) -> tuple[Bench, Checker]:
    """n=4, v3 Byzantine.  Round 0: v0 and v1 see a polka for A and precommit
    it; only v0 also gets v3's precommit and decides A.  Round 1: v2, who never
    saw the polka, proposes B.  A replica that honours its lock (v1) prevotes
    nil and B cannot gather a quorum; one that ignores it lets B through."""
    from consensus.events import ProposalReceived, TimerFired, VoteReceived
    from consensus.messages import Proposal, sign_vote
    from consensus.params import Step, Timer
    from ledger.blocks import Vote

    bench = Bench(factory=factory)
    checker = Checker(bench.genesis, frozenset({0, 1, 2}))
    honest = (0, 1, 2)
    bench.start(honest)
    bench.submit(bench.records(2), nodes=honest)
    (a,) = [m for m in bench.drop_outbox() if isinstance(m.message, Proposal)]
    proposal_a = a.message

    def byz(type_: str, round_: int, block: bytes | None) -> SignedVote:
        return sign_vote(Vote(type_, "sim", 1, round_, block), 3, bench.keys[3])

    def give(dst: int, *msgs: object) -> None:
        for m in msgs:
            event = VoteReceived(m, bench.now) if isinstance(m, SignedVote) else ProposalReceived(m, bench.now)
            bench.step(dst, event)  # type: ignore[arg-type]

    def own(i: int, type_: str, round_: int) -> SignedVote:
        return bench.nodes[i].machine.own_votes[(round_, type_)]

    give(0, proposal_a)
    give(2, proposal_a)
    bench.drop_outbox()
    hash_a = proposal_a.block_hash
    give(0, own(1, "prevote", 0), byz("prevote", 0, hash_a))            # v0: polka A
    give(1, own(0, "prevote", 0), byz("prevote", 0, hash_a))            # v1: polka A
    give(2, own(0, "prevote", 0), byz("prevote", 0, None))              # v2: no polka
    bench.step(2, TimerFired(Timer(1, 0, Step.PREVOTE), bench.now))     # v2 precommits nil
    bench.drop_outbox()
    give(0, own(1, "precommit", 0), byz("precommit", 0, hash_a))        # v0 decides A
    give(1, own(2, "precommit", 0), byz("precommit", 0, None))          # v1: 3 precommits, no A quorum
    give(2, own(1, "precommit", 0), byz("precommit", 0, None))
    bench.drop_outbox()
    for i in (1, 2):
        bench.step(i, TimerFired(Timer(1, 0, Step.PRECOMMIT), bench.now))
    (b,) = [m.message for m in bench.drop_outbox() if isinstance(m.message, Proposal)]
    give(1, b)
    give(1, own(2, "prevote", 1), byz("prevote", 1, b.block_hash))
    give(2, own(1, "prevote", 1), byz("prevote", 1, b.block_hash))
    bench.drop_outbox()
    for i in (1, 2):
        if (1, "precommit") in bench.nodes[i].machine.own_votes:
            give(3 - i, own(i, "precommit", 1))
    give(1, byz("precommit", 1, b.block_hash))
    give(2, byz("precommit", 1, b.block_hash))
    for i in honest:
        for commit in bench.nodes[i].commits:
            checker.on_commit(f"n{i}", commit.header)
    return bench, checker


def test_ignoring_the_lock_forks_on_the_classic_schedule() -> None:
    from consensus.machine import ConsensusMachine
    from consensus.simulation.broken import IgnoreLockMachine

    bench, checker = _lock_counterexample(IgnoreLockMachine)
    assert checker.violations and {v.split(":")[0] for v in checker.violations} == {"agreement"}
    tips = {bench.nodes[i].chain.tip.hash for i in (0, 1, 2)}  # type: ignore[union-attr]
    assert len(tips) == 2  # v0 decided A, v1 and v2 decided B

    bench, checker = _lock_counterexample(ConsensusMachine)
    assert not checker.violations
    assert bench.nodes[1].machine.own_votes[(1, "prevote")].block is None  # locked on A
    assert bench.nodes[0].chain.height == 1 and bench.nodes[1].chain.height == 0
