// The derivatives panel's HTTP and DOM helpers (an ES module of its own, so it does not
// depend on app.js): the session cookie rides along, state-changing requests carry the
// page's CSRF token, errors come back in the API's one shape.

const csrfMeta = document.querySelector('meta[name="csrf-token"]');
const CSRF_TOKEN = csrfMeta ? csrfMeta.getAttribute("content") : null;

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

/** GET (or POST with a JSON body and extra headers) an API path; resolves with the JSON body. */
export async function api(path, options = {}) {
  const method = (options.method || "GET").toUpperCase();
  const init = {method, headers: {Accept: "application/json"}, credentials: "same-origin", cache: "no-store"};
  if (CSRF_TOKEN && method !== "GET") init.headers["X-CSRFToken"] = CSRF_TOKEN;
  Object.assign(init.headers, options.headers || {});
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network_error", "The dashboard server cannot be reached.");
  }
  // the session ended: the whole page signs out (static/js/api.js's SIGNED_OUT_EVENT)
  if (response.status === 401) window.dispatchEvent(new Event("dashboard:signed-out"));
  let data = null;
  try { data = await response.json(); } catch (err) { data = null; }
  if (!response.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(response.status, e.code || "http_error", e.message || `The server answered ${response.status}.`, e.field);
  }
  return data;
}

/** Build an element (the dashboard's own helper: strings become text nodes, never HTML). */
export {el} from "../js/dom.js";

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
export const fmt = (v, digits = 2) => (isNum(v) ? v.toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits}) : "—");
// an API time (ISO 8601 UTC text) as the main dashboard's clocks show it: HH:MM:SS ZONE, local
const zoneFormat = new Intl.DateTimeFormat(undefined, {hour: "2-digit", minute: "2-digit",
  second: "2-digit", hourCycle: "h23", timeZoneName: "short"});
export function clock(iso) {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return "—";
  const parts = Object.fromEntries(zoneFormat.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  return `${parts.hour}:${parts.minute}:${parts.second} ${parts.timeZoneName || ""}`.trimEnd();
}
export const money = (v) => (isNum(v) ? v.toLocaleString("en-US", {style: "currency", currency: "USD"}) : "—");
