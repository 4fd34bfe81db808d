// The trader's screen: wires the watchlist, chart, alerts and notifications to the dashboard's
// event stream (app.js re-dispatches its `state` and `quotes` events as window events).
import {setupAlerts, refreshAlerts} from "./alerts.js";
import {chartTarget, onQuote, onState, setupChart, showSymbol} from "./chart.js";
import {alertEvents, orderEvents, setupNotifications} from "./notify.js";
import {renderPnl} from "./pnl.js";
import {api} from "./util.js";
import {onQuotes, quoteOf, setupWatchlist, watchItems} from "./watchlist.js";

function watchChart(item) {
  // the chart's symbol streams too (one shared line), even when it is not in the watchlist
  window.dashboardWatch = `${item.symbol}:${item.sec_type}`;
  window.dispatchEvent(new Event("dashboard:restream"));
  showSymbol(item);
  window.dispatchEvent(new Event("dashboard:chart"));
}

window.addEventListener("dashboard:state", (event) => {
  orderEvents(event.detail.orders);
  onState(event.detail);
  renderPnl(event.detail);
});

function onFrame(frame) {
  onQuotes(frame);
  const target = chartTarget();
  if (target) onQuote(quoteOf(target.symbol, target.sec_type));
  alertEvents(frame.alerts, refreshAlerts);
  // alerts made or deleted elsewhere (a script, another tab) show without a reload
  if (frame.alerts_version !== undefined && frame.alerts_version !== alertsVersion) {
    if (alertsVersion !== null) refreshAlerts();
    alertsVersion = frame.alerts_version;
  }
}
let alertsVersion = null; // the alerts_version of the last quotes frame

window.addEventListener("dashboard:quotes", (event) => {
  let frame;
  try { frame = JSON.parse(event.detail); } catch (err) { return; }
  onFrame(frame);
});

// While the page polls /state (no stream), the quotes are polled too, at the same period: each
// poll also keeps the watchlist's and the chart's lines streamed at the server.
let quotePoll = null;
let quotePolling = false;

async function pollQuotes() {
  if (quotePolling) return;
  quotePolling = true;
  try {
    const watch = window.dashboardWatch ? `?watch=${encodeURIComponent(window.dashboardWatch)}` : "";
    const frame = await api(`/api/v1/quotes${watch}`);
    if (quotePoll !== null) onFrame(frame);
  } catch (err) {
    // the /state poll says the server is unreachable; the next poll tries again
  } finally {
    quotePolling = false;
  }
}

window.addEventListener("dashboard:feed", (event) => {
  const {mode, pollMs} = event.detail;
  if (mode === "polling" && quotePoll === null) {
    quotePoll = setInterval(pollQuotes, pollMs);
    pollQuotes();
  } else if (mode !== "polling" && quotePoll !== null) {
    clearInterval(quotePoll);
    quotePoll = null;
  }
});

setupChart();
setupNotifications();
setupAlerts(() => chartTarget());
await setupWatchlist(watchChart);
const first = watchItems()[0];
watchChart(first || {symbol: "AAPL", sec_type: "STK"});
