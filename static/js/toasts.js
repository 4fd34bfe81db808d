// Messages for the trader, in the message bar docked at the bottom of the window. The bar has
// a fixed height and the page keeps that much room below its last row, so a message never
// lies over a row's buttons: the newest message replaces the previous one, and stays (dimmed
// after a while) until the next.
import {$, el} from "./dom.js";

export function toast(message, kind) {
  const box = $("#toasts");
  const item = el("div", {class: `toast ${kind || "info"}`, title: message}, el("span", {text: message}),
    el("button", {type: "button", class: "toast-close", "aria-label": "Dismiss", text: "×",
      onclick: () => item.remove()}));
  box.replaceChildren(item);
  setTimeout(() => item.classList.add("old"), kind === "error" ? 10000 : 6000);
}
