// Signed requests from the page (docs/protocol.md §11.1): on a node whose
// API requires RFC 9421 signatures, the auditor loads a key file registered
// with a role that reads (read, audit); every request the page makes is then
// signed with it, through WebCrypto Ed25519, as the SDK signs (covered:
// "@method", "@path", "@query"; created, keyid, alg, nonce, tag). The key
// stays in this page's memory only: reloading the page forgets it.

import { concat, fromHex, toB64, toHex, utf8 } from "./bytes.js";
import { el } from "./dom.js";

const TAG = "auditledger/request/v1";
// PKCS #8 wrapping of an Ed25519 seed (RFC 8410): what WebCrypto imports.
const PKCS8_ED25519 = fromHex("302e020100300506032b657004220420", 16);
let key = null;  // {name, keyid, privateKey}

async function loadKey(text) {
  const doc = JSON.parse(text);
  if (doc === null || typeof doc !== "object" || typeof doc.seed !== "string"
      || typeof doc.pubkey !== "string") {
    throw new Error("a key file has name, pubkey and seed");
  }
  const seed = fromHex(doc.seed, 32);
  const pubkey = fromHex(doc.pubkey, 32);
  const privateKey = await crypto.subtle.importKey("pkcs8", concat(PKCS8_ED25519, seed),
                                                   { name: "Ed25519" }, false, ["sign"]);
  // The pubkey must be the seed's: a signature made here verifies under it.
  const probe = utf8("auditledger explorer key check");
  const publicKey = await crypto.subtle.importKey("raw", pubkey, { name: "Ed25519" }, false, ["verify"]);
  const sig = await crypto.subtle.sign("Ed25519", privateKey, probe);
  if (!await crypto.subtle.verify("Ed25519", publicKey, sig, probe)) {
    throw new Error("pubkey does not match seed");
  }
  return { name: typeof doc.name === "string" ? doc.name : "", keyid: toHex(pubkey), privateKey };
}

const base64url = (bytes) => toB64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

// The Signature-Input and Signature fields for GET ``url`` (path and query
// exactly as sent).
export async function signatureHeaders(k, url, created, nonce) {
  const params = `("@method" "@path" "@query");created=${created};keyid="${k.keyid}";`
    + `alg="ed25519";nonce="${nonce}";tag="${TAG}"`;
  const base = `"@method": GET\n"@path": ${url.pathname}\n"@query": ${url.search || "?"}\n`
    + `"@signature-params": ${params}`;
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", k.privateKey, utf8(base)));
  return { "Signature-Input": `sig=${params}`, Signature: `sig=:${toB64(sig)}:` };
}

// fetch() for the page's GET requests: signed when a key is loaded.
export async function authFetch(path, headers = {}) {
  if (key === null) return fetch(path, { headers });
  const url = new URL(path, location.href);
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const signed = await signatureHeaders(key, url, Math.floor(Date.now() / 1000), nonce);
  return fetch(url, { headers: { ...headers, ...signed } });
}

// A 401 from the node: what to do about it.
export const UNAUTHENTICATED_HINT = "this node answers signed requests only: load a key file "
  + "registered with a role that reads (read or audit) under \"Sign requests\"";

// The panel: load a key file, or forget it; ``changed`` re-renders.
export function keyPanel(changed) {
  const input = el("input", { type: "file", id: "key-file", accept: ".json,application/json" });
  const status = el("p", { id: "key-status", class: "hint" });
  input.addEventListener("change", async () => {
    if (!input.files.length) return;
    try {
      key = await loadKey(await input.files[0].text());
    } catch (e) {
      status.textContent = `Not a usable key file: ${e.message}`;
      return;
    }
    await changed();
  });
  const forget = el("button", { type: "button", id: "key-forget" }, "forget the key");
  forget.addEventListener("click", async () => { key = null; await changed(); });
  status.textContent = key
    ? `Signing requests as ${key.name || "(unnamed)"} · key ${key.keyid.slice(0, 16)}… (kept in this page only)`
    : "Requests are unsigned. A node that requires signed requests answers them 401.";
  return el("div", { id: "key-panel" }, el("h2", {}, "Sign requests"), status,
            el("label", {}, "Load your key file: ", input), " ", key ? forget : "");
}
