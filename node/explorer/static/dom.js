// DOM helpers: every text from a node or a record goes in as textContent
// (or an attribute set by setAttribute), never as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

// el("div", {class: "x"}, child, "text", ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    node.setAttribute(k, String(v));
  }
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// A definition list from [label, value] pairs.
export function fields(pairs) {
  return el("dl", { class: "fields" },
            pairs.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

export const link = (href, text, attrs = {}) => el("a", { href, ...attrs }, text);
export const short = (hex) => `${hex.slice(0, 12)}…`;
