// Ed25519 verification with libsodium's acceptance rules (docs/protocol.md
// §4): WebCrypto checks the signature equation; the rules WebCrypto does not
// promise are applied here first, so the page and the offline verifier
// accept exactly the same signatures: the public key must be a canonical
// point encoding and not of small order, R must not be of small order, and
// S must be below the group order L.

// Encodings of the points of small order, compared with the sign bit of the
// last byte cleared (libsodium's blocklist): 0, 1, the two of order 8,
// p - 1, and the non-canonical p and p + 1.
const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
].map((h) => Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16)));

const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const P = (1n << 255n) - 19n;

function littleEndian(bytes) {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

export function hasSmallOrder(point) {
  return SMALL_ORDER.some((bad) => {
    for (let i = 0; i < 31; i++) if (bad[i] !== point[i]) return false;
    return bad[31] === (point[31] & 0x7f);
  });
}

export function isCanonicalPoint(point) {
  const y = littleEndian(point) & ((1n << 255n) - 1n);
  return y < P;
}

// True when ``sig`` is ``pubkey``'s signature over ``message`` (all
// Uint8Array); false for every kind of failure, including keys WebCrypto
// refuses to import.
export async function verifyEd25519(pubkey, message, sig) {
  if (pubkey.length !== 32 || sig.length !== 64) return false;
  if (!isCanonicalPoint(pubkey) || hasSmallOrder(pubkey)) return false;
  if (hasSmallOrder(sig.subarray(0, 32))) return false;
  if (littleEndian(sig.subarray(32)) >= L) return false;
  try {
    const key = await crypto.subtle.importKey("raw", pubkey, { name: "Ed25519" }, false,
                                              ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, sig, message);
  } catch (e) {
    return false;
  }
}
