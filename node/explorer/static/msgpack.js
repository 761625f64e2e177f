// Canonical MessagePack (docs/protocol.md §1): a strict decoder that
// accepts exactly the bytes the canonical encoder would produce, and the
// small encoder the verifier needs (vote bytes, the validator-set array).
//
// Decoded values: nil -> null, bool, int -> BigInt, str -> string,
// bin -> Uint8Array, array -> Array, map -> Map (keys in their byte order).

export class DecodeError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

const MAX_DEPTH = 32;
const UTF8 = new TextDecoder("utf-8", { fatal: true });
const te = new TextEncoder();
const bad = (m) => new DecodeError("bad_encoding", m);
const nonCanonical = (m) => new DecodeError("non_canonical", m);

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

class Reader {
  constructor(bytes) { this.b = bytes; this.at = 0; }
  take(n) {
    if (this.at + n > this.b.length) throw bad("truncated MessagePack");
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  uint(n) {
    let v = 0n;
    for (const x of this.take(n)) v = (v << 8n) | BigInt(x);
    return v;
  }
}

// A length or integer stored in a longer form than the shortest one.
function shortest(value, min) {
  if (value < min) throw nonCanonical("a longer form than needed");
  return value;
}

function readValue(r, depth) {
  if (depth > MAX_DEPTH) throw bad("structure nested too deeply");
  const t = r.take(1)[0];
  if (t <= 0x7f) return BigInt(t);
  if (t >= 0xe0) return BigInt(t - 0x100);
  if (t >= 0x80 && t <= 0x8f) return readMap(r, t & 0x0f, depth);
  if (t >= 0x90 && t <= 0x9f) return readArray(r, t & 0x0f, depth);
  if (t >= 0xa0 && t <= 0xbf) return readStr(r, t & 0x1f);
  switch (t) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return r.take(Number(r.uint(1))).slice();
    case 0xc5: return r.take(Number(shortest(r.uint(2), 0x100n))).slice();
    case 0xc6: return r.take(Number(shortest(r.uint(4), 0x10000n))).slice();
    case 0xcc: return shortest(r.uint(1), 0x80n);
    case 0xcd: return shortest(r.uint(2), 0x100n);
    case 0xce: return shortest(r.uint(4), 0x10000n);
    case 0xcf: return shortest(r.uint(8), 0x100000000n);
    case 0xd0: return signed(r, 1, -32n);
    case 0xd1: return signed(r, 2, -128n);
    case 0xd2: return signed(r, 4, -32768n);
    case 0xd3: return signed(r, 8, -2147483648n);
    case 0xd9: return readStr(r, Number(shortest(r.uint(1), 32n)));
    case 0xda: return readStr(r, Number(shortest(r.uint(2), 0x100n)));
    case 0xdb: return readStr(r, Number(shortest(r.uint(4), 0x10000n)));
    case 0xdc: return readArray(r, Number(shortest(r.uint(2), 16n)), depth);
    case 0xdd: return readArray(r, Number(shortest(r.uint(4), 0x10000n)), depth);
    case 0xde: return readMap(r, Number(shortest(r.uint(2), 16n)), depth);
    case 0xdf: return readMap(r, Number(shortest(r.uint(4), 0x10000n)), depth);
    case 0xca: case 0xcb: throw nonCanonical("floats are not allowed");
    case 0xc1: throw bad("byte c1 is never used");
    default: throw nonCanonical("extension types are not allowed");
  }
}

function signed(r, n, above) {
  const bits = BigInt(8 * n);
  let v = r.uint(n);
  if (v >= 1n << (bits - 1n)) v -= 1n << bits;
  // Non-negative values take the unsigned forms, and each negative value
  // the shortest signed form.
  if (v >= 0n) throw nonCanonical("a signed form for a non-negative integer");
  if (v >= above) throw nonCanonical("a longer form than needed");
  return v;
}

function readStr(r, n) {
  try {
    return UTF8.decode(r.take(n));
  } catch (e) {
    if (e instanceof DecodeError) throw e;
    throw bad("string is not UTF-8");
  }
}

function readArray(r, n, depth) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(readValue(r, depth + 1));
  return out;
}

function readMap(r, n, depth) {
  const out = new Map();
  let prev = null;
  for (let i = 0; i < n; i++) {
    const key = readValue(r, depth + 1);
    if (typeof key !== "string") throw nonCanonical("map keys must be strings");
    const keyBytes = te.encode(key);  // keys sort by their UTF-8 bytes
    if (prev !== null && compareBytes(keyBytes, prev) <= 0) {
      throw nonCanonical("map keys out of order or repeated");
    }
    prev = keyBytes;
    out.set(key, readValue(r, depth + 1));
  }
  return out;
}

// One canonical value filling ``bytes`` exactly.
export function decodeCanonical(bytes, maxSize) {
  if (maxSize !== undefined && bytes.length > maxSize) {
    throw new DecodeError("too_large", `${bytes.length} bytes exceeds the limit of ${maxSize}`);
  }
  const r = new Reader(bytes);
  const value = readValue(r, 0);
  if (r.at !== bytes.length) throw nonCanonical("trailing bytes after the value");
  return value;
}

// -- encoder (str, bin, non-negative int, array, Map/object) ---------------

function head(small, smallMax, codes, n) {
  if (n <= smallMax) return [small + n];
  const [c8, c16, c32] = codes;
  if (c8 !== null && n <= 0xff) return [c8, n];
  if (n <= 0xffff) return [c16, n >> 8, n & 0xff];
  return [c32, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

function uintBytes(v) {
  v = BigInt(v);
  if (v < 0n) throw new Error("only non-negative integers are encoded here");
  if (v <= 0x7fn) return [Number(v)];
  const forms = [[0xcc, 1], [0xcd, 2], [0xce, 4], [0xcf, 8]];
  for (const [code, n] of forms) {
    if (v < 1n << BigInt(8 * n)) {
      const out = [code];
      for (let i = n - 1; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
      return out;
    }
  }
  throw new Error("integer out of range");
}

function encodeInto(out, value) {
  if (value === null) out.push(0xc0);
  else if (value === true || value === false) out.push(value ? 0xc3 : 0xc2);
  else if (typeof value === "bigint" || typeof value === "number") out.push(...uintBytes(value));
  else if (typeof value === "string") {
    const b = te.encode(value);
    out.push(...head(0xa0, 31, [0xd9, 0xda, 0xdb], b.length), ...b);
  } else if (value instanceof Uint8Array) {
    out.push(...head(0, -1, [0xc4, 0xc5, 0xc6], value.length), ...value);
  } else if (Array.isArray(value)) {
    out.push(...head(0x90, 15, [null, 0xdc, 0xdd], value.length));
    for (const item of value) encodeInto(out, item);
  } else {
    const entries = [...(value instanceof Map ? value.entries() : Object.entries(value))]
      .map(([k, v]) => [te.encode(k), k, v])
      .sort((a, b) => compareBytes(a[0], b[0]));
    out.push(...head(0x80, 15, [null, 0xde, 0xdf], entries.length));
    for (const [, k, v] of entries) { encodeInto(out, k); encodeInto(out, v); }
  }
}

export function encodeCanonical(value) {
  const out = [];
  encodeInto(out, value);
  return new Uint8Array(out);
}
