// Figures that cannot be trusted as current are marked as such: while the dashboard server
// does not answer, the reader connection is down, IB's servers are unreachable (1100: the
// gateway pushes nothing), a market data farm is broken (2103: its quotes stop until 2104,
// and the marks of positions and P&L with them) or no confirmation came for STALE_AFTER_S, every panel of broker
// numbers (account, positions, P&L, watchlist, chart) is dimmed and says why and since when;
// the marks go as soon as fresh data confirm them again.
import {fmtAge, isNum} from "./format.js";
import {onHeader, sinceConfirmed, store} from "./store.js";

const STALE_AFTER_S = 10; // a healthy page is confirmed every 2 s (a state or the stream's pulse)

/** Why the broker figures shown are not current, or null when they are. */
export function staleReason(latest) {
  if (!latest) return null;
  if (store.authLost) return "signed out";
  if (!store.serverReachable) return "the dashboard server does not answer";
  const status = latest.status;
  const reader = status.connections && status.connections.reader;
  if (!reader || reader.state !== "connected") return "the reader connection is down";
  if (status.ib_servers && status.ib_servers.reachable === false) return "IB's servers are unreachable";
  const farms = (status.ib_servers && status.ib_servers.farms) || [];
  const broken = farms.filter((f) => f.kind === "market data" && f.state === "broken").map((f) => f.name);
  if (broken.length) return `IB's market data farm ${broken.join(", ")} is broken: prices may be frozen`;
  const age = isNum(status.data_age) ? status.data_age + sinceConfirmed() : null;
  if (age !== null && age > STALE_AFTER_S) return `no update for ${fmtAge(age)}`;
  return null;
}

function renderStale(latest) {
  const reason = staleReason(latest);
  document.body.classList.toggle("data-stale", reason !== null);
  for (const node of document.querySelectorAll(".stale-note")) {
    node.hidden = reason === null;
    node.textContent = reason === null ? "" : "stale";
    node.title = reason === null ? "" : `Not current: ${reason}. The figures shown are the last ones received.`;
  }
}

export function initStale() {
  onHeader(renderStale);
}
