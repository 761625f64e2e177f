// A bundle's verdict proof (docs/protocol.md §10.11) in the browser: the
// record's verdict entry and its RFC 9162 path to the version 2 header's
// verdict root, and the transition that decided a held record or a record in
// review, in its own certified block. The steps and their order are
// ledger/verify_verdicts.py's VERDICT_STEPS; they run after the bundle's own
// steps (verify.js, verify2.js), whose certified header they build on.

import { concat, equal, fromB64, fromHex, sha256, toHex, utf8 } from "./bytes.js";
import { epochOf } from "./epochs.js";
import { decodeCanonical } from "./msgpack.js";
import {
  BUNDLE_FORMAT_V2, VerificationError, checkCertificate, decodeHeader, fail, inclusionRoot,
  parseBundle, parseCertificate,
} from "./verify.js";

export const VERDICT_STEPS = [
  "verdict", "verdict_inclusion", "transition_header", "transition_certificate", "transition",
  "transition_inclusion",
];

const VERDICT_DOMAIN = utf8("auditledger/verdict/v1\n");
const TRANSITION_DOMAIN = utf8("auditledger/transition/v1\n");
const VERDICT_KEYS = ["approvals", "deadline", "outcome", "policy", "reason", "record", "role", "rule"];
const TRANSITION_KEYS = ["approvals", "record", "status"];
const PROOF_KEYS = ["entry", "size", "path"];
const TRANSITION_PROOF_KEYS = ["height", "header", "certificate", "entry", "index", "size", "path"];
const OUTCOMES = ["allow", "deny", "approve", "review"];
const FINAL = ["approved", "expired", "rejected"];
const STATUS = { allow: "allowed", deny: "denied", approve: "held", review: "review" };
const MAX_TEXT = 256;
const MAX_APPROVALS = 64n;
const MAX_PATH = 64;
const UINT64_MAX = (1n << 64n) - 1n;

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isUint = (v) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isBigUint = (v) => typeof v === "bigint" && v >= 0n && v <= UINT64_MAX;
const isId = (v) => v instanceof Uint8Array && v.length === 32;
const chars = (s) => [...s].length;  // code points, as Python's len()

function exactKeys(obj, keys, what) {
  if (!isObject(obj) || Object.keys(obj).length !== keys.length || !keys.every((k) => Object.hasOwn(obj, k))) {
    fail("bundle", `${what} must be an object of exactly ${[...keys].sort().join(", ")}`);
  }
}

function b64(obj, key, what) {
  if (typeof obj[key] !== "string") fail("bundle", `${what} '${key}' must be base64 text`);
  try { return fromB64(obj[key]); } catch (e) { return fail("bundle", `${what} ${key}: ${e.message}`); }
}

function uint(obj, key, what) {
  if (!isUint(obj[key])) fail("bundle", `${what} '${key}' must be a non-negative integer`);
  return obj[key];
}

function hashes(value, what) {
  if (!Array.isArray(value) || value.length > MAX_PATH) {
    fail("bundle", `${what} must be a list of at most ${MAX_PATH} hex hashes`);
  }
  return value.map((h) => {
    if (typeof h !== "string" || h.length !== 64 || h !== h.toLowerCase()) {
      fail("bundle", `${what} entries must be 64 lowercase hex digits`);
    }
    try { return fromHex(h, 32); } catch (e) { return fail("bundle", `${what} entries must be 64 lowercase hex digits`); }
  });
}

// Step "bundle": the ``verdict`` field's shape (ledger/verify_verdicts.py's parse_verdict_proof).
export function parseVerdictProof(doc) {
  if (!isObject(doc)) fail("bundle", "verdict must be a JSON object");
  exactKeys(doc, Object.hasOwn(doc, "transition") ? [...PROOF_KEYS, "transition"] : PROOF_KEYS, "verdict");
  let transition = null;
  if (Object.hasOwn(doc, "transition")) {
    const t = doc.transition;
    exactKeys(t, TRANSITION_PROOF_KEYS, "verdict transition");
    const what = "verdict transition";
    transition = { height: uint(t, "height", what), header: b64(t, "header", what),
                   certificate: parseCertificate(t.certificate), entry: b64(t, "entry", what),
                   index: uint(t, "index", what), size: uint(t, "size", what),
                   path: hashes(t.path, "verdict transition path") };
  }
  return { entry: b64(doc, "entry", "verdict"), size: uint(doc, "size", "verdict"),
           path: hashes(doc.path, "verdict path"), transition };
}

function decodeMap(bytes, keys, step, what) {
  let value;
  try { value = decodeCanonical(bytes); } catch (e) { return fail(step, `${what}: ${e.message}`); }
  if (!(value instanceof Map) || value.size !== keys.length || !keys.every((k) => value.has(k))) {
    fail(step, `${what} must be a map of exactly ${keys.join(", ")}`);
  }
  return value;
}

// A verdict's bytes (protocol §10.5), as ledger/verdicts.py's decode_verdict.
export function decodeVerdict(bytes, step = "verdict") {
  const v = decodeMap(bytes, VERDICT_KEYS, step, "verdict");
  const get = (k) => v.get(k);
  if (!OUTCOMES.includes(get("outcome"))) fail(step, `verdict outcome ${get("outcome")} is not one of the four`);
  if (!isId(get("record"))) fail(step, "verdict record must be 32 bytes");
  for (const k of ["rule", "reason", "role"]) {
    if (typeof get(k) !== "string" || chars(get(k)) > MAX_TEXT) fail(step, `verdict ${k} must be a string of at most ${MAX_TEXT} characters`);
  }
  for (const k of ["approvals", "deadline", "policy"]) {
    if (!isBigUint(get(k))) fail(step, `verdict ${k} must be a non-negative integer`);
  }
  if (get("outcome") !== "approve" && (get("approvals") || get("role") || get("deadline"))) {
    fail(step, "only an approve verdict has approvals, role and deadline");
  }
  if (get("approvals") > MAX_APPROVALS) fail(step, `verdict approvals above ${MAX_APPROVALS}`);
  return { record: get("record"), outcome: get("outcome"), rule: get("rule"), reason: get("reason"),
           approvals: get("approvals"), role: get("role"), policy: get("policy"), deadline: get("deadline") };
}

// A transition's bytes, as ledger/verdicts.py's decode_transition.
export function decodeTransition(bytes, step = "transition") {
  const t = decodeMap(bytes, TRANSITION_KEYS, step, "transition");
  const status = t.get("status");
  if (!FINAL.includes(status)) fail(step, `transition status ${status} is not approved, expired or rejected`);
  if (!isId(t.get("record"))) fail(step, "transition record must be 32 bytes");
  const approvals = t.get("approvals");
  if (!Array.isArray(approvals) || approvals.length > Number(MAX_APPROVALS) || !approvals.every(isId)) {
    fail(step, `transition approvals must be at most ${MAX_APPROVALS} ids`);
  }
  if (status === "rejected" && approvals.length !== 1) fail(step, "a rejected transition names exactly its reject decision");
  return { record: t.get("record"), status, approvals };
}

const inBlock = (leafIndex, header) =>
  header.log_size - header.tx_count <= BigInt(leafIndex) && BigInt(leafIndex) < header.log_size;

async function checkEntry(index, size, domain, entry, path, root, step) {
  const leaf = await sha256(concat(Uint8Array.of(0), domain, entry));
  const r = await inclusionRoot(BigInt(index), BigInt(size), leaf, path, step);
  if (!equal(r, root)) fail(step, "computed root does not match the expected root");
}

// Run ``fn``; a refusal it raises is reported at ``step``.
async function as(step, fn) {
  try { return await fn(); } catch (e) {
    if (e instanceof VerificationError) throw new VerificationError(step, e.message);
    throw e;
  }
}

// Step "transition": a transition the verdict can reach (protocol §10.7, §10.10).
function reachable(verdict, transition, header) {
  const held = verdict.outcome === "approve";
  if (!held && verdict.outcome !== "review") fail("transition", `a ${verdict.outcome} verdict has no transition`);
  const when = `in block ${header.height} (time ${header.time})`;
  if (transition.status === "expired") {
    if (!held || header.time <= verdict.deadline) {
      fail("transition", `expired ${when}: the ${verdict.outcome} verdict's deadline is ${verdict.deadline}`);
    }
    return;
  }
  if (held && header.time > verdict.deadline) fail("transition", `${transition.status} ${when}, after the deadline ${verdict.deadline}`);
  const need = verdict.approvals > 1n ? verdict.approvals : 1n;
  const n = BigInt(transition.approvals.length);
  if (transition.status === "approved" && !(need <= n && n <= MAX_APPROVALS)) {
    fail("transition", `approved ${when} with ${n} approvals: the verdict needs ${need}`);
  }
}

async function checkTransition(proof, verdict, recordHeader, epochAt) {
  if (BigInt(proof.height) < recordHeader.height) {
    fail("transition_header", `transition height ${proof.height} is below the record's block ${recordHeader.height}`);
  }
  const epoch = await epochAt(proof.height);
  const header = await as("transition_header", () => {
    const h = decodeHeader(proof.header);
    if (h.chain !== epoch.chain) fail("header_chain", `header is for chain ${h.chain}, genesis is ${epoch.chain}`);
    if (!equal(h.validators, epoch.validatorsHash)) fail("validators", `header validators differ from the set in force at height ${h.height}`);
    if (h.height !== BigInt(proof.height)) fail("height", `transition height ${proof.height} but header height ${h.height}`);
    if (h.v !== 2n) fail("header", `block ${h.height} is version ${h.v}: it commits no transitions`);
    return h;
  });
  await as("transition_certificate", async () => checkCertificate(proof.certificate, header, await sha256(proof.header), epoch));
  const transition = decodeTransition(proof.entry);
  if (!equal(transition.record, verdict.record)) fail("transition", `the transition is of record ${toHex(transition.record)}, not the bundle's`);
  if (!(header.tx_count <= BigInt(proof.index) && proof.index < proof.size)) {
    fail("transition", `entry ${proof.index} of block ${header.height} is not a transition (its ${header.tx_count} verdicts come first)`);
  }
  reachable(verdict, transition, header);
  await checkEntry(proof.index, proof.size, TRANSITION_DOMAIN, proof.entry, proof.path, header.verdicts, "transition_inclusion");
  return { transition, height: proof.height };
}

// The verdict steps for a bundle whose own steps passed: what it proves
// about the record's verdict, or null when it proves nothing (no proof and a
// version 2 block, or a bundle against a later block).
export async function checkVerdictProof(proof, recordId, leafIndex, header, epochAt) {
  if (proof === null) {
    if (inBlock(leafIndex, header) && header.v !== 2n) {  // protocol §10.6: allow, policy 0
      const verdict = { record: recordId, outcome: "allow", rule: "", reason: "", approvals: 0n,
                        role: "", policy: 0n, deadline: 0n };
      return { verdict, status: "allowed", index: -1, committed: false, transition: null };
    }
    return null;
  }
  if (!inBlock(leafIndex, header)) {
    fail("verdict", `the bundle's block ${header.height} does not commit leaf ${leafIndex}: a verdict is proven against the record's own block`);
  }
  if (header.v !== 2n) fail("verdict", `block ${header.height} is version ${header.v}: it commits no verdicts`);
  const verdict = decodeVerdict(proof.entry);
  if (!equal(verdict.record, recordId)) fail("verdict", `the verdict is of record ${toHex(verdict.record)}, not the bundle's`);
  if (BigInt(proof.size) < header.tx_count) fail("verdict", `verdict tree size ${proof.size} is below the block's ${header.tx_count} records`);
  const index = BigInt(leafIndex) - (header.log_size - header.tx_count);
  await checkEntry(index, proof.size, VERDICT_DOMAIN, proof.entry, proof.path, header.verdicts, "verdict_inclusion");
  const out = { verdict, status: STATUS[verdict.outcome], index: Number(index), committed: true, transition: null };
  if (proof.transition !== null) {
    const { transition, height } = await checkTransition(proof.transition, verdict, header, epochAt);
    Object.assign(out, { status: transition.status, transition, transitionHeight: height });
  }
  return out;
}

// The bundle without ``verdict`` and that field parsed (step "bundle", after
// the bundle's own keys, as ledger/verify.py orders them).
export async function splitVerdict(bundle) {
  if (!isObject(bundle) || !Object.hasOwn(bundle, "verdict")) return [bundle, null];
  const { verdict: raw, ...own } = bundle;
  if (own.format === BUNDLE_FORMAT_V2 && Object.hasOwn(own, "governance")) {
    const { parseBundleV2 } = await import("./verify2.js");
    parseBundleV2(own);
  } else {
    parseBundle(own);
  }
  return [own, parseVerdictProof(raw)];
}

// verify.js's verifyBundle: the bundle's own steps (``verifyOwn``, version 1
// or 2), then the verdict steps against its certified header, the
// transition's block judged by the validators in force at its height.
export async function withVerdict(bundle, genesis, cache, verifyOwn) {
  const [own, proof] = await splitVerdict(bundle);
  const proven = await verifyOwn(own, genesis, cache);
  const epochAt = async (h) => (proven.membership ? epochOf(proven.membership.at(h), genesis) : genesis);
  proven.verdict = await checkVerdictProof(proof, fromHex(proven.recordId, 32), proven.leafIndex,
                                           proven.header, epochAt);
  return proven;
}
