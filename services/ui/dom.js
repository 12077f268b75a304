// DOM helpers of the page: elements built node by node, text set as text (never markup).
//
// The page runs under a strict Content-Security-Policy (scripts and styles from this origin only,
// nothing inline): no innerHTML, no inline style attributes. Every string from the service
// (titles, genres, feature names) goes into the DOM as textContent; bar widths are set through
// the CSSOM (element.style.width), which the policy allows.

export const $ = (id) => document.getElementById(id);

/** An element with attributes (class, text, aria-*, on<event>, …) and children (nodes or strings). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

/** Put `text` in a message or summary line (read out by its live region); `kind`: ok|warn|error. */
export function say(id, text, kind = "") {
  const node = $(id);
  node.textContent = text;
  node.className = `${node.classList.contains("summary") ? "summary" : "message"} ${kind}`.trim();
}

export const fmt = (value, digits = 3) =>
  value === null || value === undefined || Number.isNaN(value) ? "—" : Number(value).toFixed(digits);

export const signed = (value, digits = 2) =>
  `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(digits)}`;
