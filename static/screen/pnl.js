// P&L today: the account's (IB's reqPnL) and each position's (reqPnLSingle), from the state.
import {$, el, isNum} from "./util.js";

function signed(v) {
  if (!isNum(v)) return "—";
  const text = Math.abs(v).toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: 2});
  return v > 0 ? `+${text}` : v < 0 ? `\u2212${text}` : text;
}

const cls = (v) => (isNum(v) && v > 0 ? "pos" : isNum(v) && v < 0 ? "neg" : "");

// today's P&L is in the account's currency; a JPY position's unrealized P&L in yen: named
const inOwnCurrency = (p, base) => (p.currency && p.currency !== base
  ? el("span", {class: "tag ccy", title: `in ${p.currency}, not ${base}`, text: p.currency}) : null);

export function renderPnl(state) {
  const figures = (state.account && state.account.figures) || {};
  const base = (state.account && state.account.currency) || "USD";
  const total = $("#pnl-today");
  total.textContent = signed(figures.daily_pnl);
  total.className = `pnl-total ${cls(figures.daily_pnl)}`;
  $("#pnl-rows tbody").replaceChildren(...(state.positions || []).map((p) => el("tr", {dataset: {symbol: p.symbol}},
    el("th", {scope: "row", class: "mono", text: p.description || p.symbol}),
    el("td", {class: `num today ${cls(p.daily_pnl)}`, text: signed(p.daily_pnl)}),
    el("td", {class: `num ${cls(p.unrealized_pnl)}`}, signed(p.unrealized_pnl), inOwnCurrency(p, base)))));
}
