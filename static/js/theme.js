// Light, dark, or auto (follow the system): the choice is kept in this browser.
import {$} from "./dom.js";

const KEY = "ib-dashboard-theme";
const CHOICES = ["auto", "light", "dark"];

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
}

export function initTheme() {
  applyTheme(stored() || "auto");
  $("#theme").addEventListener("change", (event) => applyTheme(event.target.value));
}
