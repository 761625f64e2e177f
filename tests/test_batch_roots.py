"""ledger.batch.batch_roots: the roots of many batch paths with shared work
give exactly what ledger.batch.batch_root (RFC 9162, one path at a time)
gives, whatever the mix: whole and partial batches, any order, several
sizes, forged entries, paths too long or too short."""

from __future__ import annotations

import hashlib
import random

from ledger.batch import BatchPosition, batch_root, batch_roots, batch_tree
from ledger.errors import InclusionError


def one_by_one(items: list[tuple[bytes, BatchPosition]]) -> list[bytes | None]:
    out: list[bytes | None] = []
    for rid, pos in items:
        try:
            out.append(batch_root(rid, pos))
        except InclusionError:
            out.append(None)
    return out


def ids(n: int, seed: int) -> list[bytes]:
    return [hashlib.sha256(f"{seed}/{i}".encode()).digest() for i in range(n)]


def test_whole_batches_in_order_give_their_signed_roots() -> None:
    for size in (2, 3, 5, 7, 8, 64, 100, 4096):
        rids = ids(size, size)
        root, positions = batch_tree(rids)
        assert batch_roots(list(zip(rids, positions))) == [root] * size


def test_any_mix_gives_what_one_path_at_a_time_gives() -> None:
    rng = random.Random(28)
    for trial in range(300):
        items: list[tuple[bytes, BatchPosition]] = []
        for b in range(rng.randint(1, 4)):
            size = rng.choice((2, 3, 6, 16, 31, 64, 65))
            rids = ids(size, trial * 10 + b)
            _, positions = batch_tree(rids)
            chosen = rng.sample(range(size), rng.randint(1, size))
            for i in chosen:
                rid, pos = rids[i], positions[i]
                fault = rng.random()
                if fault < 0.1:  # a forged path entry
                    path = list(pos.path)
                    path[rng.randrange(len(path))] = bytes(32)
                    pos = BatchPosition(pos.index, pos.size, tuple(path))
                elif fault < 0.15:  # another record at this place
                    rid = hashlib.sha256(rid).digest()
                elif fault < 0.2:  # a path one entry too long or too short
                    path = list(pos.path) + [bytes(32)] if rng.random() < 0.5 else \
                        list(pos.path)[:-1]
                    pos = BatchPosition(pos.index, pos.size, tuple(path))
                elif fault < 0.25:  # another index, or size, for the same path
                    pos = BatchPosition((pos.index + 1) % pos.size, pos.size, pos.path) \
                        if rng.random() < 0.5 else \
                        BatchPosition(pos.index, pos.size + 1, pos.path)
                items.append((rid, pos))
                if rng.random() < 0.1:  # the same envelope twice
                    items.append((rid, pos))
        rng.shuffle(items) if rng.random() < 0.5 else None
        assert batch_roots(items) == one_by_one(items), trial


def test_a_forged_path_after_its_honest_sibling_still_leads_elsewhere() -> None:
    rids = ids(8, 1)
    root, positions = batch_tree(rids)
    honest = list(zip(rids, positions))
    # record 1's path with its top entry replaced: it shares its first node
    # with record 0's walk, but not the rest of the path
    forged = BatchPosition(1, 8, positions[1].path[:-1] + (bytes(32),))
    got = batch_roots(honest[:1] + [(rids[1], forged)] + honest[1:])
    assert got[0] == root and got[1] is not None and got[1] != root
    assert got[2:] == [root] * 7
