// Small helpers shared by the screen's modules (no HTML from strings: text nodes only).
export const $ = (sel, root) => (root || document).querySelector(sel);

export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);

export function fmtPrice(v) {
  if (!isNum(v)) return "—";
  const digits = Math.abs(v) < 10 ? 5 : 2;
  return v.toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: digits});
}

export function fmtPct(v) {
  if (!isNum(v)) return "—";
  return `${v > 0 ? "+" : ""}${v.toFixed(2)}%`;
}

const csrf = document.querySelector('meta[name="csrf-token"]');

/** fetch JSON with the session cookie and CSRF token; throws Error(message) with .field. */
export async function api(path, options) {
  const opts = options || {};
  const method = (opts.method || "GET").toUpperCase();
  const headers = {Accept: "application/json"};
  if (csrf && method !== "GET") headers["X-CSRFToken"] = csrf.getAttribute("content");
  const init = {method, headers, credentials: "same-origin", cache: "no-store"};
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const e = (data && data.error) || {};
    const err = new Error(e.message || `The server answered ${response.status}.`);
    err.field = e.field;
    err.status = response.status;
    throw err;
  }
  return data;
}
