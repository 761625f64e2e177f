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
