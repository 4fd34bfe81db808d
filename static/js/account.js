// The account card: figures and the net liquidation of this session as a sparkline.
import {$, svgEl} from "./dom.js";
import {fmtMoney, fmtSigned, isNum, pad, signClass} from "./format.js";
import {onRender} from "./store.js";

const netLiq = []; // [{t: epoch ms, v}] over this session

function recordNetLiq(account) {
  const value = account && account.figures ? account.figures.net_liquidation : null;
  if (!isNum(value)) return;
  const now = Date.now();
  const last = netLiq[netLiq.length - 1];
  if (last && last.v === value && now - last.t < 5000) return;
  netLiq.push({t: now, v: value});
  if (netLiq.length > 2000) netLiq.splice(1, netLiq.length - 1500); // keep the session start
}

function renderAccount(latest) {
  const account = latest.account;
  recordNetLiq(account);
  const figures = (account && account.figures) || {};
  for (const key of ["net_liquidation", "cash", "buying_power", "available_funds"]) {
    $(`#fig-${key}`).textContent = fmtMoney(figures[key]);
  }
  for (const key of ["unrealized_pnl", "realized_pnl"]) {
    const node = $(`#fig-${key}`);
    node.textContent = fmtSigned(figures[key]);
    node.className = signClass(figures[key]);
  }
  renderNetLiqChart();
}

export function renderNetLiqChart() {
  const svg = $("#netliq-svg");
  if (!netLiq.length) { svg.replaceChildren(); return; }
  const points = netLiq.concat([{t: Date.now(), v: netLiq[netLiq.length - 1].v}]);
  const change = points[points.length - 1].v - points[0].v;
  drawSpark(svg, points, 300, 80, change >= 0 ? "up" : "down", true);
  const changeNode = $("#netliq-change");
  const since = new Date(points[0].t);
  changeNode.textContent = `${fmtSigned(change)} since ${pad(since.getHours())}:${pad(since.getMinutes())}`;
  changeNode.className = `small ${signClass(change)}`;
  const values = points.map((p) => p.v);
  $("#netliq-min").textContent = `low ${fmtMoney(Math.min(...values))}`;
  $("#netliq-max").textContent = `high ${fmtMoney(Math.max(...values))}`;
}

/** A sparkline (area + line) of [{t, v}] into an SVG of the given viewBox size. */
export function drawSpark(svg, points, width, height, trend, step) {
  const t0 = points[0].t;
  const t1 = points[points.length - 1].t;
  let lo = Math.min(...points.map((p) => p.v));
  let hi = Math.max(...points.map((p) => p.v));
  if (hi - lo < Math.abs(hi) * 1e-6 || hi === lo) { const mid = (hi + lo) / 2; lo = mid - 1; hi = mid + 1; }
  const padY = 4;
  const x = (t) => (t1 === t0 ? 0 : ((t - t0) / (t1 - t0)) * width);
  const y = (v) => padY + (1 - (v - lo) / (hi - lo)) * (height - 2 * padY);
  // a step line for account values (they change at an instant), a straight one for prices
  const line = points.map((p, i) => {
    const px = x(p.t).toFixed(2);
    const py = y(p.v).toFixed(2);
    if (!i) return `M${px} ${py}`;
    return step ? `H${px} V${py}` : `L${px} ${py}`;
  }).join(" ");
  const area = `${line} L${x(t1).toFixed(2)} ${height} L0 ${height} Z`;
  svg.replaceChildren(
    svgEl("path", {d: area, class: `spark-area ${trend}`}),
    svgEl("path", {d: line, class: `spark-line ${trend}`, "vector-effect": "non-scaling-stroke"}));
}

export function initAccount() {
  onRender(renderAccount);
}
