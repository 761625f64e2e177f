"""The mempool's parts on their own: the orphan pool (node/mempool_orphans.py)
and finding records a block left unable to commit (node/mempool_blocks.py)."""

from __future__ import annotations

from helpers import make_envelope, make_keys

from ledger.records import Envelope
from node.mempool_blocks import unreachable
from node.mempool_orphans import Orphans

KEY = make_keys(1, 7)[0]


def env(nonce: int, parents: list[bytes] | None = None) -> Envelope:
    return make_envelope(KEY, "test", nonce, parents or [])


class Committed:
    """The part of a chain view that :func:`unreachable` reads."""

    def __init__(self, ids: set[bytes]) -> None:
        self.ids = ids

    def record_location(self, record_id: bytes) -> tuple[int, int] | None:
        return (1, 0) if record_id in self.ids else None


def test_orphans_are_released_once_every_parent_is_admitted() -> None:
    a, b = env(1), env(2)
    child = env(3, [a.id, b.id])
    pool = Orphans(limit=10)
    assert pool.hold(child, {a.id, b.id}, "gossip") == []
    assert child.id in pool and len(pool) == 1
    assert pool.release(a.id) == []
    [(oid, orphan)] = pool.release(b.id)
    assert oid == child.id and orphan.envelope is child and orphan.missing == set()
    assert len(pool) == 0 and pool.release(b.id) == []


def test_orphans_evict_the_oldest_at_the_limit_and_forget_what_it_waited_for() -> None:
    parents = [env(i) for i in range(3)]
    kids = [env(10 + i, [p.id]) for i, p in enumerate(parents)]
    pool = Orphans(limit=2)
    pool.hold(kids[0], {parents[0].id}, "gossip")
    pool.hold(kids[1], {parents[1].id}, "restore")
    assert pool.hold(kids[2], {parents[2].id}, "gossip") == [kids[0].id]
    assert kids[0].id not in pool and len(pool) == 2
    assert pool.release(parents[0].id) == []  # the evicted one is not waited for
    assert [oid for oid, _ in pool.release(parents[1].id)] == [kids[1].id]
    assert pool.get(kids[2].id) is not None


def test_unreachable_takes_descendants_of_a_dropped_parent() -> None:
    root = env(1)
    gone = env(2)  # neither pending nor committed: dropped
    child = env(3, [gone.id])
    grandchild = env(4, [child.id])
    fine = env(5, [root.id])
    pending = {e.id: e for e in (child, grandchild, fine)}
    assert unreachable(pending, Committed({root.id})) == [child.id, grandchild.id]
    assert unreachable({fine.id: fine}, Committed({root.id})) == []


def test_signature_checks_forget_many_drops_only_the_given_leaves() -> None:
    from node.signature_checks import SignatureChecks
    checks = SignatureChecks(8, lambda domain, items: [True] * len(items))
    checks.forget_many([b"a" * 32])  # nothing remembered: nothing to do
    checks.mark_verified([b"a" * 32, b"b" * 32, b"c" * 32])
    checks.forget_many(iter([b"a" * 32, b"c" * 32, b"d" * 32]))
    assert [checks.verified(x * 32) for x in (b"a", b"b", b"c")] == [False, True, False]
