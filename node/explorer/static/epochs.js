// Who may do what at each height (docs/protocol.md §9), in the browser:
// genesis plus the governance records a version 2 bundle or an epoch proof
// carries, applied at their effective heights.  A port of
// ledger/governance.py (actions, rule 1 and rule 7) and ledger/membership.py
// (history, rules 2-9, §9.4): the same input gives the same membership and
// refuses the same records, which tests/test_explorer_epochs.py checks.

import { equal, sha256, toHex } from "./bytes.js";
import { encodeCanonical } from "./msgpack.js";
import { verifySignatures } from "./verify.js";
import { RISK_PREFIX, RiskError, checkRiskRecord } from "./risk.js";
import { ENGINE_VERSION, MAX_COST, NAME, PolicyError, decodePolicy } from "./policy.js";

const UINT64_MAX = (1n << 64n) - 1n;
export const GOV_PREFIX = "gov.";
const MIN_VALIDATORS = 4;
const VALIDATOR_DELAY = 2;  // a validator-set change committed at H is in force from H + 2
const OTHER_DELAY = 1;      // every other action from H + 1
const SCOPES = ["submitter", "account", "system", "kind"];
const MAX_PARAMS = 16;
const MAX_ROLES = 16;
const HEX64 = /^[0-9a-f]{64}$/;
const MAX_LIST_ENTRIES = 4096;
// The bounds of the consensus params (ledger/params.py PARAM_BOUNDS; rule 1,
// param_out_of_range): tests/test_param_bounds.py checks this copy,
// tests/test_explorer_policy_gov.py that the page refuses as the ledger does.
const PARAM_BOUNDS = {
  timeout_propose_ms: [10n, 600000n],
  timeout_prevote_ms: [10n, 600000n],
  timeout_precommit_ms: [10n, 600000n],
  timeout_delta_ms: [0n, 600000n],
  max_block_records: [1n, 100000n],
};

// kind -> the body fields besides expires_height
const FIELDS = {
  "gov.submitter.add": ["name", "pubkey", "roles"],
  "gov.submitter.remove": ["pubkey"],
  "gov.submitter.roles": ["pubkey", "roles"],
  "gov.submitter.rotate": ["new_pubkey", "pubkey"],
  "gov.validator.add": ["address", "name", "pubkey"],
  "gov.validator.remove": ["pubkey"],
  "gov.validator.rotate": ["new_pubkey", "pubkey"],
  "gov.member.add": ["name", "pubkey"],
  "gov.member.remove": ["pubkey"],
  "gov.threshold.set": ["threshold"],
  "gov.params.set": ["params"],
  "gov.scope.pause": ["scope", "value"],
  "gov.scope.resume": ["scope", "value"],
  "gov.policy.set": ["policy"],
  "gov.list.add": ["entries", "list"],
  "gov.list.remove": ["entries", "list"],
};

// A refusal with the code ledger/errors.py gives it; the caller names the step.
export class GovernanceError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}
const refuse = (code, message) => { throw new GovernanceError(code, message); };
const bad = (message) => refuse("bad_governance", message);

const chars = (s) => [...s].length;  // code points, as Python's len()
const isUint = (v) => typeof v === "bigint" && v >= 0n && v <= UINT64_MAX;
const isBin = (v, n) => v instanceof Uint8Array && v.length === n;

// Python's string order (code points), not UTF-16 units.
function cmpStr(a, b) {
  const x = [...a].map((c) => c.codePointAt(0));
  const y = [...b].map((c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

export const isGovernance = (record) => record.kind.startsWith(GOV_PREFIX);

// A gov.policy.set body's policy (policy.js), refused with the code
// ledger/policy/cel.py's BadPolicy has.
function policyOf(bytes) {
  try {
    return decodePolicy(bytes);
  } catch (e) {
    if (e instanceof PolicyError) refuse("bad_policy", e.message);
    throw e;
  }
}

// -- rule 1: the action -------------------------------------------------------

function fieldOk(name, value) {
  switch (name) {
    case "pubkey": case "new_pubkey": return isBin(value, 32);
    case "name": return typeof value === "string" && chars(value) >= 1 && chars(value) <= 64;
    case "address": return typeof value === "string" && chars(value) <= 255;
    case "roles": {
      if (!Array.isArray(value) || value.length < 1 || value.length > MAX_ROLES) return false;
      if (!value.every((r) => typeof r === "string" && chars(r) >= 1 && chars(r) <= 64)) return false;
      return value.every((r, i) => i === 0 || cmpStr(value[i - 1], r) < 0);  // sorted, distinct
    }
    case "threshold": return isUint(value);
    case "params":
      return value instanceof Map && value.size >= 1 && value.size <= MAX_PARAMS
        && [...value].every(([k, v]) => chars(k) >= 1 && chars(k) <= 64 && isUint(v));
    case "scope": return SCOPES.includes(value);
    case "value": return typeof value === "string" && chars(value) >= 1 && chars(value) <= 255;
    case "policy": policyOf(value); return true;
    case "list": return typeof value === "string" && NAME.test(value);
    case "entries":
      return Array.isArray(value) && value.length >= 1 && value.length <= MAX_LIST_ENTRIES
        && value.every((e) => typeof e === "string" && chars(e) >= 1 && chars(e) <= 255)
        && value.every((e, i) => i === 0 || cmpStr(value[i - 1], e) < 0);
    default: throw new Error(name);
  }
}

export function parseAction(record) {
  const fields = FIELDS[record.kind];
  if (!Object.hasOwn(FIELDS, record.kind)) bad(`unknown governance kind ${record.kind}`);
  const body = record.body;
  const expected = [...fields, "expires_height"];
  if (body.size !== expected.length || !expected.every((k) => body.has(k))) {
    bad(`${record.kind} body needs exactly ${[...expected].sort().join(", ")}`);
  }
  if (!isUint(body.get("expires_height"))) bad("body field 'expires_height' must be an integer");
  for (const name of fields) if (!fieldOk(name, body.get(name))) bad(`body field '${name}' is malformed`);
  if (record.kind.startsWith("gov.scope.") && body.get("scope") === "submitter"
      && !HEX64.test(body.get("value"))) {
    bad("a submitter scope's value is its key in lowercase hex");
  }
  if (body.has("new_pubkey") && equal(body.get("new_pubkey"), body.get("pubkey"))) {
    bad("a rotation needs a different key");
  }
  if (record.kind === "gov.params.set") {
    for (const name of [...body.get("params").keys()].sort(cmpStr)) {
      if (!Object.hasOwn(PARAM_BOUNDS, name)) continue;
      const [lo, hi] = PARAM_BOUNDS[name];
      const v = body.get("params").get(name);
      if (v < lo || v > hi) {
        refuse("param_out_of_range", `param ${name} must be an integer in ${lo}..${hi}, got ${v}`);
      }
    }
  }
  return { kind: record.kind, body, expiresHeight: body.get("expires_height"),
           changesValidators: record.kind.startsWith("gov.validator.") };
}

// What an action changes, for the conflict rule (rule 6), as strings.
function targets(action) {
  const b = action.body;
  if (action.changesValidators) return ["validators"];
  if (action.kind.startsWith("gov.member.") || action.kind === "gov.threshold.set") return ["members"];
  if (action.kind.startsWith("gov.submitter.")) {
    const keys = [`submitter/${toHex(b.get("pubkey"))}`];
    if (b.has("new_pubkey")) keys.push(`submitter/${toHex(b.get("new_pubkey"))}`);
    return keys;
  }
  if (action.kind === "gov.params.set") return [...b.get("params").keys()].map((k) => `param/${k}`);
  if (action.kind === "gov.policy.set") return ["policy"];
  if (action.kind.startsWith("gov.list.")) return b.get("entries").map((e) => `list\0${b.get("list")}\0${e}`);
  return [`scope/${b.get("scope")}/${b.get("value")}`];
}

// -- rule 7: each kind's effect on a state --------------------------------------

// A state: {validators: [{name, pubkey, address}], submitters: Map(hex ->
// {name, pubkey, roles: Set}), members: Map(hex -> {name, pubkey}),
// threshold: BigInt, paused: Set("scope\0value"), rotatedOut: Set(hex),
// params: Map(name -> value), policyVersion: BigInt (0n: none installed)}.
const copy = (s) => ({ validators: [...s.validators], submitters: new Map(s.submitters),
                       members: new Map(s.members), threshold: s.threshold,
                       paused: new Set(s.paused), rotatedOut: new Set(s.rotatedOut),
                       params: new Map(s.params), policyVersion: s.policyVersion });

function existingSubmitter(s, hex) {
  if (!s.submitters.has(hex)) bad(`${hex} is not a submitter`);
  return s.submitters.get(hex);
}

function validatorPosition(s, key) {
  const i = s.validators.findIndex((v) => equal(v.pubkey, key));
  if (i < 0) bad(`${toHex(key)} is not a validator`);
  return i;
}

function validatorKeyFree(s, key) {
  if (s.validators.some((v) => equal(v.pubkey, key))) bad(`${toHex(key)} is already a validator`);
}

const APPLY = {
  "gov.submitter.add": (s, b) => {
    const hex = toHex(b.get("pubkey"));
    if (s.submitters.has(hex) || s.rotatedOut.has(hex)) bad(`submitter ${hex} exists or was rotated out`);
    s.submitters.set(hex, { name: b.get("name"), pubkey: b.get("pubkey"), roles: new Set(b.get("roles")) });
  },
  "gov.submitter.remove": (s, b) => {
    const hex = toHex(b.get("pubkey"));
    existingSubmitter(s, hex);
    s.submitters.delete(hex);
  },
  "gov.submitter.roles": (s, b) => {
    const hex = toHex(b.get("pubkey"));
    s.submitters.set(hex, { ...existingSubmitter(s, hex), roles: new Set(b.get("roles")) });
  },
  "gov.submitter.rotate": (s, b) => {
    const hex = toHex(b.get("pubkey"));
    const old = existingSubmitter(s, hex);
    const next = toHex(b.get("new_pubkey"));
    if (s.submitters.has(next) || s.rotatedOut.has(next)) bad(`key ${next} is in use or was rotated out`);
    s.submitters.delete(hex);
    s.submitters.set(next, { ...old, pubkey: b.get("new_pubkey") });
    s.rotatedOut.add(hex);
  },
  "gov.validator.add": (s, b) => {
    validatorKeyFree(s, b.get("pubkey"));
    s.validators.push({ name: b.get("name"), pubkey: b.get("pubkey"), address: b.get("address") });
  },
  "gov.validator.remove": (s, b) => { s.validators.splice(validatorPosition(s, b.get("pubkey")), 1); },
  "gov.validator.rotate": (s, b) => {
    const i = validatorPosition(s, b.get("pubkey"));
    validatorKeyFree(s, b.get("new_pubkey"));
    s.validators[i] = { ...s.validators[i], pubkey: b.get("new_pubkey") };
  },
  "gov.member.add": (s, b) => {
    const hex = toHex(b.get("pubkey"));
    if (s.members.has(hex)) bad(`${hex} is already a member`);
    s.members.set(hex, { name: b.get("name"), pubkey: b.get("pubkey") });
  },
  "gov.member.remove": (s, b) => {
    const hex = toHex(b.get("pubkey"));
    if (!s.members.has(hex)) bad(`${hex} is not a member`);
    s.members.delete(hex);
  },
  "gov.threshold.set": (s, b) => { s.threshold = b.get("threshold"); },
  "gov.params.set": (s, b) => { for (const [k, v] of b.get("params")) s.params.set(k, v); },
  "gov.scope.pause": (s, b) => {
    const scope = `${b.get("scope")}\0${b.get("value")}`;
    if (s.paused.has(scope)) bad(`${b.get("scope")} ${b.get("value")} is already paused`);
    s.paused.add(scope);
  },
  "gov.scope.resume": (s, b) => {
    const scope = `${b.get("scope")}\0${b.get("value")}`;
    if (!s.paused.has(scope)) bad(`${b.get("scope")} ${b.get("value")} is not paused`);
    s.paused.delete(scope);
  },
  "gov.policy.set": (s, b) => {  // ledger/governance.py's _policy_set
    const policy = policyOf(b.get("policy"));
    const param = (name, dflt) => (s.params.has(name) ? s.params.get(name) : dflt);
    const engine = param("policy_engine", ENGINE_VERSION);
    const numeric = typeof engine === "bigint" || typeof engine === "number";
    if (!numeric || policy.engine != engine) {  // eslint-disable-line eqeqeq -- Python's int == float
      refuse("bad_policy", `the policy is for engine ${policy.engine}, the chain's param policy_engine is ${engine}`);
    }
    const maxCost = param("policy_max_cost", MAX_COST);
    if (policy.cost > maxCost) {
      refuse("bad_policy", `the policy's worst-case cost ${policy.cost} exceeds the chain's param policy_max_cost ${maxCost}`);
    }
    if (policy.version <= s.policyVersion) {
      refuse("bad_policy", `policy version ${policy.version} is not above the version installed, ${s.policyVersion}`);
    }
    s.policyVersion = policy.version;
  },
  // Lists live in the policy state, not in the membership (ledger/governance.py).
  "gov.list.add": () => {},
  "gov.list.remove": () => {},
};

function applyAction(state, action) {
  const next = copy(state);
  APPLY[action.kind](next, action.body);
  return next;
}

// -- the membership -------------------------------------------------------------

export function genesisState(genesis) {
  return {
    validators: genesis.validators.map((v) => ({ name: v.name, pubkey: v.pubkey, address: v.address })),
    submitters: new Map([...genesis.submitters].map(([hex, s]) => [hex, { ...s }])),
    members: new Map(genesis.members),
    threshold: genesis.threshold,
    paused: new Set(),
    rotatedOut: new Set(),
    params: new Map(genesis.params || []),
    policyVersion: 0n,
  };
}

export class Membership {
  constructor(genesis, changes = [], height = 0) {
    this.genesis = genesis;
    this.changes = changes;  // [{committed, effective, recordId, action}] in log order
    this.height = height;
  }

  fold(changes) {
    let state = genesisState(this.genesis);
    for (const c of changes) state = applyAction(state, c.action);
    return state;
  }

  at(height) { return this.fold(this.changes.filter((c) => c.effective <= height)); }

  projected() { return this.fold(this.changes); }

  // Rules 1-9 of §9.3 for a governance record in a block of ``height``.
  async checkGovernance(envelope, recordId, height) {
    const action = parseAction(envelope.record);                       // rule 1
    await verifySignatures(envelope, recordId);                        // rule 2
    const inForce = this.at(height);
    const signers = envelope.signatures.map(([key]) => toHex(key));
    for (const hex of signers) {                                       // rule 3
      if (!inForce.members.has(hex)) refuse("not_a_member", `signer ${hex} is not a member at height ${height}`);
    }
    const distinct = new Set(signers).size;
    if (BigInt(distinct) < inForce.threshold || inForce.members.size === 0) {  // rule 4
      refuse("too_few_signatures", `${distinct} distinct members signed, the threshold at `
             + `height ${height} is ${inForce.threshold}`);
    }
    if (BigInt(height) > action.expiresHeight) {                         // rule 5
      refuse("proposal_expired", `expires at height ${action.expiresHeight}, committed at ${height}`);
    }
    const effective = height + (action.changesValidators ? VALIDATOR_DELAY : OTHER_DELAY);
    const mine = targets(action);
    for (const earlier of this.changes) {                              // rule 6
      if (earlier.effective === effective && targets(earlier.action).some((t) => mine.includes(t))) {
        refuse("conflicting_proposal", `record ${toHex(earlier.recordId)} changes the same target `
               + `at height ${effective}`);
      }
    }
    const after = applyAction(this.projected(), action);               // rule 7
    if (after.validators.length < MIN_VALIDATORS) {                    // rule 8
      refuse("too_few_validators", `the change leaves ${after.validators.length} validators, `
             + `at least ${MIN_VALIDATORS} are needed`);
    }
    if (after.threshold < 1n || after.threshold > BigInt(after.members.size)) {  // rule 9
      refuse("unreachable_threshold", `threshold ${after.threshold} with ${after.members.size} members`);
    }
    return { committed: height, effective, recordId, action };
  }

  // The membership after one governance record committed at ``height``.
  async apply(height, envelope, recordId) {
    if (height < this.height) bad(`block ${height} applied after block ${this.height}`);
    const change = await this.checkGovernance(envelope, recordId, height);
    return new Membership(this.genesis, [...this.changes, change], height);
  }
}

// §9.4: a non-governance record in a block of ``height`` against ``state``,
// the membership in force there.  Resolves to the submitter's name; the
// error's code says which rule refused it (verify2.js names the step).
export function checkRecordIn(state, envelope, height) {
  const record = envelope.record;
  const hex = toHex(record.submitter);
  if (state.rotatedOut.has(hex)) refuse("key_rotated", `submitter key ${hex} was rotated out before height ${height}`);
  const submitter = state.submitters.get(hex);
  if (submitter === undefined) refuse("unknown_submitter", `submitter ${hex} is not a submitter at height ${height}`);
  if (!submitter.roles.has("submit")) refuse("forbidden_role", `submitter ${submitter.name} lacks the 'submit' role`);
  if (record.kind.startsWith(RISK_PREFIX)) {
    try { checkRiskRecord(record, submitter); } catch (e) {
      if (e instanceof RiskError) refuse(e.code, e.message);
      throw e;
    }
  }
  const candidates = [["submitter", hex], ["kind", record.kind]];
  if (record.origin.has("account")) candidates.push(["account", record.origin.get("account")]);
  if (record.origin.has("system")) candidates.push(["system", record.origin.get("system")]);
  for (const [scope, value] of candidates) {
    if (state.paused.has(`${scope}\0${value}`)) refuse("paused", `${scope} ${value} is paused at height ${height}`);
  }
  for (const [key] of envelope.signatures.slice(1)) {
    const k = toHex(key);
    if (!state.submitters.has(k) && !state.members.has(k)) {
      refuse("unknown_submitter", `co-signer ${k} is neither a submitter nor a member at height ${height}`);
    }
  }
  return submitter.name;
}

// The validator set of a state in the shape verify.js checks headers and
// certificates against (the shape parseGenesis gives).
export async function epochOf(state, genesis) {
  const validators = await Promise.all(state.validators.map(async (v, index) => ({
    index, name: v.name, pubkey: v.pubkey, hex: toHex(v.pubkey), address: v.address })));
  const n = validators.length;
  return { ...genesis, validators, n, quorum: Math.floor((2 * n) / 3) + 1,
           validatorsHash: await sha256(encodeCanonical(validators.map((v) => v.pubkey))) };
}
