"""A checker that cannot fail proves nothing: deliberately broken replicas
(consensus/simulation/broken.py) must be caught, and the same seeds must be
clean with the real replica.

Seed ranges start near a known hit so the searches stay short; the search
itself is deterministic.
"""

from __future__ import annotations

import pytest

from consensus.simulation.app import SimChain
from consensus.simulation.bench import Bench
from consensus.simulation.invariants import Checker
from consensus.simulation.runner import run_scenario
from ledger.blocks import Certificate
from ledger.encoding import H

CASES = [
    # broken replica, n, byzantine, behaviour, violation kinds, seeds to search
    ("ignore-lock", 4, 1, "amnesia", ("agreement",), range(150, 200)),
    ("double-count", 4, 1, "equivocate", ("agreement",), range(0, 40)),
    ("double-count", 4, 1, "amnesia", ("agreement",), range(120, 200)),
    ("double-count", 4, 1, "mixed", ("agreement",), range(75, 130)),
    ("double-count", 7, 2, "mixed", ("agreement",), range(25, 60)),
    ("small-quorum", 4, 1, "amnesia", ("agreement",), range(40, 80)),
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
