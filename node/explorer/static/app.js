// The explorer's pages: chain head, blocks, a record with its lineage.
// Every bundle shown is verified here, in the page, against the genesis
// document (genesis.js) - never taken on the node's word.

import { toHex } from "./bytes.js";
import { el, fields, link, short } from "./dom.js";
import { forgetGenesisFile, loadGenesis, useGenesisFile } from "./genesis.js";
import { verifyCheckpoint, verifyCosignatures } from "./checkpoint.js";
import { drawLineage } from "./lineage.js";
import { reviewsPage } from "./reviews.js";
import { riskSummary } from "./risk.js";
import { UNAUTHENTICATED_HINT, authFetch, keyPanel } from "./sign.js";
import { VerificationError, fingerprint, verdict, verifyCertifiedBlock } from "./verify.js";
import { epochAt, epochCache, epochProofOf } from "./verify2.js";

const main = document.getElementById("main");
const PAGE = 20;
const NOT_YET = "not available on this chain yet";

async function api(path) {
  const answer = await authFetch(path, { Accept: "application/json" });
  const doc = await answer.json().catch(() => ({}));
  if (answer.status === 401) throw new Error(`${path}: 401 ${doc.message || ""}: ${UNAUTHENTICATED_HINT}`);
  if (!answer.ok) throw new Error(`${path}: ${answer.status} ${doc.error || ""} ${doc.message || ""}`);
  return doc;
}

// -- genesis panel ------------------------------------------------------------

async function showGenesis() {
  const box = document.getElementById("genesis");
  box.replaceChildren();
  const input = el("input", { type: "file", id: "genesis-file", accept: ".json,application/json" });
  input.addEventListener("change", async () => {
    if (!input.files.length) return;
    try { await useGenesisFile(input.files[0]); } catch (e) { alert(`Not a genesis file: ${e.message}`); }
    await route();
  });
  const loadFile = el("label", {}, "Load your genesis file: ", input);
  let g;
  try {
    g = await loadGenesis();
  } catch (e) {
    box.append(el("p", { class: "bad" }, `No genesis to verify against: ${e.message}`), loadFile,
               keyPanel(route));
    return null;
  }
  const validators = await Promise.all(g.parsed.validators.map(async (v) =>
    el("li", {}, `#${v.index} ${v.name} · key ${await fingerprint(v.pubkey)}`)));
  const reset = el("button", { type: "button" }, "use the node's genesis");
  reset.addEventListener("click", async () => { forgetGenesisFile(); await route(); });
  box.append(
    el("h2", {}, "Verifying against genesis"),
    fields([["chain", g.parsed.chain], ["source", g.source],
            ["SHA-256", el("code", { id: "genesis-sha256" }, g.sha256)],
            ["quorum", `${g.parsed.quorum} of ${g.parsed.n} validators`]]),
    el("ul", { class: "validators" }, validators),
    el("p", { class: "hint" }, "Compare the SHA-256 with your own copy (sha256sum genesis.json), "
       + "or load it here; a node could serve a genesis of its own making."),
    loadFile, " ", reset, keyPanel(route));
  return g.parsed;
}

// -- pages -------------------------------------------------------------------

// ``epoch``: the validator set that certified (genesis's, or one derived
// from genesis through ``walked`` governance records).
function signersLine(signers, epoch, walked = 0) {
  return el("div", { class: "signers" },
    el("strong", { class: "verified-by" },
       `verified by ${signers.length} of ${epoch.n} validators`),
    walked ? el("p", { class: "hint epoch" }, `The validator set in force at this height, derived `
                + `in this page from genesis through ${walked} governance record(s).`) : "",
    el("ul", {}, signers.map((s) => el("li", {}, `#${s.index} ${s.name} · key ${s.fingerprint}`))));
}

// The validator set in force at ``height`` (protocol §9.7): genesis's while
// the header names it, else derived from an epoch proof the node's answers
// make - the proof of the record that last changed the validators, which
// carries every earlier change.  Nothing of it is trusted: the walk checks
// each change under the set before it, and a wrong proof arrives at a set
// the header does not name.
const caches = new WeakMap();
async function epochFor(height, validatorsHex, genesis) {
  if (validatorsHex === toHex(genesis.validatorsHash)) return { epoch: genesis, walked: 0 };
  const membership = await api(`/v1/membership?height=${height}`);
  const rid = membership.made_by && membership.made_by.validators;
  if (typeof rid !== "string" || !/^[0-9a-f]{64}$/.test(rid)) return { epoch: genesis, walked: 0 };
  const entries = epochProofOf(await api(`/v1/records/${rid}/proof`));
  if (!caches.has(genesis)) caches.set(genesis, epochCache(genesis));
  return { epoch: await epochAt(entries, height, genesis, caches.get(genesis)), walked: entries.length };
}

// epochFor, a failed walk reported as a verdict.
async function epochOrFailure(height, validatorsHex, genesis) {
  try {
    return await epochFor(height, validatorsHex, genesis);
  } catch (e) {
    if (e instanceof VerificationError) return { failure: { ok: false, step: e.step, message: e.message } };
    throw e;
  }
}

function failedLine(result) {
  return el("div", { class: "failure" }, el("strong", {}, `verification FAILED at step "${result.step}"`),
            el("p", {}, result.message));
}

async function blockVerdict(block, genesis) {
  const { epoch, walked, failure } = await epochOrFailure(block.height, block.fields.validators, genesis);
  const result = failure || await verifyCertifiedBlock(block.header, block.certificate, epoch);
  const box = el("div", { class: `verdict ${result.ok ? "ok" : "failed"}`, id: "block-verdict",
                          "data-ok": String(result.ok), "data-step": result.step || "" });
  box.append(result.ok ? signersLine(result.signers, epoch, walked) : failedLine(result));
  return box;
}

// The latest C2SP checkpoint (protocol.md "Checkpoints (C2SP)"), its
// signatures checked in this page; null when the node serves none yet.
async function cosignedCheckpoint(genesis) {
  const answer = await authFetch("/checkpoint");
  if (!answer.ok) return null;
  const note = await answer.text();
  // Signed by the validators in force at its block (Checkpoint-Height,
  // protocol §6 and §9.9); a wrong height gives a set that did not sign
  // it, and the check fails.
  const height = Number(answer.headers.get("Checkpoint-Height"));
  let found = { epoch: genesis, walked: 0 };
  if (Number.isSafeInteger(height) && height >= 1) {
    const block = await api(`/v1/blocks/${height}`);
    found = await epochOrFailure(height, block.fields.validators, genesis);
  }
  const result = found.failure || await verifyCheckpoint(note, found.epoch);
  const box = el("div", { class: `verdict ${result.ok ? "ok" : "failed"}`, id: "checkpoint-verdict",
                          "data-ok": String(result.ok), "data-step": result.step || "" });
  box.append(result.ok ? signersLine(result.signers, found.epoch, found.walked) : failedLine(result));
  return el("div", {},
    result.ok ? fields([["log size", String(result.size)], ["log root", result.root]]) : "",
    box, result.ok ? await witnessLines(note) : "", el("pre", { class: "note" }, note));
}

// The witnesses' cosignatures on the note (protocol §13), checked in this
// page against the witness keys the node lists (GET /v1/checkpoint-keys):
// the keys are the node's word, so compare them with the witnesses' own.
async function witnessLines(note) {
  let keys;
  try { keys = await api("/v1/checkpoint-keys"); } catch (e) { return ""; }
  const listed = Array.isArray(keys.witnesses) ? keys.witnesses.filter((w) => typeof w.vkey === "string") : [];
  if (!listed.length) return "";
  const found = await verifyCosignatures(note, listed.map((w) => w.vkey));
  const items = found.map((f, i) => {
    const name = listed[i].name;
    if (f === null) return el("li", { "data-witness": name, "data-ok": "absent" }, `${name}: no cosignature on this checkpoint`);
    const when = f.timestamp === null ? "" : ` at ${new Date(Number(f.timestamp) * 1000).toISOString()} (${f.timestamp})`;
    return el("li", { "data-witness": name, "data-ok": String(f.ok), class: f.ok ? "" : "bad" },
              f.ok ? `${name} cosigned${when}: verified in this page` : `${name}: FAILED: ${f.message}`);
  });
  return el("div", { id: "checkpoint-witnesses" }, el("strong", {}, "Witness cosignatures"),
    el("p", { class: "hint" }, "Checked against the witness keys this node lists (GET /v1/checkpoint-keys): "
       + "compare them with the keys the witnesses publish."), el("ul", {}, items));
}

async function headPage(genesis) {
  const [status, tip] = await Promise.all([api("/v1/status"), api("/v1/blocks/latest")]);
  const cosigned = await cosignedCheckpoint(genesis);
  const checkpoint = el("section", { id: "checkpoint" }, el("h2", {}, "Checkpoint"),
    el("p", { class: "hint" }, "The latest C2SP checkpoint signed by a quorum of validators "
       + "(a signed note that Go's note and tlog packages verify), its signatures checked in "
       + "this page against genesis; then the latest block's header and certificate."),
    cosigned || el("p", { class: "hint" }, "No checkpoint carries a quorum of signatures yet."),
    el("h3", {}, "Latest block"),
    fields([["height", link(`#/block/${tip.height}`, String(tip.height))],
            ["log size", String(tip.fields.log_size)], ["log root", tip.fields.log_root],
            ["block hash", tip.hash], ["round", String(tip.certificate.round)]]),
    await blockVerdict(tip, genesis));
  main.replaceChildren(
    el("h1", {}, "Chain head"),
    fields([["chain", status.chain], ["node", status.node],
            ["validator", status.validator === null ? "-" : String(status.validator)],
            ["height", String(status.height)], ["log size", String(status.log_size)],
            ["log root", status.log_root], ["mempool", String(status.mempool)]]),
    checkpoint,
    el("p", {}, link(`#/blocks/${status.height}`, "browse blocks")));
}

async function blocksPage(top) {
  const status = await api("/v1/status");
  const from = Math.min(top || status.height, status.height);
  const heights = [];
  for (let h = from; h >= 1 && heights.length < PAGE; h--) heights.push(h);
  const blocks = await Promise.all(heights.map((h) => api(`/v1/blocks/${h}`)));
  const rows = blocks.map((b) => el("tr", {},
    el("td", {}, link(`#/block/${b.height}`, String(b.height))),
    el("td", {}, new Date(Number(b.fields.time)).toISOString()),
    el("td", {}, String(b.fields.tx_count)), el("td", {}, String(b.fields.log_size)),
    el("td", {}, el("code", {}, short(b.hash)))));
  const nav = el("p", { class: "paging" });
  if (from < status.height) nav.append(link(`#/blocks/${Math.min(from + PAGE, status.height)}`, "← newer"), " ");
  if (from - PAGE >= 1) nav.append(link(`#/blocks/${from - PAGE}`, "older →"));
  main.replaceChildren(el("h1", {}, "Blocks"),
    el("table", { id: "blocks" }, el("tr", {}, ["height", "time", "records", "log size", "hash"]
      .map((h) => el("th", {}, h))), rows), nav);
}

async function blockPage(height, genesis) {
  const [block, status] = await Promise.all([api(`/v1/blocks/${height}`), api("/v1/status")]);
  const f = block.fields;
  main.replaceChildren(
    el("h1", {}, `Block ${block.height}`),
    await blockVerdict(block, genesis),
    fields([["hash", block.hash], ["previous", f.prev === "00".repeat(32) ? "-" :
            link(`#/block/${block.height - 1}`, f.prev)],
            ["time", `${new Date(Number(f.time)).toISOString()} (${f.time})`],
            ["proposer", `#${f.proposer}`], ["records", String(f.tx_count)],
            ["tx root", f.tx_root], ["log size", String(f.log_size)], ["log root", f.log_root],
            ["validators", f.validators], ["certificate round", String(block.certificate.round)]]),
    el("h2", {}, "Records"),
    el("ol", { id: "block-records", start: f.log_size - f.tx_count },
       block.records.map((id) => el("li", {}, link(`#/record/${id}`, id)))),
    el("p", { class: "paging" }, block.height > 1 ? link(`#/block/${block.height - 1}`, "← previous") : "",
       " ", block.height < status.height ? link(`#/block/${block.height + 1}`, "next →") : ""));
}

// A decoded MessagePack value as display text (bytes as hex, ints exact).
function show(value) {
  if (value instanceof Uint8Array) return `0x${toHex(value)}`;
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Map) return `{${[...value].map(([k, v]) => `${JSON.stringify(k)}: ${show(v)}`).join(", ")}}`;
  if (Array.isArray(value)) return `[${value.map(show).join(", ")}]`;
  return JSON.stringify(value);
}

function mapList(map) {
  if (!map.size) return el("span", { class: "hint" }, "(empty)");
  return el("dl", { class: "fields nested" }, [...map].map(([k, v]) => [el("dt", {}, k), el("dd", {}, show(v))]));
}

async function recordPage(id, genesis) {
  const rec = await api(`/v1/records/${id}`);
  if (rec.status !== "committed") {
    main.replaceChildren(el("h1", {}, "Record"), fields([["id", id], ["status", rec.status]]),
      el("p", {}, "Pending: not committed yet, so there is no proof to verify. Reload later."));
    return;
  }
  const trace = await api(`/v1/records/${id}/trace?depth=8&children_limit=50`);
  const info = new Map();
  if (!caches.has(genesis)) caches.set(genesis, epochCache(genesis));
  const cache = caches.get(genesis);
  const results = [];
  for (const b of trace.bundles) results.push([b, await verdict(b, genesis, cache)]);  // in order: the cache fills
  for (const [b, r] of results) {
    const kind = r.ok ? r.proven.record.kind : undefined;
    info.set(b.record_id, { state: r.ok ? "verified" : "failed", kind,
                            note: r.ok ? `${kind}: verified` : `failed at ${r.step}` });
  }
  for (const c of trace.children) info.set(c, { state: "child", note: "child (not verified here: open it)" });
  for (const f of trace.frontier) info.set(f, { state: "frontier", note: "ancestor beyond this answer" });
  const [own, ownResult] = results[0];
  const box = el("div", { class: `verdict ${ownResult.ok ? "ok" : "failed"}`, id: "record-verdict",
                          "data-ok": String(ownResult.ok), "data-step": ownResult.step || "" });
  box.append(ownResult.ok ? signersLine(ownResult.signers, ownResult.proven.epoch,
                                       ownResult.proven.governance) : failedLine(ownResult));
  let decoded = el("p", { class: "bad" }, "The bundle did not verify: its fields are not shown as facts.");
  if (ownResult.ok) {
    const r = ownResult.proven.record;
    const meaning = riskSummary(r);
    decoded = fields([
      ...(meaning ? [["meaning", el("span", { id: "record-meaning" }, meaning)]] : []),
      ["kind", r.kind], ["origin", mapList(r.origin)], ["body", mapList(r.body)],
      ["parents", r.parents.length ? el("ul", {}, r.parents.map((p) => el("li", {}, link(`#/record/${toHex(p)}`, toHex(p))))) : "(none)"],
      ["submitter", `${ownResult.proven.submitterName} · key ${toHex(r.submitter)}`],
      ["nonce", r.nonce.toString()],
      ["ts", `${new Date(Number(r.ts)).toISOString()} (${r.ts})`],
      ["block", link(`#/block/${rec.height}`, String(rec.height))], ["leaf index", String(own.leaf_index)]]);
  }
  const risk = await riskRows(id, trace, genesis, cache, info);
  const lineageRows = results.map(([b, r]) => el("tr", { class: "bundle", "data-record-id": b.record_id,
                                                        "data-ok": String(r.ok), "data-step": r.step || "" },
    el("td", {}, link(`#/record/${b.record_id}`, short(b.record_id))),
    el("td", {}, r.ok ? r.proven.record.kind : "-"),
    el("td", {}, r.ok ? `verified by ${r.signers.length} of ${r.proven.epoch.n}` : `FAILED at ${r.step}`)));
  const more = [];
  if (trace.frontier.length) more.push(el("p", { class: "hint" }, `${trace.frontier.length} further ancestor(s) not in this answer (dashed): open them to continue.`));
  if (trace.children_next) more.push(el("p", { class: "hint" }, "More children exist than shown here (first 50)."));
  main.replaceChildren(
    el("h1", {}, "Record"), el("p", {}, el("code", { id: "record-id" }, id)),
    box, el("h2", {}, "Fields (decoded from the verified envelope)"), decoded,
    el("h2", {}, "Lineage"),
    el("div", { class: "graph" }, drawLineage(trace, info, (rid) => { location.hash = `#/record/${rid}`; })),
    ...more,
    el("table", { id: "lineage-bundles" }, el("tr", {}, ["record", "kind", "in-page verification"].map((h) => el("th", {}, h))), lineageRows),
    el("h2", {}, "Verdict, alerts, review decisions"),
    fields([["verdict", verdictFields(ownResult, rec.verdict)], ...risk]));
}

// Alerts and review decisions on a record are risk.alert and risk.decision
// records naming it as their (first) parent (protocol §12.2, §10.10): its
// children in the trace answer. Each child's bundle is fetched and verified
// in this page; only verified ones are shown, failed ones are named, and
// the lineage graph (``info``) shows each child verified or failed.
async function riskRows(id, trace, genesis, cache, info) {
  const found = { "risk.alert": [], "risk.decision": [], approval: [] };
  const failed = [];
  for (const child of trace.children) {
    let result;
    try { result = await verdict(await api(`/v1/records/${child}/proof`), genesis, cache); } catch (e) {
      result = { ok: false, step: "bundle", message: e.message };
    }
    if (!result.ok) {
      failed.push(el("li", {}, link(`#/record/${child}`, short(child)), ` FAILED at ${result.step}`));
      info.set(child, { state: "failed", note: `child: failed at ${result.step}` });
      continue;
    }
    const r = result.proven.record;
    info.set(child, { state: "verified", kind: r.kind, note: `child ${r.kind}: verified` });
    if (Object.hasOwn(found, r.kind) && r.parents.length && toHex(r.parents[0]) === id) {
      const what = r.kind === "approval" ? "approval of this record" : riskSummary(r);
      found[r.kind].push(el("li", { class: "risk", "data-kind": r.kind, "data-record-id": child,
                                    "data-counted": counted(r, result) },
        link(`#/record/${child}`, short(child)), ` by ${result.proven.submitterName}: ${what} · `
        + `verified by ${result.signers.length} of ${result.proven.epoch.n} validators${countedNote(r, result)}`));
    }
  }
  const more = trace.children_next ? " (among its first 50 children; open the record again for more)" : "";
  const list = (items, none, idName) => el("div", { id: idName },
    items.length ? el("ul", {}, items) : el("span", { class: "hint" }, `${none}${more}`));
  const rows = [["alerts", list(found["risk.alert"], "none", "record-alerts")],
                ["review decisions", list([...found["risk.decision"], ...found.approval], "none",
                                          "record-decisions")]];
  if (failed.length) rows.push(["children that failed", el("ul", {}, failed)]);
  return rows;
}

// Whether a decision or approval counted (protocol §10.10, §10.7): its own
// verdict, proven by its bundle - allowed counts, denied does not (with the
// reason). "" for an alert, or when its bundle proves no verdict.
function counted(record, result) {
  const v = result.proven.verdict;
  if (record.kind === "risk.alert" || !v) return "";
  return String(v.verdict.outcome === "allow");
}

function countedNote(record, result) {
  const c = counted(record, result);
  if (c === "") return record.kind === "risk.alert" ? "" : "; whether it counted is not proven (no verdict proof)";
  return c === "true" ? "; counted (its verdict, verified)"
    : `; not counted: ${result.proven.verdict.verdict.reason || "denied"} (its verdict, verified)`;
}

// The policy verdict of a committed record (protocol §10.8): verified in
// this page when the record's bundle proves it (§10.11: its entry under the
// certified header's verdict root, or a version 1 block: no policy), and
// otherwise shown as GET /v1/records/{id} reports it, saying so.
function verdictFields(result, nodeWord) {
  const proven = result.ok ? result.proven.verdict : null;
  if (proven) return provenVerdict(proven, result.proven.header);
  if (nodeWord === null || typeof nodeWord !== "object") return NOT_YET;
  const v = nodeWord;
  const rows = [["outcome", String(v.outcome)], ["status", String(v.status)],
                ["rule", String(v.rule)], ["reason", String(v.reason || "-")],
                ["policy version", String(v.policy_version)]];
  if (v.approvals) rows.push(["approvals needed", `${v.approvals} with role ${v.role}`]);
  if (v.deadline) rows.push(["deadline", String(v.deadline)]);
  if (v.final_height) rows.push(["final at block", link(`#/block/${v.final_height}`, String(v.final_height))]);
  if (Array.isArray(v.approved_by) && v.approved_by.length) {
    rows.push(["approved by", el("ul", {}, v.approved_by.map((a) => el("li", {},
      `${String(a.approver)} · `, link(`#/record/${String(a.record)}`, short(String(a.record))))))]);
  }
  return el("div", { id: "record-verdict-status", "data-outcome": String(v.outcome),
                     "data-verified": "false" }, fields(rows),
    el("p", { class: "hint" }, "The node's word, not verified (GET /v1/records/{id}): "
       + (result.ok ? "this record's bundle carries no verdict proof."
                    : "the record's bundle did not verify.")));
}

function provenVerdict(proven, header) {
  const v = proven.verdict;
  const rows = [["outcome", v.outcome], ["status", proven.status],
                ["rule", v.rule || "(the policy's default)"], ["reason", v.reason || "-"],
                ["policy version", v.policy ? v.policy.toString() : "0 (no policy)"]];
  if (v.approvals) rows.push(["approvals needed", `${v.approvals} with role ${v.role}`]);
  if (v.deadline) rows.push(["deadline", `${new Date(Number(v.deadline)).toISOString()} (${v.deadline})`]);
  const t = proven.transition;
  if (t) {
    rows.push(["final at block", link(`#/block/${proven.transitionHeight}`, String(proven.transitionHeight))]);
    rows.push([t.status === "rejected" ? "rejected by" : "approvals counted", t.approvals.length
      ? el("ul", {}, t.approvals.map((a) => el("li", {}, link(`#/record/${toHex(a)}`, short(toHex(a))))))
      : "(none)"]);
  }
  let how = proven.committed
    ? `Verified in this page: the verdict's entry ${proven.index} and its path to the verdict root of block ${header.height}, whose certificate is checked above`
    : `Verified in this page: block ${header.height} is version 1, so no policy was in force there and every record in it is allowed`;
  if (t) how += `; its ${t.status} transition and path to the verdict root of block ${proven.transitionHeight}, with that block's certificate`;
  if (!t && (proven.status === "held" || proven.status === "review")) how += ". A later decision is not excluded: reload to see one";
  return el("div", { id: "record-verdict-status", "data-outcome": v.outcome, "data-status": proven.status,
                     "data-verified": "true" }, fields(rows), el("p", { class: "verified" }, `${how}.`));
}

// -- routing -----------------------------------------------------------------

async function route() {
  main.setAttribute("data-state", "loading");
  const genesis = await showGenesis();
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  try {
    if (!genesis) throw new Error("load a genesis file to verify anything");
    if (parts[0] === "block" && /^\d+$/.test(parts[1])) await blockPage(Number(parts[1]), genesis);
    else if (parts[0] === "blocks") await blocksPage(Number(parts[1]) || 0);
    else if (parts[0] === "reviews") {
      if (!caches.has(genesis)) caches.set(genesis, epochCache(genesis));
      await reviewsPage(main, api, genesis, caches.get(genesis), parts[1] === "decided" ? "decided" : "open",
                        /^[0-9a-f]+$/.test(parts[2] || "") ? parts[2] : "");
    }
    else if (parts[0] === "record" && /^[0-9a-f]{64}$/.test(parts[1])) await recordPage(parts[1], genesis);
    else await headPage(genesis);
  } catch (e) {
    main.replaceChildren(el("h1", {}, "Cannot show this page"), el("p", { class: "bad" }, e.message));
  }
  main.setAttribute("data-state", "ready");
}

document.getElementById("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = document.getElementById("q").value.trim().toLowerCase();
  location.hash = /^\d+$/.test(q) ? `#/block/${q}` : `#/record/${q}`;
});
window.addEventListener("hashchange", route);
route();

