"""The tile layout of the Merkle log (:mod:`ledger.log`): where each node's
32 bytes are stored, how an append writes them, and how a path reads them.

A proof needs one node per level, and the lowest levels are far too many to
cache, so storing one key per node costs one LevelDB read per low level of
every proof.  Instead the levels are cut into strata of :data:`TILE_HEIGHT`
levels (stratum ``s`` holds levels ``s*H .. s*H+H-1``), and stratum ``s`` is
cut into tiles of :data:`TILE_WIDTH` nodes of its bottom level (its
"units").  A tile is ONE value: all nodes of its stratum over its units, so
the whole lower part of a path costs one read and a few slices.  The tile's
own root sits at level ``(s+1)*H``: it is a unit of the stratum above, so
every node is stored exactly once.

Inside a tile the nodes are in append (post-)order: each unit, then the
nodes it completes, bottom up.  A partial tile is therefore a prefix of the
full one and nothing written earlier moves: node offsets are fixed, and the
last (partial) tile of each stratum is simply rewritten, longer, by the next
append - from memory, so appending reads nothing.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import cycle, islice

from . import schema
from .errors import StorageCorruption
from .merkle import HASH_LEN
from .storage import WriteBatch

# Eight levels: a full tile is 510 hashes (16 KiB), one read that replaces
# eight node reads.  At 1M leaves everything above stratum 0 is 15 tiles and
# sits in the cache, so a proof costs ONE store read.  Fewer levels need two
# uncached reads per proof at that size; more make every read larger (64 KiB
# at 10 levels); 8 measured fastest (docs/performance.md).  Changing it
# changes the stored format: bump schema.SCHEMA_VERSION.
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_NODES = 2 * TILE_WIDTH - 2
TILE_BYTES = TILE_NODES * HASH_LEN
UNIT_MASK = TILE_WIDTH - 1
# Cache slots pack (stratum, tile index) into one int: 64 levels < 2^6 strata.
SLOT_SHIFT = 6

# A tile accessor: (stratum, index) -> that tile's bytes.
Tile = Callable[[int, int], bytes]


def tile_entries(units: int) -> int:
    """Nodes in a tile holding its first ``units`` units (0..TILE_WIDTH):
    every node those units complete, less the tile root (stratum above)."""
    if units >= TILE_WIDTH:
        return TILE_NODES
    return 2 * units - units.bit_count()


def tile_offset(rel_level: int, unit_end: int) -> int:
    """Byte offset in its tile of the node at ``rel_level`` (inside the
    stratum) whose last unit is ``unit_end - 1``: the entries written before
    that unit, plus the nodes it completes below this one."""
    m = (unit_end - 1) & UNIT_MASK
    return (2 * m - m.bit_count() + rel_level) * HASH_LEN


def node_location(level: int, index: int) -> tuple[bytes, int]:
    """``(tile key, byte offset)`` of node ``(level, index)``: where its 32
    bytes are stored (for tools and damage tests)."""
    stratum, rel = divmod(level, TILE_HEIGHT)
    unit_end = (index + 1) << rel
    return schema.tile_key(stratum, (unit_end - 1) >> TILE_HEIGHT), tile_offset(rel, unit_end)


def strata(size: int) -> int:
    """How many strata hold at least one node in a log of ``size`` leaves."""
    return (size.bit_length() + TILE_HEIGHT - 1) // TILE_HEIGHT


def tails_by_slot(size: int, tails: Sequence[bytes]) -> dict[int, bytes]:
    """The non-empty partial tiles of a log of ``size`` by cache slot."""
    return {slot(s, (size >> s * TILE_HEIGHT) >> TILE_HEIGHT): tail
            for s, tail in enumerate(tails) if tail}


def slot(stratum: int, index: int) -> int:
    return index << SLOT_SHIFT | stratum


# ---------------------------------------------------------------- tile writes


@dataclass(frozen=True)
class Run:
    """Consecutive new nodes of one level: indexes ``first .. first+len-1``."""

    level: int
    first: int
    hashes: list[bytes]


def _unit_levels(unit: int) -> tuple[int, ...]:
    """The relative levels a stratum's ``unit``-th unit (0-based) appends:
    itself, then one node per trailing zero of its 1-based position, capped
    below the stratum's top (the tile root belongs to the stratum above)."""
    count = unit + 1
    return (0, *range(1, min((count & -count).bit_length() - 1, TILE_HEIGHT - 1) + 1))


# One full tile's stream as relative levels (TILE_NODES of them), and where
# each unit's part of it starts: every tile repeats the same pattern.
_TILE_LEVELS = tuple(level for unit in range(TILE_WIDTH) for level in _unit_levels(unit))
_UNIT_START = [tile_entries(unit) for unit in range(TILE_WIDTH)]


def _missing_run() -> bytes:
    raise RuntimeError("a Merkle append completes a node of a level it computed none of")


def _stratum_stream(runs: dict[int, Run], stratum: int) -> list[bytes]:
    """The new nodes of ``stratum`` in tile (append) order: each new unit,
    then the nodes of the stratum it completes (one per trailing zero of its
    1-based position, capped below the stratum's top).

    Each level's new nodes are consumed in order, so the stream is the
    tile's fixed level pattern read from the first new unit's place in it,
    each entry taking the next node of its level - one pass in C."""
    base_level = stratum * TILE_HEIGHT
    base = runs[base_level]
    levels = [runs.get(base_level + rel) for rel in range(TILE_HEIGHT)]
    iters = [iter(run.hashes) if run is not None else None for run in levels]
    takes = [it.__next__ if it is not None else _missing_run for it in iters]
    first, end = base.first, base.first + len(base.hashes)
    start = _UNIT_START[first & UNIT_MASK]
    total = _entries_before(end) - _entries_before(first)
    pattern = islice(cycle(_TILE_LEVELS), start, start + total)
    out = list(map(operator.call, map(takes.__getitem__, pattern)))
    if len(out) != total or any(next(it, None) is not None for it in iters if it is not None):
        raise RuntimeError("a Merkle append's new nodes do not fill its tiles exactly")
    return out


def _entries_before(units: int) -> int:
    """Entries of a stratum's stream before its unit ``units`` (0-based)."""
    return (units >> TILE_HEIGHT) * TILE_NODES + _UNIT_START[units & UNIT_MASK]


def stage_tiles(old_tails: Sequence[bytes], new_runs: Sequence[Run], new_size: int,
                batch: WriteBatch) -> tuple[bytes, ...]:
    """Put every tile an append changes into ``batch``; return the new tails.

    ``old_tails`` are the partial tiles before the append, ``new_runs`` the
    nodes it completes (level by level) and ``new_size`` the size after it.

    A stratum's tiles are consecutive slices of its stream, so the old tail
    plus the new nodes, cut every ``TILE_BYTES``, are exactly the changed tiles.
    """
    runs = {run.level: run for run in new_runs}
    tails: list[bytes] = []
    stratum = 0
    while new_size >> stratum * TILE_HEIGHT:
        old_tail = old_tails[stratum] if stratum < len(old_tails) else b""
        if stratum * TILE_HEIGHT not in runs:  # no new unit: nothing above changes
            tails.append(old_tail)
            stratum += 1
            continue
        blob = old_tail + b"".join(_stratum_stream(runs, stratum))
        first_tile = runs[stratum * TILE_HEIGHT].first >> TILE_HEIGHT
        for at in range(0, len(blob), TILE_BYTES):
            batch.put(schema.tile_key(stratum, first_tile + at // TILE_BYTES),
                      blob[at:at + TILE_BYTES])
        rest = len(blob) % TILE_BYTES
        tails.append(blob[len(blob) - rest:] if rest else b"")
        stratum += 1
    return tuple(tails)


# ----------------------------------------------------------------- errors


def tile_error(value: bytes | None, stratum: int, index: int, expected: int) -> StorageCorruption:
    what = "is missing" if value is None else f"has {len(value)} bytes, expected {expected}"
    lo = (index << TILE_HEIGHT) << stratum * TILE_HEIGHT
    hi = ((index + 1) << TILE_HEIGHT) << stratum * TILE_HEIGHT
    return StorageCorruption(
        f"Merkle log tile (stratum {stratum}, index {index}; levels "
        f"{stratum * TILE_HEIGHT}..{stratum * TILE_HEIGHT + TILE_HEIGHT - 1} over leaves "
        f"[{lo}, {hi})) {what}")


def node_error(exc: StorageCorruption, level: int, index: int) -> StorageCorruption:
    return StorageCorruption(f"{exc} (reading node level {level}, index {index})")


# ----------------------------------------------------------------- path reads


def _sibling_offsets(unit: int) -> tuple[int, ...]:
    """Byte offsets, in their tile, of the siblings at relative levels
    0..TILE_HEIGHT-1 of the ancestors of the tile's ``unit``-th unit."""
    return tuple(tile_offset(rel, (((unit >> rel) ^ 1) + 1) << rel) for rel in range(TILE_HEIGHT))


# The proof hot path slices these instead of computing offsets per level.
_SIBLING_OFFSETS = [_sibling_offsets(unit) for unit in range(TILE_WIDTH)]


def _full_gather(unit: int) -> tuple[Callable[[bytes], tuple[bytes, ...]],
                                     Callable[[tuple[bytes, ...]], tuple[bytes, ...]]]:
    """All TILE_HEIGHT siblings of ``unit`` in one C call: a struct that
    unpacks them in offset order, and the getter putting them in level order
    (one call instead of a slice per sibling: most proofs cross whole strata)."""
    offsets = _SIBLING_OFFSETS[unit]
    order = sorted(range(TILE_HEIGHT), key=offsets.__getitem__)
    fmt, pos = "", 0
    for rel in order:
        fmt += f"{offsets[rel] - pos}x{HASH_LEN}s"
        pos = offsets[rel] + HASH_LEN
    return struct.Struct(fmt).unpack_from, operator.itemgetter(*map(order.index, range(TILE_HEIGHT)))


_FULL_GATHERS = [_full_gather(unit) for unit in range(TILE_WIDTH)]


def siblings(tile: Tile, index: int, from_level: int, to_level: int) -> list[bytes]:
    """Siblings of the ancestors of leaf ``index`` at levels ``from_level ..
    to_level - 1``: one tile per stratum crossed, then slices.

    Within a stratum every such sibling lies in the tile of the ancestor's
    unit (they share the tile's root), at an offset that depends only on
    the unit's place in the tile and the level.
    """
    path: list[bytes] = []
    level = from_level
    while level < to_level:
        stratum, rel = divmod(level, TILE_HEIGHT)
        base = stratum * TILE_HEIGHT
        unit = index >> base
        data = tile(stratum, unit >> TILE_HEIGHT)
        top = min(TILE_HEIGHT, to_level - base)
        if rel == 0 and top == TILE_HEIGHT:
            unpack, pick = _FULL_GATHERS[unit & UNIT_MASK]
            path += pick(unpack(data))
        else:
            path += [data[at:at + HASH_LEN]
                     for at in _SIBLING_OFFSETS[unit & UNIT_MASK][rel:top]]
        level = base + top
    return path
