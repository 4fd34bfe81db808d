// Live state over Server-Sent Events ("state" after every change, "pulse" with a fresh
// status while idle), polling /state while the stream is unavailable.
import {api} from "./api.js";
import {$} from "./dom.js";
import {onPulse, onState, renderHeader, store} from "./store.js";

const STREAM_URL = "/api/v1/stream";
const STATE_URL = "/api/v1/state";
const POLL_MS = 1000; // polling period while the stream is unavailable
const STREAM_RETRY_MS = 15000; // re-open a stream the server refused (503) after this
// The server sends something at least every 2 s (a state, or its pulse while idle). A stream
// silent for longer than this has stalled without closing (a half-open socket after the laptop
// slept, a proxy holding the answer, a hung server thread): EventSource never notices, so it is
// dropped here, the page polls, and a new stream is tried after STREAM_RETRY_MS. (An "error"
// counts as heard: the browser is reconnecting by itself.)
const STALL_MS = 10000;

const feed = {es: null, pollTimer: null, polling: false, retryTimer: null, mode: "connecting", heardAt: 0};

export function setFeedMode(mode) {
  feed.mode = mode;
  // hook: static/screen/ polls its quotes while the page polls /state
  window.dispatchEvent(new CustomEvent("dashboard:feed", {detail: {mode, pollMs: POLL_MS}}));
  const node = $("#feed");
  node.textContent = {stream: "live stream", polling: "polling", offline: "offline", connecting: "connecting…"}[mode] || mode;
  node.className = `feed feed-${mode}`;
}

export function startStream() {
  clearTimeout(feed.retryTimer);
  if (store.authLost) return;
  if (!("EventSource" in window)) { startPolling(); return; }
  // static/screen/ names the chart's symbol (window.dashboardWatch) to stream along with the
  // watchlist's quotes
  const es = new EventSource(window.dashboardWatch
    ? `${STREAM_URL}?watch=${encodeURIComponent(window.dashboardWatch)}` : STREAM_URL);
  feed.es = es;
  feed.heardAt = performance.now();
  for (const type of ["open", "state", "pulse", "quotes", "error"]) {
    es.addEventListener(type, () => { if (feed.es === es) feed.heardAt = performance.now(); });
  }
  es.addEventListener("quotes", (event) => { // for static/screen/ (watchlist, chart, alerts)
    window.dispatchEvent(new CustomEvent("dashboard:quotes", {detail: event.data}));
  });
  const parse = (event) => { try { return JSON.parse(event.data); } catch (err) { return null; } };
  es.addEventListener("state", (event) => {
    const state = parse(event);
    if (!state) return;
    stopPolling();
    setFeedMode("stream");
    onState(state, true);
  });
  es.addEventListener("pulse", (event) => {
    const status = parse(event);
    if (status) onPulse(status);
  });
  es.addEventListener("error", () => {
    // Reconnecting by itself (CONNECTING) or refused for good (CLOSED, e.g. 503):
    // poll meanwhile so the page stays live. No newer state can come from this stream, so a
    // poll counts whatever its version (a restarted app counts from 0 again).
    store.fromStream = false;
    startPolling();
    if (es.readyState === EventSource.CLOSED) {
      if (feed.es === es) feed.es = null;
      feed.retryTimer = setTimeout(startStream, STREAM_RETRY_MS);
    }
  });
}

/** Drop a stream that has been silent too long (see STALL_MS): poll, and try a new one later. */
function checkStall() {
  const es = feed.es;
  if (!es || es.readyState === EventSource.CLOSED || performance.now() - feed.heardAt < STALL_MS) return;
  es.close();
  feed.es = null;
  store.fromStream = false; // no newer state can come from it: every poll counts
  startPolling();
  clearTimeout(feed.retryTimer);
  feed.retryTimer = setTimeout(startStream, STREAM_RETRY_MS);
}
setInterval(checkStall, 1000);
document.addEventListener("visibilitychange", () => { if (!document.hidden) checkStall(); }); // a tab waking up

export function startPolling() {
  if (feed.pollTimer !== null || store.authLost) return;
  setFeedMode("polling");
  pollOnce();
  feed.pollTimer = setInterval(pollOnce, POLL_MS);
}

function stopPolling() {
  if (feed.pollTimer !== null) clearInterval(feed.pollTimer);
  feed.pollTimer = null;
}

async function pollOnce() {
  if (feed.polling) return;
  feed.polling = true;
  try {
    const state = await api(STATE_URL);
    if (feed.pollTimer !== null) setFeedMode("polling");
    onState(state, false);
  } catch (err) {
    store.serverReachable = false;
    setFeedMode("offline");
    renderHeader();
  } finally {
    feed.polling = false;
  }
}

/** After a change made here: fetch the state at once (the stream may have nothing new to say). */
export function refreshState() {
  api(STATE_URL).then((state) => onState(state, false)).catch(() => {});
}

/** Reopen the stream (static/screen/'s chart changed symbol: a new `watch`). */
export function restartStream() {
  if (store.authLost) return;
  if (feed.es) { feed.es.close(); feed.es = null; }
  startStream();
}

/** The session is gone: stop asking. */
export function stopFeed() {
  stopPolling();
  clearTimeout(feed.retryTimer);
  if (feed.es) { feed.es.close(); feed.es = null; }
  setFeedMode("offline");
}
