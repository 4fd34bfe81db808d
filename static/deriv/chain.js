// Option chain view: expiry tabs, strikes around the money, calls | strike | puts with
// bid / ask / IV / delta. Clicking a bid or an ask fills the derivatives ticket (a
// "deriv:fill-ticket" CustomEvent on document; ask → buy, bid → sell, at that price).
import {fmtPrice} from "../js/format.js";
import {api, clock, el, fmt, isNum} from "./http.js";

const STRIKES_EACH_SIDE = 8;
const LEG_COLUMNS = ["bid", "ask", "implied_vol", "delta"];

export function mountChain(root) {
  const symbol = el("input", {id: "chain-symbol", class: "symbol-input", value: "AAPL", maxlength: 15,
    spellcheck: "false", autocapitalize: "characters", "aria-label": "Underlying symbol"});
  const load = el("button", {type: "button", class: "btn small-btn", id: "chain-load", text: "Load chain"});
  const refresh = el("button", {type: "button", class: "btn small-btn", id: "chain-refresh", text: "Refresh", disabled: true});
  const tabs = el("div", {class: "chain-tabs", id: "chain-tabs", role: "tablist", "aria-label": "Expiries"});
  const status = el("p", {class: "small muted chain-status", id: "chain-status", role: "status", text: "Load a symbol's option chain."});
  const table = el("table", {class: "grid chain-table", id: "chain-table", hidden: true});
  root.append(el("div", {class: "chain-bar"}, symbol, load, refresh), tabs, status, table);

  let current = {symbol: null, expiry: null, board: null};
  let loads = 0; // a late answer of an earlier load (another symbol) is dropped

  async function loadChain() {
    const wanted = symbol.value.trim().toUpperCase();
    if (!wanted) return;
    const seq = ++loads;
    status.textContent = `Loading the ${wanted} option chain…`;
    tabs.replaceChildren();
    table.hidden = true;
    try {
      const chain = await api(`/api/v1/options/chain?${new URLSearchParams({symbol: wanted})}`);
      if (seq !== loads) return;
      const options = chain.classes[0];
      current = {symbol: chain.symbol, expiry: null, board: null, multiplier: options.multiplier};
      for (const expiry of options.expirations) {
        tabs.append(el("button", {type: "button", role: "tab", class: "chain-tab", "aria-selected": "false",
          dataset: {expiry}, text: expiryText(expiry), title: expiry, onclick: () => selectExpiry(expiry)}));
      }
      status.textContent = `${chain.symbol}: ${options.expirations.length} expiries, ${options.strikes.length} strikes, ×${options.multiplier}.`;
      if (options.expirations.length) await selectExpiry(options.expirations[0]);
    } catch (err) {
      if (seq === loads) status.textContent = err.message;
    }
  }

  async function selectExpiry(expiry) {
    const asked = current; // a new load replaces it: this answer is then another symbol's
    current.expiry = expiry;
    for (const tab of tabs.children) tab.setAttribute("aria-selected", String(tab.dataset.expiry === expiry));
    status.textContent = `Quoting ${current.symbol} ${expiry}…`;
    // another expiry's board must not stand under this tab (a price click fills the ticket)
    if (!current.board || current.board.expiry !== expiry) table.hidden = true;
    refresh.disabled = true;
    try {
      const params = new URLSearchParams({symbol: current.symbol, expiry, strikes: String(STRIKES_EACH_SIDE)});
      const board = await api(`/api/v1/options/quotes?${params}`);
      if (current !== asked || current.expiry !== expiry) return; // another tab or symbol meanwhile
      current.board = board;
      renderBoard(board);
      status.textContent = `${board.symbol} ${board.expiry} · underlying ${fmt(board.under_price)} · ×${board.multiplier} · ${board.market_data} data · as of ${clock(board.time)}`;
    } catch (err) {
      if (current === asked && current.expiry === expiry) status.textContent = err.message;
    } finally {
      refresh.disabled = false;
    }
  }

  function renderBoard(board) {
    const atm = nearest(board.rows.map((r) => r.strike), board.under_price);
    const head = el("thead", {},
      el("tr", {}, el("th", {colspan: 4, class: "calls", text: "Calls"}), el("th", {class: "strike", text: ""}),
        el("th", {colspan: 4, class: "puts", text: "Puts"})),
      el("tr", {}, ...["Bid", "Ask", "IV", "Δ"].map((t) => el("th", {class: "num", text: t})),
        el("th", {class: "strike", text: "Strike"}), ...["Bid", "Ask", "IV", "Δ"].map((t) => el("th", {class: "num", text: t}))));
    const body = el("tbody", {});
    for (const row of board.rows) {
      const itmCall = isNum(board.under_price) && row.strike < board.under_price;
      body.append(el("tr", {class: row.strike === atm ? "atm" : "", dataset: {strike: String(row.strike)}},
        legCells(board, row.strike, "C", row.call, itmCall),
        el("td", {class: "strike", text: fmt(row.strike, row.strike % 1 ? 2 : 0)}),
        legCells(board, row.strike, "P", row.put, !itmCall && row.strike !== board.under_price)));
    }
    table.replaceChildren(head, body);
    table.hidden = false;
  }

  function legCells(board, strike, right, leg, itm) {
    const cls = itm ? "itm" : "";
    if (!leg) return LEG_COLUMNS.map(() => el("td", {class: `num ${cls}`, text: "—"}));
    const side = right === "C" ? "call" : "put";
    const price = (name, action) => el("td", {class: `num ${cls}`}, el("button", {
      type: "button", class: `chain-price ${name}`, disabled: !isNum(leg[name]),
      dataset: {leg: `${side}-${strike}-${name}`},
      "aria-label": `${action === "BUY" ? "Buy" : "Sell"} ${leg.description} at ${fmtPrice(leg[name])}`,
      text: fmtPrice(leg[name]),
      onclick: () => fillTicket(board, strike, right, action, leg[name]),
    }));
    return [price("bid", "SELL"), price("ask", "BUY"),
      el("td", {class: `num ${cls}`, text: isNum(leg.implied_vol) ? `${fmt(leg.implied_vol * 100, 1)}%` : "—"}),
      el("td", {class: `num ${cls}`, text: fmt(leg.delta, 2)})];
  }

  function fillTicket(board, strike, right, action, price) {
    document.dispatchEvent(new CustomEvent("deriv:fill-ticket", {detail: {
      sec_type: "OPT", symbol: board.symbol, expiry: board.expiry, strike, right, action,
      order_type: "LMT", limit_price: price, multiplier: board.multiplier,
    }}));
  }

  load.addEventListener("click", loadChain);
  refresh.addEventListener("click", () => current.expiry && selectExpiry(current.expiry));
  symbol.addEventListener("keydown", (event) => { if (event.key === "Enter") loadChain(); });
}

function nearest(strikes, price) {
  if (!isNum(price) || !strikes.length) return null;
  return strikes.reduce((best, s) => (Math.abs(s - price) < Math.abs(best - price) ? s : best));
}

function expiryText(expiry) {
  const date = new Date(Date.UTC(+expiry.slice(0, 4), +expiry.slice(4, 6) - 1, +expiry.slice(6, 8)));
  return date.toLocaleDateString("en-US", {month: "short", day: "numeric", year: "2-digit", timeZone: "UTC"});
}
