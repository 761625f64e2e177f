// Which genesis the page verifies against: the node's (GET /v1/genesis),
// or a copy the auditor loads from a file, which is the one to trust - a
// node could serve a genesis of its own making.  The SHA-256 of the exact
// bytes is shown so it can be compared with the auditor's copy.

import { sha256, toHex } from "./bytes.js";
import { UNAUTHENTICATED_HINT, authFetch } from "./sign.js";
import { parseGenesis } from "./verify.js";

const STORE = "auditledger.genesis";
let current = null;

async function fromBytes(bytes, source) {
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  const parsed = await parseGenesis(JSON.parse(text));
  return { parsed, source, sha256: toHex(await sha256(bytes)), text };
}

export async function loadGenesis() {
  if (current) return current;
  const kept = sessionStorage.getItem(STORE);
  if (kept) {
    const { text, source } = JSON.parse(kept);
    current = await fromBytes(new TextEncoder().encode(text), source);
    return current;
  }
  const answer = await authFetch("/v1/genesis");
  if (answer.status === 401) throw new Error(`GET /v1/genesis answered 401: ${UNAUTHENTICATED_HINT}`);
  if (!answer.ok) throw new Error(`GET /v1/genesis answered ${answer.status}`);
  current = await fromBytes(new Uint8Array(await answer.arrayBuffer()),
                            "served by this node (GET /v1/genesis)");
  return current;
}

export async function useGenesisFile(file) {
  const loaded = await fromBytes(new Uint8Array(await file.arrayBuffer()),
                                 `loaded from your file ${file.name}`);
  sessionStorage.setItem(STORE, JSON.stringify({ text: loaded.text, source: loaded.source }));
  current = loaded;
  return current;
}

export function forgetGenesisFile() {
  sessionStorage.removeItem(STORE);
  current = null;
}
