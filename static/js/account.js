// The account card: figures and the net liquidation of this session as a sparkline.
import {$} from "./dom.js";
import {fmtClock, fmtMoney, fmtSigned, isNum, signClass} from "./format.js";
import {createSpark} from "./spark.js";
import {onRender} from "./store.js";

const netLiq = []; // [{t: epoch ms, v}] over this session
let spark = null;

function recordNetLiq(account) {
  const value = account && account.figures ? account.figures.net_liquidation : null;
  if (!isNum(value)) return;
  const now = Date.now();
  const last = netLiq[netLiq.length - 1];
  if (last && last.v === value && now - last.t < 5000) return;
  netLiq.push({t: now, v: value});
  if (netLiq.length > 2000) netLiq.splice(1, netLiq.length - 1500); // keep the session start
}

// a figure of a billion or more is set smaller, so that every digit shows (style.css)
const LONG_FIGURE = 13;
function showFigure(node, text, cls) {
  node.textContent = text;
  node.className = `${cls} ${text.length >= LONG_FIGURE ? "long" : ""}`.trim();
}

function renderAccount(latest) {
  const account = latest.account;
  recordNetLiq(account);
  const figures = (account && account.figures) || {};
  for (const key of ["net_liquidation", "cash", "buying_power", "available_funds"]) {
    showFigure($(`#fig-${key}`), fmtMoney(figures[key]), "");
  }
  for (const key of ["unrealized_pnl", "realized_pnl"]) {
    showFigure($(`#fig-${key}`), fmtSigned(figures[key]), signClass(figures[key]));
  }
  renderNetLiqChart();
}

export function renderNetLiqChart() {
  if (!netLiq.length) { spark.clear(); return; }
  const points = netLiq.concat([{t: Date.now(), v: netLiq[netLiq.length - 1].v}]);
  const change = points[points.length - 1].v - points[0].v;
  spark.set(points);
  const changeNode = $("#netliq-change");
  changeNode.textContent = `${fmtSigned(change)} since ${fmtClock(points[0].t / 1000)}`;
  changeNode.className = `small ${signClass(change)}`;
  const values = points.map((p) => p.v);
  $("#netliq-min").textContent = `low ${fmtMoney(Math.min(...values))}`;
  $("#netliq-max").textContent = `high ${fmtMoney(Math.max(...values))}`;
}

export function initAccount() {
  spark = createSpark($("#netliq-spark"));
  onRender(renderAccount);
}
