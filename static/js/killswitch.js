// The kill switch in the header: Halt (refuse new orders, cancel every working order, wait
// for the broker to confirm) and Resume, each behind its own confirmation.
import {api} from "./api.js";
import {$, el} from "./dom.js";
import {fmtQty, isNum, sideWord} from "./format.js";
import {renderHeader, onHeader} from "./store.js";
import {refreshState} from "./stream.js";
import {priceText} from "./tables.js";
import {toast} from "./toasts.js";

const kill = {halted: null, reason: null, reasonSeq: 0, busy: false};

/** Why trading was halted (once fetched), or null. */
export const haltReason = () => kill.reason;

/** Halt or Resume in the header, the TRADING HALTED badge (with the reason once known). */
function renderKillSwitch(latest) {
  if (!latest) return;
  const status = latest.status;
  const halted = !!status.trading_halted;
  if (halted !== kill.halted) {
    kill.halted = halted;
    kill.reason = null;
    kill.reasonSeq++;
    if (halted && !status.read_only) fetchHaltReason();
  }
  const haltBtn = $("#halt-btn");
  const resumeBtn = $("#resume-btn");
  const active = document.activeElement;
  const usable = !status.read_only;
  haltBtn.hidden = !usable || halted;
  resumeBtn.hidden = !usable || !halted;
  // the button the trader was on turned into the other one: keep the keyboard focus there
  if (active === haltBtn && haltBtn.hidden && !resumeBtn.hidden) resumeBtn.focus();
  else if (active === resumeBtn && resumeBtn.hidden && !haltBtn.hidden) haltBtn.focus();
  const badge = $("#halted-badge");
  badge.hidden = !halted;
  badge.title = `The kill switch is engaged: new orders are refused${kill.reason ? ` (reason: ${kill.reason})` : ""}`;
}

async function fetchHaltReason() {
  const seq = kill.reasonSeq;
  try {
    const res = await api("/api/v1/kill-switch");
    if (seq !== kill.reasonSeq || !res || !res.engaged) return;
    kill.reason = res.reason || null;
    renderHeader();
  } catch (err) { /* the badge and the notice say enough without the reason */ }
}

/** After a dialog closes: back on whichever kill-switch button is showing now. */
function focusKillControl() {
  requestAnimationFrame(() => {
    const active = document.activeElement;
    if (active && active !== document.body && active.offsetParent !== null) return;
    const target = [$("#resume-btn"), $("#halt-btn")].find((b) => !b.hidden);
    if (target) target.focus();
  });
}

function setHaltPhase(phase) { // "ask" → "sending" → "done"
  const done = phase === "done";
  const busy = phase === "sending";
  $("#halt-dialog").dataset.phase = phase;
  $("#halt-title").textContent = done ? "Trading halted" : "Halt trading?";
  $("#halt-ask").hidden = done;
  $("#halt-result").hidden = !done;
  $("#halt-keep").hidden = done;
  $("#halt-send").hidden = done;
  $("#halt-close").hidden = !done;
  $("#halt-keep").disabled = busy;
  $("#halt-send").disabled = busy;
  $("#halt-reason").disabled = busy;
  $("#halt-send").textContent = busy ? "Halting…" : "Halt trading";
}

function openHalt() {
  const dialog = $("#halt-dialog");
  if (dialog.open) return;
  if (!kill.busy) {
    setHaltPhase("ask");
    $("#halt-reason").value = "";
    $("#halt-error").textContent = "";
    $("#halt-progress").textContent = "";
  }
  dialog.showModal();
  if (!kill.busy) $("#halt-reason").focus();
}

/** What the broker confirmed: {ok, text, open: [rows still working]}. */
function haltOutcome(res) {
  const rows = Array.isArray(res && res.still_open) ? res.still_open : [];
  const open = rows.filter((o) => o && o.open !== false);
  if (res && res.cancel_confirmed) {
    return {ok: true, text: "Trading halted; every working order cancelled (confirmed by the broker).", open: []};
  }
  if (open.length) {
    const n = open.length;
    return {ok: false, open, text: `Trading halted, but the broker still reports ${n} working order${n === 1 ? "" : "s"}: ` +
      `cancel ${n === 1 ? "it" : "them"} from the Orders panel or in TWS.`};
  }
  return {ok: false, open: [], text: "Trading halted, but the broker has not confirmed the cancels yet: check the Orders panel."};
}

function openOrderText(o) {
  const who = o.order_ref ? o.order_ref : `perm ${o.perm_id}`;
  const client = isNum(o.client_id) ? ` (client ${o.client_id})` : "";
  return `${who}${client}: ${sideWord(o.action)} ${fmtQty(o.quantity)} ${o.symbol || "—"} ${o.order_type || ""} ${priceText(o)} — ${o.status || "status unknown"}`;
}

async function sendHalt(event) {
  if (event) event.preventDefault();
  if (kill.busy || $("#halt-send").disabled || $("#halt-dialog").dataset.phase === "done") return;
  kill.busy = true;
  const reason = String($("#halt-reason").value || "").trim();
  const body = {engaged: true};
  if (reason) body.reason = reason;
  setHaltPhase("sending");
  $("#halt-error").textContent = "";
  $("#halt-progress").textContent = "Halting: new orders are refused; cancelling every working order and waiting for the broker to confirm…";
  const dialog = $("#halt-dialog");
  try {
    const res = await api("/api/v1/kill-switch", {method: "POST", body});
    const outcome = haltOutcome(res);
    kill.reason = res.reason || reason || null;
    if (dialog.open) {
      $("#halt-progress").textContent = "";
      setHaltPhase("done");
      const result = $("#halt-result");
      result.className = `halt-result ${outcome.ok ? "ok" : "bad"}`;
      $("#halt-outcome").textContent = outcome.text;
      const list = $("#halt-open");
      list.replaceChildren(...outcome.open.map((o) => el("li", {class: "mono", text: openOrderText(o)})));
      list.hidden = !outcome.open.length;
      $("#halt-close").focus();
    } else {
      const rest = outcome.open.map(openOrderText).join("; ");
      toast(rest ? `${outcome.text} ${rest}` : outcome.text, outcome.ok ? "success" : "error");
    }
  } catch (err) {
    const text = `The halt request failed: ${err.message} (the TRADING HALTED badge shows whether the kill switch is engaged).`;
    $("#halt-progress").textContent = "";
    setHaltPhase("ask");
    if (dialog.open) {
      $("#halt-error").textContent = text;
      $("#halt-send").focus();
    } else toast(text, "error");
  } finally {
    kill.busy = false;
    refreshState();
  }
}

function openResume() {
  const dialog = $("#resume-dialog");
  if (dialog.open) return;
  $("#resume-error").textContent = "";
  $("#resume-send").disabled = false;
  const why = $("#resume-reason");
  why.textContent = kill.reason ? `Halted because: ${kill.reason}` : "";
  why.hidden = !kill.reason;
  dialog.showModal();
  $("#resume-keep").focus(); // staying halted is the default
}

async function sendResume() {
  const send = $("#resume-send");
  if (send.disabled) return;
  send.disabled = true;
  try {
    await api("/api/v1/kill-switch", {method: "POST", body: {engaged: false}});
    toast("Trading resumed: new orders are accepted again.", "success");
    $("#resume-dialog").close();
  } catch (err) {
    $("#resume-error").textContent = `Not resumed: ${err.message}`;
    send.disabled = false;
  } finally {
    refreshState();
  }
}

export function initKillSwitch() {
  onHeader(renderKillSwitch);
  $("#halt-btn").addEventListener("click", openHalt);
  $("#halt-form").addEventListener("submit", sendHalt);
  $("#halt-keep").addEventListener("click", () => $("#halt-dialog").close());
  $("#halt-close").addEventListener("click", () => $("#halt-dialog").close());
  $("#halt-dialog").addEventListener("cancel", (event) => { if (kill.busy) event.preventDefault(); }); // Esc while halting: wait for the outcome
  $("#halt-dialog").addEventListener("close", focusKillControl);
  $("#resume-btn").addEventListener("click", openResume);
  $("#resume-keep").addEventListener("click", () => $("#resume-dialog").close());
  $("#resume-send").addEventListener("click", sendResume);
  $("#resume-dialog").addEventListener("close", focusKillControl);
}
