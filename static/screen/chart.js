// The chart panel: candlesticks and volume (TradingView lightweight-charts), bar sizes
// 1m/5m/1h/1D, the last bar live from the stream's quotes, working orders and the average
// cost as price lines. Dragging an order's line proposes a modify through the order
// modification dialog (the same confirm step as its Modify button).
import {CandlestickSeries, HistogramSeries, LineStyle, createChart} from "../vendor/lightweight-charts.js";
import {priceTick} from "../js/rules.js";
import {zoneName} from "../js/format.js";
import {onThemeChange, themeColor} from "../js/theme.js";
import {$, api, isNum} from "./util.js";

const DURATION = {"1m": "1D", "5m": "5D", "1h": "1M", "1D": "1Y"};
const SECONDS = {"1m": 60, "5m": 300, "1h": 3600, "1D": 86400};
const GRAB_PX = 7;

let chart = null;
let candles = null;
let volume = null;
let target = null; // {symbol, sec_type}
let bar = "5m";
let last = null; // the last bar {time, open, high, low, close}
let clockOffset = 0; // gateway clock - ours (s): where the live bar is
let orderLines = new Map(); // order id -> {line, order, field, price}
let costLine = null;
let drag = null;
let loadSeq = 0;
let retryLoad = false; // the bars were refused for want of the gateway (503/504): ask again once it is back

// lightweight-charts draws every time as UTC, and the page shows times in the browser's zone
// (fills, quotes, the header): an intraday bar is drawn at its time shifted by that zone's
// offset at that instant, so its axis and crosshair read the trader's clock. Daily bars are
// dates (midnight UTC): not shifted.
const drawnTime = (t) => (bar === "1D" ? t : t - new Date(t * 1000).getTimezoneOffset() * 60);

/** The chart's colours from the page theme's variables (again after every theme change). */
function themed() {
  return {
    layout: {background: {color: themeColor("--card") || "#fff"}, textColor: themeColor("--text") || "#172033"},
    grid: {vertLines: {color: themeColor("--border")}, horzLines: {color: themeColor("--border")}},
  };
}

export function setupChart() {
  const box = $("#chart");
  const colors = themed();
  chart = createChart(box, {
    autoSize: true,
    layout: {attributionLogo: false, ...colors.layout},
    grid: colors.grid,
    timeScale: {timeVisible: true, secondsVisible: false},
    rightPriceScale: {scaleMargins: {top: 0.08, bottom: 0.25}},
  });
  onThemeChange(() => chart.applyOptions(themed()));
  candles = chart.addSeries(CandlestickSeries, {upColor: "#0c8a4f", downColor: "#d2332b",
    borderVisible: false, wickUpColor: "#0c8a4f", wickDownColor: "#d2332b"});
  volume = chart.addSeries(HistogramSeries, {priceFormat: {type: "volume"}, priceScaleId: "volume",
    color: "rgba(104, 114, 135, .45)", lastValueVisible: false, priceLineVisible: false});
  chart.priceScale("volume").applyOptions({scaleMargins: {top: 0.86, bottom: 0}});
  for (const button of document.querySelectorAll(".bar-sizes button")) {
    button.addEventListener("click", () => setBar(button.dataset.bar));
  }
  box.addEventListener("pointerdown", grab, {capture: true});
  box.addEventListener("pointermove", hover);
  window.addEventListener("pointermove", dragMove);
  window.addEventListener("pointerup", release);
  window.screenDebug = {orderLineY, chartBox: () => box.getBoundingClientRect(), bars: () => last,
    drawnAt: () => drawnAt};
}

let drawnAt = null; // performance.now() after the last setData (the bench reads it)

export function chartTarget() {
  return target;
}

export function showSymbol(item) {
  target = {symbol: item.symbol, sec_type: item.sec_type};
  $("#chart-symbol").textContent = item.symbol;
  return load();
}

function setBar(next) {
  bar = next;
  for (const button of document.querySelectorAll(".bar-sizes button")) {
    button.setAttribute("aria-pressed", button.dataset.bar === bar ? "true" : "false");
  }
  load();
}

async function load() {
  if (!target) return;
  const seq = ++loadSeq;
  retryLoad = false;
  const status = $("#chart-status");
  status.textContent = `Loading ${target.symbol} ${bar}…`;
  const query = new URLSearchParams({symbol: target.symbol, sec_type: target.sec_type, bar,
    duration: DURATION[bar]});
  try {
    const body = await api(`/api/v1/bars?${query}`);
    if (seq !== loadSeq) return;
    const epoch = (iso) => drawnTime(Math.floor(Date.parse(iso) / 1000)); // the API's times are ISO 8601
    const rows = body.bars.map((b) => ({time: epoch(b.time), open: b.open, high: b.high, low: b.low, close: b.close}));
    candles.setData(rows);
    volume.setData(body.bars.map((b) => ({time: epoch(b.time), value: Math.max(0, b.volume),
      color: b.close >= b.open ? "rgba(12, 138, 79, .35)" : "rgba(210, 51, 43, .35)"})));
    drawnAt = performance.now();
    last = rows.length ? {...rows[rows.length - 1]} : null;
    const gatewayTime = body.gateway_time ? Date.parse(body.gateway_time) : NaN;
    clockOffset = isNum(gatewayTime) ? (gatewayTime - Date.now()) / 1000 : 0;
    chart.timeScale().fitContent();
    status.textContent = `${target.symbol} · ${body.bars.length} bars of ${body.bar_size} · ${body.what}`
      + (bar === "1D" ? "" : ` · times ${zoneName(new Date())}`);
  } catch (err) {
    if (seq !== loadSeq) return;
    candles.setData([]);
    volume.setData([]);
    last = null;
    retryLoad = err.status === 503 || err.status === 504;
    status.textContent = `No bars for ${target.symbol}: ${err.message}`;
  }
}

/** A quote of the chart's symbol: the last bar moves (or a new one starts). */
export function onQuote(q) {
  if (!last || !q || !isNum(q.last)) return;
  const seconds = SECONDS[bar];
  const now = Date.now() / 1000 + clockOffset;
  const start = drawnTime(Math.floor(now / seconds) * seconds);
  if (start > last.time && seconds < 86400) {
    last = {time: start, open: q.last, high: q.last, low: q.last, close: q.last};
  } else {
    last = {...last, high: Math.max(last.high, q.last), low: Math.min(last.low, q.last), close: q.last};
  }
  candles.update(last);
}

// ------------------------------------------------------------------ price lines
// The grid the server checks a price against (its x-price-ticks: USD.JPY 0.005, other pairs
// 0.00005, stocks a cent or 0.0001 under $1). A future's or an option's grid is the broker's
// market rule, not known here: a cent, and the modify dialog names the increment it refuses.
function tickOf(price) {
  return (target && priceTick(target.sec_type, target.symbol, price)) || 0.01;
}

function roundTick(price) {
  const tick = tickOf(price);
  const decimals = (String(tick).split(".")[1] || "").length;
  return Number((Math.round(price / tick) * tick).toFixed(decimals));
}

/** Working orders and the position of the chart's symbol, from the dashboard's state. */
export function onState(state) {
  if (!candles || !target) return;
  const reader = state.status && state.status.connections && state.status.connections.reader;
  if (retryLoad && reader && reader.state === "connected") load(); // the gateway is back

  const mine = (state.orders || []).filter((o) => o.open && o.symbol === target.symbol
    && (o.sec_type || "STK") === target.sec_type);
  const seen = new Set();
  for (const o of mine) {
    const field = isNum(o.limit_price) ? "limit_price" : isNum(o.stop_price) ? "stop_price" : null;
    if (!field) continue;
    seen.add(o.id);
    const price = o[field];
    const title = `${o.action} ${o.quantity} ${o.order_type}${o.ours ? "" : " (other client)"}`;
    const entry = orderLines.get(o.id);
    if (drag && drag.id === o.id) continue;
    if (entry) {
      entry.line.applyOptions({price, title});
      Object.assign(entry, {order: o, field, price});
    } else {
      const line = candles.createPriceLine({price, title, lineWidth: 2, lineStyle: LineStyle.Dashed,
        color: o.action === "BUY" ? "#0c8a4f" : "#d2332b", axisLabelVisible: true});
      orderLines.set(o.id, {line, order: o, field, price});
    }
  }
  for (const [id, entry] of orderLines) {
    if (!seen.has(id) && !(drag && drag.id === id)) {
      candles.removePriceLine(entry.line);
      orderLines.delete(id);
    }
  }
  const position = (state.positions || []).find((p) => p.symbol === target.symbol && p.quantity
    && (p.sec_type || "STK") === target.sec_type); // not an option's per-contract cost on its stock
  if (position && isNum(position.avg_cost)) {
    const title = `avg cost ${position.quantity > 0 ? "long" : "short"} ${Math.abs(position.quantity)}`;
    if (costLine) costLine.applyOptions({price: position.avg_cost, title});
    else costLine = candles.createPriceLine({price: position.avg_cost, title, color: "#2f6fed",
      lineWidth: 1, lineStyle: LineStyle.Solid, axisLabelVisible: true});
  } else if (costLine) {
    candles.removePriceLine(costLine);
    costLine = null;
  }
}

function orderLineY(id) {
  const entry = orderLines.get(id);
  return entry ? candles.priceToCoordinate(entry.price) : null;
}

function lineAt(event) {
  const box = $("#chart").getBoundingClientRect();
  const y = event.clientY - box.top;
  for (const [id, entry] of orderLines) {
    if (!entry.order.ours) continue; // other clients' orders are not ours to modify
    const at = candles.priceToCoordinate(entry.price);
    if (at !== null && Math.abs(at - y) <= GRAB_PX) return [id, entry];
  }
  return null;
}

function hover(event) {
  if (drag) return;
  $("#chart").style.cursor = lineAt(event) ? "ns-resize" : "";
}

function grab(event) {
  const found = lineAt(event);
  if (!found) return;
  event.preventDefault();
  event.stopPropagation(); // the chart does not scroll while a line is dragged
  const [id, entry] = found;
  drag = {id, entry, price: entry.price};
  chart.applyOptions({handleScroll: false, handleScale: false});
}

function dragMove(event) {
  if (!drag) return;
  const box = $("#chart").getBoundingClientRect();
  const price = candles.coordinateToPrice(event.clientY - box.top);
  if (!isNum(price) || price <= 0) return;
  drag.price = roundTick(price);
  drag.entry.line.applyOptions({price: drag.price, title: `→ ${drag.price}`});
}

function release() {
  if (!drag) return;
  const {id, entry, price} = drag;
  drag = null;
  chart.applyOptions({handleScroll: true, handleScale: true});
  entry.line.applyOptions({price: entry.price});
  if (price !== entry.price && typeof window.dashboardModify === "function") {
    window.dashboardModify(id, {[entry.field]: price});
  }
}
