// Announcements of fills, partial fills, rejects, cancels and price alerts: a toast, the
// aria-live region, the tab title (unseen count) and, once allowed, a browser Notification.
import {fmtAvg, fmtQty} from "../js/format.js";
import {toast} from "../js/toasts.js";
import {$} from "./util.js";

const baseTitle = document.title;
let unseen = 0;

function retitle() {
  document.title = unseen ? `(${unseen}) ${baseTitle}` : baseTitle;
}

export function announce(title, body, kind) {
  // the dashboard's message bar (docked at the bottom, never over a row's buttons)
  toast(`${title}: ${body}`, kind === "error" ? "error" : "info");
  $("#screen-announcer").textContent = `${title}: ${body}`;
  if (document.hidden || !document.hasFocus()) {
    unseen += 1;
    retitle();
  }
  if ("Notification" in window && Notification.permission === "granted") {
    try {
      new Notification(title, {body, tag: `${title}:${body}`});
    } catch (err) {
      console.warn("notification refused", err);
    }
  }
}

function seen() {
  unseen = 0;
  retitle();
}

export function setupNotifications() {
  window.addEventListener("focus", seen);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) seen(); });
  const button = $("#notify-enable");
  if (!("Notification" in window) || Notification.permission !== "default") return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const answer = await Notification.requestPermission();
    button.hidden = answer !== "default";
  });
}

// ------------------------------------------------------------------ order events
const known = new Map(); // order id -> {filled, final, change}
let primed = false;
const FINAL_WORDS = {cancelled: "Cancelled", rejected: "Rejected"};
const REASON_WAIT_MS = 2000; // the app waits as long for a rejection's 201 (REJECT_GRACE)
const reasonTimers = new Map(); // order id -> the timer that tells its rejection without reason
// the outcomes of a change told (its "change sent" was the modify dialog's own message):
// [the step's first words, the title, the kind]
const CHANGE_WORDS = [
  ["change refused by the broker", "Change refused", "error"],
  ["change not sent", "Change not sent", "error"],
  ["broker confirmed the change", "Change confirmed", "good"],
];

function side(o) {
  return `${o.action === "SELL" ? "Sell" : "Buy"} ${fmtQty(o.quantity)} ${o.symbol}`;
}

function verdictOf(o) {
  if (o.verdict === "rejected" || o.status === "Inactive") return "rejected";
  if (o.verdict === "cancelled" || o.status === "Cancelled" || o.status === "ApiCancelled") return "cancelled";
  return null;
}

/** IB's reason for a final verdict, when it says more than the status word. */
function why(o) {
  const reason = o.verdict_reason;
  return reason && !/^(Cancelled|ApiCancelled|Inactive|Filled)$/.test(reason) ? `: ${reason}` : "";
}

/** What became of the order's last change, in the broker's words. */
function tellChange(o) {
  const text = o.change_outcome.text;
  const outcome = CHANGE_WORDS.find(([start]) => text.startsWith(start));
  if (!outcome) return;
  const detail = text.slice(outcome[0].length).replace(/^: /, "");
  announce(outcome[1], `${side(o)} (${o.id}): ${detail}`, outcome[2]);
}

/** Compare the new state's orders with the last ones: announce what happened to each. */
export function orderEvents(orders) {
  for (const o of orders || []) {
    if (!o || !o.id) continue;
    const before = known.get(o.id) || {filled: 0, final: null, change: null};
    const filled = Number(o.filled) || 0;
    let final = verdictOf(o);
    const change = o.change_outcome ? o.change_outcome.at : null;
    // IB reports a rejected order Inactive before the 201 that says why: a rejection without
    // its reason yet is told once the reason comes, or after REASON_WAIT_MS without it
    const waitsReason = primed && final === "rejected" && !why(o) && final !== before.final;
    if (waitsReason && !reasonTimers.has(o.id)) {
      reasonTimers.set(o.id, setTimeout(() => {
        reasonTimers.delete(o.id);
        const now = known.get(o.id);
        if (now) now.final = "rejected"; // told: a later frame without the reason says nothing
        tellFinal(o, "rejected");
      }, REASON_WAIT_MS));
    }
    if (waitsReason) final = null; // not told yet: the next frame looks again
    // a rejection waiting for its reason keeps what was told before; otherwise the frame's
    known.set(o.id, {filled, final: waitsReason ? before.final : final, change});
    if (!primed) continue;
    if (change !== null && change !== before.change) tellChange(o);
    if (filled > before.filled) {
      const done = o.status === "Filled" || filled >= Number(o.quantity);
      const price = o.avg_fill_price ? ` at ${fmtAvg(o.avg_fill_price)}` : "";  // an average: no float noise
      announce(done ? "Filled" : "Partially filled",
        `${side(o)}: ${fmtQty(filled)} of ${fmtQty(o.quantity)}${price} (${o.id})`, done ? "good" : "info");
    }
    if (final && final !== before.final) {
      clearTimeout(reasonTimers.get(o.id));
      reasonTimers.delete(o.id);
      tellFinal(o, final);
    }
  }
  primed = true;
}

function tellFinal(o, final) {
  announce(FINAL_WORDS[final], `${side(o)} ${o.order_type || ""} (${o.id})${why(o)}`,
    final === "rejected" ? "error" : "warn");
}

// ------------------------------------------------------------------ alerts
const pageLoaded = Date.now();
// the fired alerts already told, by id (an alert fires once): not by the frame's `seq`, which
// a restarted app numbers from 1 again while this page stays open
const told = new Set();

export function alertEvents(alerts, onFired) {
  for (const a of alerts || []) {
    if (told.has(a.id)) continue;
    told.add(a.id);
    if (Date.parse(a.triggered_at) < pageLoaded - 5000) continue; // fired before this page opened
    const word = a.condition === "above" ? "at or above" : "at or below";
    announce("Price alert", `${a.symbol} traded ${word} ${a.level} (last ${a.price})${a.note ? ` — ${a.note}` : ""}`, "warn");
    onFired();
  }
}
