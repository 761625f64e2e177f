// The reserved risk.* record kinds (docs/protocol.md §12.2) in the browser:
// a port of ledger/risk.py's check_risk_record, judged in a version 2
// bundle against the membership in force at the record's height (epochs.js
// checkRecordIn), and the one-line summary the record page shows of them.

const ALERT = "risk.alert";
const TIER = "risk.tier";
const BREAKER_CLOSE = "risk.breaker.close";
const DECISION = "risk.decision";
export const RISK_PREFIX = "risk.";
const REVIEW_KINDS = [BREAKER_CLOSE, DECISION];
const DECISIONS = ["approve", "reject", "escalate"];
const BREAKER_SCOPES = ["account", "submitter", "system", "kind", "country"];
const TIERS = ["low", "medium", "high"];
const MAX_NOTE = 256;
const MAX_DECISION_PARENTS = 16;
const SCORE_MAX = 1000000n;
const MAX_REASONS = 16;
const MAX_POINTS = 1000000n;

export class RiskError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}
const bad = (message) => { throw new RiskError("bad_risk_record", message); };
const chars = (s) => [...s].length;

function text(value, what, longest = 64) {
  if (typeof value !== "string" || chars(value) < 1 || chars(value) > longest) {
    bad(`${what} must be a string of 1..${longest} characters`);
  }
}

function uint(value, what, top) {
  if (typeof value !== "bigint" || value < 0n || value > top) bad(`${what} must be an integer in 0..${top}`);
}

function exact(body, keys, kind) {
  if (body.size !== keys.length || !keys.every((k) => body.has(k))) {
    bad(`${kind} body needs exactly ${[...keys].sort().join(", ")}`);
  }
}

function reasons(value) {
  if (!Array.isArray(value) || value.length < 1 || value.length > MAX_REASONS) {
    bad(`reasons must be a list of 1..${MAX_REASONS} entries`);
  }
  for (const entry of value) {
    if (!(entry instanceof Map) || entry.size !== 2 || !entry.has("feature") || !entry.has("points")) {
      bad("each reason is exactly {feature, points}");
    }
    text(entry.get("feature"), "a reason's feature");
    uint(entry.get("points"), "a reason's points", MAX_POINTS);
  }
}

function checkBody(record) {
  const body = record.body;
  switch (record.kind) {
    case ALERT:
      exact(body, ["score", "reasons", "detector", "version"], ALERT);
      uint(body.get("score"), "score", SCORE_MAX);
      reasons(body.get("reasons"));
      text(body.get("detector"), "detector");
      text(body.get("version"), "version");
      if (record.parents.length !== 1) bad("an alert names exactly one parent: the flagged record");
      break;
    case TIER:
      exact(body, ["tier", "detector", "version"], TIER);
      if (!TIERS.includes(body.get("tier"))) bad(`tier must be one of ${TIERS.join(", ")}`);
      text(body.get("detector"), "detector");
      text(body.get("version"), "version");
      if (!record.origin.get("account")) bad("a risk tier names its account in origin.account");
      if (record.parents.length > 1) bad("a risk tier names at most one parent");
      break;
    case BREAKER_CLOSE:
      exact(body, ["scope", "value"], BREAKER_CLOSE);
      if (!BREAKER_SCOPES.includes(body.get("scope"))) bad(`scope must be one of ${BREAKER_SCOPES.join(", ")}`);
      text(body.get("value"), "value", 255);
      if (record.parents.length > 1) bad("a breaker close names at most one parent");
      break;
    case DECISION:
      exact(body, ["decision", "note"], DECISION);
      if (!DECISIONS.includes(body.get("decision"))) bad(`decision must be one of ${DECISIONS.join(", ")}`);
      if (typeof body.get("note") !== "string" || chars(body.get("note")) > MAX_NOTE) {
        bad(`note must be a string of at most ${MAX_NOTE} characters`);
      }
      if (record.parents.length < 1 || record.parents.length > MAX_DECISION_PARENTS) {
        bad(`a decision names the decided record first, then at most ${MAX_DECISION_PARENTS - 1} records it rests on`);
      }
      break;
    default:
      bad(`unknown risk kind ${record.kind}`);
  }
}

// §12.2 for a risk.* record of ``submitter`` ({name, roles}) as in force at
// its height: its body and parents, then the role its kind needs.
export function checkRiskRecord(record, submitter) {
  checkBody(record);
  const role = REVIEW_KINDS.includes(record.kind) ? "review" : "monitor";
  if (!submitter.roles.has(role)) {
    throw new RiskError("forbidden_role", `submitter ${submitter.name} lacks the '${role}' role a ${record.kind} needs`);
  }
}

// A risk record's meaning in a few words, for the record page (null for
// other kinds); parents are the records it is about.
export function riskSummary(record) {
  const b = record.body;
  switch (record.kind) {
    case ALERT:
      return `alert on the parent record: score ${b.get("score")} of ${SCORE_MAX} (parts per million) `
        + `by detector ${b.get("detector")} ${b.get("version")}; reasons: `
        + b.get("reasons").map((r) => `${r.get("feature")} (${r.get("points")} points)`).join(", ");
    case TIER:
      return `account ${record.origin.get("account")} set to risk tier ${b.get("tier")} by detector `
        + `${b.get("detector")} ${b.get("version")}`;
    case BREAKER_CLOSE:
      return `circuit breaker on ${b.get("scope")} ${b.get("value")} closed by a reviewer`;
    case DECISION:
      return `reviewer's decision on the first parent: ${b.get("decision")}${b.get("note") ? ` (${b.get("note")})` : ""}`;
    default:
      return null;
  }
}
