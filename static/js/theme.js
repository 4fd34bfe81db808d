// Light, dark, or auto (follow the system): the choice is kept in this browser. Canvas charts
// take their colours from the theme's variables through onThemeChange (CSS does the rest).
import {$} from "./dom.js";

const KEY = "ib-dashboard-theme";
const CHOICES = ["auto", "light", "dark"];
const listeners = [];

/** Call `fn` after every change of the colours in force (a choice, or the system's scheme
 * while the choice is auto). */
export function onThemeChange(fn) {
  listeners.push(fn);
}

/** The value of the theme's CSS variable `name` now ("" if none). */
export function themeColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function changed() {
  for (const fn of listeners) fn();
}

function stored() {
  try { return localStorage.getItem(KEY); } catch (err) { return null; }
}

export function applyTheme(choice) {
  const theme = CHOICES.includes(choice) ? choice : "auto";
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const select = $("#theme");
  if (select) select.value = theme;
  try { localStorage.setItem(KEY, theme); } catch (err) { /* private mode: this page only */ }
  changed();
}

export function initTheme() {
  applyTheme(stored() || "auto");
  $("#theme").addEventListener("change", (event) => applyTheme(event.target.value));
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", changed);
}
