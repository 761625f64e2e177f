// Byte helpers for the in-page verifier: strict hex and base64 (the one
// spelling the protocol allows, docs/protocol.md §5), SHA-256 by WebCrypto.

const HEX = /^(?:[0-9a-f]{2})*$/;

export function fromHex(text, length) {
  if (typeof text !== "string" || !HEX.test(text)) throw new Error("not lowercase hex");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  if (length !== undefined && out.length !== length) {
    throw new Error(`must be ${length} bytes, got ${out.length}`);
  }
  return out;
}

export function toHex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function toB64(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

// Standard padded base64, refusing any other spelling of the same bytes
// (whitespace, missing padding, non-zero bits in the padding).
export function fromB64(text) {
  if (typeof text !== "string" || !B64.test(text)) throw new Error("not valid base64");
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (toB64(out) !== text) throw new Error("not canonical base64");
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export const utf8 = (text) => new TextEncoder().encode(text);
