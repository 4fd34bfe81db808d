// The order ticket: the form, its live quote, and what blocks it (read-only, kill switch,
// IB's servers unreachable). Reviewing an order goes on in confirm.js.
import {api, serverErrors} from "./api.js";
import {hideConfirm, refreshConfirm, review} from "./confirm.js";
import {$, $$} from "./dom.js";
import {fmtClock, fmtPrice, fmtQty, isNum, nf, notLive, notLiveWhy, sideWord} from "./format.js";
import {clearErrors, numberOf} from "./forms.js";
import {readerUp} from "./health.js";
import {haltReason} from "./killswitch.js";
import {needsOf, symbolPattern} from "./rules.js";
import {createSpark} from "./spark.js";
import {onHeader} from "./store.js";
import {toast} from "./toasts.js";

const QUOTE_REFRESH_MS = 2000;
// a refresh unanswered this long takes the last quote off (5 s old by then): its bid and ask
// are not offered to the limit field as if current while the gateway is slow or stalled
const QUOTE_STALE_MS = 3000;

export const form = $("#order-form");
const F = form.elements;
let blocked = false;
// working orders to cancel with the position closed from the Positions table
let closing = null; // the position the ticket was filled to close: {symbol, side, quantity, currency, account, con_id, orders}
let listingOf = null; // the symbol a Close filled the Currency for (reset to USD on another symbol)

export const ticketBlocked = () => blocked;

export function currentSide() {
  return $("#action-sell").checked ? "SELL" : "BUY";
}

export function updateTicketLayout() {
  const needs = needsOf(F.order_type.value);
  const shown = {limit: needs.limit_price, stop: needs.stop_price, trail: needs.trailing};
  for (const node of $$("[data-needs]", form)) node.hidden = !shown[node.dataset.needs];
  $(".prices", form).hidden = !(shown.limit || shown.stop || shown.trail);
  $("#trail-unit-label").textContent = F.trail_unit.value === "percent" ? "percent" : "amount";
  $("#bracket-fields").hidden = !$("#bracket").checked;
  const side = currentSide();
  const reviewBtn = $("#review-btn");
  reviewBtn.classList.toggle("buy", side === "BUY");
  reviewBtn.classList.toggle("sell", side === "SELL");
  reviewBtn.textContent = `Review ${side === "BUY" ? "buy" : "sell"} order`;
  const stock = F.sec_type.value === "STK";
  $("#currency-field").hidden = !stock; // an FX pair's currencies are in its symbol
  F.quantity.step = stock ? "1" : "any";
  F.quantity.min = stock ? "1" : "0";
  $("#quantity-unit").textContent = stock ? "shares" : "units of the base currency (EUR.USD: euros)";
}

/** The request body exactly as the API takes it (hidden price inputs are not sent). */
export function readTicket() {
  const type = F.order_type.value;
  const needs = needsOf(type);
  const body = {
    symbol: String(F.symbol.value || "").trim().toUpperCase(),
    action: currentSide(),
    quantity: numberOf(F.quantity),
    order_type: type,
    tif: F.tif.value,
    outside_rth: F.outside_rth.checked,
    sec_type: F.sec_type.value,
  };
  const currency = listingCurrency();
  if (body.sec_type === "STK" && currency !== "USD") body.currency = currency; // USD: the default
  if (needs.limit_price) body.limit_price = numberOf(F.limit_price);
  if (needs.stop_price) body.stop_price = numberOf(F.stop_price);
  if (needs.trailing) body[F.trail_unit.value === "percent" ? "trailing_percent" : "trailing_amount"] = numberOf(F.trail_value);
  if ($("#bracket").checked) {
    const tp = numberOf(F.take_profit);
    const sl = numberOf(F.stop_loss);
    if (tp !== null) body.take_profit = tp;
    if (sl !== null) body.stop_loss = sl;
  }
  return body;
}

/** The stock listing's currency the ticket names (USD unless typed or filled by a Close). */
function listingCurrency() {
  return String(F.currency.value || "").trim().toUpperCase() || "USD";
}

/** The position `body` closes (the ticket was filled by its Close, same symbol and side). */
const closeOf = (body) => (closing && closing.symbol === body.symbol && closing.side === body.action
  && (body.sec_type !== "STK" || (body.currency || "USD") === closing.currency) ? closing : null);

/** The working orders to cancel with this order, when it closes the position they guard. */
export function closingOrders(body) {
  const close = closeOf(body);
  return close ? close.orders : [];
}

/** Why `body`, a close, no longer closes its position (`positions`: the latest), or null: the
 * position shrank, went or turned since the ticket was filled (a sale elsewhere, a stop), and
 * the old quantity would open a position the other way. A position as it was, with more
 * typed (a reversal on purpose), is no mismatch. */
export function closeMismatch(body, positions) {
  const close = closeOf(body);
  if (!close) return null;
  const row = (positions || []).find((p) => p.account === close.account && p.con_id === close.con_id);
  const held = row ? row.quantity : 0;
  const closable = close.side === "SELL" ? held : -held;
  if (closable >= body.quantity - 1e-9 || closable >= close.quantity - 1e-9) return null;
  const now = held ? `is now ${fmtQty(held)}` : "is no longer held";
  return `${close.symbol} ${now} (the ticket was filled to close ${fmtQty(close.quantity)}): `
    + `${sideWord(close.side)} ${fmtQty(body.quantity)} would open a position the other way. `
    + "Fill the close again from the position.";
}

/** A close was sent: the ticket no longer closes anything, and its quantity is emptied so a
 * second Review cannot send the same close again before the fill shows. */
export function closeSent(body) {
  if (!closeOf(body)) return;
  closing = null;
  F.quantity.value = "";
}

// ------------------------------------------------------------------- quote
export const quote = {symbol: null, secType: null, currency: null, data: null, seq: 0, timer: null, debounce: null, history: []};
let quoteSpark = null; // the quote's sparkline (spark.js)

function quoteTarget() {
  const symbol = String(F.symbol.value || "").trim().toUpperCase();
  if (!symbolPattern().test(symbol)) return null; // not worth asking the broker
  const secType = F.sec_type.value;
  return {symbol, secType, currency: secType === "STK" ? listingCurrency() : null};
}

function clearQuote(message) {
  quote.data = null;
  quote.history = [];
  for (const id of ["#quote-bid", "#quote-ask", "#quote-last"]) $(id).textContent = "—";
  $("#quote-bid-btn").disabled = true;
  $("#quote-ask-btn").disabled = true;
  quoteSpark.clear();
  $("#quote-status").textContent = message;
  $("#quote").classList.remove("has-quote", "delayed");
}

function clearSymbolNotice() {
  const symErr = $("#symbol-error");
  if (symErr.dataset.source === "quote") { symErr.textContent = ""; delete symErr.dataset.source; F.symbol.removeAttribute("aria-invalid"); }
  $("#fx-suggest").hidden = true;
}

export function requestQuote(reset) {
  clearTimeout(quote.timer);
  const target = quoteTarget();
  if (!target) {
    quote.symbol = null;
    clearSymbolNotice();
    clearQuote("Enter a symbol for a live quote.");
    return;
  }
  if (reset || target.symbol !== quote.symbol || target.secType !== quote.secType
      || target.currency !== quote.currency) {
    clearSymbolNotice();
    quote.symbol = target.symbol;
    quote.secType = target.secType;
    quote.currency = target.currency;
    clearQuote(`Fetching a quote for ${target.symbol}…`);
  }
  fetchQuote(target);
}

export function quoteParams(symbol, secType, currency) {
  const params = new URLSearchParams({symbol, sec_type: secType});
  if (secType === "STK" && currency && currency !== "USD") params.set("currency", currency);
  return params;
}

async function fetchQuote(target) {
  const seq = ++quote.seq;
  if (!readerUp() || document.hidden) { // no broker to ask (or nobody looking): try again later
    quote.timer = setTimeout(() => fetchQuote(target), QUOTE_REFRESH_MS);
    // the last prices are not shown (nor offered to the limit field) as if they were current
    if (!readerUp()) clearQuote("Quote paused: the reader connection is down.");
    return;
  }
  const stale = setTimeout(() => {
    if (seq === quote.seq && quote.data) clearQuote("Waiting for a fresh quote: the gateway is slow to answer.");
  }, QUOTE_STALE_MS);
  try {
    const q = await api(`/api/v1/quote?${quoteParams(target.symbol, target.secType, target.currency)}`);
    clearTimeout(stale);
    if (seq !== quote.seq) return;
    showQuote(q);
    clearSymbolNotice();
    quote.timer = setTimeout(() => fetchQuote(target), QUOTE_REFRESH_MS);
  } catch (err) {
    clearTimeout(stale);
    if (seq !== quote.seq) return;
    if (err.code === "unknown_symbol" || err.status === 400) {
      clearQuote("No quote.");
      const symErr = $("#symbol-error");
      const fx = (err.details || []).find((d) => d && d.suggested === "CASH");
      symErr.textContent = fx ? `${target.symbol} is not a stock: it looks like an FX pair`
        : err.code === "unknown_symbol" ? `unknown symbol ${target.symbol}` : (serverErrors(err).symbol || err.message);
      symErr.dataset.source = "quote";
      F.symbol.setAttribute("aria-invalid", "true");
      $("#fx-suggest").hidden = !fx;
      return; // no refresh until the symbol changes
    }
    clearQuote(`Quote unavailable: ${err.message}`);
    quote.timer = setTimeout(() => fetchQuote(target), QUOTE_REFRESH_MS * 2);
  }
}

function showQuote(q) {
  quote.data = q;
  $("#quote-bid").textContent = fmtPrice(q.bid);
  $("#quote-ask").textContent = fmtPrice(q.ask);
  $("#quote-last").textContent = fmtPrice(isNum(q.last) ? q.last : q.close);
  $("#quote-bid-btn").disabled = !isNum(q.bid);
  $("#quote-ask-btn").disabled = !isNum(q.ask);
  $("#quote").classList.add("has-quote");
  const spread = isNum(q.bid) && isNum(q.ask) ? q.ask - q.bid : null;
  const delayed = notLive(q.market_data); // delayed, frozen or delayed-frozen: every price says so
  $("#quote").classList.toggle("delayed", delayed !== null);
  $("#quote").dataset.marketData = delayed || "";
  const kind = delayed ? `${delayed.toUpperCase()} (${notLiveWhy(delayed)}) · ` : "";
  $("#quote-status").textContent = q.notice ? q.notice
    : `${kind}${q.symbol} · ${spread !== null ? `spread ${nf(2, 5).format(spread)} · ` : ""}as of ${fmtClock(q.time)}`;
  const mid = isNum(q.last) ? q.last : isNum(q.bid) && isNum(q.ask) ? (q.bid + q.ask) / 2 : q.close;
  if (isNum(mid)) {
    quote.history.push({t: Date.now(), v: mid});
    if (quote.history.length > 150) quote.history.shift();
    quoteSpark.set(quote.history);
  }
}

function useQuotePrice(which) {
  const q = quote.data;
  const target = quoteTarget();
  // the quote shown is of the symbol typed before (the new one is not asked yet): not its price
  if (!target || target.symbol !== quote.symbol || target.secType !== quote.secType) return;
  const price = q && q[which];
  if (!isNum(price)) return;
  if (!needsOf(F.order_type.value).limit_price) F.order_type.value = "LMT";
  updateTicketLayout();
  F.limit_price.value = String(price);
  F.limit_price.focus();
}

// ----------------------------------------------------------- close position
/** Fill the ticket to close `position`; `orders` are working orders to cancel with it. */
export function prefillClose(position, orders) {
  hideConfirm();
  const side = position.quantity > 0 ? "SELL" : "BUY";
  F.symbol.value = position.symbol;
  F.sec_type.value = position.sec_type === "CASH" ? "CASH" : "STK";
  // a stock listed in another currency is closed on that listing, not the US one
  F.currency.value = position.sec_type === "CASH" ? "USD" : position.currency || "USD";
  $(side === "BUY" ? "#action-buy" : "#action-sell").checked = true;
  F.quantity.value = String(Math.abs(position.quantity));
  F.order_type.value = "MKT";
  $("#bracket").checked = false;
  closing = {
    symbol: position.symbol, side, quantity: Math.abs(position.quantity), currency: F.currency.value,
    account: position.account, con_id: position.con_id, orders: orders || [],
  };
  listingOf = position.symbol; // the currency filled for this symbol: not for the next one
  clearErrors($("#ticket"));
  updateTicketLayout();
  requestQuote(true);
  $("#ticket").scrollIntoView({block: "nearest", behavior: "smooth"});
  F.quantity.focus();
  const also = closing.orders.length ? ` The ${closing.orders.length} working order${closing.orders.length === 1 ? "" : "s"} you chose will be cancelled with it.` : "";
  toast(`Ticket filled to close ${position.symbol}: ${sideWord(side)} ${fmtQty(Math.abs(position.quantity))} at market. Review before sending.${also}`, "info");
}

// -------------------------------------------------------------- the notice
function renderTicketNotice(latest) {
  if (!latest) return;
  const status = latest.status;
  const notice = $("#ticket-notice");
  let text = "";
  const reason = haltReason();
  if (status.read_only) text = "Read-only dashboard (READ_ONLY is set): orders cannot be placed here.";
  else if (status.trading_halted) {
    text = `Trading is halted (kill switch engaged${reason ? `: ${reason}` : ""}): new orders are refused.`;
  } else if (status.ib_servers && !status.ib_servers.reachable) {
    text = `${status.ib_servers.reason}. New orders are refused until IB's servers are back; nothing is queued to send later.`;
  } else if (status.paper === false) text = "LIVE account: orders use real money.";
  notice.textContent = text;
  notice.hidden = !text;
  notice.className = `notice ${status.paper === false && !status.read_only && !status.trading_halted ? "live" : "blocked"}`;
  blocked = !!(status.read_only || status.trading_halted || (status.ib_servers && !status.ib_servers.reachable));
  $("#review-btn").disabled = blocked;
  refreshConfirm(); // a halt also stops an order waiting for its Confirm
  $("#cancel-all-btn").hidden = !!status.read_only;
  document.body.classList.toggle("read-only", !!status.read_only);
}

// ------------------------------------------------------------------ wiring
export function initTicket() {
  quoteSpark = createSpark($("#quote-spark"));
  onHeader(renderTicketNotice);
  form.addEventListener("submit", (event) => { event.preventDefault(); review(); });
  F.order_type.addEventListener("change", updateTicketLayout);
  F.trail_unit.addEventListener("change", updateTicketLayout);
  $("#bracket").addEventListener("change", updateTicketLayout);
  for (const radio of $$('input[name="action"]', form)) radio.addEventListener("change", updateTicketLayout);
  F.sec_type.addEventListener("change", () => { updateTicketLayout(); requestQuote(true); });
  F.symbol.addEventListener("input", () => {
    const start = F.symbol.selectionStart;
    const upper = F.symbol.value.toUpperCase();
    if (upper !== F.symbol.value) { F.symbol.value = upper; F.symbol.setSelectionRange(start, start); }
    if (closing && closing.symbol !== upper) closing = null;
    if (listingOf !== null && listingOf !== upper) { // another symbol: not the closed listing's currency
      listingOf = null;
      F.currency.value = "USD";
    }
    if (upper.trim() !== quote.symbol) { // its quote comes in 350 ms: none of the old one's prices meanwhile
      $("#quote-bid-btn").disabled = true;
      $("#quote-ask-btn").disabled = true;
    }
    clearTimeout(quote.debounce);
    quote.debounce = setTimeout(() => requestQuote(false), 350);
  });
  F.symbol.addEventListener("change", () => { clearTimeout(quote.debounce); requestQuote(false); });
  F.currency.addEventListener("input", () => {
    const upper = F.currency.value.toUpperCase();
    if (upper !== F.currency.value) F.currency.value = upper;
    listingOf = null; // the trader's own choice from now on
    if (closing && closing.currency !== upper) closing = null; // another listing: no close
    clearTimeout(quote.debounce);
    quote.debounce = setTimeout(() => requestQuote(false), 350);
  });
  // a corrected field loses its error mark
  form.addEventListener("input", (event) => {
    const field = event.target.closest(".field");
    if (!field) return;
    const slot = $(".field-error", field);
    if (slot && slot.dataset.source !== "quote") slot.textContent = "";
    event.target.removeAttribute("aria-invalid");
  });
  $("#fx-switch").addEventListener("click", () => {
    F.sec_type.value = "CASH";
    updateTicketLayout();
    requestQuote(true);
    F.sec_type.focus();
  });
  $("#quote-bid-btn").addEventListener("click", () => useQuotePrice("bid"));
  $("#quote-ask-btn").addEventListener("click", () => useQuotePrice("ask"));
  document.addEventListener("visibilitychange", () => { if (!document.hidden && quote.symbol) requestQuote(false); });
  updateTicketLayout();
}
