// The review queue (docs/protocol.md §10.10, GET /v1/reviews) for
// reviewers: the open records oldest first, or the decided ones. Which
// records are in the queue is the node's word; each record's bundle is
// fetched and verified in this page, with its verdict proof (§10.11), so
// the status shown in the last column is proven: a record proven "review"
// or "held" may have been decided since (a later decision is not excluded
// by a bundle; the record's own page shows the decisions it can verify).

import { el, link, short } from "./dom.js";
import { verdict } from "./verify.js";

function provenStatus(result) {
  if (!result.ok) return `FAILED at ${result.step}`;
  const v = result.proven.verdict;
  if (!v) return "record verified; its bundle carries no verdict proof";
  return `${v.status} (${v.verdict.outcome}${v.verdict.rule ? `, rule ${v.verdict.rule}` : ""}), `
    + `verified by ${result.signers.length} of ${result.proven.epoch.n}`;
}

// ``state``: "open" or "decided"; ``after``: the cursor of the page.
export async function reviewsPage(main, api, genesis, cache, state, after) {
  const query = `state=${state}&limit=50${after ? `&after=${encodeURIComponent(after)}` : ""}`;
  const doc = await api(`/v1/reviews?${query}`);
  const rows = [];
  for (const r of doc.reviews) {
    let result;
    try { result = await verdict(await api(`/v1/records/${r.record}/proof`), genesis, cache); } catch (e) {
      result = { ok: false, step: "bundle", message: e.message };
    }
    const amount = r.amount === undefined ? "-" : `${r.amount} ${r.currency || ""}`;
    rows.push(el("tr", { class: "review", "data-record-id": r.record, "data-ok": String(result.ok),
                         "data-status": result.ok && result.proven.verdict ? result.proven.verdict.status : "" },
      el("td", {}, link(`#/record/${r.record}`, short(r.record))),
      el("td", {}, String(r.kind)), el("td", {}, amount),
      el("td", {}, `${Math.round(Number(r.age_ms) / 1000)} s`),
      el("td", {}, String(r.alerts.length)), el("td", {}, String(r.decisions.length)),
      el("td", {}, provenStatus(result))));
  }
  const other = state === "open" ? "decided" : "open";
  const nav = el("p", { class: "paging" }, link(`#/reviews/${other}`, `${other} records`));
  if (doc.next) nav.append(" ", link(`#/reviews/${state}/${doc.next}`, "next page →"));
  main.replaceChildren(
    el("h1", {}, state === "open" ? "Review queue: open records" : "Review queue: decided records"),
    el("p", { class: "hint" }, `${doc.open} open record(s) at block ${doc.height}, as this node `
       + "reports it (GET /v1/reviews). Each record's bundle and verdict proof below is verified in "
       + "this page; open a record for its verified alerts and decisions."),
    el("table", { id: "reviews" }, el("tr", {}, ["record", "kind", "amount", "age", "alerts",
      "decisions", "status, verified in this page"].map((h) => el("th", {}, h))), rows),
    nav);
}
