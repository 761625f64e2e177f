// The proof-bundle verifier of docs/protocol.md §5, in the browser.
//
// It runs the steps of ledger/verify.py's STEPS in the same order and names
// the first that fails, so the page and `ledger-audit verify` give the same
// verdict on the same bundle.  Nothing here trusts the node that served the
// bundle: only the genesis document the page was given.

import { concat, equal, fromB64, fromHex, sha256, toHex, utf8 } from "./bytes.js";
import { decodeCanonical, encodeCanonical } from "./msgpack.js";
import { verifyEd25519 } from "./ed25519.js";

export const STEPS = [
  "bundle", "format", "chain", "envelope", "record_id", "record_chain", "submitter", "role",
  "batch_path", "signature", "header", "header_chain", "validators", "height", "inclusion",
  "certificate_block", "certificate_height", "certificate", "quorum",
];

export const BUNDLE_FORMAT = "auditledger-proof/1";
export const BUNDLE_FORMAT_V2 = "auditledger-proof/2";
const BUNDLE_KEYS = ["format", "chain", "record_id", "leaf_index", "envelope", "height",
                     "header", "inclusion", "certificate"];
const CERTIFICATE_KEYS = ["height", "round", "block", "signatures"];
const RECORD_KEYS = ["v", "chain", "submitter", "nonce", "ts", "kind", "origin", "body",
                     "parents"];
const HEADER_KEYS = ["v", "chain", "height", "prev", "time", "proposer", "tx_count", "tx_root",
                     "log_size", "log_root", "validators"];
const MAX_ENVELOPE_BYTES = 8 * 1024;
const MAX_INCLUSION_PATH = 64;
const MAX_COSIGS = 32;
const UINT64_MAX = (1n << 64n) - 1n;
const RECORD_DOMAIN = utf8("auditledger/record/v1\n");
const VOTE_DOMAIN = utf8("auditledger/vote/v1\n");
const BATCH_DOMAIN = utf8("auditledger/batch/v1\n");
// Batch envelopes (protocol §2): as ledger/batch.py's bounds.
const MIN_BATCH_SIZE = 2n;
const MAX_BATCH_SIZE = 4096n;
const MAX_BATCH_PATH = 12;

export class VerificationError extends Error {
  constructor(step, message) { super(message); this.step = step; }
}

export const fail = (step, message) => { throw new VerificationError(step, message); };
const chars = (s) => [...s].length;  // code points, as Python's len()
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isUint = (v) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isBigUint = (v) => typeof v === "bigint" && v >= 0n && v <= UINT64_MAX;
const isBin = (v, n) => v instanceof Uint8Array && (n === undefined || v.length === n);

function sameKeys(obj, keys) {
  const have = Object.keys(obj);
  return have.length === keys.length && keys.every((k) => Object.hasOwn(obj, k));
}

function mapHasKeys(map, keys) {
  return map instanceof Map && map.size === keys.length && keys.every((k) => map.has(k));
}

export function quorum(n) { return Math.floor((2 * n) / 3) + 1; }

// -- genesis (step "genesis") -----------------------------------------------

export async function parseGenesis(doc) {
  const g = (m) => fail("genesis", m);
  if (!isObject(doc)) g("genesis must be a JSON object");
  if (typeof doc.chain !== "string" || chars(doc.chain) < 1 || chars(doc.chain) > 64) {
    g("genesis: chain id must be 1..64 characters");
  }
  if (!Array.isArray(doc.validators) || doc.validators.length === 0) {
    g("genesis: at least one validator is required");
  }
  const key = (text, where) => {
    try { return fromHex(text, 32); } catch (e) { return g(`${where} pubkey: ${e.message}`); }
  };
  const seen = new Set();
  const validators = doc.validators.map((v, i) => {
    if (!isObject(v) || typeof v.name !== "string") g(`validator ${i}: needs a name and pubkey`);
    const pubkey = key(v.pubkey, `validator ${i}`);
    if (seen.has(v.pubkey)) g(`validator ${i}: duplicate pubkey`);
    seen.add(v.pubkey);
    const address = typeof v.address === "string" ? v.address : "";
    return { index: i, name: v.name, pubkey, hex: v.pubkey, address };
  });
  const submitters = new Map();
  const raw = doc.submitters === undefined ? [] : doc.submitters;
  if (!Array.isArray(raw)) g("genesis: submitters must be a list");
  raw.forEach((s, i) => {
    if (!isObject(s) || typeof s.name !== "string" || !Array.isArray(s.roles)
        || !s.roles.every((r) => typeof r === "string")) {
      g(`submitter ${i}: needs a name, pubkey and roles`);
    }
    key(s.pubkey, `submitter ${i}`);
    if (submitters.has(s.pubkey)) g(`submitter ${i}: duplicate pubkey`);
    submitters.set(s.pubkey, { name: s.name, pubkey: fromHex(s.pubkey), roles: new Set(s.roles) });
  });
  const { members, threshold } = parseMembers(doc, key);
  if (doc.params !== undefined && !isObject(doc.params)) g("genesis: params must be an object");
  // Chain params (gov.policy.set reads policy_engine and policy_max_cost);
  // integers as BigInt, as the governance records' params decode.
  const params = new Map(Object.entries(doc.params || {}).map(([k, v]) =>
    [k, Number.isInteger(v) ? BigInt(v) : v]));
  const validatorsHash = await sha256(encodeCanonical(validators.map((v) => v.pubkey)));
  return { chain: doc.chain, validators, submitters, validatorsHash, members, threshold, params,
           n: validators.length, quorum: quorum(validators.length) };
}

// ``members`` and ``governance_threshold`` (protocol §9.1), as
// ledger/genesis.py's _members: the governance walk starts from them.
function parseMembers(doc, key) {
  const g = (m) => fail("genesis", m);
  const raw = doc.members === undefined ? [] : doc.members;
  if (!Array.isArray(raw)) g("genesis: members must be a list");
  const members = new Map();
  raw.forEach((m, i) => {
    if (!isObject(m) || !sameKeys(m, ["name", "pubkey"]) || typeof m.name !== "string") {
      g(`member ${i}: must be an object of exactly name and pubkey`);
    }
    const pubkey = key(m.pubkey, `member ${i}`);
    if (members.has(m.pubkey)) g(`member ${i}: duplicate pubkey`);
    members.set(m.pubkey, { name: m.name, pubkey });
  });
  if (!Object.hasOwn(doc, "governance_threshold")) {
    return { members, threshold: BigInt(members.size ? Math.floor(members.size / 2) + 1 : 0) };
  }
  const t = doc.governance_threshold;
  if (!Number.isSafeInteger(t)) g("genesis: governance_threshold must be an integer");
  if (t < 1 || t > members.size) {
    g(`genesis: governance_threshold ${t} is not in 1..${members.size} (the number of members)`);
  }
  return { members, threshold: BigInt(t) };
}

// Short, stable name of a key for people: its first 8 bytes of SHA-256.
export async function fingerprint(pubkey) {
  return toHex((await sha256(pubkey)).subarray(0, 8));
}

// -- step "bundle" ----------------------------------------------------------

function parseHex(text, n, what) {
  try { return fromHex(text, n); } catch (e) { return fail("bundle", `${what}: ${e.message}`); }
}

export function parseCertificate(doc) {
  if (!isObject(doc) || !sameKeys(doc, CERTIFICATE_KEYS)) {
    fail("bundle", "certificate keys wrong");
  }
  const block = parseHex(doc.block, 32, "certificate block");
  if (!Array.isArray(doc.signatures)) fail("bundle", "certificate signatures must be a list");
  const signatures = doc.signatures.map((s) => {
    if (!isObject(s) || !sameKeys(s, ["validator", "sig"])) {
      fail("bundle", "signature entries need exactly validator and sig");
    }
    return { validator: s.validator, sig: parseHex(s.sig, 64, "signature") };
  });
  if (!isUint(doc.height) || !isUint(doc.round)) {
    fail("bundle", "certificate height and round must be non-negative integers");
  }
  if (!signatures.every((s) => isUint(s.validator))) {
    fail("bundle", "certificate signature entries are malformed");
  }
  return { height: doc.height, round: doc.round, block, signatures };
}

export function parseBundle(bundle) {
  if (!isObject(bundle)) fail("bundle", "bundle must be a JSON object");
  if (!Object.hasOwn(bundle, "format")) fail("bundle", "bundle has no 'format'");
  if (bundle.format !== BUNDLE_FORMAT) {
    fail("format", `format ${JSON.stringify(bundle.format)} is not ${BUNDLE_FORMAT}`);
  }
  if (!sameKeys(bundle, BUNDLE_KEYS)) fail("bundle", "bundle keys wrong");
  const recordId = parseHex(bundle.record_id, 32, "record_id");
  let envelope, header;
  try { envelope = fromB64(bundle.envelope); } catch (e) { fail("bundle", `envelope: ${e.message}`); }
  try { header = fromB64(bundle.header); } catch (e) { fail("bundle", `header: ${e.message}`); }
  if (typeof bundle.chain !== "string") fail("bundle", "bundle 'chain' must be str");
  if (!isUint(bundle.leaf_index)) fail("bundle", "bundle 'leaf_index' must be a non-negative integer");
  if (!isUint(bundle.height)) fail("bundle", "bundle 'height' must be a non-negative integer");
  if (!Array.isArray(bundle.inclusion)) fail("bundle", "inclusion must be a list of hex hashes");
  if (bundle.inclusion.length > MAX_INCLUSION_PATH) fail("bundle", "inclusion path too long");
  const inclusion = bundle.inclusion.map((h) => parseHex(h, 32, "inclusion entry"));
  return { chain: bundle.chain, recordId, leafIndex: bundle.leaf_index, envelope,
           height: bundle.height, header, inclusion,
           certificate: parseCertificate(bundle.certificate) };
}

// -- records (steps "envelope" .. "signature") --------------------------------

function decodeStep(step, bytes, maxSize) {
  try { return decodeCanonical(bytes, maxSize); } catch (e) {
    return fail(step, `${step}: ${e.code || "bad_encoding"}: ${e.message}`);
  }
}

// The record's fields, checked as ledger/records.py checks them.
function recordFields(value) {
  const f = (m) => fail("envelope", `envelope: ${m}`);
  if (!(value instanceof Map)) f("record must be a map");
  if (!mapHasKeys(value, RECORD_KEYS)) f("record keys wrong");
  const get = (k) => value.get(k);
  if (get("v") !== 1n) f("unsupported record version");
  const chain = get("chain");
  if (typeof chain !== "string" || chars(chain) < 1 || chars(chain) > 64) f("bad chain");
  if (!isBin(get("submitter"), 32)) f("submitter must be 32 bytes");
  if (!isBigUint(get("nonce"))) f("nonce must be an integer in 0..2^64-1");
  if (typeof get("ts") !== "bigint" || get("ts") < 0n) f("ts must be a non-negative integer");
  const kind = get("kind");
  if (typeof kind !== "string" || chars(kind) < 1 || chars(kind) > 64) f("bad kind");
  const origin = get("origin");
  if (!(origin instanceof Map) || origin.size > 16) f("origin must be a map of at most 16 entries");
  for (const v of origin.values()) if (typeof v !== "string") f("origin values must be strings");
  if (!(get("body") instanceof Map)) f("body must be a map");
  const parents = get("parents");
  if (!Array.isArray(parents) || parents.length > 16) f("parents must be a list of at most 16 ids");
  if (!parents.every((p) => isBin(p, 32))) f("each parent must be a 32-byte record id");
  if (new Set(parents.map(toHex)).size !== parents.length) f("parents must be distinct");
  return { chain, submitter: get("submitter"), nonce: get("nonce"), ts: get("ts"), kind,
           origin, body: get("body"), parents };
}

// The ``batch`` map of a batch envelope, its form checked as
// ledger/batch.py's parse_batch does (the path's fit is step "batch_path").
function batchFields(value) {
  const f = (m) => fail("envelope", `envelope: ${m}`);
  if (!mapHasKeys(value, ["index", "path", "size"])) {
    f("envelope 'batch' must be a map of exactly 'index', 'path' and 'size'");
  }
  const index = value.get("index");
  const size = value.get("size");
  const path = value.get("path");
  if (typeof size !== "bigint" || size < MIN_BATCH_SIZE || size > MAX_BATCH_SIZE) {
    f("batch 'size' must be an integer in 2..4096");
  }
  if (typeof index !== "bigint" || index < 0n || index >= size) {
    f("batch 'index' must be an integer below 'size'");
  }
  if (!Array.isArray(path) || path.length < 1 || path.length > MAX_BATCH_PATH) {
    f("batch 'path' must be a list of 1..12 hashes");
  }
  if (!path.every((h) => isBin(h, 32))) f("each batch 'path' entry must be 32 bytes");
  return { index, size, path };
}

// The ``cosigs`` of a multi-signed envelope (protocol §9.2): 1..32 maps of
// exactly key and sig, ascending by key, no key twice.
function cosigFields(value) {
  const f = (m) => fail("envelope", `envelope: ${m}`);
  if (!Array.isArray(value)) f("envelope 'cosigs' must be an array");
  if (!value.length) f("envelope 'cosigs' is empty: a one-signature envelope has none");
  if (value.length > MAX_COSIGS) f(`envelope has ${value.length} co-signatures, at most ${MAX_COSIGS}`);
  const out = value.map((entry) => {
    if (!mapHasKeys(entry, ["key", "sig"])) f("each co-signature must be a map of exactly 'key' and 'sig'");
    if (!isBin(entry.get("key"), 32)) f("co-signature 'key' must be 32 bytes");
    if (!isBin(entry.get("sig"), 64)) f("co-signature 'sig' must be 64 bytes");
    return [entry.get("key"), entry.get("sig")];
  });
  const hex = out.map(([k]) => toHex(k));
  if (new Set(hex).size !== hex.length) f("a key signs the envelope twice");
  if (!hex.every((k, i) => i === 0 || hex[i - 1] < k)) f("co-signatures must be in ascending order of key");
  return out;
}

export function decodeEnvelope(bytes) {
  const value = decodeStep("envelope", bytes, MAX_ENVELOPE_BYTES);
  const batched = value instanceof Map && value.has("batch");
  if (batched ? !mapHasKeys(value, ["batch", "record", "sig"])
              : !mapHasKeys(value, ["record", "sig"]) && !mapHasKeys(value, ["cosigs", "record", "sig"])) {
    fail("envelope", batched
      ? "a batch envelope is a map of exactly 'batch', 'record' and 'sig'"
      : "envelope must be a map of 'record' and 'sig' (and 'cosigs')");
  }
  const recordBytes = value.get("record");
  const sig = value.get("sig");
  if (!isBin(recordBytes)) fail("envelope", "envelope 'record' must be bytes");
  if (!isBin(sig, 64)) fail("envelope", "envelope 'sig' must be 64 bytes");
  const batch = batched ? batchFields(value.get("batch")) : null;
  const cosigs = !batched && value.has("cosigs") ? cosigFields(value.get("cosigs")) : [];
  const record = recordFields(decodeStep("envelope", recordBytes));
  if (cosigs.some(([k]) => equal(k, record.submitter))) {
    fail("envelope", "envelope: the submitter's key is also among the co-signatures");
  }
  return { recordBytes, sig, record, batch, signatures: [[record.submitter, sig], ...cosigs] };
}

// Every signature of the envelope, as ledger/records.py's verify_signatures:
// the submitter's (of a batch envelope: over its batch root, a path that
// does not fit failing here too) and each co-signer's over the record bytes.
export async function verifySignatures(envelope, recordId) {
  if (envelope.batch !== null) {
    let message;
    try { message = await signedMessage(envelope, recordId); } catch (e) {
      fail("signature", "the batch path does not fit its index and size");
    }
    if (!(await verifyEd25519(envelope.record.submitter, message, envelope.sig))) {
      fail("signature", "the submitter's signature does not verify");
    }
    return;
  }
  const message = concat(RECORD_DOMAIN, envelope.recordBytes);
  for (const [key, sig] of envelope.signatures) {
    if (!(await verifyEd25519(key, message, sig))) {
      fail("signature", `signature by ${toHex(key)} does not verify`);
    }
  }
}

// What the submitter's signature must sign: the record bytes, or for a
// batch envelope (step "batch_path" first) uint64_be(size) || batch root.
async function signedMessage(envelope, recordId) {
  if (envelope.batch === null) return concat(RECORD_DOMAIN, envelope.recordBytes);
  const { index, size, path } = envelope.batch;
  const leaf = await sha256(concat(Uint8Array.of(0), recordId));
  const root = await inclusionRoot(index, size, leaf, path, "batch_path");
  const sizeBytes = new Uint8Array(8);
  new DataView(sizeBytes.buffer).setBigUint64(0, size);
  return concat(BATCH_DOMAIN, sizeBytes, root);
}

// -- blocks (steps "header" .. "quorum") ------------------------------------

export function decodeHeader(bytes) {
  const value = decodeStep("header", bytes);
  const h = (m) => fail("header", `header: ${m}`);
  // Version 1 (§4), or 2 (§10.6: a block that commits verdicts) with one
  // more key, "verdicts", the root of the block's verdicts.
  if (!(value instanceof Map) || !value.has("v")) h("header must be a map with exactly the §4 keys");
  const version = value.get("v");
  if (version !== 1n && version !== 2n) h("unsupported header version");
  if (!mapHasKeys(value, version === 1n ? HEADER_KEYS : [...HEADER_KEYS, "verdicts"])) {
    h(`header version ${version} must be a map with exactly its keys (§4, §10.6)`);
  }
  if (typeof value.get("chain") !== "string") h("header chain must be a string");
  for (const k of ["height", "time", "proposer", "tx_count", "log_size"]) {
    if (!isBigUint(value.get(k))) h(`header ${k} must be a non-negative integer`);
  }
  if (value.get("height") < 1n) h("header height starts at 1");
  for (const k of ["prev", "tx_root", "log_root", "validators", "verdicts"]) {
    if ((k !== "verdicts" || value.has(k)) && !isBin(value.get(k), 32)) h(`header ${k} must be 32 bytes`);
  }
  return Object.fromEntries(value.entries());
}

async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

// RFC 9162 §2.1.3.2, as ledger/merkle.py's verify_inclusion.
export async function checkInclusion(index, size, leafHash, path, root) {
  const r = await inclusionRoot(index, size, leafHash, path, "inclusion");
  if (!equal(r, root)) fail("inclusion", "computed root does not match the expected root");
}

// The root ``path`` leads to (ledger/merkle.py's inclusion_root); fails at
// ``step`` if the path does not fit index and size.
export async function inclusionRoot(index, size, leafHash, path, step) {
  const f = (m) => fail(step, m);
  if (index >= size) f(`leaf index ${index} is not below tree size ${size}`);
  let fn = index;
  let sn = size - 1n;
  let r = leafHash;
  for (const p of path) {
    if (sn === 0n) f("inclusion path is too long");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while (fn !== 0n && (fn & 1n) === 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) f("inclusion path is too short");
  return r;
}

export async function checkCertificate(cert, header, headerHash, genesis) {
  if (!equal(cert.block, headerHash)) {
    fail("certificate_block", `certificate is for block ${toHex(cert.block)}, header hash is `
         + toHex(headerHash));
  }
  if (BigInt(cert.height) !== header.height) {
    fail("certificate_height", `certificate height ${cert.height} differs from header height `
         + header.height);
  }
  const vote = encodeCanonical(new Map([
    ["block", cert.block], ["chain", genesis.chain], ["height", BigInt(cert.height)],
    ["round", BigInt(cert.round)], ["type", "precommit"],
  ]));
  const message = concat(VOTE_DOMAIN, vote);
  const seen = new Set();
  const signers = [];
  for (const { validator, sig } of cert.signatures) {
    if (seen.has(validator)) fail("certificate", `validator ${validator} signed twice`);
    seen.add(validator);
    if (validator >= genesis.n) {
      fail("certificate", `validator ${validator}'s precommit: index is not in genesis`);
    }
    const v = genesis.validators[validator];
    if (!(await verifyEd25519(v.pubkey, message, sig))) {
      fail("certificate", `validator ${validator}'s precommit: signature does not verify`);
    }
    signers.push({ index: validator, name: v.name, fingerprint: await fingerprint(v.pubkey) });
  }
  if (seen.size < genesis.quorum) {
    fail("quorum", `${seen.size} distinct validators signed, quorum is ${genesis.quorum} of `
         + genesis.n);
  }
  return signers.sort((a, b) => a.index - b.index);
}

// -- the bundle -------------------------------------------------------------

// Verify ``bundle`` (parsed JSON) against ``genesis`` (from parseGenesis),
// with its verdict proof (§10.11, verdict.js: ``proven.verdict``). Resolves
// to what was proven; rejects with a VerificationError naming the first step
// that failed.
export async function verifyBundle(bundle, genesis, cache) {
  const { withVerdict } = await import("./verdict.js");
  return withVerdict(bundle, genesis, cache, verifyOwn);
}

async function verifyOwn(bundle, genesis, cache) {
  if (isObject(bundle) && bundle.format === BUNDLE_FORMAT_V2 && Object.hasOwn(bundle, "governance")) {
    // protocol §9.6 (without ``governance`` it is judged as version 1 and
    // fails at "format"); loaded when needed, as ledger/verify.py does
    const { verifyBundleV2 } = await import("./verify2.js");
    return verifyBundleV2(bundle, genesis, cache);
  }
  const parsed = parseBundle(bundle);
  if (parsed.chain !== genesis.chain) {
    fail("chain", `bundle is for chain ${parsed.chain}, genesis is ${genesis.chain}`);
  }
  const envelope = decodeEnvelope(parsed.envelope);
  const recordId = await sha256(envelope.recordBytes);
  if (!equal(recordId, parsed.recordId)) {
    fail("record_id", `H(record_bytes) is ${toHex(recordId)}, bundle says ${toHex(parsed.recordId)}`);
  }
  const record = envelope.record;
  if (record.chain !== genesis.chain) {
    fail("record_chain", `record is for chain ${record.chain}, genesis is ${genesis.chain}`);
  }
  const submitter = genesis.submitters.get(toHex(record.submitter));
  if (submitter === undefined) fail("submitter", "submitter is not in genesis");
  if (!submitter.roles.has("submit")) fail("role", `submitter ${submitter.name} lacks the 'submit' role`);
  if (envelope.batch !== null) await signedMessage(envelope, recordId);  // step "batch_path"
  await verifySignatures(envelope, recordId);
  const header = decodeHeader(parsed.header);
  if (header.chain !== genesis.chain) {
    fail("header_chain", `header is for chain ${header.chain}, genesis is ${genesis.chain}`);
  }
  if (!equal(header.validators, genesis.validatorsHash)) {
    fail("validators", "header validators differ from genesis");
  }
  if (BigInt(parsed.height) !== header.height) {
    fail("height", `bundle height ${parsed.height} but header height ${header.height}`);
  }
  const leafHash = await sha256(concat(Uint8Array.of(0), parsed.envelope));
  await checkInclusion(BigInt(parsed.leafIndex), header.log_size, leafHash, parsed.inclusion,
                       header.log_root);
  const headerHash = await sha256(parsed.header);
  const signers = await checkCertificate(parsed.certificate, header, headerHash, genesis);
  return { recordId: toHex(recordId), record, submitterName: submitter.name, header,
           headerHash: toHex(headerHash), leafIndex: parsed.leafIndex, signers, epoch: genesis,
           governance: 0 };
}

// The verdict as plain data: {ok, step?, message?, signers?}.
// ``cache`` (verify2.js epochCache, optional): governance walks already done.
export async function verdict(bundle, genesis, cache) {
  try {
    const proven = await verifyBundle(bundle, genesis, cache);
    return { ok: true, proven, signers: proven.signers };
  } catch (e) {
    if (e instanceof VerificationError) return { ok: false, step: e.step, message: e.message };
    return { ok: false, step: "bundle", message: String(e && e.message || e) };
  }
}

// A block as GET /v1/blocks answers it: its header (base64) certified by a
// quorum of ``genesis``'s validators (the header and certificate steps):
// the genesis, or the epoch in force at the block's height that an epoch
// proof derives (verify2.js epochAt).
export async function verifyCertifiedBlock(headerB64, certificateDoc, genesis) {
  try {
    let headerBytes;
    try { headerBytes = fromB64(headerB64); } catch (e) { fail("bundle", `header: ${e.message}`); }
    const cert = parseCertificate(certificateDoc);
    const header = decodeHeader(headerBytes);
    if (header.chain !== genesis.chain) fail("header_chain", "header is for another chain");
    if (!equal(header.validators, genesis.validatorsHash)) {
      fail("validators", "header validators differ from genesis");
    }
    const signers = await checkCertificate(cert, header, await sha256(headerBytes), genesis);
    return { ok: true, signers, header, epoch: genesis };
  } catch (e) {
    if (e instanceof VerificationError) return { ok: false, step: e.step, message: e.message };
    return { ok: false, step: "bundle", message: String(e && e.message || e) };
  }
}
