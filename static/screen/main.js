// The trader's screen: wires the watchlist, chart, alerts and notifications to the dashboard's
// event stream (app.js re-dispatches its `state` and `quotes` events as window events).
import {setupAlerts, refreshAlerts} from "./alerts.js";
import {chartTarget, onQuote, onState, setupChart, showSymbol} from "./chart.js";
import {alertEvents, orderEvents, setupNotifications} from "./notify.js";
import {renderPnl} from "./pnl.js";
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

window.addEventListener("dashboard:quotes", (event) => {
  let frame;
  try { frame = JSON.parse(event.detail); } catch (err) { return; }
  onQuotes(frame);
  const target = chartTarget();
  if (target) onQuote(quoteOf(target.symbol, target.sec_type));
  alertEvents(frame.alerts, refreshAlerts);
});

setupChart();
setupNotifications();
setupAlerts(() => chartTarget());
await setupWatchlist(watchChart);
const first = watchItems()[0];
watchChart(first || {symbol: "AAPL", sec_type: "STK"});
