// The header: the connections, IB's servers and farms, the account's identity and how fresh
// the data are. Ages are counted from the server's last confirmation (a state, or the
// stream's pulse while nothing changed), so an idle healthy page shows small ages.
import {$} from "./dom.js";
import {epoch, fmtAge, fmtClock, isNum} from "./format.js";
import {onHeader, sinceConfirmed, store} from "./store.js";

export function connView(conn) {
  if (!conn) return {cls: "down", text: "down"};
  if (conn.state === "disabled") return {cls: "off", text: "off"};
  if (conn.state === "connected") return {cls: "up", text: "live"};
  if (!conn.thread_alive || conn.state === "stopped") return {cls: "down", text: "down"};
  return {cls: "warn", text: "reconnecting"};
}

/** The reader connection is up (quotes can be asked). */
export function readerUp() {
  const status = store.latest && store.latest.status;
  return !status || connView(status.connections && status.connections.reader).cls === "up";
}

function setConn(id, view, age, title) {
  const node = $(id);
  node.className = `conn ${view.cls}`;
  $(".conn-state", node).textContent = view.text;
  $(".conn-age", node).textContent = age;
  node.title = title;
}

function connTitle(conn) {
  if (!conn) return "";
  const parts = [`state ${conn.state}`];
  if (conn.client_id !== undefined) parts.unshift(`client id ${conn.client_id}`);
  if (isNum(conn.reconnects)) parts.push(`${conn.reconnects} reconnect(s)`);
  if (conn.last_error) parts.push(`last error: ${conn.last_error}`);
  return parts.join(" · ");
}

function renderHealth(latest) {
  const health = $("#health");
  if (store.authLost) {
    health.textContent = "signed out";
    health.className = "badge health-badge down";
    return;
  }
  if (!latest || !store.serverReachable) {
    health.textContent = latest ? "server unreachable" : "connecting…";
    health.className = `badge health-badge ${latest ? "down" : "pending"}`;
    if (latest) {
      for (const id of ["#conn-reader", "#conn-orders", "#conn-thread"]) {
        setConn(id, {cls: "down", text: "unknown"}, "", "the dashboard server does not answer");
      }
    }
    return;
  }
  const status = latest.status;
  const elapsed = sinceConfirmed();
  const ageOf = (a) => (isNum(a) ? a + elapsed : null);
  const serverNow = epoch(status.now);
  const beat = (c) => {
    const at = c ? epoch(c.last_heartbeat) : null;
    return at === null || serverNow === null ? null : Math.max(0, serverNow - at) + elapsed;
  };
  const link = status.ib_servers || {reachable: true, farms: []};
  const journal = status.journal || {ok: true};
  health.textContent = healthText(status, link, journal);
  health.className = `badge health-badge ${status.ok ? "up" : "down"}`;
  health.title = !link.reachable ? link.reason : journal.ok ? "" : `order journal: ${journal.error}`;
  renderIbServers(link);
  renderJournal(journal);

  const reader = status.connections && status.connections.reader;
  const orders = status.connections && status.connections.orders;
  const readerView = connView(reader);
  const ordersView = connView(orders);
  setConn("#conn-reader", readerView,
    readerView.cls === "up" ? `data ${fmtAge(ageOf(status.orders_age))}` : (reader && reader.reconnects ? `#${reader.reconnects}` : ""),
    `${connTitle(reader)}${readerView.cls === "up" ? " · data age: time since the gateway last confirmed the data" : ""}`);
  setConn("#conn-orders", ordersView,
    ordersView.cls === "up" && beat(orders) !== null ? `hb ${fmtAge(beat(orders))}` : "",
    `${connTitle(orders)}${ordersView.cls === "up" ? " · hb: time since the gateway last answered the heartbeat" : ""}`);
  const threadAlive = status.threads && status.threads.orders;
  const threadView = status.read_only ? {cls: "off", text: "off (read-only)"}
    : threadAlive ? {cls: "up", text: "alive"} : {cls: "down", text: "down"};
  setConn("#conn-thread", threadView,
    threadAlive ? `${status.in_flight || 0} in flight · ${status.queue_depth || 0} queued` : "",
    "The order thread owns the order connection and its queue");
  $("#readonly-badge").hidden = !status.read_only;

  const mode = $("#mode");
  if (status.paper === true || status.paper === false) {
    mode.textContent = status.paper ? "PAPER" : "LIVE";
    mode.className = `badge ${status.paper ? "mode-paper" : "mode-live"}`;
    document.body.dataset.mode = status.paper ? "paper" : "live";
  }
  $("#sim-badge").hidden = !status.simulator;
  $("#sim-clock").textContent = status.sim_clock || "";
  $("#sim-clock").hidden = !status.sim_clock;
  $("#account-id").textContent = status.account || "—";
  $("#server-version").textContent = status.server_version ? `v${status.server_version}` : "—";
  $("#account-age").textContent = isNum(status.data_age) ? `account data ${fmtAge(ageOf(status.data_age))} old` : "";
}

/** The badge's word: what is wrong first (connections, IB's servers, then the journal). */
function healthText(status, link, journal) {
  if (status.ok) return "connected";
  if (!link.reachable) return "IB servers unreachable";
  const conns = status.connections || {};
  const up = (c) => c && (c.state === "connected" || c.state === "disabled");
  return !journal.ok && up(conns.reader) && up(conns.orders) ? "journal not saving" : "disconnected";
}

/** The order journal, shown only while its writes fail (a full disk, an I/O error). */
function renderJournal(journal) {
  const node = $("#conn-journal");
  node.hidden = journal.ok;
  if (journal.ok) return;
  setConn("#conn-journal", {cls: "down", text: `not saving since ${fmtClock(journal.since)}`},
    journal.unsaved ? `${journal.unsaved} order(s) unsaved` : "",
    `The order journal cannot be written: ${journal.error}. New orders are refused; the changes `
    + "of working orders are kept in memory and saved once it can be written again.");
}

/** IB's servers (1100/1101/1102) and the data farms (2103/2104, 2105/2106, 2157/2158). */
function renderIbServers(link) {
  const farms = link.farms || [];
  const down = farms.filter((f) => f.state === "broken");
  const view = !link.reachable ? {cls: "down", text: `unreachable since ${fmtClock(link.since)}`}
    : down.length ? {cls: "warn", text: "farm down"} : {cls: "up", text: "reachable"};
  const firstDown = Math.min(...down.map((f) => epoch(f.since)));
  const age = down.length === 1 ? `${down[0].name} broken since ${fmtClock(down[0].since)}`
    : down.length ? `${down.length} farms broken since ${fmtClock(firstDown)}`
    : farms.length ? `${farms.length} farm(s) ok` : "";
  const title = [link.reachable ? "IB's servers reachable" : link.reason]
    .concat(farms.map((f) => `${f.kind} farm ${f.name}: ${f.state} since ${fmtClock(f.since)} (${f.code})`))
    .join("\n");
  setConn("#conn-ib", view, age, title);
}

export function initHealth() {
  onHeader(renderHealth);
}
