// The one fetch of the page: the session cookie rides along, state-changing requests carry
// the page's CSRF token, errors come back as ApiError in the API's one error shape.

export class ApiError extends Error {
  constructor(status, code, message, field, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
    this.details = details || [];
  }
}

const csrfMeta = document.querySelector('meta[name="csrf-token"]');
const CSRF_TOKEN = csrfMeta ? csrfMeta.getAttribute("content") : null;
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** The window event every panel's fetch helper sends on a 401 (static/screen, static/deriv). */
export const SIGNED_OUT_EVENT = "dashboard:signed-out";

/** Called once the server answers 401 (the session ended), to any panel of the page. */
export function onSignedOut(listener) {
  window.addEventListener(SIGNED_OUT_EVENT, listener);
}

/**
 * Resolves with the JSON body; rejects with ApiError carrying the API's
 * {"error": {status, code, message, field, details}} shape.
 */
export async function api(path, options) {
  const opts = options || {};
  const method = (opts.method || "GET").toUpperCase();
  const init = {
    method,
    headers: Object.assign({Accept: "application/json"}, opts.headers || {}),
    credentials: "same-origin",
    cache: "no-store",
  };
  if (CSRF_TOKEN && !SAFE_METHODS.has(method)) init.headers["X-CSRFToken"] = CSRF_TOKEN;
  if (opts.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  let response;
  let text;
  try {
    response = await fetch(path, init);
    text = await response.text(); // the answer cut off on its way: no answer either
  } catch (err) {
    throw new ApiError(0, "network_error", "The dashboard server cannot be reached.", null);
  }
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (err) { data = null; }
  }
  if (response.status === 401) window.dispatchEvent(new Event(SIGNED_OUT_EVENT));
  if (!response.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(response.status, e.code || "http_error",
      e.message || `The server answered ${response.status}.`, e.field, e.details);
  }
  return data;
}

/** The API's field errors as {field: message} (one per field, the first said). */
export function serverErrors(err) {
  const errors = {};
  for (const d of err.details || []) {
    if (d && d.field && !(d.field in errors)) errors[d.field] = d.message;
  }
  if (err.field && !(err.field in errors)) {
    const prefix = `${err.field}: `;
    errors[err.field] = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
  }
  return errors;
}
