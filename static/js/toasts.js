// Messages for the trader, in the message bar docked at the bottom of the window. The bar has
// a fixed height and the page keeps that much room below its last row, so a message never
// lies over a row's buttons: the newest message replaces the previous one, and stays (dimmed
// after a while) until the next. A message stays at least MIN_SHOW_MS before the next one
// replaces it (an order's "queued as …" is not wiped by its fill a moment later): the notices
// that arrive meanwhile wait their turn, at most MAX_WAITING of them. An error and the outcome of
// the trader's own action (a success) never wait: they show at once, and the waiting notices
// follow MIN_SHOW_MS after them.
import {$, el} from "./dom.js";

const MIN_SHOW_MS = 2500;
const MAX_WAITING = 3;
const waiting = [];
let shownAt = -Infinity;
let timer = null;

export function toast(message, kind) {
  const due = shownAt + MIN_SHOW_MS - performance.now();
  if (kind === "error" || kind === "success" || (due <= 0 && !waiting.length)) {
    show(message, kind);
    if (timer !== null) { // the waiting notices now follow this one
      clearTimeout(timer);
      timer = setTimeout(next, MIN_SHOW_MS);
    }
    return;
  }
  waiting.push([message, kind]);
  if (waiting.length > MAX_WAITING) waiting.shift(); // the oldest waiting one is dropped
  if (timer === null) timer = setTimeout(next, Math.max(0, due));
}

function next() {
  timer = null;
  const item = waiting.shift();
  if (!item) return;
  show(...item);
  if (waiting.length) timer = setTimeout(next, MIN_SHOW_MS);
}

function show(message, kind) {
  const box = $("#toasts");
  const item = el("div", {class: `toast ${kind || "info"}`, title: message}, el("span", {text: message}),
    el("button", {type: "button", class: "toast-close", "aria-label": "Dismiss", text: "×",
      onclick: () => item.remove()}));
  box.replaceChildren(item);
  shownAt = performance.now();
  setTimeout(() => item.classList.add("old"), kind === "error" ? 10000 : 6000);
}
