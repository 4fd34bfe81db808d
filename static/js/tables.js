// Positions, orders and fills. Each table keeps a row's symbol (first column) and its
// buttons (last column) in view together: both columns stick while the middle scrolls, and
// on a phone each row is a card (symbol and buttons on its first line).
import {api} from "./api.js";
import {$, el} from "./dom.js";
import {epoch, fmtAvg, fmtClock, fmtExecTime, fmtMoney, fmtPrice, fmtQty, fmtSigned, isNum, nf,
  notLive, notLiveWhy, sideClass, sideWord, signClass} from "./format.js";
import {onRender, render, store} from "./store.js";

const COMPLETED_SHOWN = 50;
const FILLS_SHOWN = 200;
const IN_PROGRESS = new Set(["queued", "sending", "settling", "monitoring"]);
export const PHASE_TEXT = {queued: "Queued", sending: "Sending", settling: "Settling", monitoring: "Monitoring"};

const expanded = new Set(); // order ids whose lifecycle is open
// id -> {at: the row's updated_at when asked, lc: the lifecycle (null until it arrives),
// error: why it could not be read}. /state's rows are brief: an open history is read from
// /api/v1/orders/<id> and read again whenever the order's record changes.
const histories = new Map();
export const pending = new Map(); // order id -> "cancel" | "modify" while a request is in flight
const actions = {modify: () => {}, cancel: () => {}, close: () => {}};

/** What the row buttons do (dialogs.js): {modify(order), cancel(order), close(position)}. */
export function setRowActions(handlers) { Object.assign(actions, handlers); }

// A row rebuilt between a button's press and its release loses the click: the browser fires
// "click" only when both land on the same element, and a price tick rebuilds a position's row.
// So a row with a pointer pressed in it keeps its node (and its buttons) until the release,
// and the tables render again just after the release (after its click).
let pressedRow = null;
document.addEventListener("pointerdown", (event) => {
  pressedRow = event.target instanceof Element ? event.target.closest("[data-key]") : null;
}, true);
const released = () => {
  if (pressedRow === null) return;
  pressedRow = null;
  setTimeout(render, 0);
};
document.addEventListener("pointerup", released, true);
document.addEventListener("pointercancel", released, true);

/**
 * Keep a table body in step with `items` without rebuilding rows that did not change
 * (so focus, hover and running animations survive the many updates per second), nor the row
 * a pointer is pressed in (above). Each item is one child of `container` (a <tr>, or a
 * <tbody> for orders with details).
 */
function syncRows(container, items, keyOf, sigOf, build) {
  const keyed = Array.from(container.children).filter((c) => c.dataset.key !== undefined);
  const offset = container.children.length - keyed.length; // leading rows we do not manage (a <thead>)
  const existing = new Map(keyed.map((c) => [c.dataset.key, c]));
  const wanted = [];
  for (const item of items) {
    const key = String(keyOf(item));
    const sig = sigOf(item);
    let node = existing.get(key);
    if (!node || (node.dataset.sig !== sig && node !== pressedRow)) {
      const fresh = build(item);
      fresh.dataset.key = key;
      fresh.dataset.sig = sig;
      if (node) moveFocus(node, fresh);
      node = fresh;
    }
    wanted.push(node);
  }
  const keep = new Set(wanted);
  for (const child of keyed) if (!keep.has(child)) child.remove();
  wanted.forEach((node, i) => {
    const at = container.children[offset + i] || null;
    if (at !== node) container.insertBefore(node, at);
  });
}

function moveFocus(oldNode, freshNode) {
  const active = document.activeElement;
  if (!active || !oldNode.contains(active) || !active.dataset.focusKey) return;
  const target = freshNode.querySelector(`[data-focus-key="${CSS.escape(active.dataset.focusKey)}"]`);
  if (target) requestAnimationFrame(() => target.focus());
}

const cell = (label, props, ...children) => el("td", {...props, dataset: {label}}, ...children);

// ---------------------------------------------------------------- positions
// the account's market data (the quote panel's label too): delayed, frozen or delayed-frozen
const delayedTitle = (p) => (notLive(p.market_data) ? `${p.market_data}: ${notLiveWhy(p.market_data)}` : undefined);

// a position in another currency than the account's (USD.JPY: yen) has its price, value and
// unrealized P&L in that currency (IB's portfolio figures): named, not to be read as dollars
const currencyTag = (p, base) => (p.currency && p.currency !== base
  ? el("span", {class: "tag ccy", title: `in ${p.currency}, not ${base}`, text: p.currency}) : null);

function renderPositions(positions, base) {
  const body = $("#positions tbody");
  syncRows(body, positions, (p) => `${p.account}:${p.con_id}`, (p) => JSON.stringify(p) + base, (p) => {
    const closeSide = p.quantity > 0 ? "SELL" : "BUY";
    const delayed = notLive(p.market_data);
    return el("tr", {class: "trow", dataset: {symbol: p.symbol}},
      el("td", {class: "sym lead"}, el("span", {text: p.description || p.symbol}), p.sec_type !== "STK" ? el("span", {class: "tag", text: p.sec_type}) : null,
        p.multiplier > 1 ? el("span", {class: "tag mult", title: "multiplier: value and P&L include it", text: `×${p.multiplier}`}) : null),
      cell("Qty", {class: `num ${p.quantity < 0 ? "neg" : ""}`, text: fmtQty(p.quantity)}),
      cell("Avg cost", {class: "num opt", text: fmtAvg(p.multiplier > 1 && isNum(p.avg_price) ? p.avg_price : p.avg_cost),
        title: p.multiplier > 1 ? `per unit; IB's average cost per contract (×${p.multiplier}): ${fmtAvg(p.avg_cost)}` : null}),
      cell("Price", {class: `num ${delayed ? "delayed" : ""}`, title: delayedTitle(p)}, fmtPrice(p.market_price),
        delayed ? el("span", {class: "tag delayed", text: delayed}) : null),
      cell("Value", {class: `num opt ${delayed ? "delayed" : ""}`, title: delayedTitle(p)}, fmtMoney(p.market_value),
        currencyTag(p, base), delayed ? el("span", {class: "tag delayed", text: delayed}) : null),
      cell("Unrealized", {class: `num pnl ${signClass(p.unrealized_pnl)}`}, fmtSigned(p.unrealized_pnl), currencyTag(p, base)),
      el("td", {class: "actions"}, el("button", {
        type: "button", class: "btn small-btn close-position", dataset: {focusKey: `close:${p.symbol}`},
        "aria-label": `Close ${p.symbol} position: ${sideWord(closeSide)} ${fmtQty(Math.abs(p.quantity))}`,
        text: "Close", onclick: () => actions.close(p),
      })));
  });
  $("#positions-empty").hidden = positions.length > 0;
  $("#positions").hidden = positions.length === 0;
  $("#positions-count").textContent = positions.length ? `${positions.length} open` : "";
}

// ------------------------------------------------------------------ orders
const orderSortKey = (o) => (o.perm_id ? o.perm_id : Number.MAX_SAFE_INTEGER);

function renderOrders(orders) {
  const working = orders.filter((o) => o.open).sort((a, b) => orderSortKey(b) - orderSortKey(a));
  const completed = orders.filter((o) => !o.open).sort((a, b) => orderSortKey(b) - orderSortKey(a));
  for (const id of Array.from(pending.keys())) {
    const row = orders.find((o) => o.id === id);
    if (!row || !row.open) pending.delete(id);
  }
  for (const id of Array.from(histories.keys())) if (!expanded.has(id)) histories.delete(id);
  for (const o of orders) if (expanded.has(o.id)) loadHistory(o);
  const sig = (o) => `${expanded.has(o.id) ? historySig(o.id) : 0}|${pending.get(o.id) || ""}|${JSON.stringify(o)}`;
  syncRows($("#working-orders"), working, (o) => o.id, sig, (o) => orderGroup(o, true));
  syncRows($("#completed-orders"), completed.slice(0, COMPLETED_SHOWN), (o) => o.id, sig, (o) => orderGroup(o, false));
  $("#working-count").textContent = String(working.length);
  $("#completed-count").textContent = completed.length > COMPLETED_SHOWN ? `${COMPLETED_SHOWN} of ${completed.length}` : String(completed.length);
  $("#working-empty").hidden = working.length > 0;
  $("#completed-empty").hidden = completed.length > 0;
  $("#working-orders").classList.toggle("is-empty", working.length === 0);
  $("#completed-orders").classList.toggle("is-empty", completed.length === 0);
  $("#cancel-all-btn").disabled = working.length === 0;
}

const historySig = (id) => {
  const h = histories.get(id);
  return h ? `${h.lc ? h.lc.updated_at : "-"}|${h.error || ""}` : "-";
};

/** Read the whole record of an open order's history, unless the one shown is current. */
async function loadHistory(o) {
  const known = histories.get(o.id);
  if (known && known.at === o.updated_at) return; // asked (or in flight) for this version
  const entry = {at: o.updated_at, lc: known ? known.lc : null, error: null};
  histories.set(o.id, entry);
  try {
    const full = await api(`/api/v1/orders/${encodeURIComponent(o.id)}`);
    entry.lc = full && full.lifecycle ? full.lifecycle : null;
    if (!entry.lc) entry.error = "no history for this order";
  } catch (err) {
    entry.error = err.message; // asked again once the order changes, or on reopening
  }
  if (histories.get(o.id) === entry) render();
}

export function priceText(o) {
  const parts = [];
  if (isNum(o.stop_price)) parts.push(`${o.order_type === "TRAIL" ? "trail" : "stop"} ${fmtPrice(o.stop_price)}`);
  if (isNum(o.limit_price)) parts.push(o.order_type === "STP LMT" ? `lmt ${fmtPrice(o.limit_price)}` : fmtPrice(o.limit_price));
  if (!parts.length) {
    if (isNum(o.trailing_amount)) parts.push(`trail ${fmtPrice(o.trailing_amount)}`);
    if (isNum(o.trailing_percent)) parts.push(`trail ${nf(0, 2).format(o.trailing_percent)}%`);
  }
  return parts.length ? parts.join(" / ") : o.order_type === "MKT" ? "market" : "—";
}

function statusClass(o) {
  const s = o.status || "";
  if (o.verdict === "rejected" || o.verdict === "not_sent" || o.verdict === "stuck_pending_submit" || s === "Inactive") return "bad";
  if (s === "Filled") return "good";
  if (s === "Cancelled" || s === "ApiCancelled") return "muted";
  if (s === "PendingSubmit" || s === "PendingCancel" || s === "ApiPending") return "warn";
  if (s === "Submitted" || s === "PreSubmitted") return "live";
  return "muted";
}

// The broker holds the order (PreSubmitted: accepted, waiting for its trigger; Submitted:
// working): from then on the row shows the broker's status alone, even while the app is still
// in its own settle or monitoring window (which ends with the verdict "working" up to
// MONITOR_TIMEOUT seconds later and only watches for a late rejection).
const AT_THE_BROKER = new Set(["PreSubmitted", "Submitted", "PendingCancel"]);
const inProgress = (o) => !!o.ours && !o.verdict && IN_PROGRESS.has(o.phase) && !AT_THE_BROKER.has(o.status);

function orderGroup(o, working) {
  const group = el("tbody", {class: `order-group ${expanded.has(o.id) ? "open" : ""}`, dataset: {orderId: o.id}});
  const detailsId = `lc-${String(o.id).replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const toggle = o.ours ? el("button", {
    type: "button", class: "expander", "aria-expanded": expanded.has(o.id) ? "true" : "false",
    "aria-controls": detailsId, "aria-label": `Lifecycle of ${o.id}`, dataset: {focusKey: `toggle:${o.id}`},
    onclick: () => { if (expanded.has(o.id)) expanded.delete(o.id); else expanded.add(o.id); render(); },
  }, el("span", {class: "chev", "aria-hidden": "true", text: "▸"})) : null;

  const leg = o.parent ? (String(o.id).endsWith("-tp") ? "TP" : String(o.id).endsWith("-sl") ? "SL" : "leg") : null;
  // the first column: the symbol, what kind of order this is, and whose
  const lead = el("td", {class: "lead"},
    el("span", {class: "lead-line"}, toggle || el("span", {class: "expander-gap", "aria-hidden": "true"}),
      el("span", {class: "sym", text: o.description || o.symbol || "—"}),
      leg ? el("span", {class: "tag leg", title: `bracket leg of ${o.parent}`, text: leg}) : null,
      o.ours ? null : el("span", {class: "tag other", title: "placed by another client", text: "other"})),
    el("span", {class: "oid mono", text: o.ours ? o.id : `perm ${o.perm_id}`}));

  const statusCell = cell("Status", {class: "status"},
    el("span", {class: `pill ${statusClass(o)}`, text: o.status || PHASE_TEXT[o.phase] || "—"}));
  if (o.ours && o.verdict && o.verdict !== "filled" && o.verdict !== "cancelled") {
    statusCell.append(el("span", {class: `verdict v-${o.verdict}`, title: o.verdict_reason || "", text: o.verdict.replace(/_/g, " ")}));
  }
  if (inProgress(o)) {
    statusCell.append(el("span", {class: "progress", role: "progressbar", "aria-label": PHASE_TEXT[o.phase] || o.phase},
      el("span", {class: "progress-bar", "aria-hidden": "true"}),
      el("span", {class: "progress-text", text: PHASE_TEXT[o.phase] || o.phase})));
  }

  const cells = [
    lead,
    cell("Side", {class: `side ${sideClass(o.action)}`, text: sideWord(o.action)}),
    cell("Filled", {class: "num", text: `${fmtQty(o.filled || 0)} / ${fmtQty(o.quantity)}`}),
    cell("Type", {text: o.order_type || "—"}),
    cell("Price", {class: "num price", text: priceText(o)}),
  ];
  if (working) {
    cells.push(statusCell, cell("TIF", {class: "opt", text: o.tif || "—"}),
      cell("Client", {class: "muted opt", text: o.client_id ?? "—"}));
    const buttons = el("td", {class: "actions"});
    if (o.ours && !(store.latest && store.latest.status.read_only)) {
      const busy = pending.get(o.id);
      buttons.append(
        el("button", {type: "button", class: "btn small-btn modify-btn", disabled: !!busy || undefined,
          dataset: {focusKey: `modify:${o.id}`}, "aria-label": `Modify ${o.id}`, text: "Modify",
          onclick: () => actions.modify(o)}),
        el("button", {type: "button", class: "btn small-btn danger cancel-btn", disabled: !!busy || undefined,
          dataset: {focusKey: `cancel:${o.id}`}, "aria-label": `Cancel ${o.id}`,
          text: busy === "cancel" ? "Cancelling…" : "Cancel", onclick: () => actions.cancel(o)}));
    }
    cells.push(buttons);
  } else {
    cells.push(cell("Avg fill", {class: "num", text: fmtAvg(o.avg_fill_price)}), statusCell,
      cell("Client", {class: "muted opt", text: o.client_id ?? "—"}));
  }
  group.append(el("tr", {class: `trow order-row ${o.ours ? "ours" : "theirs"}`}, cells));
  if (o.ours && expanded.has(o.id)) {
    const h = histories.get(o.id);
    const body = h && h.lc ? lifecycleView(o, h.lc)
      : el("p", {class: "lifecycle muted small", text: h && h.error ? `History not available: ${h.error}` : "Loading the history…"});
    group.append(el("tr", {class: "lifecycle-row"}, el("td", {colspan: cells.length, id: detailsId}, body)));
  }
  return group;
}

function lifecycleView(o, lc) {
  const t0 = epoch(lc.created_at);
  const rel = (at) => { const t = epoch(at); return t !== null && t0 !== null ? `+${(t - t0).toFixed(3)} s` : ""; };
  const timeCell = (at) => el("span", {class: "lc-time", title: fmtClock(at, true)}, rel(at));
  const list = (items, draw, empty) => (items && items.length
    ? el("ol", {class: "lc-list"}, items.map(draw))
    : el("p", {class: "muted small", text: empty}));

  const verdictLine = el("p", {class: "lc-verdict"},
    el("span", {class: "lc-label", text: "Verdict "}),
    el("span", {class: `pill ${{filled: "good", working: "live", cancelled: "muted"}[lc.verdict] || (lc.verdict ? "bad" : "warn")}`,
      text: lc.verdict ? lc.verdict.replace(/_/g, " ") : "pending"}),
    lc.verdict_reason ? el("span", {class: "muted", text: ` ${lc.verdict_reason}`}) : null,
    el("span", {class: "lc-label", text: " · Phase "}),
    el("span", {class: "mono", text: lc.phase || "—"}),
    inProgress(o) ? el("span", {class: "progress inline", "aria-hidden": "true"}, el("span", {class: "progress-bar"})) : null);

  const meta = el("p", {class: "lc-meta small muted"},
    [`created ${fmtClock(lc.created_at, true)}`, lc.order_id ? `orderId ${lc.order_id}` : null,
      lc.perm_id ? `permId ${lc.perm_id}` : null, lc.client_id ? `client ${lc.client_id}` : null,
      `source ${lc.source}`, lc.parent ? `bracket leg of ${lc.parent}` : null,
      lc.children && lc.children.length ? `legs ${lc.children.join(", ")}` : null,
      isNum(lc.avg_fill_price) ? `avg fill ${fmtAvg(lc.avg_fill_price)}` : null].filter(Boolean).join(" · "));

  return el("div", {class: "lifecycle"},
    verdictLine, meta,
    el("div", {class: "lc-grid"},
      el("section", {class: "lc-col"}, el("h4", {text: "Steps"}),
        list(lc.steps, (s) => el("li", {}, timeCell(s.at), el("span", {text: s.text})), "No steps yet.")),
      el("section", {class: "lc-col"}, el("h4", {text: "Status transitions"}),
        list(lc.transitions, (t) => el("li", {}, timeCell(t.at), el("span", {},
          el("span", {class: "mono", text: `${t.old || "—"} → ${t.new}`}),
          el("span", {class: "muted", text: ` · filled ${fmtQty(t.filled)}, left ${fmtQty(t.remaining)}`}))),
        "No status from the broker yet.")),
      el("section", {class: "lc-col"}, el("h4", {text: "Messages"}),
        list(lc.messages, (m) => el("li", {}, timeCell(m.at), el("span", {},
          el("span", {class: "code", text: String(m.code)}), el("span", {text: ` ${m.text}`}))), "No messages.")),
      el("section", {class: "lc-col"}, el("h4", {text: "Fills"}),
        list(lc.fills, (f) => el("li", {}, timeCell(f.at), el("span", {},
          el("span", {text: `${fmtQty(f.shares)} @ ${fmtPrice(f.price)}`}),
          el("span", {class: "muted", text: ` · commission ${isNum(f.commission) ? fmtMoney(f.commission) : "pending"}`}))),
        "No fills.")),
    ));
}

// ------------------------------------------------------------------- fills
function renderFills(executions) {
  const rows = executions.slice(0, FILLS_SHOWN);
  const today = new Date().toDateString(); // a row drawn yesterday without its date gets it
  syncRows($("#fills tbody"), rows, (e) => e.exec_id, (e) => `${today}|${JSON.stringify(e)}`, (e) => el("tr", {class: "trow"},
    el("td", {class: "sym lead", text: e.description || e.symbol}),
    cell("Time", {class: "mono", title: String(e.time), text: fmtExecTime(e.time)}),
    cell("Side", {class: `side ${sideClass(e.side)}`, text: sideWord(e.side)}),
    cell("Shares", {class: "num", text: fmtQty(e.shares)}),
    cell("Price", {class: "num", text: fmtPrice(e.price)}),
    cell("Commission", {class: "num", text: isNum(e.commission) ? fmtMoney(e.commission) : "—"}),
    cell("Realized", {class: `num pnl ${signClass(e.realized_pnl)}`, text: isNum(e.realized_pnl) && e.realized_pnl !== 0 ? fmtSigned(e.realized_pnl) : "—"})));
  $("#fills-empty").hidden = executions.length > 0;
  $("#fills").hidden = executions.length === 0;
  const commission = executions.reduce((sum, e) => sum + (isNum(e.commission) ? e.commission : 0), 0);
  $("#fills-summary").textContent = executions.length
    ? `${executions.length} fill${executions.length === 1 ? "" : "s"} · commission ${fmtMoney(commission)}` : "";
}

export function initTables() {
  onRender((latest) => {
    renderPositions(latest.positions || [], (latest.account && latest.account.currency) || "USD");
    renderOrders(latest.orders || []);
    renderFills(latest.executions || []);
  });
}
