// Sparklines (the account's net liquidation, the ticket's quote) on TradingView
// lightweight-charts: a step line over time (a value holds until the next one) with its area, the
// chart's scales, grid and crosshair hidden, in the page theme's buy / sell colours (again after
// every theme change).
import {AreaSeries, LineType, createChart} from "../vendor/lightweight-charts.js";
import {onThemeChange, themeColor} from "./theme.js";

const GRID = 120; // points drawn: lightweight-charts spaces points evenly, whatever their times

/** [{t, v}] (t ascending, ms) as `count` points evenly spaced in time, each the value in force
 * then: what a step line over time looks like once the chart spaces points evenly. */
function evenSteps(points, count = GRID) {
  const t0 = points[0].t;
  const span = points[points.length - 1].t - t0;
  const out = [];
  let at = 0;
  for (let i = 0; i < count; i += 1) {
    const t = t0 + (span * i) / (count - 1);
    while (at + 1 < points.length && points[at + 1].t <= t) at += 1;
    out.push(points[at].v);
  }
  return out;
}

/** A sparkline in `box`: `set(points)` draws [{t, v}] (t ascending, ms; one point is a flat
 * line) as a step line over time, green when it ends at or above its start, red below;
 * `clear()` empties it. `box.dataset.points` counts what is drawn. */
export function createSpark(box) {
  const chart = createChart(box, {
    autoSize: true,
    handleScroll: false,
    handleScale: false,
    layout: {attributionLogo: false, background: {color: "transparent"}},
    grid: {vertLines: {visible: false}, horzLines: {visible: false}},
    crosshair: {vertLine: {visible: false, labelVisible: false}, horzLine: {visible: false, labelVisible: false}},
    timeScale: {visible: false, borderVisible: false, fixLeftEdge: true, fixRightEdge: true},
    rightPriceScale: {visible: false},
    leftPriceScale: {visible: false},
  });
  const series = chart.addSeries(AreaSeries, {
    lineWidth: 2,
    lineType: LineType.WithSteps,
    priceLineVisible: false,
    lastValueVisible: false,
    crosshairMarkerVisible: false,
  });
  let trend = "up";
  const paint = () => {
    const color = themeColor(trend === "up" ? "--buy" : "--sell");
    series.applyOptions({lineColor: color, topColor: withAlpha(color, 0.22), bottomColor: withAlpha(color, 0.04)});
  };
  onThemeChange(paint);
  paint();
  return {
    set(points) {
      const values = evenSteps(points);
      const next = values[values.length - 1] >= values[0] ? "up" : "down";
      if (next !== trend) { trend = next; paint(); }
      // the time scale is hidden: each point's time is its index (lightweight-charts wants
      // strictly rising times, in seconds)
      series.setData(values.map((value, i) => ({time: i + 1, value})));
      chart.timeScale().fitContent();
      box.dataset.points = String(values.length);
    },
    clear() {
      series.setData([]);
      box.dataset.points = "0";
    },
  };
}

/** `color` (#rrggbb, as the theme's variables are) with opacity `alpha`. */
function withAlpha(color, alpha) {
  const hex = /^#([0-9a-f]{6})$/i.exec(color);
  if (!hex) return color;
  const n = parseInt(hex[1], 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
