"use strict";
// Plain page: polls the JSON API and posts the order form.
const $ = (sel) => document.querySelector(sel);
const fmt = (v, d = 2) => (v === null || v === undefined ? "" : Number(v).toLocaleString(undefined, {minimumFractionDigits: d, maximumFractionDigits: d}));
const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; };

async function getJSON(url) {
  const res = await fetch(url, {headers: {Accept: "application/json"}});
  return [res.status, await res.json()];
}

function fillTable(id, rows, cols) {
  const body = $(`#${id} tbody`);
  body.replaceChildren(...rows.map((r) => { const tr = document.createElement("tr"); cols(r).forEach((c) => tr.appendChild(c)); return tr; }));
}

async function refresh() {
  try {
    const [, status] = await getJSON("/api/v1/status");
    const h = $("#health");
    h.textContent = status.ok ? "connected" : "disconnected";
    h.className = "badge " + (status.ok ? "up" : "down");
    const [code, account] = await getJSON("/api/v1/account");
    if (code === 200) {
      const names = {net_liquidation: "Net liquidation", cash: "Cash", buying_power: "Buying power", available_funds: "Available funds", unrealized_pnl: "Unrealized P&L", realized_pnl: "Realized P&L"};
      $("#account-figures").replaceChildren(...Object.entries(names).flatMap(([k, label]) => {
        const dt = document.createElement("dt"); dt.textContent = label;
        const dd = document.createElement("dd"); dd.textContent = fmt(account.figures[k]);
        return [dt, dd];
      }));
    }
    const [, pos] = await getJSON("/api/v1/positions");
    fillTable("positions", pos.positions, (p) => [cell(p.symbol), cell(p.quantity), cell(fmt(p.avg_cost)), cell(fmt(p.market_price)), cell(fmt(p.market_value)), cell(fmt(p.unrealized_pnl), p.unrealized_pnl < 0 ? "neg" : "pos")]);
    const [, ord] = await getJSON("/api/v1/orders");
    fillTable("orders", ord.orders.slice(0, 100), (o) => [cell(o.id), cell(o.client_id ?? ""), cell(o.symbol), cell(o.action), cell(o.quantity), cell(o.order_type), cell(o.status ?? ""), cell(o.filled ?? ""), cell(o.verdict ?? "")]);
  } catch (err) {
    $("#health").textContent = "unreachable";
    $("#health").className = "badge down";
  }
}

$("#order-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const data = Object.fromEntries(new FormData(ev.target));
  const body = {symbol: data.symbol, action: data.action, quantity: Number(data.quantity), order_type: data.order_type, tif: data.tif};
  if (data.limit_price) body.limit_price = Number(data.limit_price);
  if (data.stop_price) body.stop_price = Number(data.stop_price);
  const res = await fetch("/api/v1/orders", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const out = await res.json();
  $("#order-result").textContent = res.ok ? `queued ${out.id}` : out.error.message;
  $("#order-result").className = res.ok ? "" : "error";
  refresh();
});

refresh();
setInterval(refresh, 1000);
