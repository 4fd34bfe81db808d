// The confirmation step: what the order will do, the risk gate's verdict and the broker's
// what-if, then a deliberate second action. For GUARD_MS after the step appears every key
// and click on it does nothing (Escape, which only goes Back, excepted) and Confirm stays
// disabled, so a double Enter or double click on Review never sends; focus starts on Back.
import {api, serverErrors} from "./api.js";
import {$, el} from "./dom.js";
import {fmtMoney, fmtPrice, fmtQty, fmtSigned, isNum, nf} from "./format.js";
import {clearErrors, showErrors} from "./forms.js";
import {validateOrder} from "./rules.js";
import {store} from "./store.js";
import {closeMismatch, closeSent, closingOrders, form, quote, quoteParams, readTicket, ticketBlocked} from "./ticket.js";
import {toast} from "./toasts.js";

export const GUARD_MS = 500;
const CANCEL_CONFIRM_MS = 10000; // how long a close waits for IB to confirm its cancels
const PREVIEW_FIELDS = ["#preview-commission", "#preview-init", "#preview-maint", "#preview-equity"];

let body = null; // exactly what Confirm sends (frozen at review time)
let idemKey = null; // its Idempotency-Key
let unanswered = null; // {json, key, at}: the last order sent that got no answer (it may be placed)
const UNANSWERED_MS = 5 * 60 * 1000; // how long the same order reviewed again keeps that key
let notional = null; // the estimated notional shown ({value, usd, text, basis}) or null
let riskNotional = null; // the risk gate's notional in the account's currency (the preview's)
let previewReady = false; // the what-if preview answered (or failed): Confirm may be enabled
let riskRefused = false; // the risk gate refused it at preview: Confirm stays disabled
let triggerWarning = null; // why this stop triggers at once (needs the tick box)
let cancels = []; // working orders cancelled with this order (closing a position)
let sending = false;
let previewSeq = 0;
let armedAt = 0; // performance.now() from which the step takes input
let armTimer = null;
let liveGuardOn = false;

const visible = () => !$("#confirm").hidden;
const armed = () => performance.now() >= armedAt;

export function orderWords(b) {
  const verb = b.action === "BUY" ? "Buy" : "Sell";
  const listing = b.sec_type === "STK" && b.currency && b.currency !== "USD" ? ` (${b.currency} listing)` : "";
  const head = `${verb} ${fmtQty(b.quantity)} ${b.symbol}${listing}`;
  let how;
  switch (b.order_type) {
    case "MKT": how = "at market"; break;
    case "LMT": how = `at limit ${fmtPrice(b.limit_price)}`; break;
    case "STP": how = `on a stop at ${fmtPrice(b.stop_price)} (then at market)`; break;
    case "STP LMT": how = `on a stop at ${fmtPrice(b.stop_price)} with limit ${fmtPrice(b.limit_price)}`; break;
    case "TRAIL": {
      const dir = b.action === "SELL" ? "below" : "above";
      how = isNum(b.trailing_percent)
        ? `with a trailing stop ${nf(0, 2).format(b.trailing_percent)}% ${dir} the market`
        : `with a trailing stop ${fmtPrice(b.trailing_amount)} ${dir} the market`;
      break;
    }
    default: how = b.order_type;
  }
  return `${head} ${how}, ${b.tif}`;
}

function orderExtras(b) {
  const extra = [];
  if (b.outside_rth) extra.push("may fill outside regular trading hours");
  if (isNum(b.take_profit) || isNum(b.stop_loss)) {
    const legs = [];
    if (isNum(b.take_profit)) legs.push(`take profit at ${fmtPrice(b.take_profit)}`);
    if (isNum(b.stop_loss)) legs.push(`stop loss at ${fmtPrice(b.stop_loss)}`);
    extra.push(`bracket: ${legs.join(" and ")} (GTC, one cancels the other)`);
  }
  if (b.sec_type === "CASH") extra.push("FX pair: the quantity is in units of the base currency");
  return extra.length ? `Then: ${extra.join("; ")}.` : "";
}

function estimate(b, q) {
  let price = null;
  let basis = "";
  if (isNum(b.limit_price)) { price = b.limit_price; basis = "limit"; }
  else if (isNum(b.stop_price)) { price = b.stop_price; basis = "stop"; }
  else if (q) {
    const side = b.action === "BUY" ? "ask" : "bid";
    if (isNum(q[side])) { price = q[side]; basis = side; }
    else if (isNum(q.last)) { price = q.last; basis = "last"; }
  }
  if (price === null) return null;
  const value = b.quantity * price;
  const currency = priceCurrency(b);
  return {value, usd: usdValue(b, value, currency),
    text: `≈ ${fmtMoney(value)}${currency === ACCOUNT_CURRENCY ? "" : ` ${currency}`}`,
    basis: ` (${fmtQty(b.quantity)} × ${basis} ${fmtPrice(price)})`};
}

// The live threshold is in the account's currency (USD): an order priced in another (an FX
// cross such as EUR.GBP, priced in GBP) is compared with it only once the risk gate has
// valued it (the preview's notional); a USD.xxx pair's quantity is dollars already.
const ACCOUNT_CURRENCY = "USD";

// an FX pair's [base, quote] currencies (EUR.GBP: EUR, GBP); none for other orders
const pairOf = (b) => (b.sec_type === "CASH"
  ? [0, 3].map((at) => b.symbol.replace(".", "").slice(at, at + 3).toUpperCase()) : null);

function priceCurrency(b) {
  const pair = pairOf(b);
  return pair ? pair[1] : b.currency || ACCOUNT_CURRENCY;
}

function usdValue(b, value, currency) {
  if (currency === ACCOUNT_CURRENCY) return value;
  const pair = pairOf(b);
  return pair && pair[0] === ACCOUNT_CURRENCY ? b.quantity : null;
}

/** The ticket's quote when it is `b`'s instrument (a stock: the same listing), else null. */
function quoteOf(b) {
  const q = quote.data;
  if (!q || q.symbol !== b.symbol) return null;
  return b.sec_type !== "STK" || q.currency === (b.currency || "USD") ? q : null;
}

function showNotional(b) {
  const n = estimate(b, quoteOf(b));
  notional = n;
  const dd = $("#confirm-notional");
  if (!n) dd.textContent = "—";
  else dd.replaceChildren(el("span", {text: n.text}), el("span", {class: "basis", text: n.basis}));
  updateLiveGuard();
}

// ---------------------------------------------------- live confirmation
// On a live account an order whose estimated notional reaches LIVE_CONFIRM_NOTIONAL
// (or whose notional cannot be estimated) is only sent once the trader has typed its
// symbol. Paper accounts never ask.
function liveThreshold(status) {
  const limits = status && status.risk_limits;
  return limits && isNum(limits.live_confirm_notional) ? limits.live_confirm_notional : 0;
}

function liveGuardRequired() {
  const status = store.latest && store.latest.status;
  if (!body || !status || status.mode !== "live") return false;
  const value = isNum(riskNotional) ? riskNotional : notional && notional.usd;
  return !isNum(value) || value >= liveThreshold(status);
}

function liveGuardSatisfied() {
  if (!liveGuardOn) return true;
  const typed = String($("#live-confirm-input").value || "").trim().toUpperCase();
  return !!body && typed === body.symbol;
}

function updateLiveGuard() {
  const required = liveGuardRequired();
  if (required) {
    const symbol = body.symbol;
    const threshold = liveThreshold(store.latest.status);
    const value = isNum(riskNotional) ? riskNotional : notional && notional.usd;
    $("#live-guard-text").textContent = isNum(value)
      ? `This order's estimated notional ${fmtMoney(value)} ${ACCOUNT_CURRENCY} is at or above the live confirmation threshold of ${fmtMoney(threshold)} ${ACCOUNT_CURRENCY}. Confirm stays disabled until you type the symbol ${symbol}.`
      : `The notional of this order cannot be estimated yet. Confirm stays disabled until you type the symbol ${symbol}.`;
    $("#live-confirm-label").textContent = `Type ${symbol} to confirm this live order`;
    $("#live-confirm-input").setAttribute("placeholder", symbol);
  }
  const appeared = required && !liveGuardOn;
  liveGuardOn = required;
  $("#live-guard").hidden = !required;
  updateSendEnabled();
  if (appeared && armed()) focusLiveGuard();
}

function focusLiveGuard() {
  const active = document.activeElement;
  if (liveGuardOn && (active === $("#confirm-cancel") || active === $("#confirm-send") || active === document.body)) {
    $("#live-confirm-input").focus();
  }
}

function resetLiveGuard() {
  liveGuardOn = false;
  $("#live-confirm-input").value = "";
  $("#live-guard").hidden = true;
}

/** Confirm is enabled once the step is armed, the preview answered and accepted it, trading
 * is not halted, a stop that triggers at once is acknowledged and any live check is typed. */
export function updateSendEnabled() {
  const send = $("#confirm-send");
  const typed = liveGuardSatisfied();
  const acknowledged = !triggerWarning || $("#trigger-ack").checked;
  send.disabled = sending || !body || !armed() || !previewReady || riskRefused || ticketBlocked()
    || !typed || !acknowledged;
  $("#live-guard").classList.toggle("matched", liveGuardOn && typed);
}

/** A refusal that names a field of the order goes back to the ticket, next to that field. */
function backToTicket(err) {
  if (!err.field || err.status < 400 || err.status >= 500 || err.code === "risk_rejected"
      || err.code === "stop_triggers_immediately") return false;
  sending = false;
  hideConfirm();
  const first = showErrors(form, serverErrors(err), $("#ticket-error"));
  if (first) first.focus();
  else $("#review-btn").focus();
  return true;
}

/** One key per order: a repeat of Confirm, or Back and Review of the same order after it got
 * no answer (the network, a proxy's 5xx: it may have been placed), sends the same key, and the
 * server answers with the first order instead of placing a second. */
function idempotencyKey(ticket) {
  const json = JSON.stringify(ticket);
  if (unanswered && unanswered.json === json && Date.now() - unanswered.at < UNANSWERED_MS) return unanswered.key;
  unanswered = null;
  return newIdempotencyKey();
}

/** The order was sent (`posted`) and no answer says what became of it (a network error, a
 * proxy's 5xx, the server's own 500): it may have been placed. The server's 503s and 504s say
 * that nothing was queued. */
const noAnswer = (err, posted) => posted && (!err.status
  || (err.status >= 500 && (err.code === "http_error" || err.code === "internal_server_error")));

function newIdempotencyKey() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return `dash-${window.crypto.randomUUID()}`;
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return `dash-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export async function review() {
  if (sending || ticketBlocked() || visible()) return;
  clearErrors($("#ticket"));
  const ticket = readTicket();
  const errors = form.dataset.clientValidation === "off" ? {} : validateOrder(ticket);
  if ($("#bracket").checked && !("take_profit" in ticket) && !("stop_loss" in ticket)) {
    errors.take_profit = "give a take profit and/or a stop loss (or untick Bracket)";
  }
  if (Object.keys(errors).length) {
    const first = showErrors(form, errors, $("#ticket-error"));
    if (first) first.focus();
    return;
  }
  const notAClose = closeMismatch(ticket, store.latest && store.latest.positions);
  if (notAClose) {
    $("#ticket-error").textContent = notAClose;
    return;
  }
  body = ticket;
  notional = null;
  riskNotional = null;
  previewReady = false;
  riskRefused = false;
  triggerWarning = null;
  cancels = closingOrders(ticket);
  idemKey = idempotencyKey(ticket);
  const seq = ++previewSeq;
  showConfirm(ticket);
  if (!quoteOf(ticket)) {
    // the notional of a market order needs a quote: fetch one now
    api(`/api/v1/quote?${quoteParams(ticket.symbol, ticket.sec_type, ticket.currency)}`).then((q) => {
      if (seq !== previewSeq) return;
      quote.data = q;
      showNotional(ticket);
    }).catch(() => {});
  }
  try {
    const p = await api("/api/v1/orders/preview", {method: "POST", body: ticket});
    if (seq !== previewSeq) return;
    showPreview(p);
  } catch (err) {
    if (seq !== previewSeq) return;
    if (backToTicket(err)) return; // the server refused the order itself
    if (err.status === 400) {
      hideConfirm();
      $("#ticket-error").textContent = err.message;
      $("#review-btn").focus();
      return;
    }
    for (const id of PREVIEW_FIELDS) $(id).textContent = "—";
    if (err.code === "risk_rejected") {
      showRisk(false, riskWords(err));
      riskRefused = true;
      $("#preview-status").textContent = "Not sent: change the order (Back) or the risk limits.";
    } else {
      $("#preview-status").textContent = `No what-if preview: ${err.message}`;
    }
    previewReady = true;
    updateSendEnabled();
  }
}

function riskWords(err) {
  const verdict = (err.details || [])[0] || {};
  const figures = verdict.figures || {};
  const numbers = [isNum(figures.notional) ? `notional ${fmtMoney(figures.notional)}` : null,
    isNum(figures.reference_price) ? `reference price ${fmtPrice(figures.reference_price)}` : null].filter(Boolean);
  return `The risk gate refuses this order: ${err.message}${numbers.length ? ` (${numbers.join(", ")})` : ""}.`;
}

function showRisk(ok, text) {
  const box = $("#preview-risk");
  box.textContent = text;
  box.className = `risk-verdict ${ok ? "ok" : "bad"}`;
  box.hidden = false;
}

function showConfirm(b) {
  resetLiveGuard();
  $("#confirm-words").textContent = orderWords(b);
  $("#confirm-extra").textContent = orderExtras(b);
  for (const id of PREVIEW_FIELDS) $(id).textContent = "…";
  $("#preview-status").textContent = "Asking the broker for a what-if preview…";
  $("#preview-warning").hidden = true;
  $("#preview-risk").hidden = true;
  $("#trigger-warning").hidden = true;
  $("#trigger-ack").checked = false;
  const list = $("#confirm-cancels");
  list.hidden = !cancels.length;
  $("#confirm-cancels-list").replaceChildren(...cancels.map((o) => el("li", {class: "mono",
    text: `${o.id}: ${o.action === "BUY" ? "Buy" : "Sell"} ${fmtQty(o.quantity)} ${o.order_type}`})));
  $("#confirm-error").textContent = "";
  const send = $("#confirm-send");
  send.textContent = `Confirm ${b.action === "BUY" ? "buy" : "sell"}`;
  send.classList.toggle("buy", b.action === "BUY");
  send.classList.toggle("sell", b.action === "SELL");
  armedAt = performance.now() + GUARD_MS;
  clearTimeout(armTimer);
  armTimer = setTimeout(() => { updateSendEnabled(); focusLiveGuard(); }, GUARD_MS + 10);
  send.disabled = true; // enabled once armed and the preview answered
  form.hidden = true;
  $("#confirm").hidden = false;
  $("#confirm").classList.toggle("sell", b.action === "SELL");
  $("#confirm-cancel").focus();
  showNotional(b); // also decides whether a live order needs its typed confirmation
}

function showPreview(p) {
  const cur = p.commission_currency ? ` ${p.commission_currency}` : "";
  let commission = isNum(p.commission) ? `${fmtMoney(p.commission)}${cur}` : "—";
  if (isNum(p.min_commission) && isNum(p.max_commission) && p.min_commission !== p.max_commission) {
    commission += ` (${fmtMoney(p.min_commission)} – ${fmtMoney(p.max_commission)})`;
  }
  $("#preview-commission").textContent = commission;
  $("#preview-init").textContent = fmtSigned(p.init_margin_change);
  $("#preview-maint").textContent = fmtSigned(p.maint_margin_change);
  $("#preview-equity").textContent = fmtSigned(p.equity_with_loan_change);
  $("#preview-status").textContent = "What-if preview from the broker; nothing has been sent yet.";
  if (p.risk) showRisk(true, "Risk checks passed.");
  riskNotional = p.risk && isNum(p.risk.notional) ? p.risk.notional : null;
  updateLiveGuard();
  const warning = $("#preview-warning");
  warning.textContent = p.warning_text || "";
  warning.hidden = !p.warning_text;
  triggerWarning = p.immediate_trigger || null;
  $("#trigger-warning").hidden = !triggerWarning;
  $("#trigger-text").textContent = triggerWarning ? `Careful: ${triggerWarning}.` : "";
  previewReady = true;
  updateSendEnabled();
}

export function hideConfirm() {
  if (sending) return;
  previewSeq++;
  body = null;
  notional = null;
  riskNotional = null;
  previewReady = false;
  riskRefused = false;
  triggerWarning = null;
  cancels = [];
  clearTimeout(armTimer);
  resetLiveGuard();
  $("#confirm").hidden = true;
  form.hidden = false;
}

function cancelConfirm() {
  if (sending || !visible()) return;
  hideConfirm();
  $("#review-btn").focus();
}

async function cancelWith(orders) {
  const results = await Promise.allSettled(orders.map((o) =>
    api(`/api/v1/orders/${encodeURIComponent(o.id)}/cancel`, {method: "POST", body: {}})));
  return results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
}

/** A cancel is done when the broker says so: until then IB reports the order PendingCancel
 * and it can still fill. The close goes out only once every cancelled order is done without a
 * new fill: one that filled (even partly) since the close was chosen changed the position,
 * which the close would then reverse. */
async function cancelsConfirmed(orders) {
  const deadline = performance.now() + CANCEL_CONFIRM_MS;
  let pending = orders;
  for (;;) {
    const rows = await Promise.all(pending.map((o) => api(`/api/v1/orders/${encodeURIComponent(o.id)}`)));
    const filled = rows.filter((r, i) => r.filled > (pending[i].filled || 0)).map((r) => r.id);
    if (filled.length) {
      throw new Error(`${filled.join(", ")} filled while its cancel was on its way: the position changed, so the close was not sent. Close it again from the positions table.`);
    }
    pending = pending.filter((o, i) => rows[i].open);
    if (!pending.length) return;
    if (performance.now() > deadline) {
      throw new Error(`the broker has not confirmed the cancel of ${pending.map((o) => o.id).join(", ")} yet (it could still fill), so the close was not sent.`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function sendOrder() {
  if (sending || !body || $("#confirm-send").disabled || !armed()) return;
  const notAClose = closeMismatch(body, store.latest && store.latest.positions); // moved meanwhile
  if (notAClose) {
    $("#confirm-error").textContent = `Not sent: ${notAClose}`;
    return;
  }
  sending = true;
  const send = $("#confirm-send");
  const back = $("#confirm-cancel");
  send.disabled = true;
  back.disabled = true;
  const label = send.textContent;
  send.textContent = "Sending…";
  const order = triggerWarning ? {...body, accept_immediate_trigger: true} : body;
  const withCancels = cancels;
  let failed = null; // the cancels' failures, once they were sent
  let posted = false; // the order itself went out (its answer, if any, says what became of it)
  try {
    failed = withCancels.length ? await cancelWith(withCancels) : [];
    if (withCancels.length) await cancelsConfirmed(withCancels);
    posted = true;
    const res = await api("/api/v1/orders", {method: "POST", body: order, headers: {"Idempotency-Key": idemKey}});
    const also = withCancels.length ? ` Cancel sent for ${withCancels.length - failed.length} working order${withCancels.length === 1 ? "" : "s"}${failed.length ? ` (${failed.length} failed: ${failed.join("; ")})` : ""}.` : "";
    toast(res.replayed ? `Already placed as ${res.id} (not sent twice).` : `${orderWords(order)} — queued as ${res.id}.${also}`,
      failed.length ? "error" : "success");
    unanswered = null;
    closeSent(body);
    sending = false;
    hideConfirm();
    $("#review-btn").focus();
  } catch (err) {
    sending = false;
    // the working orders were cancelled before the order was refused: the position they
    // guarded is no longer protected, and a second Confirm must not cancel them again
    const gone = failed && withCancels.length
      ? ` The cancel was already sent for ${withCancels.map((o) => o.id).join(", ")}${failed.length ? ` (${failed.length} failed: ${failed.join("; ")})` : ""}: the position may no longer be protected.`
      : "";
    if (failed) cancels = [];
    unanswered = noAnswer(err, posted) ? {json: JSON.stringify(body), key: idemKey, at: Date.now()} : null;
    if (unanswered) {
      $("#confirm-error").textContent = `No answer: ${err.message} The order may have been placed: `
        + `check the orders before sending it again (Confirm, or Back and Review of the same order, `
        + `sends it under the same key: never placed twice).${gone}`;
      updateSendEnabled();
    } else if (!backToTicket(err)) {
      $("#confirm-error").textContent = `Not placed: ${err.message}${gone}`;
      updateSendEnabled();
    } else if (gone) toast(`Not placed: ${err.message}${gone}`, "error");
  } finally {
    back.disabled = false;
    send.textContent = label;
  }
}

/** Input on the confirm step before it is armed does nothing (Escape, which only goes Back, excepted). */
function guard(event) {
  if (!visible() || armed()) return;
  if (event.type.startsWith("key") && event.key === "Escape") return;
  if (event.type.startsWith("key") && !$("#confirm").contains(document.activeElement) && document.activeElement !== document.body) return;
  if (!event.type.startsWith("key") && !$("#confirm").contains(event.target)) return;
  event.preventDefault();
  event.stopImmediatePropagation();
}

export function initConfirm() {
  for (const type of ["keydown", "keyup", "keypress", "click", "pointerdown", "pointerup"]) {
    document.addEventListener(type, guard, true);
  }
  $("#confirm-send").addEventListener("click", sendOrder);
  $("#confirm-cancel").addEventListener("click", cancelConfirm);
  $("#trigger-ack").addEventListener("change", updateSendEnabled);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && visible() && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      cancelConfirm();
    }
  });
  $("#live-confirm-input").addEventListener("input", () => {
    const input = $("#live-confirm-input");
    const start = input.selectionStart;
    const upper = input.value.toUpperCase();
    if (upper !== input.value) { input.value = upper; input.setSelectionRange(start, start); }
    updateSendEnabled();
  });
  $("#live-confirm-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); sendOrder(); } // sends only once Confirm is enabled
  });
}

/** The status changed: the mode or the live threshold may have too. */
export function refreshConfirm() {
  if (body) updateLiveGuard();
  else updateSendEnabled();
}
