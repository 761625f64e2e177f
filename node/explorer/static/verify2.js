// Version 2 bundles (docs/protocol.md §9.6) and epoch proofs (§9.7) in the
// browser: from the first genesis alone, walk the governance records a
// bundle carries - each proven by its inclusion and a certificate of the
// validator set in force at its block, as derived so far - then judge the
// record against the membership and validator set in force at its height.
// The steps and their order are ledger/verify_epochs.py's V2_STEPS.

import { concat, equal, sha256, toHex } from "./bytes.js";
import {
  BUNDLE_FORMAT, BUNDLE_FORMAT_V2, VerificationError, checkCertificate, checkInclusion,
  decodeEnvelope, decodeHeader, fail, parseBundle, verifySignatures,
} from "./verify.js";
import { GovernanceError, Membership, checkRecordIn, epochOf, isGovernance } from "./epochs.js";

export const V2_STEPS = [
  "bundle", "format", "chain", "governance_bundle", "governance_order", "epoch_header",
  "epoch_inclusion", "epoch_certificate", "governance_record", "envelope", "record_id",
  "record_chain", "submitter", "role", "risk", "signature", "header", "header_chain", "validators",
  "height", "record_block", "inclusion", "certificate_block", "certificate_height",
  "certificate", "quorum",
];
const MAX_GOVERNANCE = 4096;
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// Run ``fn``; any refusal it raises is reported at ``step`` (with ``label``
// before its message), as verify_epochs.py re-raises under the entry's steps.
async function as(step, label, fn) {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof VerificationError || e instanceof GovernanceError) {
      throw new VerificationError(step, `${label}${e.message}`);
    }
    throw e;
  }
}

// Steps "bundle" and "format": the bundle's own fields, and governance as a list.
export function parseBundleV2(bundle) {
  if (!isObject(bundle)) fail("bundle", "bundle must be a JSON object");
  if (!Object.hasOwn(bundle, "format")) fail("bundle", "bundle has no 'format'");
  if (bundle.format !== BUNDLE_FORMAT_V2) {
    fail("format", `format ${JSON.stringify(bundle.format)} is not ${BUNDLE_FORMAT_V2}`);
  }
  const { governance, ...own } = bundle;
  if (!Object.hasOwn(bundle, "governance") || Object.keys(own).length !== 9) {
    fail("bundle", "bundle keys wrong: need the nine of §5 and governance");
  }
  if (!Array.isArray(governance) || governance.length > MAX_GOVERNANCE) {
    fail("bundle", `governance must be a list of at most ${MAX_GOVERNANCE} bundles`);
  }
  return [parseBundle({ ...own, format: BUNDLE_FORMAT }), governance];
}

const inBlock = (leafIndex, header) =>
  header.log_size - header.tx_count <= BigInt(leafIndex) && BigInt(leafIndex) < header.log_size;

// One governance entry, proven under ``membership`` and applied to it.
async function walkEntry(membership, entry, genesis, lastLeaf, label) {
  if (entry.chain !== genesis.chain) {
    fail("governance_bundle", `${label}bundle is for chain ${entry.chain}, genesis is ${genesis.chain}`);
  }
  if (entry.leafIndex <= lastLeaf) {
    fail("governance_order", `${label}leaf ${entry.leafIndex} does not follow leaf ${lastLeaf}`);
  }
  const epoch = await epochOf(membership.at(entry.height), genesis);
  const header = await as("epoch_header", label, () => checkHeader(entry.header, epoch, entry.height));
  if (!inBlock(entry.leafIndex, header)) {
    fail("governance_order", `${label}leaf ${entry.leafIndex} is not in block ${header.height}`);
  }
  const [envelope, recordId] = await as("governance_record", label, async () => {
    const env = decodeEnvelope(entry.envelope);
    const id = await sha256(env.recordBytes);
    if (!equal(id, entry.recordId)) fail("record_id", "H(record_bytes) is not the bundle's record_id");
    return [env, id];
  });
  await as("epoch_inclusion", label, async () => checkInclusion(
    BigInt(entry.leafIndex), header.log_size, await leafHash(entry.envelope), entry.inclusion,
    header.log_root));
  await as("epoch_certificate", label, async () => checkCertificate(
    entry.certificate, header, await sha256(entry.header), epoch));
  return as("governance_record", label, () => {
    if (!isGovernance(envelope.record)) fail("governance_record", `record kind ${envelope.record.kind} is not governance`);
    if (envelope.record.chain !== genesis.chain) fail("governance_record", "governance record for another chain");
    return membership.apply(entry.height, envelope, recordId);
  });
}

const leafHash = (envelopeBytes) => sha256(concat(Uint8Array.of(0), envelopeBytes));

// Steps "header", "header_chain", "validators" and "height" of a header
// against a validator set (genesis or a derived epoch).
function checkHeader(headerBytes, epoch, height) {
  const header = decodeHeader(headerBytes);
  if (header.chain !== epoch.chain) {
    fail("header_chain", `header is for chain ${header.chain}, genesis is ${epoch.chain}`);
  }
  if (!equal(header.validators, epoch.validatorsHash)) {
    fail("validators", `header validators ${toHex(header.validators)} differ from the set in force `
         + `at height ${header.height}`);
  }
  if (height !== undefined && BigInt(height) !== header.height) {
    fail("height", `bundle height ${height} but header height ${header.height}`);
  }
  return header;
}

// A cache of walks for one genesis (ledger/verify_epochs.py's EpochCache):
// the same prefix of governance records is in every bundle of a chain.
export function epochCache(genesis) { return { genesis, walks: new Map() }; }

async function entryKey(entry) {
  return `${entry.leafIndex}:${toHex(await leafHash(entry.envelope))}:${toHex(await sha256(entry.header))}`;
}

// The membership derived from genesis and the governance entries (steps
// governance_bundle to governance_record, entry by entry).
export async function walkGovernance(rawEntries, genesis, cache) {
  const entries = rawEntries.map((raw, i) => {
    try { return parseBundle(raw); } catch (e) {
      if (e instanceof VerificationError) throw new VerificationError("governance_bundle", `governance[${i}]: ${e.message}`);
      throw e;
    }
  });
  if (cache && cache.genesis !== genesis) throw new Error("an epoch cache belongs to its genesis");
  let membership = new Membership(genesis);
  const keys = [];
  let start = 0;
  if (cache) {
    const all = await Promise.all(entries.map(entryKey));
    for (let k = entries.length; k > 0; k--) {
      const hit = cache.walks.get(all.slice(0, k).join(","));
      if (hit) { membership = hit; start = k; keys.push(...all.slice(0, k)); break; }
    }
  }
  let lastLeaf = start ? entries[start - 1].leafIndex : -1;
  for (let i = start; i < entries.length; i++) {
    membership = await walkEntry(membership, entries[i], genesis, lastLeaf, `governance[${i}]: `);
    lastLeaf = entries[i].leafIndex;
    if (cache) {
      keys.push(await entryKey(entries[i]));
      cache.walks.set(keys.join(","), membership);
    }
  }
  return membership;
}

// Steps "submitter" to "signature" for the record itself, against the
// membership in force at its height (§9.4); resolves to the signer's name.
async function checkSigners(envelope, recordId, membership, height) {
  const state = membership.at(height);
  const record = envelope.record;
  if (isGovernance(record)) {
    const signers = new Set(envelope.signatures.map(([key]) => toHex(key)));
    for (const hex of signers) {
      if (!state.members.has(hex)) fail("submitter", `signer ${hex} is not a member at height ${height}`);
    }
    if (BigInt(signers.size) < state.threshold) {
      fail("submitter", `${signers.size} members signed, threshold ${state.threshold}`);
    }
    await verifySignatures(envelope, recordId);
    return state.members.get(toHex(record.submitter)).name;
  }
  let name;
  try {
    name = checkRecordIn(state, envelope, height);
  } catch (e) {
    // The step each refusal's class names in ledger/errors.py.
    const step = { forbidden_role: "role", bad_risk_record: "risk" }[e.code] || "submitter";
    if (e instanceof GovernanceError) fail(step, e.message);
    throw e;
  }
  await verifySignatures(envelope, recordId);
  return name;
}

// Verify an ``auditledger-proof/2`` bundle from the first genesis.
export async function verifyBundleV2(bundle, genesis, cache) {
  const [parsed, entries] = parseBundleV2(bundle);
  if (parsed.chain !== genesis.chain) {
    fail("chain", `bundle is for chain ${parsed.chain}, genesis is ${genesis.chain}`);
  }
  const membership = await walkGovernance(entries, genesis, cache);
  const envelope = decodeEnvelope(parsed.envelope);
  const recordId = await sha256(envelope.recordBytes);
  if (!equal(recordId, parsed.recordId)) {
    fail("record_id", `H(record_bytes) is ${toHex(recordId)}, bundle says ${toHex(parsed.recordId)}`);
  }
  if (envelope.record.chain !== genesis.chain) {
    fail("record_chain", `record is for chain ${envelope.record.chain}, genesis is ${genesis.chain}`);
  }
  const submitterName = await checkSigners(envelope, recordId, membership, parsed.height);
  const epoch = await epochOf(membership.at(parsed.height), genesis);
  const header = checkHeader(parsed.header, epoch, parsed.height);
  if (!inBlock(parsed.leafIndex, header)) {
    fail("record_block", `leaf ${parsed.leafIndex} is not in block ${header.height} (a version 2 `
         + "bundle is against the record's own block)");
  }
  await checkInclusion(BigInt(parsed.leafIndex), header.log_size, await leafHash(parsed.envelope),
                       parsed.inclusion, header.log_root);
  const headerHash = await sha256(parsed.header);
  const signers = await checkCertificate(parsed.certificate, header, headerHash, epoch);
  return { recordId: toHex(recordId), record: envelope.record, submitterName, header,
           headerHash: toHex(headerHash), leafIndex: parsed.leafIndex, signers, epoch,
           governance: entries.length, membership };
}

// The epoch proof (§9.7) a node's proof of the record that last changed the
// validators makes: its governance list followed by its own bundle as
// version 1.  Nothing in it is trusted: the walk proves or refuses it.
export function epochProofOf(proof) {
  if (!isObject(proof)) fail("bundle", "the proof of a governance record must be a JSON object");
  // its verdict proof (§10.11) is no part of an epoch proof's §5 entries
  const { verdict: _verdict, ...rest } = proof;
  if (proof.format === BUNDLE_FORMAT) return [rest];
  const { governance, ...own } = rest;
  if (proof.format !== BUNDLE_FORMAT_V2 || !Array.isArray(governance)) {
    fail("format", "the proof of a governance record is not a version 1 or 2 bundle");
  }
  return [...governance, { ...own, format: BUNDLE_FORMAT }];
}

// The validator set in force at ``height`` as the walk of ``entries``
// derives it (the genesis set for none).
export async function epochAt(entries, height, genesis, cache) {
  const membership = await walkGovernance(entries, genesis, cache);
  return epochOf(membership.at(height), genesis);
}
