// The row actions and their dialogs: cancel, modify (checked by the server like a new
// order, its refusals shown in the dialog), close a position (with its working orders),
// and the global cancel.
import {api, serverErrors} from "./api.js";
import {$, el} from "./dom.js";
import {fmtQty, sideWord} from "./format.js";
import {clearErrors, numberOf, showErrors} from "./forms.js";
import {validateChange} from "./rules.js";
import {render, store} from "./store.js";
import {pending, priceText, setRowActions} from "./tables.js";
import {prefillClose} from "./ticket.js";
import {toast} from "./toasts.js";

const FIELD_NAMES = {quantity: "quantity", limit_price: "limit price", stop_price: "stop price"};

async function cancelOrder(o) {
  pending.set(o.id, "cancel");
  render();
  try {
    await api(`/api/v1/orders/${encodeURIComponent(o.id)}/cancel`, {method: "POST", body: {}});
    toast(`Cancel sent for ${o.id} (${sideWord(o.action)} ${fmtQty(o.quantity)} ${o.symbol}).`, "info");
  } catch (err) {
    pending.delete(o.id);
    toast(`Cancel of ${o.id} failed: ${err.message}`, "error");
    render();
  }
}

// ------------------------------------------------------------------ modify
let modifying = null;
let modifyTurn = 0; // counts the dialog's openings: an answer is shown only in its own

function openModify(o) {
  modifying = o;
  modifyTurn++;
  const dialog = $("#modify-dialog");
  const mform = $("#modify-form");
  clearErrors(dialog);
  $("#modify-desc").textContent = `${o.id}: ${sideWord(o.action)} ${fmtQty(o.quantity)} ${o.symbol} ${o.order_type} ${priceText(o)}, filled ${fmtQty(o.filled || 0)}`;
  mform.elements.quantity.value = Number.isFinite(o.quantity) ? String(o.quantity) : "";
  const hasLimit = o.order_type === "LMT" || o.order_type === "STP LMT";
  const hasStop = o.order_type === "STP" || o.order_type === "STP LMT";
  $("#modify-limit-field").hidden = !hasLimit;
  $("#modify-stop-field").hidden = !hasStop;
  mform.elements.limit_price.value = hasLimit && Number.isFinite(o.limit_price) ? String(o.limit_price) : "";
  mform.elements.stop_price.value = hasStop && Number.isFinite(o.stop_price) ? String(o.stop_price) : "";
  $("#modify-trigger").hidden = true;
  $("#modify-trigger-ack").checked = false;
  $("#modify-send").disabled = false;
  dialog.showModal();
  (hasLimit ? mform.elements.limit_price : hasStop ? mform.elements.stop_price : mform.elements.quantity).focus();
}

function readChange(o) {
  const mform = $("#modify-form");
  const change = {};
  const q = numberOf(mform.elements.quantity);
  if (q !== null && q !== o.quantity) change.quantity = q;
  if (!$("#modify-limit-field").hidden) {
    const v = numberOf(mform.elements.limit_price);
    if (v !== null && v !== o.limit_price) change.limit_price = v;
  }
  if (!$("#modify-stop-field").hidden) {
    const v = numberOf(mform.elements.stop_price);
    if (v !== null && v !== o.stop_price) change.stop_price = v;
  }
  return change;
}

async function sendModify(event) {
  event.preventDefault();
  const o = modifying;
  if (!o) return;
  const dialog = $("#modify-dialog");
  clearErrors(dialog);
  const change = readChange(o);
  const errors = validateChange(o, change);
  if (!Object.keys(change).length && !Object.keys(errors).length) errors.quantity = "change the quantity or a price first";
  if (Object.keys(errors).length) {
    const first = showErrors(dialog, errors, $("#modify-error"));
    if (first) first.focus();
    return;
  }
  if (!$("#modify-trigger").hidden && $("#modify-trigger-ack").checked) change.accept_immediate_trigger = true;
  const send = $("#modify-send");
  send.disabled = true;
  pending.set(o.id, "modify");
  // the dialog can be closed (Escape) or opened on another order while the change is on its
  // way: its answer then goes to a toast, not into a dialog that is gone or shows another order
  const turn = modifyTurn;
  const here = () => modifying === o && turn === modifyTurn;
  try {
    await api(`/api/v1/orders/${encodeURIComponent(o.id)}/modify`, {method: "POST", body: change});
    const words = Object.entries(change).filter(([k]) => k in FIELD_NAMES)
      .map(([k, v]) => `${FIELD_NAMES[k]} ${k === "quantity" ? fmtQty(v) : String(v)}`).join(", ");
    toast(`Change sent for ${o.id}: ${words}. The order shows it once the broker confirms.`, "info");
    if (here()) dialog.close();
  } catch (err) {
    if (!here()) {
      toast(`Change of ${o.id} not sent: ${err.message}`, "error");
    } else if (err.code === "stop_triggers_immediately") {
      $("#modify-trigger-text").textContent = err.message.replace(/; send accept_immediate_trigger.*$/, ".");
      $("#modify-trigger").hidden = false;
      $("#modify-trigger-ack").focus();
    } else {
      const first = showErrors(dialog, serverErrors(err), $("#modify-error"));
      if (!err.field || err.code === "risk_rejected") $("#modify-error").textContent = `Not sent: ${err.message}`;
      if (first) first.focus();
    }
  } finally {
    pending.delete(o.id);
    if (here()) send.disabled = false;
    render();
  }
}

// -------------------------------------------------------- close a position
let closingPosition = null;

function workingFor(position) {
  const orders = (store.latest && store.latest.orders) || [];
  // the same instrument only: an option or future on the symbol is not the stock
  return orders.filter((o) => o.open && o.symbol === position.symbol
    && (o.sec_type || "STK") === (position.sec_type || "STK")
    && ((position.sec_type || "STK") !== "STK" || !o.currency || !position.currency
      || o.currency === position.currency)); // a stock's listing (AAPL in EUR is not the US one)
}

function openClose(position) {
  if (position.sec_type === "OPT" || position.sec_type === "FUT") { // the derivatives ticket (static/deriv/)
    document.dispatchEvent(new CustomEvent("deriv:close-position", {detail: position}));
    return;
  }
  if (!["STK", "CASH"].includes(position.sec_type || "STK")) { // no ticket here trades it
    toast(`Close ${position.symbol}: a ${position.sec_type} position cannot be closed from this dashboard; close it in TWS`, "error");
    return;
  }
  const working = workingFor(position);
  if (!working.length) { prefillClose(position, []); return; }
  closingPosition = position;
  const side = position.quantity > 0 ? "SELL" : "BUY";
  $("#close-title").textContent = `Close ${position.symbol}: ${sideWord(side)} ${fmtQty(Math.abs(position.quantity))}`;
  $("#close-text").textContent = `${working.length} order${working.length === 1 ? " is" : "s are"} still working for ${position.symbol}. ` +
    "Exits left working after the close can open a new position when they trigger.";
  $("#close-orders").replaceChildren(...working.map((o) => {
    const text = `${o.ours ? o.id : `perm ${o.perm_id}`}: ${sideWord(o.action)} ${fmtQty(o.quantity)} ${o.order_type} ${priceText(o)}`;
    if (!o.ours) {
      return el("li", {class: "close-order theirs"}, el("span", {text}),
        el("span", {class: "small muted", text: " — placed by another client: cancel it there (or with Cancel all)"}));
    }
    const id = `close-cancel-${o.id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    return el("li", {class: "close-order"}, el("label", {class: "check", for: id},
      el("input", {type: "checkbox", id, checked: true, dataset: {orderId: o.id}}), el("span", {text: `Cancel ${text}`})));
  }));
  $("#close-dialog").showModal();
  $("#close-keep").focus();
}

function acceptClose() {
  if (!closingPosition) return;
  // the position as held now: a fill while the dialog was open changed its quantity
  const position = ((store.latest && store.latest.positions) || []).find((p) =>
    p.account === closingPosition.account && p.con_id === closingPosition.con_id && p.quantity);
  if (!position) {
    $("#close-dialog").close();
    toast(`${closingPosition.symbol} is no longer held: nothing to close.`, "info");
    return;
  }
  const chosen = new Set(Array.from(document.querySelectorAll("#close-orders input:checked")).map((i) => i.dataset.orderId));
  const orders = workingFor(position).filter((o) => chosen.has(o.id));
  $("#close-dialog").close();
  prefillClose(position, orders);
}

// -------------------------------------------------------------- cancel all
function openCancelAll() {
  const working = store.latest ? (store.latest.orders || []).filter((o) => o.open) : [];
  const ours = working.filter((o) => o.ours).length;
  $("#cancel-all-text").textContent =
    `This sends a global cancel to the gateway: it cancels all ${working.length} working order${working.length === 1 ? "" : "s"} ` +
    `of every client (${ours} placed by this dashboard), not only this dashboard's.`;
  $("#cancel-all-error").textContent = "";
  $("#cancel-all-send").disabled = false;
  $("#cancel-all-dialog").showModal();
  $("#cancel-all-keep").focus();
}

async function sendCancelAll() {
  const send = $("#cancel-all-send");
  if (send.disabled) return;
  send.disabled = true;
  try {
    const res = await api("/api/v1/orders/cancel-all", {method: "POST", body: {}});
    toast(`Global cancel sent (${res.ours_working} of our orders were working).`, "info");
    $("#cancel-all-dialog").close();
  } catch (err) {
    $("#cancel-all-error").textContent = `Not sent: ${err.message}`;
    send.disabled = false;
  }
}

/** static/screen/'s chart: a dragged order line proposes new prices; the modify dialog, filled
 * with them, is the confirm step. False when the order is not ours (or not shown). */
function proposeModify(orderId, change) {
  const o = store.latest && (store.latest.orders || []).find((row) => row.id === orderId);
  if (!o || !o.ours) return false;
  openModify(o);
  const mform = $("#modify-form");
  for (const [name, value] of Object.entries(change)) {
    if (mform.elements[name]) mform.elements[name].value = String(value);
  }
  return true;
}

export function initDialogs() {
  setRowActions({modify: openModify, cancel: cancelOrder, close: openClose});
  window.dashboardModify = proposeModify;
  $("#modify-form").addEventListener("submit", sendModify);
  $("#modify-close").addEventListener("click", () => $("#modify-dialog").close());
  $("#modify-dialog").addEventListener("close", () => { modifying = null; });
  $("#modify-form").addEventListener("input", (event) => {
    if (event.target.id !== "modify-trigger-ack") $("#modify-trigger").hidden = true;
  });
  $("#close-keep").addEventListener("click", () => $("#close-dialog").close());
  $("#close-accept").addEventListener("click", acceptClose);
  $("#close-dialog").addEventListener("close", () => { closingPosition = null; });
  $("#cancel-all-btn").addEventListener("click", openCancelAll);
  $("#cancel-all-keep").addEventListener("click", () => $("#cancel-all-dialog").close());
  $("#cancel-all-send").addEventListener("click", sendCancelAll);
}
