"""The C verifier's key tables (ledger/_native_ed25519.c) give libsodium's
answers: the point arithmetic against an independent Python reference
(tests/ed25519_ref.py) on edge and random scalars, whole batches against
libsodium's crypto_sign_verify_detached on good, damaged and crafted
signatures, and the keys libsodium treats specially left to libsodium."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger.native as native_mod
from ledger.crypto import RECORD_DOMAIN, SigningKey
from ledger.native import native

from tests import ed25519_ref as ref
from tests.test_native import SPECIAL_KEYS

pytestmark = pytest.mark.skipif(native is None, reason="ledger._native is not built")
SEEDS = [bytes([i]) * 32 for i in range(1, 6)]
KEYS = [SigningKey(seed) for seed in SEEDS]
TABLE_BYTES = 43 * 32 * 3 * 5 * 8  # windows x multiples x field elements x limbs x 8


def test_the_key_tables_are_in_use() -> None:
    """A built module whose tables failed the start-up check is a failure
    here, not a silent slowdown."""
    assert native_mod.key_tables, native_mod.description
    assert "per-key tables" in native_mod.description


def with_tables(items: list[tuple[bytes, bytes, bytes]],
                tables: dict[bytes, bytes | None] | None = None,
                max_tables: int = 64) -> list[bool]:
    assert native is not None
    return native.verify_ed25519(RECORD_DOMAIN, items, {} if tables is None else tables,
                                 max_tables)


def libsodium(items: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    assert native is not None
    return native.verify_ed25519(RECORD_DOMAIN, items, None, 0)


def reference_combine(public_key: bytes, s: int, h: int) -> bytes:
    a = ref.decode(public_key)
    assert a is not None
    return ref.encode(ref.add(ref.multiply(s, ref.BASE), ref.negate(ref.multiply(h, a))))


def combine(public_key: bytes, s: int, h: int) -> bytes:
    assert native is not None
    return native.ed25519_combine(public_key, s.to_bytes(32, "little"), h.to_bytes(32, "little"))


# Scalars at the digit boundaries of 6-bit signed windows (31 stays, 32
# carries), long carry chains, the top window, and the ends of the range.
EDGE_SCALARS = [0, 1, 2, 31, 32, 33, 63, 64, 65, ref.L - 1, ref.L - 2, 2**252 - 1, 2**252,
                2**253 - 1, sum(32 << (6 * i) for i in range(42)),
                sum(31 << (6 * i) for i in range(42)), sum(63 << (6 * i) for i in range(42)),
                2**252 + 2**251, int("5" * 60) % 2**253]


def test_arithmetic_matches_the_reference_on_edge_scalars() -> None:
    public_key = KEYS[0].public_key
    for s in EDGE_SCALARS:
        for h in (0, 1, 32, ref.L - 1, 2**253 - 1, s):
            assert combine(public_key, s, h) == reference_combine(public_key, s, h), (s, h)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**253 - 1), st.integers(0, 2**253 - 1), st.sampled_from(SEEDS))
def test_arithmetic_matches_the_reference(s: int, h: int, seed: bytes) -> None:
    public_key = SigningKey(seed).public_key
    assert combine(public_key, s, h) == reference_combine(public_key, s, h)


def test_combine_refuses_what_it_cannot_compute() -> None:
    assert native is not None
    good = KEYS[0].public_key
    with pytest.raises(ValueError):
        native.ed25519_combine(good, (2**253).to_bytes(32, "little"), bytes(32))
    with pytest.raises(ValueError):
        native.ed25519_combine(SPECIAL_KEYS[3], bytes(32), bytes(32))  # order 8: no table
    with pytest.raises(ValueError):
        native.ed25519_combine(good[:31], bytes(32), bytes(32))


def damaged(key: SigningKey, message: bytes, how: int) -> tuple[bytes, bytes, bytes]:
    sig = key.sign(RECORD_DOMAIN, message)
    s = int.from_bytes(sig[32:], "little")
    pk = key.public_key
    if how == 1:
        sig = bytes([sig[0] ^ 1]) + sig[1:]  # R
    elif how == 2:
        sig = sig[:40] + bytes([sig[40] ^ 4]) + sig[41:]  # s
    elif how == 3:
        message += b"!"
    elif how == 4:
        pk = KEYS[(KEYS.index(key) + 1) % len(KEYS)].public_key
    elif how == 5:
        sig = sig[:32] + (s + ref.L).to_bytes(32, "little")  # the same s, not reduced
    elif how == 6:
        sig = sig[:32] + (ref.L - 1).to_bytes(32, "little")
    elif how == 7:
        sig = sig[:63]
    return pk, message, sig


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.binary(max_size=300),
                          st.integers(0, 7)), max_size=40),
       st.lists(st.sampled_from(SPECIAL_KEYS), max_size=3))
def test_batches_agree_with_libsodium(cases: list[tuple[int, bytes, int]],
                                      odd_keys: list[bytes]) -> None:
    items = [damaged(KEYS[k], message, how) for k, message, how in cases]
    items += [(pk, b"m", KEYS[0].sign(RECORD_DOMAIN, b"m")) for pk in odd_keys]
    got = with_tables(items)
    assert got == libsodium(items)
    assert got[:len(cases)] == [how == 0 for _, _, how in cases]


def test_r_at_the_identity_is_rejected_as_libsodium_does() -> None:
    """s = h a makes [s]B - [h]A the identity, so a signature whose R is the
    identity's encoding passes the arithmetic; libsodium refuses R of small
    order, and so must the tables."""
    seed = SEEDS[0]
    a, public_key = ref.secret_scalar(seed), KEYS[0].public_key
    r = ref.encode(ref.IDENTITY)
    message = b"crafted"
    h = ref.challenge(r, public_key, RECORD_DOMAIN + message)
    s = h * a % ref.L
    assert combine(public_key, s, h) == r  # the arithmetic alone would accept it
    item = (public_key, message, r + s.to_bytes(32, "little"))
    assert libsodium([item]) == [False]
    assert with_tables([item]) == [False]


def test_keys_with_a_torsion_part_are_left_to_libsodium() -> None:
    """libsodium accepts a key A + T (T of order 8) and the signatures whose
    h kills T (about one in eight); such a key gets no table, and the
    answers are libsodium's."""
    a = ref.secret_scalar(SEEDS[1])
    odd_key = ref.encode(ref.add(ref.multiply(a, ref.BASE), ref.TORSION8))
    items = []
    for i in range(64):
        message = b"torsion %d" % i
        items.append((odd_key, message, ref.sign_with(a, odd_key, RECORD_DOMAIN + message, 1000 + i)))
    # R of small order: with s = h a, [s]B - [h]A' = -[h]T, which is R when
    # R is the right one of T's multiples; libsodium refuses R of small order
    # (the arithmetic alone would accept), and the tables' shortcut for that
    # check holds only for keys without a torsion part.
    crafted = 0
    for i in range(40):
        message = RECORD_DOMAIN + b"small R %d" % i
        for j in range(1, 8):
            r = ref.encode(ref.multiply(j, ref.TORSION8))
            h = ref.challenge(r, odd_key, message)
            if ref.encode(ref.negate(ref.multiply(h, ref.TORSION8))) == r:
                s = h * a % ref.L
                items.append((odd_key, message[len(RECORD_DOMAIN):], r + s.to_bytes(32, "little")))
                crafted += 1
    assert crafted > 0
    tables: dict[bytes, bytes | None] = {}
    got = with_tables(items, tables)
    assert got == libsodium(items)
    assert 0 < sum(got[:64]) < 64 and not any(got[64:])
    assert tables == {odd_key: None}


def test_special_keys_get_no_table() -> None:
    tables: dict[bytes, bytes | None] = {}
    items = [(pk, b"m", KEYS[0].sign(RECORD_DOMAIN, b"m")) for pk in SPECIAL_KEYS]
    assert with_tables(items, tables) == libsodium(items) == [False] * len(SPECIAL_KEYS)
    assert tables == {pk: None for pk in SPECIAL_KEYS}


def test_tables_are_built_once_per_key_up_to_the_cap() -> None:
    tables: dict[bytes, bytes | None] = {}
    items = [damaged(KEYS[i % 3], b"cap %d" % i, i % 2) for i in range(12)]
    expected = [i % 2 == 0 for i in range(12)]
    assert with_tables(items, tables, max_tables=2) == expected
    assert list(tables) == [KEYS[0].public_key, KEYS[1].public_key]
    table = tables[KEYS[0].public_key]
    assert isinstance(table, bytes) and len(table) == TABLE_BYTES
    assert with_tables(items, tables, max_tables=2) == expected
    assert tables[KEYS[0].public_key] is table  # reused, not rebuilt
    fresh: dict[bytes, bytes | None] = {}
    with_tables(items[:1], fresh)
    assert fresh[KEYS[0].public_key] == table  # a key's table depends on the key alone


def test_threads_share_a_cache() -> None:
    tables: dict[bytes, bytes | None] = {}
    batches = [[damaged(KEYS[(t + i) % len(KEYS)], b"t%d-%d" % (t, i), i % 3) for i in range(60)]
               for t in range(4)]
    results: dict[int, list[bool]] = {}

    def run(t: int) -> None:
        for _ in range(5):
            results[t] = with_tables(batches[t], tables)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for t in range(4):
        assert results[t] == [i % 3 == 0 for i in range(60)]


def test_a_disagreeing_build_leaves_signatures_to_libsodium(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-up check: tables that give a wrong answer are not used, and
    the description (the node's start log) says so."""
    assert native is not None
    assert native_mod._key_tables_agree(native)

    class Wrong:
        def verify_ed25519(self, domain: bytes, items: list[Any], tables: Any,
                           max_tables: int) -> list[bool]:
            assert native is not None
            out = native.verify_ed25519(domain, items, tables, max_tables)
            if tables is not None:
                out[1] = True  # a damaged signature accepted
            return out

    assert not native_mod._key_tables_agree(Wrong())  # type: ignore[arg-type]
    monkeypatch.setattr(native_mod, "_key_tables_agree", lambda module: False)
    module, why, tables = native_mod._load()
    assert module is not None and not tables and "libsodium alone" in why
