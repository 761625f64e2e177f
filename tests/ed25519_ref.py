"""Ed25519 group arithmetic in plain Python integers, from RFC 8032's
definitions: a way to build the odd keys and signatures libsodium treats
specially (keys with a torsion part, R at the identity or of small order),
for tests that both signature paths give libsodium's verdict on them.
Slow and not constant time: tests only."""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def add(p: Point, q: Point) -> Point:
    """RFC 8032 5.1.4's complete addition (also doubles)."""
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * D * p[3] * q[3] % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def negate(p: Point) -> Point:
    return -p[0] % P, p[1], p[2], -p[3] % P


def multiply(k: int, p: Point) -> Point:
    out = IDENTITY
    while k > 0:
        if k & 1:
            out = add(out, p)
        p = add(p, p)
        k >>= 1
    return out


def encode(p: Point) -> bytes:
    zinv = pow(p[2], P - 2, P)
    x, y = p[0] * zinv % P, p[1] * zinv % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def decode(s: bytes) -> Point | None:
    y = int.from_bytes(s, "little") & ((1 << 255) - 1)
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P != u:
        if v * x * x % P != -u % P:
            return None
        x = x * SQRT_M1 % P
    if x & 1 != s[31] >> 7:
        x = -x % P
    return x, y, 1, x * y % P


BASE = decode((4 * pow(5, -1, P) % P).to_bytes(32, "little"))
assert BASE is not None


def _torsion8() -> Point:
    """A point of order 8 ([L]Q keeps only Q's torsion part)."""
    for y in range(2, 1000):
        q = decode(y.to_bytes(32, "little"))
        if q is not None:
            t = multiply(L, q)
            if encode(multiply(4, t)) != encode(IDENTITY):
                return t
    raise AssertionError("no point of order 8 found")


# A torsion part libsodium's verify lets keys carry.
TORSION8 = _torsion8()


def secret_scalar(seed: bytes) -> int:
    """The clamped scalar a of an RFC 8032 seed (public key = [a]B)."""
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return int.from_bytes(digest, "little")


def challenge(r: bytes, public_key: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + public_key + message).digest(), "little") % L


def sign_with(a: int, public_key: bytes, message: bytes, nonce: int) -> bytes:
    """A signature (R = [nonce]B, s = nonce + h a) under whatever
    ``public_key`` says, so that keys with a torsion part can sign."""
    r = encode(multiply(nonce, BASE))
    s = (nonce + challenge(r, public_key, message) * a) % L
    return r + s.to_bytes(32, "little")
