// Numbers, prices, sides and times as the trader reads them. The API sends times as
// ISO 8601 UTC text (2026-11-30T15:00:00.123Z); they are shown in the browser's time zone,
// which every clock names (10:00:00 EST): the server's messages give theirs in UTC.

const numberFormats = new Map();
export function nf(min, max) {
  const key = `${min}:${max}`;
  if (!numberFormats.has(key)) {
    numberFormats.set(key, new Intl.NumberFormat(undefined, {minimumFractionDigits: min, maximumFractionDigits: max}));
  }
  return numberFormats.get(key);
}
export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
export const fmtMoney = (v) => (isNum(v) ? nf(2, 2).format(v) : "—");
export const fmtSigned = (v) => (isNum(v) ? (v > 0 ? "+" : "") + nf(2, 2).format(v) : "—");
export const fmtQty = (v) => (isNum(v) ? nf(0, 4).format(v) : "—");
// A price shows every decimal it has: 150.005 on USD.JPY's half-pip grid, 110.015625 on a bond
// future's 1/64 (two decimals would show a price the order does not have); at least 2 (4 under 10);
// float noise past the 8th decimal is rounded away.
export const fmtPrice = (v) => (isNum(v) ? (Math.abs(v) < 10 ? nf(4, 8) : nf(2, 8)).format(v) : "—");
// An average (of fills, of cost) sits on no grid: four decimals (six under 10).
export const fmtAvg = (v) => (isNum(v) ? (Math.abs(v) < 10 ? nf(4, 6) : nf(2, 4)).format(v) : "—");
// A price IB did not send live: delayed (no subscription), frozen (its last price before the
// market closed: MARKET_DATA_TYPE 2 or 4) or both. Labelled alike in the ticket and positions.
const NOT_LIVE_WHY = {
  delayed: "~15 min old, the account has no live market-data subscription",
  frozen: "the last price IB recorded before the market closed",
  "delayed-frozen": "the last delayed price IB recorded before the market closed",
};
/** The market data of a price that is not live ("delayed", "frozen"...), else null. */
export const notLive = (md) => (typeof md === "string" && md !== "live" && md !== "none" ? md : null);
export const notLiveWhy = (md) => NOT_LIVE_WHY[md] || `${md} data`;
export const signClass = (v) => (!isNum(v) || v === 0 ? "flat" : v > 0 ? "pos" : "neg");
export const pad = (n, w = 2) => String(n).padStart(w, "0");

/** Epoch seconds of an API time (ISO text; epoch seconds are taken as they are), or null. */
export function epoch(value) {
  if (isNum(value)) return value;
  if (typeof value !== "string" || !value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms / 1000;
}

const zoneFormat = new Intl.DateTimeFormat(undefined, {timeZoneName: "short"});
/** The browser's time zone at that instant, as the trader knows it (EST, EDT, UTC, GMT+1). */
export function zoneName(d) {
  const part = zoneFormat.formatToParts(d).find((p) => p.type === "timeZoneName");
  return part ? part.value : "";
}

/** HH:MM:SS[.mmm] ZONE in the browser's time zone (every clock on the page). */
export function fmtClock(time, withMs) {
  const seconds = epoch(time);
  if (seconds === null) return "—";
  const d = new Date(seconds * 1000);
  const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base} ${zoneName(d)}`.trimEnd();
}

export function fmtExecTime(text) {
  const seconds = epoch(text);
  if (seconds === null) return String(text || "—");
  const d = new Date(seconds * 1000);
  const clock = fmtClock(seconds);
  return d.toDateString() === new Date().toDateString() ? clock : `${d.toLocaleDateString()} ${clock}`;
}

export function fmtAge(seconds) {
  if (!isNum(seconds)) return "";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

export const sideWord = (action) => (action === "BUY" ? "Buy" : action === "SELL" ? "Sell" : String(action || "—"));
export const sideClass = (action) => (action === "BUY" ? "buy" : "sell");
