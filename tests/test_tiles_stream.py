"""The tile stream of an append (ledger/tiles.py ``_stratum_stream``, read
off the tile's fixed level pattern) against the unit-by-unit definition,
over appends of every shape: within a tile, across tiles, from a log whose
size is not a multiple of anything."""

from __future__ import annotations

import hashlib
import random

from ledger.log import MerkleLog, _grow
from ledger.storage import MemoryStore, WriteBatch
from ledger.tiles import TILE_HEIGHT, Run, _stratum_stream


def by_definition(runs: dict[int, Run], stratum: int) -> list[bytes]:
    """Each new unit, then the nodes it completes, bottom up (capped below
    the stratum's top)."""
    base_level = stratum * TILE_HEIGHT
    base = runs[base_level]
    out: list[bytes] = []
    count = base.first
    for unit in base.hashes:
        out.append(unit)
        count += 1
        for rel in range(1, min((count & -count).bit_length() - 1, TILE_HEIGHT - 1) + 1):
            run = runs[base_level + rel]
            out.append(run.hashes[(count >> rel) - 1 - run.first])
    return out


def test_the_stream_of_every_append_is_the_unit_by_unit_one() -> None:
    rnd = random.Random(7)
    store = MemoryStore()
    log = MerkleLog(store)
    strata_seen = set()
    for step in range(250):
        n = rnd.choice([1, 2, 3, 5, 7, 255, 256, 257, 511, 1000, 2048, 4000])
        if step == 120:
            n = 70_000  # crosses stratum 1 tiles
        leaves = [hashlib.sha256(b"%d/%d" % (step, i)).digest() for i in range(n)]
        growth = _grow(log._state, leaves)
        runs = {run.level: run for run in growth.runs}
        stratum = 0
        while stratum * TILE_HEIGHT in runs:
            assert _stratum_stream(runs, stratum) == by_definition(runs, stratum), (step, n)
            strata_seen.add(stratum)
            stratum += 1
        batch = WriteBatch()
        log.stage(leaves, batch)
        store.write(batch)
        log.applied(growth.size)
    assert strata_seen == {0, 1, 2}
