// A trace answer (docs/protocol.md §6 "The trace answer") drawn as an SVG
// graph: children above, the record, then its ancestors one generation per
// row; ancestors the answer did not include (the frontier) are dashed.

import { svg } from "./dom.js";

const W = 150, H = 44, GAP_X = 24, GAP_Y = 56, PAD = 16;

// nodes: Map id -> {id, label, state} where state is one of "verified",
// "failed", "frontier", "child"; edges: [child, parent] pairs.
export function lineageLayout(trace) {
  const depth = new Map([[trace.record, 0]]);
  const parentsOf = new Map();
  for (const [child, parent] of trace.edges) {
    if (!parentsOf.has(child)) parentsOf.set(child, []);
    parentsOf.get(child).push(parent);
  }
  const queue = [trace.record];
  while (queue.length) {
    const id = queue.shift();
    for (const p of parentsOf.get(id) || []) {
      if (!depth.has(p)) { depth.set(p, depth.get(id) + 1); queue.push(p); }
    }
  }
  for (const c of trace.children) if (!depth.has(c)) depth.set(c, -1);
  const rows = new Map();
  for (const [id, d] of depth) {
    if (!rows.has(d)) rows.set(d, []);
    rows.get(d).push(id);
  }
  return { depth, rows, edges: [...trace.edges, ...trace.children.map((c) => [c, trace.record])] };
}

export function drawLineage(trace, info, onOpen) {
  const { rows, edges } = lineageLayout(trace);
  const levels = [...rows.keys()].sort((a, b) => a - b);
  const widest = Math.max(...[...rows.values()].map((r) => r.length));
  const width = PAD * 2 + widest * W + (widest - 1) * GAP_X;
  const height = PAD * 2 + levels.length * H + (levels.length - 1) * GAP_Y;
  const pos = new Map();
  levels.forEach((level, row) => {
    const ids = rows.get(level);
    const rowWidth = ids.length * W + (ids.length - 1) * GAP_X;
    const x0 = (width - rowWidth) / 2;
    ids.forEach((id, i) => pos.set(id, { x: x0 + i * (W + GAP_X), y: PAD + row * (H + GAP_Y) }));
  });
  const root = svg("svg", { class: "lineage", width, height, viewBox: `0 0 ${width} ${height}`,
                            role: "img", "aria-label": "lineage graph" });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10,
                                               refY: 5, markerWidth: 7, markerHeight: 7,
                                               orient: "auto-start-reverse" },
                                   svg("path", { d: "M 0 0 L 10 5 L 0 10 z" }))));
  // An edge points from a record to its parent (derived from).
  for (const [child, parent] of edges) {
    const a = pos.get(child), b = pos.get(parent);
    if (!a || !b) continue;
    root.append(svg("line", { class: "edge", x1: a.x + W / 2, y1: a.y + H,
                              x2: b.x + W / 2, y2: b.y, "marker-end": "url(#arrow)" }));
  }
  for (const [id, p] of pos) {
    const node = info.get(id) || { state: "frontier" };
    const state = id === trace.record && node.state !== "failed" ? `${node.state} self` : node.state;
    const g = svg("g", { class: `node ${state}`, "data-id": id, "data-state": node.state,
                         tabindex: 0, transform: `translate(${p.x},${p.y})` },
                  svg("title", {}, `${id}\n${node.note || node.state}`),
                  svg("rect", { width: W, height: H, rx: 6 }),
                  svg("text", { x: 8, y: 18, class: "kind" }, clip(node.kind || node.state, 20)),
                  svg("text", { x: 8, y: 35, class: "id" }, `${id.slice(0, 16)}…`));
    g.addEventListener("click", () => onOpen(id));
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") onOpen(id); });
    root.append(g);
  }
  return root;
}

function clip(text, n) {
  const cps = [...text];
  return cps.length > n ? `${cps.slice(0, n - 1).join("")}…` : text;
}
