// The watchlist panel: symbols kept on the server (GET/PUT /api/v1/watchlist), quotes pushed
// by the stream's `quotes` events, symbol search as one types (GET /api/v1/symbols).
import {$, api, el, fmtPct, fmtPrice, isNum} from "./util.js";

const SEARCH_DELAY_MS = 250;
let items = []; // [{symbol, sec_type}]
let quotes = new Map(); // "SYMBOL:TYPE" -> quote row
let onPick = () => {};
let loading = null; // the saved watchlist's load (asked again after a failure)
let editing = Promise.resolve(); // the edits being saved, one at a time
let searchTimer = null;
let suggestions = [];
let active = -1;

const key = (symbol, secType) => `${symbol}:${secType}`;

export async function setupWatchlist(pick) {
  onPick = pick;
  $("#watch-add").addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = active >= 0 ? suggestions[active] : null;
    addTyped(chosen);
  });
  const input = $("#watch-input");
  input.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, SEARCH_DELAY_MS);
  });
  input.addEventListener("keydown", (event) => {
    if (!suggestions.length) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      active = (active + (event.key === "ArrowDown" ? 1 : suggestions.length - 1)) % suggestions.length;
      renderSuggestions();
    } else if (event.key === "Escape") {
      hideSuggestions();
    }
  });
  await loadSaved();
  render();
}

/** The saved watchlist, once (true when loaded): an add typed before it came must join it,
 * not replace it on the server. */
function loadSaved() {
  loading ??= api("/api/v1/watchlist").then(
    (body) => { items = body.symbols; return true; },
    (err) => {
      loading = null;
      message(`The watchlist could not be loaded: ${err.message}`);
      return false;
    });
  return loading;
}

export function watchItems() {
  return items;
}

async function search() {
  const q = $("#watch-input").value.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9./ -]{0,19}$/.test(q)) { hideSuggestions(); return; }
  try {
    const found = await api(`/api/v1/symbols?q=${encodeURIComponent(q)}`);
    if ($("#watch-input").value.trim() !== q) return; // typed on meanwhile
    suggestions = found.results;
    active = suggestions.length ? 0 : -1;
    renderSuggestions();
  } catch (err) {
    hideSuggestions();
  }
}

function renderSuggestions() {
  const list = $("#watch-suggest");
  list.replaceChildren(...suggestions.map((s, i) => el("li", {
    role: "option", id: `watch-opt-${i}`, "aria-selected": i === active ? "true" : "false",
    class: i === active ? "active" : "", onmousedown: (event) => { event.preventDefault(); addTyped(s); },
  }, el("span", {class: "mono", text: s.symbol}), " ",
  el("span", {class: "muted small", text: `${s.sec_type === "CASH" ? "FX" : s.exchange} · ${s.description}`}))));
  list.hidden = !suggestions.length;
  $("#watch-input").setAttribute("aria-expanded", suggestions.length ? "true" : "false");
  if (active >= 0) $("#watch-input").setAttribute("aria-activedescendant", `watch-opt-${active}`);
}

function hideSuggestions() {
  suggestions = [];
  active = -1;
  $("#watch-suggest").hidden = true;
  $("#watch-input").setAttribute("aria-expanded", "false");
  $("#watch-input").removeAttribute("aria-activedescendant");
}

async function addTyped(chosen) {
  const typed = $("#watch-input").value.trim().toUpperCase();
  const item = chosen ? {symbol: chosen.symbol, sec_type: chosen.sec_type}
    : {symbol: typed, sec_type: /^[A-Z]{3}\.?[A-Z]{3}$/.test(typed) && typed.includes(".") ? "CASH" : "STK"};
  if (!item.symbol) return;
  hideSuggestions();
  if (!(await loadSaved())) return;
  await edit((list) => (list.some((i) => same(i, item)) ? list : [...list, item]));
  $("#watch-input").value = "";
}

const same = (a, b) => a.symbol === b.symbol && a.sec_type === b.sec_type;

/** One change of the list (list -> next list), saved after the ones before it and made to the
 * list they left: two quick edits must not each start from the list before both. */
function edit(change) {
  editing = editing.then(() => {
    const next = change(items);
    return next === items ? undefined : save(next);
  });
  return editing;
}

async function save(next) {
  try {
    items = (await api("/api/v1/watchlist", {method: "PUT", body: {symbols: next}})).symbols;
    message(null);
  } catch (err) {
    message(err.message);
  }
  render();
}

function message(text) {
  const node = $("#watch-message");
  node.hidden = !text;
  node.textContent = text || "";
}

/** A `quotes` event of the stream. */
export function onQuotes(frame) {
  quotes = new Map(frame.quotes.map((q) => [key(q.symbol, q.sec_type), q]));
  $("#watch-lines").textContent = `${frame.lines_used} of ${frame.lines_limit} market data lines`;
  if (frame.message) message(frame.message);
  render();
}

export function quoteOf(symbol, secType) {
  return quotes.get(key(symbol, secType));
}

// Rows are kept per symbol and updated in place: rebuilt on every quotes frame (several a
// second), a click whose mouse-up met a new button was lost, and a focused button lost focus.
const rowsByKey = new Map(); // "SYMBOL:TYPE" -> {row, tags, label, notice, bid, ask, last, chg}

function render() {
  const body = $("#watchlist tbody");
  $("#watch-empty").hidden = items.length > 0;
  const rows = items.map((item) => {
    const r = rowFor(item);
    const q = quotes.get(key(item.symbol, item.sec_type)) || {};
    const change = isNum(q.change_pct) ? q.change_pct : null;
    const label = q.market_data && q.market_data !== "live" && q.market_data !== "none" ? q.market_data : "";
    const notice = q.notice || "";
    if (r.label !== label || r.notice !== notice) {
      Object.assign(r, {label, notice});
      r.tags.replaceChildren(...[label && el("span", {class: "md-label", text: label}),
        notice && el("span", {class: "watch-notice small", text: notice})].filter(Boolean));
    }
    setText(r.bid, fmtPrice(q.bid));
    setText(r.ask, fmtPrice(q.ask));
    setText(r.last, fmtPrice(q.last));
    setText(r.chg, fmtPct(change));
    r.chg.className = `num chg ${change > 0 ? "pos" : change < 0 ? "neg" : ""}`;
    return r.row;
  });
  const kept = new Set(items.map((item) => key(item.symbol, item.sec_type)));
  for (const k of [...rowsByKey.keys()]) if (!kept.has(k)) rowsByKey.delete(k);
  const inPlace = rows.length === body.children.length && rows.every((row, i) => body.children[i] === row);
  if (!inPlace) body.replaceChildren(...rows);
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function rowFor(item) {
  const k = key(item.symbol, item.sec_type);
  let r = rowsByKey.get(k);
  if (r) return r;
  const cell = (name) => el("td", {class: `num ${name}`});
  r = {tags: el("span", {class: "watch-tags"}), label: "", notice: "", bid: cell("bid"), ask: cell("ask"),
    last: cell("last"), chg: cell("chg")};
  r.row = el("tr", {dataset: {symbol: item.symbol, secType: item.sec_type}, class: "watch-row"},
    el("th", {scope: "row"}, el("button", {type: "button", class: "link-btn mono", text: item.symbol,
      title: `Chart ${item.symbol}`, onclick: () => onPick(item)}), r.tags),
    r.bid, r.ask, r.last, r.chg,
    el("td", {}, el("button", {type: "button", class: "btn small-btn", "aria-label": `Remove ${item.symbol}`,
      text: "×", onclick: () => edit((list) => list.filter((i) => !same(i, item)))})));
  rowsByKey.set(k, r);
  return r;
}
