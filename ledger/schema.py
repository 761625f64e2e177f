"""Every key layout of the store, in one place.  Nothing else builds keys.

Each kind of entry owns a one-byte prefix.  Integers in keys are big-endian
and fixed-width, so LevelDB's byte order is their natural order: a prefix
walk over ``SUBMITTER || pk`` yields that submitter's records in log order,
and Merkle tiles of one stratum sort by index.

| prefix | key                                   | value                         |
|--------|---------------------------------------|-------------------------------|
| ``m``  | ``m`` + name (see the META_* keys)    | meta values (u64 or blobs)    |
| ``n``  | ``n`` + stratum u8 + tile index u64   | Merkle tile (ledger/log.py)   |
| ``e``  | ``e`` + leaf_index u64                | envelope bytes                |
| ``r``  | ``r`` + record id                     | height u64 + leaf_index u64   |
| ``u``  | ``u`` + submitter + nonce u64         | record id                     |
| ``c``  | ``c`` + parent id + child id          | empty                         |
| ``s``  | ``s`` + submitter + leaf_index u64    | record id                     |
| ``h``  | ``h`` + height u64                    | header bytes                  |
| ``q``  | ``q`` + height u64                    | certificate bytes             |
| ``v``  | ``v`` + caller's evidence key         | evidence blob                 |
| ``p``  | ``p`` + admission sequence u64        | envelope bytes (pending)      |
| ``g``  | ``g`` + height u64 + leaf_index u64   | empty (a governance record)   |
| ``k``  | ``k`` + height u64 + validator u32    | checkpoint note signature     |
| ``w``  | ``w`` + height u64 + witness key id   | witness cosignature line      |
| ``j``  | ``j`` + height u64                    | verdict entries (v2 blocks)   |
| ``a``  | ``a`` + record id                     | a held record's approvals     |
| ``f``  | ``f`` + record id                     | height u64 + entry index u64  |

A Merkle tile packs the nodes of several tree levels over an aligned
range of leaves into one value (the leaf hashes live in stratum 0 tiles);
:mod:`ledger.tiles` owns its byte layout.  A block's records are not listed
anywhere: block ``h`` holds leaf indexes ``[log_size - tx_count, log_size)``
of its header, so the envelopes under ``e`` are the list.

A store started by state sync (:mod:`ledger.statesync`) lacks the blocks
below its snapshot until they are back-filled: ``history_from`` and
``backfilled`` (meta keys) bound that gap.

Entries under ``p`` are not part of the chain: they are envelopes a node
acknowledged to a client and has not committed yet (:mod:`ledger.pending`),
numbered in admission order so that a walk of the prefix gives parents
before children.  A block's commit batch deletes those of its records.

Entries under ``g`` list where the committed governance records (PROTOCOL
§9) are, in log order: a node rebuilds its membership at start from them
alone, without scanning the log.  The index was added without a schema
version change: a store written before it holds no governance record
(nodes refused them), so its empty index is complete.

Entries under ``j``, ``a`` and ``f`` hold what a block commits about
verdicts (PROTOCOL §10.5-10.7, ledger/approvals.py): ``j`` the entry bytes
of each version 2 block, by shape (:mod:`ledger.verdict_pack`, schema
version 3) or plain (:func:`ledger.verdicts.encode_entries`), ``a`` the
records held for approval at the tip (written and deleted in the commit
batch of the block that changes them; a node rebuilds its held set from
them at start), ``f`` where a held record's transition (approved or
expired) is.  A store written before verdicts holds none, and needs none:
its blocks are all version 1.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Protocol

from .errors import StorageCorruption

# 2: the Merkle log stores tiles, not one key per node.
# 3: a block's verdict entries (``j``) may be stored by shape (ledger/verdict_pack.py).
SCHEMA_VERSION = 3
# The versions this code reads.  A version 2 store differs only in holding
# no verdict entries by shape, so it is read as it stands; a node marks it
# version 3 when it opens it to write (ledger/chain.py ``upgrade_schema``),
# and a ChainStore over a store still marked 2 writes only the plain form,
# which the release before reads.
READABLE_SCHEMA_VERSIONS = frozenset({2, 3})

ID_LEN = 32
PUBKEY_LEN = 32
HASH_LEN = 32
U64_MAX = 2**64 - 1

META = b"m"
# Merkle tiles keep the prefix of the per-node layout they replaced.
TILE = b"n"
ENVELOPE = b"e"
RECORD_LOCATION = b"r"
NONCE = b"u"
CHILD = b"c"
SUBMITTER = b"s"
HEADER = b"h"
CERTIFICATE = b"q"
EVIDENCE = b"v"
PENDING = b"p"
GOVERNANCE = b"g"
CHECKPOINT_SIG = b"k"
WITNESS_COSIG = b"w"
VERDICTS = b"j"
HELD = b"a"
FINAL = b"f"

# Meta keys (all under the ``m`` prefix).
META_SCHEMA_VERSION = META + b"schema_version"
META_LOG_SIZE = META + b"log_size"
META_TIP = META + b"tip_height"
META_CONSENSUS = META + b"consensus_state"
# State sync (ledger/statesync.py): a store started from a snapshot at
# height H holds blocks in full only from ``history_from`` (H + 1) up, and
# those back-filled from 1 up to ``backfilled``; both keys are deleted when
# the gap closes, so a store without them holds every block.
META_HISTORY_FROM = META + b"history_from"
META_BACKFILLED = META + b"backfilled"
# The governance records a state-sync snapshot carried, each as its §5
# bundle (MessagePack list of maps, verified at install): the membership
# below the snapshot until back-fill closes the gap; deleted with it.
META_SNAPSHOT_GOVERNANCE = META + b"snapshot_governance"

# The policy engine's state after the block it names (ledger/policy/state.py,
# PolicyState.to_bytes): installed policy, lists, risk tiers, velocity
# windows.  Derived from committed blocks only; a node may drop it and replay.
META_POLICY_STATE = META + b"policy_state"
# The circuit breakers after the block they name (ledger/breakers.py,
# Breakers.to_bytes); derived from committed blocks, dropped and replayed
# if they do not load.
META_BREAKERS = META + b"breakers"

META_KEYS = frozenset({META_SCHEMA_VERSION, META_LOG_SIZE, META_TIP, META_CONSENSUS,
                       META_HISTORY_FROM, META_BACKFILLED, META_POLICY_STATE, META_BREAKERS,
                       META_SNAPSHOT_GOVERNANCE})

_U64 = struct.Struct(">Q")
_TILE = struct.Struct(">cBQ")
_LOCATION = struct.Struct(">QQ")


# --------------------------------------------------------------------------
# Integers
# --------------------------------------------------------------------------


def pack_u64(value: int) -> bytes:
    return _U64.pack(value)


def unpack_u64(data: bytes, what: str = "value") -> int:
    """Decode a stored u64; a wrong length is corruption, not a bug."""
    if len(data) != 8:
        raise StorageCorruption(f"{what}: expected 8 bytes, found {len(data)}")
    value: int = _U64.unpack(data)[0]
    return value


def _check_len(data: bytes, length: int, what: str) -> None:
    if len(data) != length:
        raise ValueError(f"{what} must be {length} bytes, got {len(data)}")


# --------------------------------------------------------------------------
# Merkle log
# --------------------------------------------------------------------------


def tile_key(stratum: int, index: int) -> bytes:
    """Key of Merkle tile ``index`` of ``stratum`` (see :mod:`ledger.tiles`)."""
    return _TILE.pack(TILE, stratum, index)


def unpack_tile_key(key: bytes) -> tuple[int, int]:
    """``(stratum, index)`` of a :func:`tile_key`."""
    _, stratum, index = _TILE.unpack(key)
    return stratum, index


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


def envelope_key(leaf_index: int) -> bytes:
    return ENVELOPE + _U64.pack(leaf_index)


def record_location_key(record_id: bytes) -> bytes:
    _check_len(record_id, ID_LEN, "record id")
    return RECORD_LOCATION + record_id


def pack_location(height: int, leaf_index: int) -> bytes:
    return _LOCATION.pack(height, leaf_index)


def unpack_location(data: bytes) -> tuple[int, int]:
    if len(data) != _LOCATION.size:
        raise StorageCorruption(f"record location: expected 16 bytes, found {len(data)}")
    height, leaf_index = _LOCATION.unpack(data)
    return height, leaf_index


def nonce_key(submitter: bytes, nonce: int) -> bytes:
    _check_len(submitter, PUBKEY_LEN, "submitter")
    return NONCE + submitter + _U64.pack(nonce)


def nonce_prefix(submitter: bytes) -> bytes:
    _check_len(submitter, PUBKEY_LEN, "submitter")
    return NONCE + submitter


def nonce_from_key(key: bytes) -> int:
    return unpack_u64(key[1 + PUBKEY_LEN:], "nonce index key")


def child_key(parent: bytes, child: bytes) -> bytes:
    _check_len(parent, ID_LEN, "parent id")
    _check_len(child, ID_LEN, "child id")
    return CHILD + parent + child


def children_prefix(parent: bytes) -> bytes:
    _check_len(parent, ID_LEN, "parent id")
    return CHILD + parent


def child_from_key(key: bytes) -> bytes:
    return key[1 + ID_LEN:]


def submitter_key(submitter: bytes, leaf_index: int) -> bytes:
    _check_len(submitter, PUBKEY_LEN, "submitter")
    return SUBMITTER + submitter + _U64.pack(leaf_index)


def submitter_prefix(submitter: bytes) -> bytes:
    _check_len(submitter, PUBKEY_LEN, "submitter")
    return SUBMITTER + submitter


def leaf_index_from_submitter_key(key: bytes) -> int:
    return unpack_u64(key[1 + PUBKEY_LEN:], "submitter index key")


# Reading keys back (fsck, reports): ``None`` for a key of the right prefix
# but the wrong length, which a walk reports as malformed rather than raising.


def key_prefix(key: bytes) -> bytes:
    """The one-byte prefix naming the kind of entry ``key`` is."""
    return key[:1]


def parse_numbered_key(key: bytes) -> int | None:
    """The u64 of an ``e``/``h``/``q`` key (leaf index or height)."""
    if len(key) != 1 + _U64.size:
        return None
    return unpack_u64(key[1:], "numbered key")


def parse_location_key(key: bytes) -> bytes | None:
    """The record id of a :func:`record_location_key`."""
    return key[1:] if len(key) == 1 + ID_LEN else None


def parse_child_key(key: bytes) -> tuple[bytes, bytes] | None:
    """``(parent id, child id)`` of a :func:`child_key`."""
    if len(key) != 1 + 2 * ID_LEN:
        return None
    return key[1:1 + ID_LEN], key[1 + ID_LEN:]


def parse_submitter_key(key: bytes) -> tuple[bytes, int] | None:
    """``(submitter, number)`` of a :func:`submitter_key` (leaf index) or a
    :func:`nonce_key` (nonce): the two share one layout."""
    if len(key) != 1 + PUBKEY_LEN + _U64.size:
        return None
    return key[1:1 + PUBKEY_LEN], unpack_u64(key[1 + PUBKEY_LEN:], "submitter key")


class _IndexedRecord(Protocol):
    @property
    def id(self) -> bytes: ...
    @property
    def submitter(self) -> bytes: ...
    @property
    def nonce(self) -> int: ...
    @property
    def parents(self) -> tuple[bytes, ...]: ...


class _IndexedEnvelope(Protocol):
    @property
    def record(self) -> _IndexedRecord: ...
    @property
    def envelope_bytes(self) -> bytes: ...


def record_entries(height: int, first_leaf: int,
                   envelopes: Sequence[_IndexedEnvelope]) -> list[tuple[bytes, bytes]]:
    """Every index entry of a block's records, in one pass: envelope by leaf
    index, submitter index, child index per parent, location, nonce.

    The same keys as :func:`envelope_key`, :func:`submitter_key`,
    :func:`child_key`, :func:`record_location_key` and :func:`nonce_key`,
    built inline (a commit writes five per record; the per-key functions
    cost more than the LevelDB puts).  Lengths are those of decoded records,
    checked once here for the whole block.  No guards: the caller handles
    ids or nonces already committed or repeated within the block.
    """
    ops: list[tuple[bytes, bytes]] = []
    put = ops.append
    u64 = _U64.pack
    location = _LOCATION.pack
    for leaf_index, env in enumerate(envelopes, first_leaf):
        record = env.record
        record_id, submitter = record.id, record.submitter
        if len(record_id) != ID_LEN or len(submitter) != PUBKEY_LEN:
            raise ValueError("record id and submitter must be 32 bytes")
        put((ENVELOPE + u64(leaf_index), env.envelope_bytes))
        put((SUBMITTER + submitter + u64(leaf_index), record_id))
        for parent in record.parents:
            put((child_key(parent, record_id), b""))
        put((RECORD_LOCATION + record_id, location(height, leaf_index)))
        put((NONCE + submitter + u64(record.nonce), record_id))
    return ops


# --------------------------------------------------------------------------
# Blocks, consensus, evidence
# --------------------------------------------------------------------------


def header_key(height: int) -> bytes:
    return HEADER + _U64.pack(height)


def certificate_key(height: int) -> bytes:
    return CERTIFICATE + _U64.pack(height)


def evidence_key(key: bytes) -> bytes:
    if not key:
        raise ValueError("evidence key must not be empty")
    return EVIDENCE + key


def checkpoint_sig_key(height: int, validator: int) -> bytes:
    """A validator's 64-byte note signature over block ``height``'s checkpoint
    (ledger/note.py); gathered from peers, not part of the chain."""
    return CHECKPOINT_SIG + _U64.pack(height) + struct.pack(">I", validator)


def checkpoint_sig_prefix(height: int) -> bytes:
    return CHECKPOINT_SIG + _U64.pack(height)


def validator_from_checkpoint_sig_key(key: bytes) -> int:
    _check_len(key, 13, "checkpoint signature key")
    return int(struct.unpack(">I", key[9:])[0])


def witness_cosig_key(height: int, key_id: bytes) -> bytes:
    """A witness's cosignature line (PROTOCOL §13, UTF-8) over block
    ``height``'s checkpoint, by its 4-byte key id; not part of the chain."""
    if len(key_id) != 4:
        raise ValueError("a witness key id is 4 bytes")
    return WITNESS_COSIG + _U64.pack(height) + key_id


def witness_cosig_prefix(height: int) -> bytes:
    return WITNESS_COSIG + _U64.pack(height)


# --------------------------------------------------------------------------
# Acknowledged records not yet committed
# --------------------------------------------------------------------------


def pending_key(seq: int) -> bytes:
    """Key of the pending envelope admitted as number ``seq``."""
    return PENDING + _U64.pack(seq)


def seq_from_pending_key(key: bytes) -> int:
    return unpack_u64(key[1:], "pending key")


# --------------------------------------------------------------------------
# Governance records
# --------------------------------------------------------------------------


def governance_key(height: int, leaf_index: int) -> bytes:
    """Key of the governance record committed at ``(height, leaf_index)``."""
    return GOVERNANCE + _LOCATION.pack(height, leaf_index)


def unpack_governance_key(key: bytes) -> tuple[int, int]:
    _check_len(key, 1 + _LOCATION.size, "governance index key")
    height, leaf_index = _LOCATION.unpack(key[1:])
    return int(height), int(leaf_index)


# --------------------------------------------------------------------------
# Verdicts and approvals
# --------------------------------------------------------------------------


def verdicts_key(height: int) -> bytes:
    """The verdict entries of version 2 block ``height``."""
    return VERDICTS + _U64.pack(height)


def held_key(record_id: bytes) -> bytes:
    """A record held for approvals (ledger.approvals.Held bytes)."""
    _check_len(record_id, ID_LEN, "record id")
    return HELD + record_id


def final_key(record_id: bytes) -> bytes:
    """Where a held record's transition is: :func:`pack_location` of (height, entry index)."""
    _check_len(record_id, ID_LEN, "record id")
    return FINAL + record_id


def schema_version_value() -> bytes:
    return pack_u64(SCHEMA_VERSION)
