// The C2SP checkpoint of docs/protocol.md "Checkpoints (C2SP)", verified in
// the browser: the signed note's signature lines are checked against note
// keys derived from the genesis document alone (key name
// "<chain>.auditledger/validator-<i>", key id SHA-256(name || 0a || 01 ||
// key)[:4]), and distinct validators are counted against the quorum.

import { concat, equal, fromB64, sha256, toHex, utf8 } from "./bytes.js";
import { verifyEd25519 } from "./ed25519.js";
import { fingerprint } from "./verify.js";

const DASH = "\u2014 ";

async function noteKeys(genesis) {
  const origin = `${genesis.chain}.auditledger`;
  return Promise.all(genesis.validators.map(async (v) => {
    const name = `${origin}/validator-${v.index}`;
    const id = (await sha256(concat(utf8(name), Uint8Array.of(0x0a, 0x01), v.pubkey))).subarray(0, 4);
    return { validator: v, name, id };
  }));
}

// {ok, size, root (hex), signers} or {ok: false, step: "checkpoint", message}.
export async function verifyCheckpoint(noteText, genesis) {
  try {
    const sep = noteText.lastIndexOf("\n\n");
    if (sep < 0 || !noteText.endsWith("\n")) throw new Error("not a signed note");
    const text = noteText.slice(0, sep + 1);
    const lines = text.split("\n");
    if (lines.length !== 4) throw new Error("checkpoint text must be three lines");
    if (lines[0] !== `${genesis.chain}.auditledger`) throw new Error(`origin ${lines[0]} is not this chain's`);
    if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Error("bad log size");
    const root = fromB64(lines[2]);
    if (root.length !== 32) throw new Error("the root must be 32 bytes");
    const keys = await noteKeys(genesis);
    const signers = new Map();
    for (const line of noteText.slice(sep + 2, -1).split("\n")) {
      const parts = line.startsWith(DASH) ? line.slice(DASH.length).split(" ") : [];
      if (parts.length !== 2) throw new Error(`malformed signature line ${line.slice(0, 60)}`);
      const blob = fromB64(parts[1]);
      const key = keys.find((k) => k.name === parts[0] && equal(k.id, blob.subarray(0, 4)));
      if (!key) continue;  // a key not of this chain's validators: not counted
      if (!(await verifyEd25519(key.validator.pubkey, utf8(text), blob.subarray(4)))) {
        throw new Error(`the signature of ${key.name} does not verify`);
      }
      signers.set(key.validator.index, key.validator);
    }
    if (signers.size < genesis.quorum) {
      throw new Error(`${signers.size} validator signatures verify; ${genesis.quorum} are needed`);
    }
    const list = await Promise.all([...signers.values()].sort((a, b) => a.index - b.index)
      .map(async (v) => ({ index: v.index, name: v.name, fingerprint: await fingerprint(v.pubkey) })));
    return { ok: true, size: Number(lines[1]), root: toHex(root), signers: list };
  } catch (e) {
    return { ok: false, step: "checkpoint", message: e.message };
  }
}

// Witness cosignatures (docs/protocol.md §13, C2SP tlog-cosignature/v1) on a
// checkpoint note, checked against witness verifier keys ``name+<8 hex
// id>+base64(04 || Ed25519 key)``: for each witness, null (no line of its
// key) or {name, timestamp, ok, message?}. A line signs "cosignature/v1\n",
// "time <t>\n" and the note text; its blob is id || t (8 bytes, big-endian)
// || signature.
export async function verifyCosignatures(noteText, vkeys) {
  const sep = noteText.lastIndexOf("\n\n");
  const text = noteText.slice(0, sep + 1);
  const lines = sep < 0 ? [] : noteText.slice(sep + 2, -1).split("\n");
  return Promise.all(vkeys.map(async (vkey) => {
    const [name, idHex, b64] = [vkey.split("+")[0], vkey.split("+")[1], vkey.split("+").slice(2).join("+")];
    let key;
    try { key = fromB64(b64); } catch (e) { return { name, ok: false, timestamp: null, message: "key is not base64" }; }
    const id = (await sha256(concat(utf8(name), Uint8Array.of(0x0a), key))).subarray(0, 4);
    if (key.length !== 33 || key[0] !== 0x04 || toHex(id) !== idHex) {
      return { name, ok: false, timestamp: null, message: "not a cosignature/v1 key (type 04) with its id" };
    }
    for (const line of lines) {
      const parts = line.startsWith(DASH) ? line.slice(DASH.length).split(" ") : [];
      if (parts.length !== 2 || parts[0] !== name) continue;
      let blob;
      try { blob = fromB64(parts[1]); } catch (e) { continue; }
      if (!equal(blob.subarray(0, 4), id)) continue;  // another key of that name
      if (blob.length !== 76) return { name, ok: false, timestamp: null, message: "a cosignature is 76 bytes" };
      const t = new DataView(blob.buffer, blob.byteOffset + 4, 8).getBigUint64(0);
      if (t > (1n << 63n) - 1n) return { name, ok: false, timestamp: t, message: "timestamp above 2^63 - 1" };
      const signed = concat(utf8(`cosignature/v1\ntime ${t}\n`), utf8(text));
      const ok = await verifyEd25519(key.subarray(1), signed, blob.subarray(12));
      return { name, ok, timestamp: t, message: ok ? "" : "the cosignature does not verify" };
    }
    return null;
  }));
}
