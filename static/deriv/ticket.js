// The derivatives ticket: options (expiry, strike, right) and futures (a contract month
// picker). Filled by the chain view ("deriv:fill-ticket") and by a position's Close button
// ("deriv:close-position", sent by app.js for OPT/FUT rows). Review, then confirm: the
// order goes to POST /api/v1/orders like any other (risk gate, journal, kill switch).
import {fmtAvg, fmtPrice} from "../js/format.js";
import {api, el, isNum, money} from "./http.js";

const GUARD_MS = 500; // the confirmation takes no Confirm this long after it appears
const FINAL = new Set(["filled", "cancelled", "rejected", "not_sent", "not_placed"]);
const FOLLOW_MS = 1000;
const FOLLOW_TRIES = 60;
const UNANSWERED_MS = 5 * 60 * 1000; // how long the same order sent again keeps its key (as the main ticket)
const FIELDS = ["symbol", "expiry", "strike", "right", "month", "quantity", "order_type", "limit_price", "market_order_ack", "tif"];

export function mountTicket(root) {
  const input = (name, props) => el("input", {id: `dt-${name}`, name, ...props});
  const select = (name, options, props) => el("select", {id: `dt-${name}`, name, ...props},
    ...options.map(([value, text]) => el("option", {value, text})));
  const field = (name, label, control, extra) => el("div", {class: "field", dataset: {dtField: name}, ...extra},
    el("label", {for: `dt-${name}`, text: label}), control, el("p", {class: "field-error", id: `dt-${name}-error`}));

  const f = {
    sec_type: select("sec_type", [["OPT", "Option"], ["FUT", "Future"]]),
    symbol: input("symbol", {class: "symbol-input", placeholder: "e.g. AAPL or ES", maxlength: 15, spellcheck: "false", autocapitalize: "characters"}),
    expiry: input("expiry", {placeholder: "YYYYMMDD", maxlength: 8, inputmode: "numeric"}),
    strike: input("strike", {type: "number", step: "any", min: "0", inputmode: "decimal"}),
    right: select("right", [["C", "Call"], ["P", "Put"]]),
    month: select("month", [["", "Enter a symbol"]]),
    action: select("action", [["BUY", "Buy"], ["SELL", "Sell"]]),
    quantity: input("quantity", {type: "number", min: "1", step: "1", value: "1", inputmode: "numeric"}),
    order_type: select("order_type", [["LMT", "Limit"], ["MKT", "Market"]]),
    limit_price: input("limit_price", {type: "number", step: "any", min: "0", inputmode: "decimal"}),
    tif: select("tif", [["DAY", "DAY"], ["GTC", "GTC"]]),
    market_order_ack: input("market_order_ack", {type: "checkbox"}),
  };
  const contractLine = el("p", {class: "dt-contract small", id: "dt-contract", hidden: true});
  const ackLabel = el("label", {class: "check dt-ack", id: "dt-ack", hidden: true}, f.market_order_ack,
    " I accept that a market order on an option can fill far from its value");
  const formError = el("p", {class: "form-error", id: "dt-error", role: "alert"});
  const review = el("button", {type: "submit", class: "btn primary wide", id: "dt-review", text: "Review order"});
  const form = el("form", {id: "dt-form", novalidate: true, autocomplete: "off"},
    el("div", {class: "row two"}, field("sec_type", "Asset", f.sec_type), field("symbol", "Symbol", f.symbol)),
    contractLine,
    el("div", {class: "row three dt-opt"}, field("expiry", "Expiry", f.expiry), field("strike", "Strike", f.strike), field("right", "Right", f.right)),
    el("div", {class: "dt-fut", hidden: true}, field("month", "Contract month", f.month)),
    el("div", {class: "row two"}, field("action", "Side", f.action), field("quantity", "Contracts", f.quantity)),
    el("div", {class: "row three"}, field("order_type", "Order type", f.order_type), field("limit_price", "Limit price", f.limit_price), field("tif", "Time in force", f.tif)),
    ackLabel, formError, review);

  const words = el("p", {class: "confirm-words", id: "dt-confirm-words"});
  const guardInput = el("input", {id: "dt-live-confirm", class: "symbol-input", autocomplete: "off", "aria-label": "Type the symbol to confirm"});
  const guard = el("div", {class: "live-guard", id: "dt-live-guard", hidden: true},
    el("p", {class: "live-guard-title", text: "LIVE account: real money"}),
    el("p", {class: "small", id: "dt-live-text"}), guardInput);
  const send = el("button", {type: "button", class: "btn primary", id: "dt-send", text: "Confirm"});
  const back = el("button", {type: "button", class: "btn", id: "dt-back", text: "Back"});
  const confirm = el("div", {class: "confirm", id: "dt-confirm", hidden: true},
    el("h3", {text: "Confirm order"}), words, guard, el("div", {class: "confirm-actions"}, back, send));
  const result = el("p", {class: "dt-result small", id: "dt-result", role: "status"});
  root.append(form, confirm, result);

  let localSymbol = null; // a contract named by IB's local symbol (from a position)
  let multiplier = null; // the contract's, when known (chain, month picker, position)
  let pending = null; // the order body under review
  let armTimer = null; // enables Confirm GUARD_MS after the step appeared
  let unanswered = null; // {json, key, at}: an order sent without an answer; sent again under its key
  let closing = null; // the position a Close filled the ticket for: {account, con_id, local_symbol, action, quantity}
  let monthsFor = null;

  function layout() {
    const opt = f.sec_type.value === "OPT";
    form.querySelector(".dt-opt").hidden = !opt || Boolean(localSymbol);
    form.querySelector(".dt-fut").hidden = opt || Boolean(localSymbol);
    contractLine.hidden = !localSymbol;
    f.limit_price.disabled = f.order_type.value !== "LMT";
    ackLabel.hidden = !(opt && f.order_type.value === "MKT");
    review.className = `btn primary wide ${f.action.value === "BUY" ? "buy" : "sell"}`;
  }

  async function loadMonths() {
    const symbol = f.symbol.value.trim().toUpperCase();
    if (f.sec_type.value !== "FUT" || !symbol || symbol === monthsFor) return;
    monthsFor = symbol;
    f.month.replaceChildren(el("option", {value: "", text: "Loading…"}));
    try {
      const answer = await api(`/api/v1/futures/contracts?${new URLSearchParams({symbol})}`);
      if (monthsFor !== symbol) return; // a later symbol's months were asked for meanwhile
      f.month.replaceChildren(...answer.contracts.map((c) => el("option", {
        value: `${c.contract_month}|${c.exchange}`, dataset: {multiplier: String(c.multiplier)},
        text: `${c.local_symbol} · ${monthText(c.contract_month)} · last ${c.last_trade_date} · ×${c.multiplier}`})));
    } catch (err) {
      if (monthsFor !== symbol) return;
      monthsFor = null;
      f.month.replaceChildren(el("option", {value: "", text: err.message}));
    }
  }

  function body() {
    const b = {symbol: f.symbol.value.trim().toUpperCase(), sec_type: f.sec_type.value, action: f.action.value,
      quantity: Number(f.quantity.value), order_type: f.order_type.value, tif: f.tif.value};
    if (b.order_type === "LMT" && f.limit_price.value !== "") b.limit_price = Number(f.limit_price.value);
    if (localSymbol) b.local_symbol = localSymbol;
    else if (b.sec_type === "OPT") {
      if (f.expiry.value.trim()) b.expiry = f.expiry.value.trim();
      if (f.strike.value !== "") b.strike = Number(f.strike.value);
      b.right = f.right.value;
    } else if (f.month.value) {
      const [month, exchange] = f.month.value.split("|");
      b.expiry = month;
      b.exchange = exchange;
    }
    if (b.sec_type === "OPT" && b.order_type === "MKT" && f.market_order_ack.checked) b.market_order_ack = true;
    return b;
  }

  function contractWords(b) {
    if (b.local_symbol) return contractLine.dataset.description || b.local_symbol;
    if (b.sec_type === "OPT") return `${b.symbol} ${b.expiry || "?"} ${isNum(b.strike) ? b.strike : "?"} ${b.right}`;
    return `${b.symbol} ${b.expiry || "?"}`;
  }

  function clearErrors() {
    formError.textContent = "";
    for (const name of FIELDS) {
      const p = root.querySelector(`#dt-${name}-error`);
      if (p) p.textContent = "";
      if (f[name]) f[name].removeAttribute("aria-invalid");
    }
  }

  function showError(err) {
    const name = err.field === "exchange" ? "month" : err.field;
    const p = name && root.querySelector(`#dt-${name}-error`);
    if (p && !root.querySelector(`[data-dt-field="${name}"]`).closest("[hidden]")) {
      p.textContent = err.message;
      f[name].setAttribute("aria-invalid", "true");
    } else {
      formError.textContent = err.message;
    }
  }

  async function onReview(event) {
    event.preventDefault();
    clearErrors();
    result.textContent = "";
    const b = body();
    if (!b.symbol) return showError({field: "symbol", message: "Enter a symbol."});
    if (!(b.quantity >= 1)) return showError({field: "quantity", message: "At least one contract."});
    if (b.order_type === "LMT" && !isNum(b.limit_price)) return showError({field: "limit_price", message: "A limit order needs a limit price."});
    const mult = multiplier || (f.sec_type.value === "FUT" && f.month.selectedOptions[0] ? Number(f.month.selectedOptions[0].dataset.multiplier) : null);
    const notional = isNum(b.limit_price) && isNum(mult) ? b.limit_price * b.quantity * mult : null;
    const priceWords = b.order_type === "LMT" ? `limit ${fmtPrice(b.limit_price)}` : "at market";
    words.textContent = `${b.action === "BUY" ? "Buy" : "Sell"} ${b.quantity} ${contractWords(b)} ${priceWords}`
      + (notional !== null ? ` · notional ${money(notional)} (×${mult})` : "") + ` · ${b.tif}`;
    const status = await api("/api/v1/status").catch(() => null);
    const limits = status && status.risk_limits;
    const live = !status || status.mode === "live"; // unknown (status not read): ask, as live
    const threshold = limits && isNum(limits.live_confirm_notional) ? limits.live_confirm_notional : 0;
    guard.hidden = !(live && (notional === null || notional >= threshold));
    guardInput.value = "";
    root.querySelector("#dt-live-text").textContent = `Type ${b.symbol} to confirm this order.`;
    pending = b;
    form.hidden = true;
    confirm.hidden = false;
    // as the main ticket's step: focus on Back and Confirm off for GUARD_MS, so a second Enter
    // (or a key repeating) that was meant for Review never sends an order nobody read
    send.disabled = true;
    clearTimeout(armTimer);
    armTimer = setTimeout(() => { send.disabled = false; }, GUARD_MS);
    (guard.hidden ? back : guardInput).focus();
  }

  /** Why `b`, a close, no longer closes its position (it shrank, went or turned since the
   * ticket was filled: the old quantity would open one the other way), or null. */
  async function closeMismatch(b) {
    if (!closing || b.local_symbol !== closing.local_symbol || b.action !== closing.action) return null;
    const rows = (await api("/api/v1/positions")).positions || [];
    const row = rows.find((p) => p.account === closing.account && p.con_id === closing.con_id);
    const held = row ? row.quantity : 0;
    const closable = b.action === "SELL" ? held : -held;
    if (closable >= b.quantity || closable >= closing.quantity) return null; // more typed: a reversal
    return `${closing.local_symbol} ${held ? `is now ${held}` : "is no longer held"} (the ticket was filled to `
      + `close ${closing.quantity}): ${b.action === "SELL" ? "selling" : "buying"} ${b.quantity} would open a `
      + "position the other way. Close it again from the position.";
  }

  async function onSend() {
    if (!pending) return;
    if (!guard.hidden && guardInput.value.trim().toUpperCase() !== pending.symbol) {
      guardInput.setAttribute("aria-invalid", "true");
      return;
    }
    const b = pending;
    send.disabled = true; // no second Confirm while the position is read
    const notAClose = await closeMismatch(b).catch((err) => `the position could not be read (${err.message})`);
    if (pending !== b || confirm.hidden) return; // Back meanwhile: nothing is sent
    if (notAClose) {
      send.disabled = false;
      showForm();
      formError.textContent = `Not sent: ${notAClose}`;
      return;
    }
    const key = idempotencyKey(b);
    send.disabled = true;
    result.textContent = "Sending…";
    try {
      const answer = await api("/api/v1/orders?wait=1", {method: "POST", body: b, headers: {"Idempotency-Key": key}});
      unanswered = null;
      if (closing && b.local_symbol === closing.local_symbol) { closing = null; f.quantity.value = ""; } // sent once
      showForm();
      // the server answers the order first sent under this key: said, not shown as this one's
      follow(answer.order, answer.replayed ? `already placed: not sent twice — ${contractWords(b)}` : contractWords(b));
    } catch (err) {
      if (err.status && err.status < 500) unanswered = null; // refused: nothing was placed
      result.textContent = "";
      showForm();
      showError(err);
    } finally {
      send.disabled = false;
    }
  }

  /** The order's Idempotency-Key: the same order sent again after no answer (the network,
   * a 5xx) keeps its key, so the server answers the first order instead of placing a second. */
  function idempotencyKey(b) {
    const json = JSON.stringify(b);
    const fresh = unanswered && unanswered.json === json && Date.now() - unanswered.at < UNANSWERED_MS;
    if (!fresh) unanswered = {json, key: newKey(), at: Date.now()};
    return unanswered.key;
  }

  /** Show the order's verdict; a working order is followed until it is final (or a minute). */
  async function follow(order, what) {
    for (let tries = 0; ; tries += 1) {
      const price = isNum(order.avg_fill_price) ? ` at ${fmtAvg(order.avg_fill_price)}` : "";
      // IB's reason for a verdict other than filled (a rejection's "Error 201: …")
      const reason = FINAL.has(order.verdict) && order.verdict !== "filled" && order.verdict_reason
        ? ` (${order.verdict_reason})` : "";
      result.textContent = `${order.id}: ${order.verdict || order.phase}${price}${reason} — ${what}`;
      result.dataset.verdict = order.verdict || "";
      if (FINAL.has(order.verdict) || tries >= FOLLOW_TRIES) return;
      await new Promise((resolve) => setTimeout(resolve, FOLLOW_MS));
      try {
        const now = await api(`/api/v1/orders/${encodeURIComponent(order.id)}`);
        order = {...now, verdict: now.verdict, phase: now.phase};
      } catch (err) {
        return;
      }
    }
  }

  function showForm() {
    pending = null;
    confirm.hidden = true;
    form.hidden = false;
  }

  function fill(detail) {
    clearErrors();
    showForm();
    closing = null; // a Close sets it again after this
    localSymbol = detail.local_symbol || null;
    contractLine.dataset.description = detail.description || "";
    contractLine.replaceChildren(el("span", {text: `Contract: ${detail.description || ""} (${detail.local_symbol || ""})`}), " ",
      el("button", {type: "button", class: "btn small-btn", text: "Change", onclick: () => { localSymbol = null; multiplier = null; layout(); }}));
    multiplier = isNum(detail.multiplier) ? detail.multiplier : null;
    f.sec_type.value = detail.sec_type;
    f.symbol.value = detail.symbol || "";
    if (detail.expiry) f.expiry.value = detail.expiry;
    if (isNum(detail.strike)) f.strike.value = String(detail.strike);
    if (detail.right) f.right.value = detail.right;
    if (detail.action) f.action.value = detail.action;
    if (isNum(detail.quantity)) f.quantity.value = String(detail.quantity);
    f.order_type.value = detail.order_type || (detail.sec_type === "OPT" ? "LMT" : "MKT");
    f.limit_price.value = isNum(detail.limit_price) ? String(detail.limit_price) : "";
    f.market_order_ack.checked = false;
    layout();
    loadMonths();
    root.scrollIntoView({block: "nearest", behavior: "smooth"});
    f.quantity.focus();
  }

  form.addEventListener("submit", onReview);
  form.addEventListener("change", layout);
  f.sec_type.addEventListener("change", () => { localSymbol = null; multiplier = null; monthsFor = null; closing = null; layout(); loadMonths(); });
  f.symbol.addEventListener("change", () => { multiplier = null; loadMonths(); });
  for (const name of ["expiry", "strike", "right"]) f[name].addEventListener("change", () => { multiplier = null; });
  send.addEventListener("click", onSend);
  back.addEventListener("click", showForm);
  document.addEventListener("deriv:fill-ticket", (event) => fill(event.detail));
  document.addEventListener("deriv:close-position", (event) => {
    const p = event.detail;
    fill({sec_type: p.sec_type, symbol: p.symbol, local_symbol: p.local_symbol, description: p.description,
      multiplier: p.multiplier, action: p.quantity > 0 ? "SELL" : "BUY", quantity: Math.abs(p.quantity)});
    closing = {account: p.account, con_id: p.con_id, local_symbol: p.local_symbol,
      action: p.quantity > 0 ? "SELL" : "BUY", quantity: Math.abs(p.quantity)};
  });
  layout();
}

function newKey() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return `deriv-${window.crypto.randomUUID()}`;
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return `deriv-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function monthText(month) {
  const date = new Date(Date.UTC(+month.slice(0, 4), +month.slice(4, 6) - 1, 1));
  return date.toLocaleDateString("en-US", {month: "short", year: "numeric", timeZone: "UTC"});
}
