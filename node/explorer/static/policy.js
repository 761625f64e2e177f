// A gov.policy.set record's policy bytes (docs/protocol.md §10.2), checked
// in the browser as ledger/policy/rules.py's decode_policy does - the
// domain, canonical MessagePack, every field, the lexical rules of
// ledger/policy/cel.py (no floats, only the allowed functions, no nested
// comprehensions, windows and lookups the policy declares) and the static
// cost - except one step: the page does not compile the CEL rules (cel-cpp
// does that in the validators).  A policy that passes here but does not
// compile was refused by every honest validator, so its record is in no
// certified block.

import { equal } from "./bytes.js";
import { decodeCanonical, encodeCanonical } from "./msgpack.js";

export const POLICY_DOMAIN = new TextEncoder().encode("auditledger/policy/v1\n");
export const ENGINE_VERSION = 1n;
export const MAX_COST = 1000000n;  // the default of the chain param policy_max_cost
const MAX_POLICY_BYTES = 6 * 1024;
const MAX_RULES = 64;
const MAX_WINDOWS = 16;
const MAX_LOOKUPS = 16;
const MAX_KINDS = 16;
const MAX_WINDOW_MS = 2n ** 32n;
const UINT64_MAX = (1n << 64n) - 1n;
export const NAME = /^[a-z][a-z0-9_]{0,63}$/u;
const FIELD = /^(kind|submitter|(origin|body)\.[A-Za-z_][A-Za-z0-9_]{0,63})$/u;
const KIND = /^[!-~]{1,64}$/u;
const OUTCOME_KEYS = { allow: ["outcome"], review: ["outcome", "reason"],
                       deny: ["outcome", "reason"], approve: ["approvals", "outcome", "role"] };
const ROOTS = ["block", "listed", "record", "risk", "submitter", "velocity"];
const FUNCTIONS = ["size", "has", "int", "string", "contains", "startsWith", "endsWith", "all",
                   "exists", "exists_one", "map", "filter", "lowerAscii", "upperAscii"];
const MACROS = ["all", "exists", "exists_one", "map", "filter"];
const MAX_RULE_CHARS = 2048;
const COMPREHENSION_FACTOR = 8192;

export class PolicyError extends Error {}
const fail = (where, message) => { throw new PolicyError(where ? `${where}: ${message}` : message); };

const chars = (s) => [...s].length;  // code points, as Python's len()
const isMap = (v) => v instanceof Map;
const keysOf = (m) => [...m.keys()];
const subset = (a, b) => a.every((k) => b.includes(k));

function str(value, where, pattern, limit = 64) {
  if (typeof value !== "string" || chars(value) < 1 || chars(value) > limit) {
    fail(where, `must be a string of 1..${limit} characters`);
  }
  if (pattern && !pattern.test(value)) fail(where, `${JSON.stringify(value)} does not match ${pattern.source}`);
  return value;
}

function uint(value, where, low = 0n, high = UINT64_MAX) {
  if (typeof value !== "bigint" || value < low || value > high) fail(where, `must be an integer in ${low}..${high}`);
  return value;
}

function kinds(value, where) {
  if (value === null || value === undefined) return null;
  if (!Array.isArray(value) || value.length < 1 || value.length > MAX_KINDS) {
    fail(where, `must be a list of 1..${MAX_KINDS} kinds`);
  }
  for (const k of value) str(k, where, KIND);
  if (value.some((k) => k.startsWith("gov."))) fail(where, "governance records are never judged by a policy");
  if (!value.every((k, i) => i === 0 || value[i - 1] < k)) fail(where, "kinds must be distinct and in ascending order");
  return value;  // printable ASCII: UTF-16 order is Python's order
}

// [the outcome, its map as the policy bytes hold it]
function outcome(value, where) {
  if (typeof value === "string") value = new Map([["outcome", value]]);
  if (!isMap(value) || !Object.hasOwn(OUTCOME_KEYS, value.get("outcome"))) {
    fail(where, "must be allow, review, deny or {outcome: ..., ...}");
  }
  const kind = value.get("outcome");
  const allowed = OUTCOME_KEYS[kind];
  if (!subset(keysOf(value), allowed) || (kind === "approve" && value.size !== allowed.length)) {
    fail(where, `${kind} takes exactly ${allowed.join(", ")}`);
  }
  if (value.has("reason")) str(value.get("reason"), `${where}.reason`, NAME);
  if (kind === "approve") {
    uint(value.get("approvals"), `${where}.approvals`, 1n, 32n);
    str(value.get("role"), `${where}.role`);
  }
  return value;
}

const field = (value, where) => str(value, where, FIELD, 70);

// -- the lexer of ledger/policy/cel.py ---------------------------------------

// Python's \s and \d are Unicode's; [^\n] stands for Python's "." .
const TOKEN = new RegExp([
  String.raw`(?<ws>[\s\x1c-\x1f\x85]+)`,
  String.raw`(?<str>[rRbB]{0,2}(?:'''(?:\\[^\n]|[^\\])*?'''|"""(?:\\[^\n]|[^\\])*?"""|'(?:\\[^\n]|[^'\\\n])*'|"(?:\\[^\n]|[^"\\\n])*"))`,
  String.raw`(?<float>(?:\p{Nd}+\.\p{Nd}*|\.\p{Nd}+|\p{Nd}+)[eE][+-]?\p{Nd}+|\p{Nd}+\.\p{Nd}*|\.\p{Nd}+)`,
  String.raw`(?<num>0[xX][0-9a-fA-F]+[uU]?|\p{Nd}+[uU]?)`,
  String.raw`(?<ident>[A-Za-z_][A-Za-z0-9_]*)`,
  String.raw`(?<op>&&|\|\||<=|>=|==|!=|[\-+*/%<>!?:.,()\[\]{}])`,
].join("|"), "uy");

export function tokenize(source) {
  const out = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < source.length) {
    const at = TOKEN.lastIndex;
    const m = TOKEN.exec(source);
    if (m === null) throw new PolicyError(`column ${at + 1}: unexpected character ${JSON.stringify(source.codePointAt(at))}`);
    const kind = Object.entries(m.groups).find(([, v]) => v !== undefined)[0];
    if (kind !== "ws") out.push({ kind, text: m[0], pos: at });
  }
  return out;
}

// What ``source`` reads (paths from a root), after its lexical checks.
function analyse(source) {
  if (!source.trim() || chars(source) > MAX_RULE_CHARS) throw new PolicyError(`a rule is 1..${MAX_RULE_CHARS} characters`);
  const toks = tokenize(source);
  const at = (i) => (i >= 0 && i < toks.length ? toks[i] : null);
  const paths = [];
  const depth = [];  // paren depth at which each open comprehension started
  let paren = 0;
  for (let i = 0; i < toks.length;) {
    const tok = toks[i];
    if (tok.kind === "float") throw new PolicyError(`column ${tok.pos + 1}: floats are not allowed (${tok.text})`);
    if (tok.text === "(") paren += 1;
    else if (tok.text === ")") {
      paren -= 1;
      while (depth.length && depth[depth.length - 1] > paren) depth.pop();
    }
    if (tok.kind !== "ident") { i += 1; continue; }
    const after = at(i + 1);
    const before = at(i - 1);
    if (after !== null && after.text === "(") {
      if (!FUNCTIONS.includes(tok.text)) throw new PolicyError(`column ${tok.pos + 1}: function '${tok.text}' is not allowed`);
      if (MACROS.includes(tok.text) && before !== null && before.text === ".") {
        if (depth.length) throw new PolicyError(`column ${tok.pos + 1}: nested comprehensions are not allowed`);
        const v = at(i + 2);
        if (v !== null && v.kind === "ident" && ROOTS.includes(v.text)) {
          throw new PolicyError(`column ${v.pos + 1}: '${v.text}' names an input`);
        }
        depth.push(paren + 1);
      }
      i += 1;
      continue;
    }
    if (!ROOTS.includes(tok.text) || (before !== null && before.text === ".")) { i += 1; continue; }
    let j = i;
    const parts = [tok.text];
    while (at(j + 1) !== null && at(j + 1).text === "." && at(j + 2) !== null && at(j + 2).kind === "ident") {
      if (at(j + 3) !== null && at(j + 3).text === "(") break;
      parts.push(at(j + 2).text);
      j += 2;
    }
    paths.push(parts);
    i = j + 1;
  }
  return paths;
}

// One rule's lexical verdict and cost, for tests/test_explorer_policy_gov.py
// (ledger/policy/cel.py's analyse and rule_cost): {ok, cost} or {ok, error}.
export function lexRule(source) {
  try {
    const paths = [...new Set(analyse(source).map((p) => p.join(".")))].sort();
    return { ok: true, paths, cost: Number(ruleCost(source)) };
  } catch (e) {
    if (e instanceof PolicyError) return { ok: false };
    throw e;
  }
}

export function ruleCost(source) {
  let cost = 0n;
  const toks = tokenize(source);
  const inside = [];
  let paren = 0;
  toks.forEach((tok, i) => {
    if (tok.text === "(") {
      paren += 1;
      if (i >= 2 && MACROS.includes(toks[i - 1].text) && toks[i - 2].text === ".") inside.push(paren);
    } else if (tok.text === ")") {
      if (inside.length && inside[inside.length - 1] === paren) inside.pop();
      paren -= 1;
    }
    cost += inside.length ? BigInt(COMPREHENSION_FACTOR) : 1n;
  });
  return cost;
}

function checkPath(path, windows, lookups, where) {
  const [root] = path;
  if (root === "velocity" && path.length >= 2) {
    if (!windows.has(path[1])) fail(where, `velocity.${path[1]} is not a window of this policy`);
    if (path.length >= 3 && !["count", "sum"].includes(path[2])) fail(where, `a window has count and sum, not '${path[2]}'`);
  }
  if (root === "listed" && path.length >= 2 && !lookups.has(path[1])) {
    fail(where, `listed.${path[1]} is not a lookup of this policy`);
  }
}

// -- the policy ----------------------------------------------------------------

function fromDoc(doc) {
  if (!isMap(doc)) fail("", "a policy is a map");
  const known = ["name", "version", "engine", "default", "rules", "windows", "lookups"];
  if (!subset(keysOf(doc), known) || !subset(["name", "version", "rules"], keysOf(doc))) {
    fail("", "a policy has name, version, rules and optionally engine, default, windows, lookups");
  }
  const name = str(doc.get("name"), "name", NAME);
  const version = uint(doc.get("version"), "version", 1n);
  const engine = uint(doc.has("engine") ? doc.get("engine") : ENGINE_VERSION, "engine", 1n);
  if (engine !== ENGINE_VERSION) fail("", `engine ${engine} is not this page's policy engine (${ENGINE_VERSION})`);
  const dflt = outcome(doc.has("default") ? doc.get("default") : "allow", "default");
  const windowsDoc = doc.has("windows") ? doc.get("windows") : new Map();
  if (!isMap(windowsDoc) || windowsDoc.size > MAX_WINDOWS) fail("", `windows is a map of at most ${MAX_WINDOWS}`);
  for (const [wname, w] of windowsDoc) {
    const where = `windows.${wname}`;
    str(wname, where, NAME);
    if (!isMap(w) || !subset(keysOf(w), ["by", "ms", "kinds"]) || !w.has("by") || !w.has("ms")) {
      fail(where, "has by, ms and optionally kinds");
    }
    field(w.get("by"), `${where}.by`);
    uint(w.get("ms"), `${where}.ms`, 1n, MAX_WINDOW_MS);
    kinds(w.get("kinds"), `${where}.kinds`);
  }
  const lookupsDoc = doc.has("lookups") ? doc.get("lookups") : new Map();
  if (!isMap(lookupsDoc) || lookupsDoc.size > MAX_LOOKUPS) fail("", `lookups is a map of at most ${MAX_LOOKUPS}`);
  const lookups = new Map();
  for (const [lname, lk] of lookupsDoc) {
    const where = `lookups.${lname}`;
    str(lname, where, NAME);
    if (!isMap(lk) || lk.size !== 2 || !lk.has("list") || !lk.has("key")) fail(where, "has exactly list and key");
    const key = lk.get("key");
    if (!Array.isArray(key) || key.length < 1 || key.length > 4) fail(`${where}.key`, "is a list of 1..4 fields");
    str(lk.get("list"), `${where}.list`, NAME);
    for (const f of key) field(f, `${where}.key`);
    lookups.set(lname, new Map([["key", key], ["list", lk.get("list")]]));
  }
  const rulesDoc = doc.get("rules");
  if (!Array.isArray(rulesDoc) || rulesDoc.length < 1 || rulesDoc.length > MAX_RULES) {
    fail("", `rules is a list of 1..${MAX_RULES}`);
  }
  const rules = [];
  const seen = new Set();
  let cost = 0n;
  rulesDoc.forEach((r, i) => {
    let where = `rules[${i}]`;
    if (!isMap(r) || !subset(keysOf(r), ["name", "when", "then", "kinds"])
        || !subset(["name", "when", "then"], keysOf(r))) {
      fail(where, "has name, when, then and optionally kinds");
    }
    const rname = str(r.get("name"), `${where}.name`, NAME);
    if (seen.has(rname)) fail(where, `rule name '${rname}' repeats`);
    seen.add(rname);
    where = `rule '${rname}'`;
    const when = r.get("when");
    if (typeof when !== "string") fail(where, "when must be a CEL expression");
    let paths;
    try { paths = analyse(when); } catch (e) {
      if (e instanceof PolicyError) fail(where, e.message);
      throw e;
    }
    for (const path of paths) checkPath(path, windowsDoc, lookups, where);
    cost += ruleCost(when);
    const then = outcome(r.get("then"), `${where}.then`);
    const k = kinds(r.get("kinds"), `${where}.kinds`);
    const entry = new Map([["name", rname], ["then", then], ["when", when]]);
    if (k !== null) entry.set("kinds", k);
    rules.push(entry);
  });
  if (cost > MAX_COST) fail("", `the policy's worst-case cost ${cost} exceeds ${MAX_COST}`);
  const body = new Map([["default", dflt], ["engine", engine], ["lookups", lookups], ["name", name],
                        ["rules", rules], ["version", version], ["windows", windowsDoc]]);
  const bytes = new Uint8Array([...POLICY_DOMAIN, ...encodeCanonical(body)]);
  if (bytes.length > MAX_POLICY_BYTES) fail("", `the policy is ${bytes.length} bytes, at most ${MAX_POLICY_BYTES}`);
  return { name, version, engine, cost, bytes };
}

// The policy of ``data`` (a gov.policy.set body's ``policy``): {name,
// version, engine, cost}; PolicyError says what is wrong.
export function decodePolicy(data) {
  if (!(data instanceof Uint8Array) || data.length > MAX_POLICY_BYTES) {
    fail("", `body field 'policy' is bytes, at most ${MAX_POLICY_BYTES}`);
  }
  if (!equal(data.subarray(0, POLICY_DOMAIN.length), POLICY_DOMAIN)) fail("", "policy bytes start with the policy domain");
  let doc;
  try { doc = decodeCanonical(data.subarray(POLICY_DOMAIN.length)); } catch (e) {
    fail("", `policy bytes: ${e.message}`);
  }
  const policy = fromDoc(doc);
  if (!equal(policy.bytes, data)) fail("", "policy bytes are not in canonical form");
  return policy;
}
