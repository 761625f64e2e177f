"""The stored form of a block's verdict entries (schema ``j``), packed by shape.

Every verdict's bytes are ``before + record id + after`` (PROTOCOL §10.5: a
canonical map whose ``record`` is a 32-byte bin), and everything but the id
is the same for all the records a policy decision covers.  A block of 1,000
records commits about 116 bytes of verdict per record but only a handful
of distinct ``(before, after)`` **shapes**, so the store keeps each shape
once, each record's id and a 2-byte shape number: about 34 bytes per record.
A validator writes that in every block's commit batch; LevelDB then copies
it again at each compaction (docs/performance.md measured what the plain
form cost).

Only the store holds this form; the entries a block commits (its Merkle
leaves), the block route and bundles are the entry bytes themselves, which
:meth:`PackedEntries.entries` gives back exactly.  A store may hold either
form for any block: the plain form (a MessagePack array of bin, written by
older versions and for blocks with more shapes than fit in 2 bytes) never
starts with :data:`PACKED_TAG`.

The packed form's own bytes: ``PACKED_TAG`` then the canonical MessagePack
array ``[shapes, ids, slots, rest]`` - ``shapes`` an array of
``[before, after]`` bin pairs, ``ids`` one bin of 32 bytes per verdict,
``slots`` one bin of a big-endian uint16 per verdict (its shape's index),
``rest`` an array of bin (the block's transitions and breaker entries, as
they stand).  The decoder refuses anything else.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .encoding import H, decode, packb_plain
from .errors import BadEncoding, DecodeError
from .native import native

PACKED_TAG = b"\x01"
ID_LEN = 32
SLOT_LEN = 2
MAX_SHAPES = 1 << (8 * SLOT_LEN)

Shape = tuple[bytes, bytes]


@dataclass(frozen=True)
class PackedEntries:
    """A block's entries: ``len(slots) // 2`` verdicts by shape, then ``rest``."""

    shapes: list[Shape]
    ids: bytes       # 32 bytes per verdict, in log order
    slots: bytes     # a big-endian uint16 per verdict: its index in ``shapes``
    rest: tuple[bytes, ...] = ()

    @property
    def verdict_count(self) -> int:
        return len(self.slots) // SLOT_LEN

    def _slot(self, index: int) -> int:
        return int.from_bytes(self.slots[SLOT_LEN * index:SLOT_LEN * (index + 1)], "big")

    def slot_numbers(self) -> array[int]:
        return _u16_array(self.slots)

    def verdict_entry(self, index: int) -> bytes:
        """The bytes of verdict ``index`` (0 <= index < :attr:`verdict_count`)."""
        before, after = self.shapes[self._slot(index)]
        return before + self.ids[ID_LEN * index:ID_LEN * (index + 1)] + after

    def entries(self) -> list[bytes]:
        """Every entry's bytes, in order: the verdicts, then :attr:`rest`."""
        ids, shapes = self.ids, self.shapes
        out = []
        for i, slot in enumerate(self.slot_numbers()):
            before, after = shapes[slot]
            out.append(before + ids[ID_LEN * i:ID_LEN * (i + 1)] + after)
        out.extend(self.rest)
        return out

    def verdict_leaves(self, prefix: bytes) -> list[bytes]:
        """``H(prefix + entry)`` of each verdict (its Merkle leaf, for the
        verdict domain's ``prefix``), without making the entries."""
        if native is not None:
            return native.shaped_leaves(prefix, self.shapes, self.slots, self.ids)
        return [H(prefix + entry) for entry in self.entries()[:self.verdict_count]]

    def to_bytes(self) -> bytes:
        return PACKED_TAG + packb_plain([[list(s) for s in self.shapes], self.ids, self.slots,
                                         list(self.rest)])


class ShapeTable:
    """The shapes of one block's verdicts, numbered as they first appear."""

    __slots__ = ("shapes", "_index")

    def __init__(self) -> None:
        self.shapes: list[Shape] = []
        self._index: dict[Shape, int] = {}

    def slot(self, before: bytes, after: bytes) -> int:
        """The number of the shape ``(before, after)``; -1 past :data:`MAX_SHAPES`."""
        key = (before, after)
        found = self._index.get(key)
        if found is None:
            if len(self.shapes) >= MAX_SHAPES:
                return -1
            found = self._index[key] = len(self.shapes)
            self.shapes.append(key)
        return found


def _u16_array(data: bytes) -> array[int]:
    """Big-endian uint16s as an array (2-byte ``H``: asserted at import)."""
    numbers = array("H")
    numbers.frombytes(data)
    if sys.byteorder == "little":
        numbers.byteswap()
    return numbers


def _u16_bytes(numbers: Sequence[int]) -> bytes:
    packed = array("H", numbers)
    if sys.byteorder == "little":
        packed.byteswap()
    return packed.tobytes()


if array("H").itemsize != SLOT_LEN:  # C's unsigned short: 2 bytes on every platform we build for
    raise ImportError("array('H') is not 2 bytes here")


def split(entry: bytes, record: bytes) -> Shape | None:
    """``(before, after)`` with ``before + record + after == entry``, or None."""
    at = entry.find(record)
    return None if at < 0 else (entry[:at], entry[at + len(record):])


def pack(shapes: list[Shape], ids: Sequence[bytes], slots: Sequence[int],
         rest: Sequence[bytes]) -> PackedEntries:
    """The packed form of verdicts ``shapes[slots[i]]`` around ``ids[i]``."""
    if len(ids) != len(slots):
        raise ValueError("one shape per record id")
    if ids and set(map(len, ids)) != {ID_LEN}:  # record ids are SHA-256 digests
        raise ValueError("record ids must be 32 bytes")
    return PackedEntries(shapes, b"".join(ids), _u16_bytes(slots), tuple(rest))


def _bins(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list) or not all(type(v) is bytes for v in value):
        raise BadEncoding(f"packed verdict entries: {what} must be an array of bin")
    return value


def unpack(data: bytes) -> PackedEntries:
    """The packed form's bytes (:meth:`PackedEntries.to_bytes`); BadEncoding otherwise."""
    if data[:1] != PACKED_TAG:
        raise BadEncoding("packed verdict entries: wrong tag")
    try:
        value = decode(data[1:])
    except DecodeError as exc:
        raise BadEncoding(f"packed verdict entries: {exc}") from None
    if not isinstance(value, list) or len(value) != 4:
        raise BadEncoding("packed verdict entries must be an array of 4")
    raw_shapes, ids, slots, rest = value
    if not isinstance(raw_shapes, list) or len(raw_shapes) > MAX_SHAPES:
        raise BadEncoding(f"packed verdict entries: at most {MAX_SHAPES} shapes")
    shapes = []
    for shape in raw_shapes:
        pair = _bins(shape, "a shape")
        if len(pair) != 2:
            raise BadEncoding("packed verdict entries: a shape is [before, after]")
        shapes.append((pair[0], pair[1]))
    if type(ids) is not bytes or type(slots) is not bytes or len(ids) % ID_LEN \
            or len(slots) != SLOT_LEN * (len(ids) // ID_LEN):
        raise BadEncoding("packed verdict entries: one 32-byte id and one slot per verdict")
    packed = PackedEntries(shapes, ids, slots, tuple(_bins(rest, "the rest")))
    numbers = packed.slot_numbers()
    if numbers and max(numbers) >= len(shapes):
        raise BadEncoding("packed verdict entries: a slot names no shape")
    return packed
