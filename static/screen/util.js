// Small helpers shared by the screen's modules (no HTML from strings: text nodes only).
// the page-building helpers are the dashboard's own (text nodes only, never HTML)
export {$, el} from "../js/dom.js";
import {isNum} from "../js/format.js";

export {isNum};

// every decimal a price has (150.005 on USD.JPY), as the dashboard's fmtPrice
export function fmtPrice(v) {
  if (!isNum(v)) return "—";
  return v.toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: 8});
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
  // the session ended: the whole page signs out (static/js/api.js's SIGNED_OUT_EVENT)
  if (response.status === 401) window.dispatchEvent(new Event("dashboard:signed-out"));
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
