// The dashboard's shared state: the last /state payload and when it was confirmed, and the
// renderers that repaint from it (coalesced into one repaint per RENDER_GAP_MS).

const RENDER_GAP_MS = 150;

export const store = {
  latest: null, // the last state ({version, status, account, positions, orders, executions})
  confirmedAt: 0, // performance.now() when the server last confirmed `latest.status` (ages tick on from there)
  fromStream: false,
  serverReachable: true,
  authLost: false,
};

const renderers = [];
const headerRenderers = [];

/** Add a repaint of the whole state (fn(latest)). */
export function onRender(fn) { renderers.push(fn); }
/** Add a repaint of the header only (fn(latest)); also run every second and on every pulse. */
export function onHeader(fn) { headerRenderers.push(fn); }

export function renderHeader() { headerRenderers.forEach((fn) => fn(store.latest)); }

export function render() {
  if (!store.latest) return;
  renderHeader();
  renderers.forEach((fn) => fn(store.latest));
}

let renderTimer = null;
let lastRender = 0;
export function scheduleRender() {
  if (renderTimer !== null) return;
  const wait = Math.max(0, RENDER_GAP_MS - (performance.now() - lastRender));
  renderTimer = setTimeout(() => {
    renderTimer = null;
    lastRender = performance.now();
    render();
  }, wait);
}

/** A whole state from the stream or a poll. */
export function onState(state, fromStream) {
  if (!state || typeof state !== "object" || !state.status) return;
  if (!fromStream && store.latest && store.fromStream && state.version < store.latest.version) return;
  store.latest = state;
  store.fromStream = !!fromStream;
  store.confirmedAt = performance.now();
  store.serverReachable = true;
  scheduleRender();
  window.dispatchEvent(new CustomEvent("dashboard:state", {detail: state})); // hook: static/screen/
}

/** The stream's pulse while nothing changed: a fresh status confirms the data shown. */
export function onPulse(status) {
  if (!store.latest || !status || typeof status !== "object") return;
  store.latest = {...store.latest, status};
  store.confirmedAt = performance.now();
  store.serverReachable = true;
  renderHeader();
}

/** Seconds since the server last confirmed the state. */
export const sinceConfirmed = () => (performance.now() - store.confirmedAt) / 1000;
