// Price alerts: create (symbol, above/below, level), list with their state, delete.
import {$, api, el, fmtPrice} from "./util.js";

let current = () => null;

export function setupAlerts(chartTarget) {
  current = chartTarget;
  $("#alert-form").addEventListener("submit", create);
  window.addEventListener("dashboard:chart", () => { // the symbol field suggests the chart's
    const target = current();
    $("#alert-symbol").placeholder = target ? `Symbol (${target.symbol})` : "Symbol";
  });
  refreshAlerts();
}

async function create(event) {
  event.preventDefault();
  const symbol = $("#alert-symbol").value.trim().toUpperCase() || (current() || {}).symbol || "";
  const target = current();
  const body = {symbol, condition: $("#alert-condition").value, level: Number($("#alert-level").value),
    sec_type: target && target.symbol === symbol ? target.sec_type : (symbol.includes(".") ? "CASH" : "STK")};
  $("#alert-error").textContent = "";
  try {
    await api("/api/v1/alerts", {method: "POST", body});
    $("#alert-level").value = "";
    refreshAlerts();
  } catch (err) {
    $("#alert-error").textContent = err.field ? `${err.field}: ${err.message}` : err.message;
  }
}

export async function refreshAlerts() {
  let alerts = [];
  try {
    alerts = (await api("/api/v1/alerts")).alerts;
  } catch (err) {
    $("#alert-error").textContent = `Alerts could not be loaded: ${err.message}`;
    return;
  }
  $("#alert-list").replaceChildren(...alerts.map((a) => el("li", {class: a.triggered_at ? "fired" : "armed"},
    el("span", {class: "mono", text: a.symbol}), " ",
    el("span", {text: `${a.condition === "above" ? "≥" : "≤"} ${fmtPrice(a.level)}`}), " ",
    el("span", {class: "small muted", text: alertState(a)}),
    el("button", {type: "button", class: "btn small-btn", text: "×", "aria-label": `Delete alert ${a.symbol} ${a.level}`,
      onclick: () => deleteAlert(a)}))));
}

async function deleteAlert(a) {
  $("#alert-error").textContent = "";
  try {
    await api(`/api/v1/alerts/${a.id}`, {method: "DELETE"});
  } catch (err) { // e.g. 503 not_saved: the alert stays armed, and the trader must know
    $("#alert-error").textContent = `The ${a.symbol} alert was not deleted: ${err.message}`;
  }
  refreshAlerts();
}

/** Fired, armed (primed: the price was on the near side), or waiting for the price to come
 * back across the level (it was at or beyond it when the alert was made). */
function alertState(a) {
  if (a.triggered_at) return `fired at ${fmtPrice(a.price)}`;
  if (a.primed_at) return "armed";
  return `waits for a price ${a.condition === "above" ? "below" : "above"} ${fmtPrice(a.level)}, then fires when it crosses`;
}
