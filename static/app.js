"use strict";
// The trader's dashboard: live state over Server-Sent Events (polling as a fallback),
// an order ticket with a confirmation step, and order / position / fill tables.
// Every broker string is put in the page with textContent (never innerHTML), and
// every HTTP request goes through the one helper `api()` below.
(function () {
  const STREAM_URL = "/api/v1/stream";
  const STATE_URL = "/api/v1/state";
  const POLL_MS = 1000; // polling period while the stream is unavailable
  const STREAM_RETRY_MS = 15000; // re-open a stream the server refused (503) after this
  const RENDER_GAP_MS = 150; // coalesce bursts of state events into one repaint
  const QUOTE_REFRESH_MS = 2000;
  const MAX_QTY = 1000000;
  const MAX_PRICE = 10000000;
  const COMPLETED_SHOWN = 50;
  const FILLS_SHOWN = 200;
  const NEEDS = { // order type -> which price inputs it takes (mirrors schemas.NEEDS)
    "MKT": {limit: false, stop: false, trail: false},
    "LMT": {limit: true, stop: false, trail: false},
    "STP": {limit: false, stop: true, trail: false},
    "STP LMT": {limit: true, stop: true, trail: false},
    "TRAIL": {limit: false, stop: false, trail: true},
  };
  const SYMBOL_RE = /^[A-Za-z][A-Za-z0-9.]{0,14}$/;
  const IN_PROGRESS = new Set(["queued", "sending", "settling", "monitoring"]);
  const PHASE_TEXT = {
    queued: "Queued", sending: "Sending",
    settling: "Settling", monitoring: "Monitoring",
  };

  // ------------------------------------------------------------------ helpers
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  /** Build an element; strings become text nodes, never HTML. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = value;
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const svgEl = (tag, attrs) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  };

  const numberFormats = new Map();
  function nf(min, max) {
    const key = `${min}:${max}`;
    if (!numberFormats.has(key)) {
      numberFormats.set(key, new Intl.NumberFormat(undefined, {minimumFractionDigits: min, maximumFractionDigits: max}));
    }
    return numberFormats.get(key);
  }
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const fmtMoney = (v) => (isNum(v) ? nf(2, 2).format(v) : "—");
  const fmtSigned = (v) => (isNum(v) ? (v > 0 ? "+" : "") + nf(2, 2).format(v) : "—");
  const fmtQty = (v) => (isNum(v) ? nf(0, 4).format(v) : "—");
  const fmtPrice = (v) => (isNum(v) ? (Math.abs(v) < 10 ? nf(4, 5) : nf(2, 2)).format(v) : "—");
  const signClass = (v) => (!isNum(v) || v === 0 ? "flat" : v > 0 ? "pos" : "neg");
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function fmtClock(epochSeconds, withMs) {
    if (!isNum(epochSeconds)) return "—";
    const d = new Date(epochSeconds * 1000);
    const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
  }
  function fmtExecTime(text) {
    const d = new Date(text);
    if (Number.isNaN(d.getTime())) return String(text || "—");
    const today = new Date();
    const clock = fmtClock(d.getTime() / 1000);
    return d.toDateString() === today.toDateString() ? clock : `${d.toLocaleDateString()} ${clock}`;
  }
  function fmtAge(seconds) {
    if (!isNum(seconds)) return "";
    if (seconds < 10) return `${seconds.toFixed(1)} s`;
    if (seconds < 120) return `${Math.round(seconds)} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    return `${Math.round(seconds / 3600)} h`;
  }
  const sideWord = (action) => (action === "BUY" || action === "BOT" ? "Buy" : action === "SELL" || action === "SLD" ? "Sell" : String(action || "—"));
  const sideClass = (action) => (action === "BUY" || action === "BOT" ? "buy" : "sell");

  // ------------------------------------------------------------ the one fetch
  class ApiError extends Error {
    constructor(status, code, message, field, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field || null;
      this.details = details || [];
    }
  }

  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const CSRF_TOKEN = csrfMeta ? csrfMeta.getAttribute("content") : null;
  const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

  /**
   * Every HTTP request of the page goes through here: the session cookie rides along,
   * state-changing requests carry the page's CSRF token (X-CSRFToken). Resolves with
   * the JSON body; rejects with ApiError carrying the API's
   * {"error": {status, code, message, field}} shape.
   */
  async function api(path, options) {
    const opts = options || {};
    const method = (opts.method || "GET").toUpperCase();
    const init = {
      method,
      headers: Object.assign({Accept: "application/json"}, opts.headers || {}),
      credentials: "same-origin",
      cache: "no-store",
    };
    if (CSRF_TOKEN && !SAFE_METHODS.has(method)) init.headers["X-CSRFToken"] = CSRF_TOKEN;
    if (opts.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "network_error", "The dashboard server cannot be reached.", null);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (err) { data = null; }
    }
    if (response.status === 401) signedOut();
    if (!response.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(response.status, e.code || "http_error",
        e.message || `The server answered ${response.status}.`, e.field, e.details);
    }
    return data;
  }

  // ------------------------------------------------------------------- toasts
  function toast(message, kind) {
    const box = $("#toasts");
    const item = el("div", {class: `toast ${kind || "info"}`}, el("span", {text: message}),
      el("button", {type: "button", class: "toast-close", "aria-label": "Dismiss", text: "×",
        onclick: () => item.remove()}));
    box.append(item);
    while (box.children.length > 4) box.firstElementChild.remove();
    setTimeout(() => item.remove(), kind === "error" ? 10000 : 6000);
  }

  // ------------------------------------------------------------------- state
  let latest = null; // the last state ({version, status, account, positions, orders, executions})
  let receivedAt = 0; // performance.now() when `latest` arrived (ages tick on from there)
  let latestFromStream = false;
  const netLiq = []; // [{t: epoch ms, v}] over this session
  const expanded = new Set(); // order ids whose lifecycle is open
  const pending = new Map(); // order id -> "cancel" | "modify" while a request is in flight
  let serverReachable = true;
  let authLost = false;

  /** The session is gone (app restarted with a new secret, or signed out): say so once. */
  function signedOut() {
    if (authLost) return;
    authLost = true;
    stopPolling(); // every further request would be refused too
    clearTimeout(feed.retryTimer);
    if (feed.es) { feed.es.close(); feed.es = null; }
    setFeedMode("offline");
    toast("Your dashboard session has ended: reload the page to sign in again.", "error");
    renderHeader();
  }

  function onState(state, fromStream) {
    if (!state || typeof state !== "object" || !state.status) return;
    if (!fromStream && latest && latestFromStream && state.version < latest.version) return;
    latest = state;
    latestFromStream = !!fromStream;
    receivedAt = performance.now();
    serverReachable = true;
    recordNetLiq(state.account);
    scheduleRender();
  }

  function recordNetLiq(account) {
    const value = account && account.figures ? account.figures.net_liquidation : null;
    if (!isNum(value)) return;
    const now = Date.now();
    const last = netLiq[netLiq.length - 1];
    if (last && last.v === value && now - last.t < 5000) return;
    netLiq.push({t: now, v: value});
    if (netLiq.length > 2000) netLiq.splice(1, netLiq.length - 1500); // keep the session start
  }

  let renderTimer = null;
  let lastRender = 0;
  function scheduleRender() {
    if (renderTimer !== null) return;
    const wait = Math.max(0, RENDER_GAP_MS - (performance.now() - lastRender));
    renderTimer = setTimeout(() => {
      renderTimer = null;
      lastRender = performance.now();
      render();
    }, wait);
  }

  // --------------------------------------------------------------- live feed
  const feed = {es: null, pollTimer: null, polling: false, retryTimer: null, mode: "connecting"};

  function setFeedMode(mode) {
    feed.mode = mode;
    const node = $("#feed");
    node.textContent = {stream: "live stream", polling: "polling", offline: "offline", connecting: "connecting…"}[mode] || mode;
    node.className = `feed feed-${mode}`;
  }

  function startStream() {
    clearTimeout(feed.retryTimer);
    if (authLost) return;
    if (!("EventSource" in window)) { startPolling(); return; }
    const es = new EventSource(STREAM_URL);
    feed.es = es;
    es.addEventListener("state", (event) => {
      let state;
      try { state = JSON.parse(event.data); } catch (err) { return; }
      stopPolling();
      setFeedMode("stream");
      onState(state, true);
    });
    es.addEventListener("error", () => {
      // Reconnecting by itself (CONNECTING) or refused for good (CLOSED, e.g. 503):
      // poll meanwhile so the page stays live.
      startPolling();
      if (es.readyState === EventSource.CLOSED) {
        if (feed.es === es) feed.es = null;
        feed.retryTimer = setTimeout(startStream, STREAM_RETRY_MS);
      }
    });
  }

  function startPolling() {
    if (feed.pollTimer !== null || authLost) return;
    setFeedMode("polling");
    pollOnce();
    feed.pollTimer = setInterval(pollOnce, POLL_MS);
  }

  function stopPolling() {
    if (feed.pollTimer !== null) clearInterval(feed.pollTimer);
    feed.pollTimer = null;
  }

  async function pollOnce() {
    if (feed.polling) return;
    feed.polling = true;
    try {
      const state = await api(STATE_URL);
      if (feed.pollTimer !== null) setFeedMode("polling");
      onState(state, false);
    } catch (err) {
      serverReachable = false;
      setFeedMode("offline");
      renderHeader();
    } finally {
      feed.polling = false;
    }
  }

  // ------------------------------------------------------------------ render
  function render() {
    if (!latest) return;
    renderHeader();
    renderAccount(latest.account, latest.status);
    renderPositions(latest.positions || []);
    renderOrders(latest.orders || []);
    renderFills(latest.executions || []);
  }

  function connView(conn) {
    if (!conn) return {cls: "down", text: "down"};
    if (conn.state === "disabled") return {cls: "off", text: "off"};
    if (conn.state === "connected") return {cls: "up", text: "live"};
    if (!conn.thread_alive || conn.state === "stopped") return {cls: "down", text: "down"};
    return {cls: "warn", text: "reconnecting"};
  }

  function setConn(id, view, age, title) {
    const node = $(id);
    node.className = `conn ${view.cls}`;
    $(".conn-state", node).textContent = view.text;
    $(".conn-age", node).textContent = age;
    node.title = title;
  }

  function connTitle(conn) {
    if (!conn) return "";
    const parts = [`state ${conn.state}`];
    if (conn.client_id !== undefined) parts.unshift(`client id ${conn.client_id}`);
    if (isNum(conn.reconnects)) parts.push(`${conn.reconnects} reconnect(s)`);
    if (conn.last_error) parts.push(`last error: ${conn.last_error}`);
    return parts.join(" · ");
  }

  function renderHeader() {
    const health = $("#health");
    if (authLost) {
      health.textContent = "signed out";
      health.className = "badge health-badge down";
      return;
    }
    if (!latest || !serverReachable) {
      health.textContent = latest ? "server unreachable" : "connecting…";
      health.className = `badge health-badge ${latest ? "down" : "pending"}`;
      if (latest) {
        for (const id of ["#conn-reader", "#conn-orders", "#conn-thread"]) {
          setConn(id, {cls: "down", text: "unknown"}, "", "the dashboard server does not answer");
        }
      }
      return;
    }
    const status = latest.status;
    const elapsed = (performance.now() - receivedAt) / 1000;
    const ageOf = (a) => (isNum(a) ? a + elapsed : null);
    const link = status.ib_servers || {reachable: true, farms: []};
    health.textContent = status.ok ? "connected" : (link.reachable ? "disconnected" : "IB servers unreachable");
    health.className = `badge health-badge ${status.ok ? "up" : "down"}`;
    health.title = link.reachable ? "" : link.reason;
    renderIbServers(link);

    const reader = status.connections && status.connections.reader;
    const orders = status.connections && status.connections.orders;
    const nowSec = Date.now() / 1000;
    const beat = (c) => (c && isNum(c.last_heartbeat) ? Math.max(0, nowSec - c.last_heartbeat) : null);
    const readerView = connView(reader);
    const ordersView = connView(orders);
    setConn("#conn-reader", readerView,
      readerView.cls === "up" ? `data ${fmtAge(ageOf(status.orders_age))}` : (reader && reader.reconnects ? `#${reader.reconnects}` : ""),
      connTitle(reader));
    setConn("#conn-orders", ordersView,
      ordersView.cls === "up" && beat(orders) !== null ? `hb ${fmtAge(beat(orders))}` : "",
      connTitle(orders));
    const threadAlive = status.threads && status.threads.orders;
    const threadView = status.read_only ? {cls: "off", text: "off (read-only)"}
      : threadAlive ? {cls: "up", text: "alive"} : {cls: "down", text: "down"};
    setConn("#conn-thread", threadView,
      threadAlive ? `${status.in_flight || 0} in flight · ${status.queue_depth || 0} queued` : "",
      "The order thread owns the order connection and its queue");
    renderKillSwitch(status);
    $("#readonly-badge").hidden = !status.read_only;
    renderTicketNotice(status);
    if (confirmBody) updateLiveGuard(); // the mode or the threshold may have changed meanwhile

    const mode = $("#mode");
    if (status.paper === true || status.paper === false) {
      mode.textContent = status.paper ? "PAPER" : "LIVE";
      mode.className = `badge ${status.paper ? "mode-paper" : "mode-live"}`;
      document.body.dataset.mode = status.paper ? "paper" : "live";
    }
    $("#sim-badge").hidden = !status.simulator;
    $("#sim-clock").textContent = status.sim_clock || "";
    $("#sim-clock").hidden = !status.sim_clock;
    $("#account-id").textContent = status.account || "—";
    $("#server-version").textContent = status.server_version ? `v${status.server_version}` : "—";
    $("#account-age").textContent = isNum(status.data_age) ? `account data ${fmtAge(ageOf(status.data_age))} old` : "";
  }

  /** IB's servers (1100/1101/1102) and the data farms (2103/2104, 2105/2106, 2157/2158). */
  function renderIbServers(link) {
    const farms = link.farms || [];
    const down = farms.filter((f) => f.state === "broken");
    const view = !link.reachable ? {cls: "down", text: `unreachable since ${fmtClock(link.since)}`}
      : down.length ? {cls: "warn", text: "farm down"} : {cls: "up", text: "reachable"};
    const firstDown = Math.min(...down.map((f) => f.since));
    const age = down.length === 1 ? `${down[0].name} broken since ${fmtClock(down[0].since)}`
      : down.length ? `${down.length} farms broken since ${fmtClock(firstDown)}`
      : farms.length ? `${farms.length} farm(s) ok` : "";
    const title = [link.reachable ? "IB's servers reachable" : link.reason]
      .concat(farms.map((f) => `${f.kind} farm ${f.name}: ${f.state} since ${fmtClock(f.since)} (${f.code})`))
      .join("\n");
    setConn("#conn-ib", view, age, title);
  }

  let ticketBlocked = false;

  function renderTicketNotice(status) {
    const notice = $("#ticket-notice");
    let text = "";
    if (status.read_only) text = "Read-only dashboard (READ_ONLY is set): orders cannot be placed here.";
    else if (status.trading_halted) {
      text = `Trading is halted (kill switch engaged${kill.reason ? `: ${kill.reason}` : ""}): new orders are refused.`;
    }
    else if (status.ib_servers && !status.ib_servers.reachable) {
      text = `${status.ib_servers.reason}. New orders are refused until IB's servers are back; nothing is queued to send later.`;
    }
    else if (status.paper === false) text = "LIVE account: orders use real money.";
    notice.textContent = text;
    notice.hidden = !text;
    notice.className = `notice ${status.paper === false && !status.read_only && !status.trading_halted ? "live" : "blocked"}`;
    ticketBlocked = !!(status.read_only || status.trading_halted
      || (status.ib_servers && !status.ib_servers.reachable));
    $("#review-btn").disabled = ticketBlocked;
    if (confirmBody) updateSendEnabled(); // a halt also stops an order waiting for its Confirm
    $("#cancel-all-btn").hidden = !!status.read_only;
    document.body.classList.toggle("read-only", !!status.read_only);
  }

  function renderAccount(account) {
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

  function renderNetLiqChart() {
    const svg = $("#netliq-svg");
    if (!netLiq.length) { svg.replaceChildren(); return; }
    const points = netLiq.concat([{t: Date.now(), v: netLiq[netLiq.length - 1].v}]);
    const first = points[0].v;
    const last = points[points.length - 1].v;
    const change = last - first;
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
  function drawSpark(svg, points, width, height, trend, step) {
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

  /**
   * Keep a table body in step with `items` without rebuilding rows that did not change
   * (so focus, hover and running animations survive the many updates per second).
   * Each item is one child of `container` (a <tr>, or a <tbody> for orders with details).
   */
  function syncRows(container, items, keyOf, sigOf, build) {
    const keyed = Array.from(container.children).filter((c) => c.dataset.key !== undefined);
    const offset = container.children.length - keyed.length; // leading rows we do not manage (a <thead>)
    const existing = new Map(keyed.map((c) => [c.dataset.key, c]));
    const wanted = [];
    for (const item of items) {
      const key = String(keyOf(item));
      const sig = sigOf(item);
      let node = existing.get(key);
      if (!node || node.dataset.sig !== sig) {
        const fresh = build(item);
        fresh.dataset.key = key;
        fresh.dataset.sig = sig;
        if (node) moveFocus(node, fresh);
        node = fresh;
      }
      wanted.push(node);
    }
    const keep = new Set(wanted);
    for (const child of keyed) if (!keep.has(child)) child.remove();
    wanted.forEach((node, i) => {
      const at = container.children[offset + i] || null;
      if (at !== node) container.insertBefore(node, at);
    });
  }

  function moveFocus(oldNode, freshNode) {
    const active = document.activeElement;
    if (!active || !oldNode.contains(active) || !active.dataset.focusKey) return;
    const target = freshNode.querySelector(`[data-focus-key="${CSS.escape(active.dataset.focusKey)}"]`);
    if (target) requestAnimationFrame(() => target.focus());
  }

  // ---------------------------------------------------------------- positions
  function renderPositions(positions) {
    const body = $("#positions tbody");
    syncRows(body, positions, (p) => `${p.account}:${p.con_id}`, (p) => JSON.stringify(p), (p) => {
      const closeSide = p.quantity > 0 ? "SELL" : "BUY";
      return el("tr", {dataset: {symbol: p.symbol}},
        el("td", {class: "sym"}, el("span", {text: p.description || p.symbol}), p.sec_type !== "STK" ? el("span", {class: "tag", text: p.sec_type}) : null,
          p.multiplier > 1 ? el("span", {class: "tag mult", title: "multiplier: value and P&L include it", text: `×${p.multiplier}`}) : null),
        el("td", {class: `num ${p.quantity < 0 ? "neg" : ""}`, text: fmtQty(p.quantity)}),
        el("td", {class: "num opt", text: fmtPrice(p.multiplier > 1 && isNum(p.avg_price) ? p.avg_price : p.avg_cost),
          title: p.multiplier > 1 ? `per unit; IB's average cost per contract (×${p.multiplier}): ${fmtPrice(p.avg_cost)}` : null}),
        el("td", {class: "num", text: fmtPrice(p.market_price)}),
        el("td", {class: "num opt", text: fmtMoney(p.market_value)}),
        el("td", {class: `num pnl ${signClass(p.unrealized_pnl)}`, text: fmtSigned(p.unrealized_pnl)}),
        el("td", {class: "actions"}, el("button", {
          type: "button", class: "btn small-btn close-position", dataset: {focusKey: `close:${p.symbol}`},
          "aria-label": `Close ${p.symbol} position: ${sideWord(closeSide)} ${fmtQty(Math.abs(p.quantity))}`,
          text: "Close", onclick: () => prefillClose(p),
        })));
    });
    $("#positions-empty").hidden = positions.length > 0;
    $("#positions").hidden = positions.length === 0;
    $("#positions-count").textContent = positions.length ? `${positions.length} open` : "";
  }

  function prefillClose(position) {
    if (position.sec_type === "OPT" || position.sec_type === "FUT") { // the derivatives ticket (static/deriv/)
      document.dispatchEvent(new CustomEvent("deriv:close-position", {detail: position}));
      return;
    }
    hideConfirm();
    const form = $("#order-form");
    form.elements.symbol.value = position.symbol;
    form.elements.sec_type.value = position.sec_type === "CASH" ? "CASH" : "STK";
    const side = position.quantity > 0 ? "SELL" : "BUY";
    $(side === "BUY" ? "#action-buy" : "#action-sell").checked = true;
    form.elements.quantity.value = String(Math.abs(position.quantity));
    form.elements.order_type.value = "MKT";
    $("#bracket").checked = false;
    clearErrors($("#ticket"));
    updateTicketLayout();
    requestQuote(true);
    $("#ticket").scrollIntoView({block: "nearest", behavior: "smooth"});
    form.elements.quantity.focus();
    toast(`Ticket filled to close ${position.symbol}: ${sideWord(side)} ${fmtQty(Math.abs(position.quantity))} at market. Review before sending.`, "info");
  }

  // ------------------------------------------------------------------ orders
  const orderSortKey = (o) => (o.perm_id ? o.perm_id : Number.MAX_SAFE_INTEGER);

  function renderOrders(orders) {
    const working = orders.filter((o) => o.open).sort((a, b) => orderSortKey(b) - orderSortKey(a));
    const completed = orders.filter((o) => !o.open).sort((a, b) => orderSortKey(b) - orderSortKey(a));
    for (const id of Array.from(pending.keys())) {
      const row = orders.find((o) => o.id === id);
      if (!row || !row.open) pending.delete(id);
    }
    const sig = (o) => `${expanded.has(o.id) ? 1 : 0}|${pending.get(o.id) || ""}|${JSON.stringify(o)}`;
    syncRows($("#working-orders"), working, (o) => o.id, sig, (o) => orderGroup(o, true));
    syncRows($("#completed-orders"), completed.slice(0, COMPLETED_SHOWN), (o) => o.id, sig, (o) => orderGroup(o, false));
    $("#working-count").textContent = String(working.length);
    $("#completed-count").textContent = completed.length > COMPLETED_SHOWN ? `${COMPLETED_SHOWN} of ${completed.length}` : String(completed.length);
    $("#working-empty").hidden = working.length > 0;
    $("#completed-empty").hidden = completed.length > 0;
    $("#working-orders").classList.toggle("is-empty", working.length === 0);
    $("#completed-orders").classList.toggle("is-empty", completed.length === 0);
    $("#cancel-all-btn").disabled = working.length === 0;
  }

  function priceText(o) {
    const parts = [];
    if (isNum(o.stop_price)) parts.push(`${o.order_type === "TRAIL" ? "trail" : "stop"} ${fmtPrice(o.stop_price)}`);
    if (isNum(o.limit_price)) parts.push(o.order_type === "STP LMT" ? `lmt ${fmtPrice(o.limit_price)}` : fmtPrice(o.limit_price));
    const intent = o.lifecycle && o.lifecycle.intent;
    if (!parts.length && intent) {
      if (isNum(intent.trailing_amount)) parts.push(`trail ${fmtPrice(intent.trailing_amount)}`);
      if (isNum(intent.trailing_percent)) parts.push(`trail ${nf(0, 2).format(intent.trailing_percent)}%`);
    }
    return parts.length ? parts.join(" / ") : o.order_type === "MKT" ? "market" : "—";
  }

  function statusClass(o) {
    const s = o.status || "";
    if (o.verdict === "rejected" || o.verdict === "not_sent" || o.verdict === "stuck_pending_submit" || s === "Inactive") return "bad";
    if (s === "Filled") return "good";
    if (s === "Cancelled" || s === "ApiCancelled") return "muted";
    if (s === "PendingSubmit" || s === "PendingCancel" || s === "ApiPending") return "warn";
    if (s === "Submitted" || s === "PreSubmitted") return "live";
    return "muted";
  }

  function inProgress(o) {
    return !!o.ours && !o.verdict && IN_PROGRESS.has(o.phase);
  }

  function orderGroup(o, working) {
    const group = el("tbody", {class: `order-group ${expanded.has(o.id) ? "open" : ""}`, dataset: {orderId: o.id}});
    const detailsId = `lc-${String(o.id).replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const toggle = o.ours && o.lifecycle ? el("button", {
      type: "button", class: "expander", "aria-expanded": expanded.has(o.id) ? "true" : "false",
      "aria-controls": detailsId, "aria-label": `Lifecycle of ${o.id}`, dataset: {focusKey: `toggle:${o.id}`},
      onclick: () => { if (expanded.has(o.id)) expanded.delete(o.id); else expanded.add(o.id); render(); },
    }, el("span", {class: "chev", "aria-hidden": "true", text: "▸"})) : null;

    const lc = o.lifecycle;
    const leg = lc && lc.parent ? (String(o.id).endsWith("-tp") ? "TP" : String(o.id).endsWith("-sl") ? "SL" : "leg") : null;
    const idCell = el("td", {class: "oid"},
      leg ? el("span", {class: "tag leg", title: `bracket leg of ${lc.parent}`, text: leg}) : null,
      el("span", {class: "mono", text: o.ours ? o.id : `perm ${o.perm_id}`}),
      o.ours ? null : el("span", {class: "tag other", title: "placed by another client", text: "other"}));

    const statusCell = el("td", {class: "status"},
      el("span", {class: `pill ${statusClass(o)}`, text: o.status || PHASE_TEXT[o.phase] || "—"}));
    if (o.ours && o.verdict && o.verdict !== "filled" && o.verdict !== "cancelled") {
      statusCell.append(el("span", {class: `verdict v-${o.verdict}`, title: (lc && lc.verdict_reason) || "", text: o.verdict.replace(/_/g, " ")}));
    }
    if (inProgress(o)) {
      statusCell.append(el("span", {class: "progress", role: "progressbar", "aria-label": PHASE_TEXT[o.phase] || o.phase},
        el("span", {class: "progress-bar", "aria-hidden": "true"}),
        el("span", {class: "progress-text", text: PHASE_TEXT[o.phase] || o.phase})));
    }

    const cells = [
      el("td", {class: "expand-cell"}, toggle),
      idCell,
      el("td", {class: "muted opt", text: o.client_id ?? "—"}),
      el("td", {class: "sym", text: o.description || o.symbol || "—"}),
      el("td", {class: `side ${sideClass(o.action)}`, text: sideWord(o.action)}),
      el("td", {class: "num", text: `${fmtQty(o.filled || 0)} / ${fmtQty(o.quantity)}`}),
      el("td", {text: o.order_type || "—"}),
      el("td", {class: "num price", text: priceText(o)}),
    ];
    if (working) {
      cells.push(el("td", {class: "opt", text: o.tif || "—"}), statusCell);
      const actions = el("td", {class: "actions"});
      if (o.ours && !(latest && latest.status.read_only)) {
        const busy = pending.get(o.id);
        actions.append(
          el("button", {type: "button", class: "btn small-btn modify-btn", disabled: !!busy || undefined,
            dataset: {focusKey: `modify:${o.id}`}, "aria-label": `Modify ${o.id}`, text: "Modify",
            onclick: () => openModify(o)}),
          el("button", {type: "button", class: "btn small-btn danger cancel-btn", disabled: !!busy || undefined,
            dataset: {focusKey: `cancel:${o.id}`}, "aria-label": `Cancel ${o.id}`,
            text: busy === "cancel" ? "Cancelling…" : "Cancel", onclick: () => cancelOrder(o)}));
      }
      cells.push(actions);
    } else {
      cells.push(el("td", {class: "num", text: fmtPrice(o.avg_fill_price)}), statusCell);
    }
    group.append(el("tr", {class: `order-row ${o.ours ? "ours" : "theirs"}`}, cells));
    if (o.ours && lc && expanded.has(o.id)) {
      group.append(el("tr", {class: "lifecycle-row"},
        el("td", {colspan: cells.length, id: detailsId}, lifecycleView(o, lc))));
    }
    return group;
  }

  function lifecycleView(o, lc) {
    const t0 = lc.created_at;
    const rel = (at) => (isNum(at) && isNum(t0) ? `+${(at - t0).toFixed(3)} s` : "");
    const timeCell = (at) => el("span", {class: "lc-time", title: fmtClock(at, true)}, rel(at));
    const list = (items, render, empty) => (items && items.length
      ? el("ol", {class: "lc-list"}, items.map(render))
      : el("p", {class: "muted small", text: empty}));

    const verdictLine = el("p", {class: "lc-verdict"},
      el("span", {class: "lc-label", text: "Verdict "}),
      el("span", {class: `pill ${{filled: "good", working: "live", cancelled: "muted"}[lc.verdict] || (lc.verdict ? "bad" : "warn")}`,
        text: lc.verdict ? lc.verdict.replace(/_/g, " ") : "pending"}),
      lc.verdict_reason ? el("span", {class: "muted", text: ` ${lc.verdict_reason}`}) : null,
      el("span", {class: "lc-label", text: " · Phase "}),
      el("span", {class: "mono", text: lc.phase || "—"}),
      inProgress(o) ? el("span", {class: "progress inline", "aria-hidden": "true"}, el("span", {class: "progress-bar"})) : null);

    const meta = el("p", {class: "lc-meta small muted"},
      [`created ${fmtClock(lc.created_at, true)}`, lc.order_id ? `orderId ${lc.order_id}` : null,
        lc.perm_id ? `permId ${lc.perm_id}` : null, lc.client_id ? `client ${lc.client_id}` : null,
        `source ${lc.source}`, lc.parent ? `bracket leg of ${lc.parent}` : null,
        lc.children && lc.children.length ? `legs ${lc.children.join(", ")}` : null,
        isNum(lc.avg_fill_price) ? `avg fill ${fmtPrice(lc.avg_fill_price)}` : null].filter(Boolean).join(" · "));

    return el("div", {class: "lifecycle"},
      verdictLine, meta,
      el("div", {class: "lc-grid"},
        el("section", {class: "lc-col"}, el("h4", {text: "Steps"}),
          list(lc.steps, (s) => el("li", {}, timeCell(s.at), el("span", {text: s.text})), "No steps yet.")),
        el("section", {class: "lc-col"}, el("h4", {text: "Status transitions"}),
          list(lc.transitions, (t) => el("li", {}, timeCell(t.at), el("span", {},
            el("span", {class: "mono", text: `${t.old || "—"} → ${t.new}`}),
            el("span", {class: "muted", text: ` · filled ${fmtQty(t.filled)}, left ${fmtQty(t.remaining)}`}))),
          "No status from the broker yet.")),
        el("section", {class: "lc-col"}, el("h4", {text: "Messages"}),
          list(lc.messages, (m) => el("li", {}, timeCell(m.at), el("span", {},
            el("span", {class: "code", text: String(m.code)}), el("span", {text: ` ${m.text}`}))), "No messages.")),
        el("section", {class: "lc-col"}, el("h4", {text: "Fills"}),
          list(lc.fills, (f) => el("li", {}, timeCell(f.at), el("span", {},
            el("span", {text: `${fmtQty(f.shares)} @ ${fmtPrice(f.price)}`}),
            el("span", {class: "muted", text: ` · commission ${isNum(f.commission) ? fmtMoney(f.commission) : "pending"}`}))),
          "No fills.")),
      ));
  }

  async function cancelOrder(o) {
    pending.set(o.id, "cancel");
    render();
    try {
      await api(`/api/v1/orders/${encodeURIComponent(o.id)}/cancel`, {method: "POST", body: {}});
      toast(`Cancel sent for ${o.id} (${sideWord(o.action)} ${fmtQty(o.quantity)} ${o.symbol}).`, "info");
    } catch (err) {
      pending.delete(o.id);
      toast(`Cancel of ${o.id} failed: ${err.message}`, "error");
      render();
    }
  }

  // ------------------------------------------------------------------- fills
  function renderFills(executions) {
    const rows = executions.slice(0, FILLS_SHOWN);
    syncRows($("#fills tbody"), rows, (e) => e.exec_id, (e) => JSON.stringify(e), (e) => el("tr", {},
      el("td", {class: "mono", title: String(e.time), text: fmtExecTime(e.time)}),
      el("td", {class: "sym", text: e.description || e.symbol}),
      el("td", {class: `side ${sideClass(e.side)}`, text: sideWord(e.side)}),
      el("td", {class: "num", text: fmtQty(e.shares)}),
      el("td", {class: "num", text: fmtPrice(e.price)}),
      el("td", {class: "num", text: isNum(e.commission) ? fmtMoney(e.commission) : "—"}),
      el("td", {class: `num pnl ${signClass(e.realized_pnl)}`, text: isNum(e.realized_pnl) && e.realized_pnl !== 0 ? fmtSigned(e.realized_pnl) : "—"})));
    $("#fills-empty").hidden = executions.length > 0;
    $("#fills").hidden = executions.length === 0;
    const commission = executions.reduce((sum, e) => sum + (isNum(e.commission) ? e.commission : 0), 0);
    $("#fills-summary").textContent = executions.length
      ? `${executions.length} fill${executions.length === 1 ? "" : "s"} · commission ${fmtMoney(commission)}` : "";
  }

  // ------------------------------------------------------------ field errors
  function clearErrors(root) {
    for (const node of $$(".field-error", root)) { node.textContent = ""; delete node.dataset.source; }
    for (const node of $$("[aria-invalid]", root)) node.removeAttribute("aria-invalid");
    for (const node of $$(".form-error", root)) node.textContent = "";
  }

  /** Put each {field: message} next to the field it names; unknown fields go to `fallback`. */
  function showErrors(root, errors, fallback) {
    let firstInput = null;
    for (const [field, message] of Object.entries(errors)) {
      const slot = $$(".field-error", root).find((n) => (n.dataset.for || "").split(" ").includes(field));
      if (slot && !slot.closest("[hidden]")) {
        slot.textContent = message;
        const field_ = slot.closest(".field");
        const input = field_ ? $("input, select", field_) : null;
        if (input) {
          input.setAttribute("aria-invalid", "true");
          if (!firstInput) firstInput = input;
        }
      } else if (fallback) {
        fallback.textContent = fallback.textContent ? `${fallback.textContent} ${field}: ${message}` : `${field}: ${message}`;
      }
    }
    return firstInput;
  }

  /** The API's field error (and its details) as {field: message}. */
  function serverErrors(err) {
    const errors = {};
    for (const d of err.details || []) {
      if (d && d.field && !(d.field in errors)) errors[d.field] = d.message;
    }
    if (err.field && !(err.field in errors)) {
      const prefix = `${err.field}: `;
      errors[err.field] = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    }
    return errors;
  }

  // ------------------------------------------------------------------ ticket
  const form = $("#order-form");
  const F = form.elements;

  function numberOf(input) {
    const text = String(input.value || "").trim();
    if (text === "") return null;
    const value = Number(text);
    return Number.isNaN(value) ? NaN : value;
  }

  function currentSide() {
    return $("#action-sell").checked ? "SELL" : "BUY";
  }

  function updateTicketLayout() {
    const needs = NEEDS[F.order_type.value] || NEEDS.MKT;
    for (const node of $$("[data-needs]", form)) {
      const need = node.dataset.needs;
      node.hidden = !needs[need];
    }
    $(".prices", form).hidden = !(needs.limit || needs.stop || needs.trail);
    $("#trail-unit-label").textContent = F.trail_unit.value === "percent" ? "percent" : "amount";
    $("#bracket-fields").hidden = !$("#bracket").checked;
    const side = currentSide();
    const review = $("#review-btn");
    review.classList.toggle("buy", side === "BUY");
    review.classList.toggle("sell", side === "SELL");
    review.textContent = `Review ${side === "BUY" ? "buy" : "sell"} order`;
    const stock = F.sec_type.value === "STK";
    F.quantity.step = stock ? "1" : "any";
    F.quantity.min = stock ? "1" : "0";
  }

  /** The request body exactly as the API takes it (hidden price inputs are not sent). */
  function readTicket() {
    const type = F.order_type.value;
    const needs = NEEDS[type] || NEEDS.MKT;
    const body = {
      symbol: String(F.symbol.value || "").trim().toUpperCase(),
      action: currentSide(),
      quantity: numberOf(F.quantity),
      order_type: type,
      tif: F.tif.value,
      outside_rth: F.outside_rth.checked,
      sec_type: F.sec_type.value,
    };
    if (needs.limit) body.limit_price = numberOf(F.limit_price);
    if (needs.stop) body.stop_price = numberOf(F.stop_price);
    if (needs.trail) body[F.trail_unit.value === "percent" ? "trailing_percent" : "trailing_amount"] = numberOf(F.trail_value);
    if ($("#bracket").checked) {
      const tp = numberOf(F.take_profit);
      const sl = numberOf(F.stop_loss);
      if (tp !== null) body.take_profit = tp;
      if (sl !== null) body.stop_loss = sl;
    }
    return body;
  }

  function checkPrice(errors, field, value, label) {
    if (value === null || value === undefined) return;
    if (!Number.isFinite(value)) errors[field] = `${label || "must be"} a number`;
    else if (value <= 0) errors[field] = "must be greater than 0";
    else if (value > MAX_PRICE) errors[field] = "must be at most 10,000,000";
  }

  /** Mirror of schemas.price_tick: stocks 0.01 (0.0001 below $1), FX 0.00005 (JPY 0.005). */
  function priceTick(body, price) {
    if (body.sec_type === "CASH") return (body.symbol || "").includes("JPY") ? 0.005 : 0.00005;
    return price >= 1 ? 0.01 : 0.0001;
  }

  function checkTicks(errors, body) {
    for (const field of ["limit_price", "stop_price", "take_profit", "stop_loss", "trailing_amount"]) {
      const price = body[field];
      if (errors[field] || !isNum(price)) continue;
      const tick = priceTick(body, price);
      if (Math.abs(Math.round(price / tick) * tick - price) > tick * 1e-6) {
        errors[field] = `${price} is not a multiple of the price tick ${tick}`;
      }
    }
  }

  /** Client-side mirror of schemas.OrderIn: {field: message}, empty when valid. */
  function validateOrder(body) {
    const errors = {};
    const sym = body.symbol;
    if (!sym) errors.symbol = "is required";
    else if (!SYMBOL_RE.test(sym)) errors.symbol = "letters, digits and dots, starting with a letter (at most 15)";
    else if (body.sec_type === "CASH" && sym.replace(/\./g, "").length !== 6) errors.symbol = "an FX pair looks like EUR.USD or EURUSD";

    const q = body.quantity;
    if (q === null) errors.quantity = "is required";
    else if (!Number.isFinite(q)) errors.quantity = "must be a number";
    else if (q <= 0) errors.quantity = "must be greater than 0";
    else if (q > MAX_QTY) errors.quantity = "must be at most 1,000,000";
    else if (body.sec_type === "STK" && !Number.isInteger(q)) errors.quantity = "must be a whole number of shares for stocks";

    const needs = NEEDS[body.order_type];
    if (!needs) errors.order_type = "choose an order type";
    const type = body.order_type;
    if (needs && needs.limit && body.limit_price === null) errors.limit_price = `is required for ${type} orders`;
    if (needs && needs.stop && body.stop_price === null) errors.stop_price = `is required for ${type} orders`;
    checkPrice(errors, "limit_price", body.limit_price);
    checkPrice(errors, "stop_price", body.stop_price);
    if (type === "TRAIL") {
      const trailField = "trailing_percent" in body ? "trailing_percent" : "trailing_amount";
      const value = body[trailField];
      if (value === null) errors[trailField] = "TRAIL orders need a trailing amount or percent";
      else if (trailField === "trailing_percent") {
        if (!Number.isFinite(value)) errors[trailField] = "must be a number";
        else if (value <= 0) errors[trailField] = "must be greater than 0";
        else if (value >= 100) errors[trailField] = "must be less than 100";
      } else checkPrice(errors, trailField, value);
    }

    if ($("#bracket").checked) {
      const tp = body.take_profit;
      const sl = body.stop_loss;
      checkPrice(errors, "take_profit", tp);
      checkPrice(errors, "stop_loss", sl);
      if (tp === undefined && sl === undefined) errors.take_profit = "give a take profit and/or a stop loss (or untick Bracket)";
      else if (body.tif === "IOC") errors.tif = "a bracket cannot be IOC";
      else if (!errors.take_profit && !errors.stop_loss) {
        const sign = body.action === "BUY" ? 1 : -1;
        const [above, below] = sign > 0 ? ["above", "below"] : ["below", "above"];
        const entry = isNum(body.limit_price) ? body.limit_price : null;
        if (isNum(tp) && entry !== null && (tp - entry) * sign <= 0) errors.take_profit = `must be ${above} the limit price for a ${body.action}`;
        else if (isNum(sl) && entry !== null && (entry - sl) * sign <= 0) errors.stop_loss = `must be ${below} the limit price for a ${body.action}`;
        else if (isNum(tp) && isNum(sl) && (tp - sl) * sign <= 0) errors.stop_loss = `must be ${below} take_profit for a ${body.action}`;
      }
    }
    checkTicks(errors, body);
    return errors;
  }

  // ------------------------------------------------------------------- quote
  const quote = {symbol: null, secType: null, data: null, seq: 0, timer: null, debounce: null, history: []};

  function quoteTarget() {
    const symbol = String(F.symbol.value || "").trim().toUpperCase();
    const secType = F.sec_type.value;
    if (!SYMBOL_RE.test(symbol)) return null;
    if (secType === "CASH" && symbol.replace(/\./g, "").length !== 6) return null;
    return {symbol, secType};
  }

  function clearQuote(message) {
    quote.data = null;
    quote.history = [];
    for (const id of ["#quote-bid", "#quote-ask", "#quote-last"]) $(id).textContent = "—";
    $("#quote-bid-btn").disabled = true;
    $("#quote-ask-btn").disabled = true;
    $("#quote-svg").replaceChildren();
    $("#quote-status").textContent = message;
    $("#quote").classList.remove("has-quote");
  }

  function requestQuote(reset) {
    clearTimeout(quote.timer);
    const target = quoteTarget();
    if (!target) {
      quote.symbol = null;
      clearQuote("Enter a symbol for a live quote.");
      return;
    }
    if (reset || target.symbol !== quote.symbol || target.secType !== quote.secType) {
      const symErr = $("#symbol-error");
      if (symErr.dataset.source === "quote") { symErr.textContent = ""; delete symErr.dataset.source; F.symbol.removeAttribute("aria-invalid"); }
      quote.symbol = target.symbol;
      quote.secType = target.secType;
      clearQuote(`Fetching a quote for ${target.symbol}…`);
    }
    fetchQuote(target);
  }

  async function fetchQuote(target) {
    const seq = ++quote.seq;
    const readerUp = !latest || connView(latest.status.connections && latest.status.connections.reader).cls === "up";
    if (!readerUp || document.hidden) { // no broker to ask (or nobody looking): try again later
      quote.timer = setTimeout(() => fetchQuote(target), QUOTE_REFRESH_MS);
      if (!readerUp) $("#quote-status").textContent = "Quote paused: the reader connection is down.";
      return;
    }
    try {
      const params = new URLSearchParams({symbol: target.symbol});
      if (target.secType !== "STK") params.set("sec_type", target.secType);
      const q = await api(`/api/v1/quote?${params}`);
      if (seq !== quote.seq) return;
      showQuote(q);
      const symErr = $("#symbol-error");
      if (symErr.dataset.source === "quote") { symErr.textContent = ""; symErr.dataset.source = ""; F.symbol.removeAttribute("aria-invalid"); }
      quote.timer = setTimeout(() => fetchQuote(target), QUOTE_REFRESH_MS);
    } catch (err) {
      if (seq !== quote.seq) return;
      if (err.code === "unknown_symbol" || err.status === 400) {
        clearQuote("No quote.");
        const symErr = $("#symbol-error");
        symErr.textContent = err.code === "unknown_symbol" ? `unknown symbol ${target.symbol}` : (serverErrors(err).symbol || err.message);
        symErr.dataset.source = "quote";
        F.symbol.setAttribute("aria-invalid", "true");
        return; // no refresh until the symbol changes
      }
      $("#quote-status").textContent = `Quote unavailable: ${err.message}`;
      quote.timer = setTimeout(() => fetchQuote(target), QUOTE_REFRESH_MS * 2);
    }
  }

  function showQuote(q) {
    quote.data = q;
    $("#quote-bid").textContent = fmtPrice(q.bid);
    $("#quote-ask").textContent = fmtPrice(q.ask);
    $("#quote-last").textContent = fmtPrice(isNum(q.last) ? q.last : q.close);
    $("#quote-bid-btn").disabled = !isNum(q.bid);
    $("#quote-ask-btn").disabled = !isNum(q.ask);
    $("#quote").classList.add("has-quote");
    const spread = isNum(q.bid) && isNum(q.ask) ? q.ask - q.bid : null;
    const delayed = typeof q.market_data === "string" && q.market_data.startsWith("delayed");
    $("#quote").classList.toggle("delayed", delayed);
    const kind = delayed ? `${q.market_data.toUpperCase()} (~15 min old, no live subscription) · ` : "";
    $("#quote-status").textContent = q.notice ? q.notice
      : `${kind}${q.symbol} · ${spread !== null ? `spread ${nf(2, 5).format(spread)} · ` : ""}as of ${fmtClock(q.time)}`;
    const mid = isNum(q.last) ? q.last : isNum(q.bid) && isNum(q.ask) ? (q.bid + q.ask) / 2 : q.close;
    if (isNum(mid)) {
      quote.history.push({t: Date.now(), v: mid});
      if (quote.history.length > 150) quote.history.shift();
      const pts = quote.history.length === 1 ? [quote.history[0], {t: quote.history[0].t + 1, v: mid}] : quote.history;
      drawSpark($("#quote-svg"), pts, 120, 32, pts[pts.length - 1].v >= pts[0].v ? "up" : "down");
    }
  }

  function useQuotePrice(which) {
    const q = quote.data;
    const price = q && q[which];
    if (!isNum(price)) return;
    if (!NEEDS[F.order_type.value].limit) F.order_type.value = "LMT";
    updateTicketLayout();
    F.limit_price.value = String(price);
    F.limit_price.focus();
  }

  // ---------------------------------------------------------------- confirm
  let confirmBody = null; // exactly what Confirm sends (frozen at review time)
  let confirmKey = null; // its Idempotency-Key
  let confirmNotional = null; // the estimated notional shown ({value, text, basis}) or null
  let previewReady = false; // the what-if preview answered (or failed): Confirm may be enabled
  let sending = false;
  let previewSeq = 0;

  function orderWords(b) {
    const verb = b.action === "BUY" ? "Buy" : "Sell";
    const head = `${verb} ${fmtQty(b.quantity)} ${b.symbol}`;
    let how;
    switch (b.order_type) {
      case "MKT": how = "at market"; break;
      case "LMT": how = `at limit ${fmtPrice(b.limit_price)}`; break;
      case "STP": how = `on a stop at ${fmtPrice(b.stop_price)} (then at market)`; break;
      case "STP LMT": how = `on a stop at ${fmtPrice(b.stop_price)} with limit ${fmtPrice(b.limit_price)}`; break;
      case "TRAIL": {
        const dir = b.action === "SELL" ? "below" : "above";
        how = isNum(b.trailing_percent)
          ? `with a trailing stop ${nf(0, 2).format(b.trailing_percent)}% ${dir} the market`
          : `with a trailing stop ${fmtPrice(b.trailing_amount)} ${dir} the market`;
        break;
      }
      default: how = b.order_type;
    }
    return `${head} ${how}, ${b.tif}`;
  }

  function orderExtras(b) {
    const extra = [];
    if (b.outside_rth) extra.push("may fill outside regular trading hours");
    if (isNum(b.take_profit) || isNum(b.stop_loss)) {
      const legs = [];
      if (isNum(b.take_profit)) legs.push(`take profit at ${fmtPrice(b.take_profit)}`);
      if (isNum(b.stop_loss)) legs.push(`stop loss at ${fmtPrice(b.stop_loss)}`);
      extra.push(`bracket: ${legs.join(" and ")} (GTC, one cancels the other)`);
    }
    if (b.sec_type === "CASH") extra.push("FX pair");
    return extra.length ? `Then: ${extra.join("; ")}.` : "";
  }

  function notional(b, q) {
    let price = null;
    let basis = "";
    if (isNum(b.limit_price)) { price = b.limit_price; basis = "limit"; }
    else if (isNum(b.stop_price)) { price = b.stop_price; basis = "stop"; }
    else if (q) {
      const side = b.action === "BUY" ? "ask" : "bid";
      if (isNum(q[side])) { price = q[side]; basis = side; }
      else if (isNum(q.last)) { price = q.last; basis = "last"; }
    }
    if (price === null) return null;
    return {value: b.quantity * price, text: `≈ ${fmtMoney(b.quantity * price)}`,
      basis: ` (${fmtQty(b.quantity)} × ${basis} ${fmtPrice(price)})`};
  }

  function showNotional(b) {
    const n = notional(b, quote.data && quote.data.symbol === b.symbol ? quote.data : null);
    confirmNotional = n;
    const dd = $("#confirm-notional");
    if (!n) dd.textContent = "—";
    else dd.replaceChildren(el("span", {text: n.text}), el("span", {class: "basis", text: n.basis}));
    updateLiveGuard();
  }

  // ---------------------------------------------------- live confirmation
  // On a live account an order whose estimated notional reaches LIVE_CONFIRM_NOTIONAL
  // (or whose notional cannot be estimated) is only sent once the trader has typed its
  // symbol. Paper accounts never ask.
  let liveGuardOn = false;

  function liveThreshold(status) {
    const limits = status && status.risk_limits;
    return limits && isNum(limits.live_confirm_notional) ? limits.live_confirm_notional : 0;
  }

  function liveGuardRequired() {
    const status = latest && latest.status;
    if (!confirmBody || !status || status.mode !== "live") return false;
    return !confirmNotional || confirmNotional.value >= liveThreshold(status);
  }

  function liveGuardSatisfied() {
    if (!liveGuardOn) return true;
    const typed = String($("#live-confirm-input").value || "").trim().toUpperCase();
    return !!confirmBody && typed === confirmBody.symbol;
  }

  function updateLiveGuard() {
    const required = liveGuardRequired();
    const box = $("#live-guard");
    if (required) {
      const symbol = confirmBody.symbol;
      const threshold = liveThreshold(latest.status);
      $("#live-guard-text").textContent = confirmNotional
        ? `This order's estimated notional ${fmtMoney(confirmNotional.value)} is at or above the live confirmation threshold of ${fmtMoney(threshold)}. Confirm stays disabled until you type the symbol ${symbol}.`
        : `The notional of this order cannot be estimated yet. Confirm stays disabled until you type the symbol ${symbol}.`;
      $("#live-confirm-label").textContent = `Type ${symbol} to confirm this live order`;
      $("#live-confirm-input").setAttribute("placeholder", symbol);
    }
    const appeared = required && !liveGuardOn;
    liveGuardOn = required;
    box.hidden = !required;
    updateSendEnabled();
    if (appeared && (document.activeElement === $("#confirm-send") || document.activeElement === document.body)) {
      $("#live-confirm-input").focus();
    }
  }

  function resetLiveGuard() {
    liveGuardOn = false;
    $("#live-confirm-input").value = "";
    $("#live-guard").hidden = true;
  }

  /** Confirm is enabled once the preview answered, trading is not halted and any live check is typed. */
  function updateSendEnabled() {
    const send = $("#confirm-send");
    const typed = liveGuardSatisfied();
    send.disabled = sending || !confirmBody || !previewReady || ticketBlocked || !typed;
    $("#live-guard").classList.toggle("matched", liveGuardOn && typed);
  }

  /** A refusal that names a field goes back to the ticket, next to that field. */
  function backToTicket(err) {
    if (!err.field || err.status < 400 || err.status >= 500) return false;
    sending = false;
    hideConfirm();
    const errors = serverErrors(err);
    const first = showErrors(form, errors, $("#ticket-error"));
    if (first) first.focus();
    else $("#review-btn").focus();
    return true;
  }

  function newIdempotencyKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return `dash-${window.crypto.randomUUID()}`;
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return `dash-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  }

  async function review() {
    if (sending || ticketBlocked) return;
    clearErrors($("#ticket"));
    const body = readTicket();
    const skipClient = form.dataset.clientValidation === "off";
    const errors = skipClient ? {} : validateOrder(body);
    if (Object.keys(errors).length) {
      const first = showErrors(form, errors, $("#ticket-error"));
      if (first) first.focus();
      return;
    }
    confirmBody = body;
    confirmNotional = null;
    previewReady = false;
    confirmKey = newIdempotencyKey(); // one key per confirmation: a repeat is never a second order
    const seq = ++previewSeq;
    showConfirm(body);
    if (!quote.data || quote.data.symbol !== body.symbol) {
      // the notional of a market order needs a quote: fetch one now
      const params = new URLSearchParams({symbol: body.symbol});
      if (body.sec_type !== "STK") params.set("sec_type", body.sec_type);
      api(`/api/v1/quote?${params}`).then((q) => {
        if (seq !== previewSeq) return;
        quote.data = q;
        showNotional(body);
      }).catch(() => {});
    }
    try {
      const p = await api("/api/v1/orders/preview", {method: "POST", body});
      if (seq !== previewSeq) return;
      showPreview(p);
    } catch (err) {
      if (seq !== previewSeq) return;
      if (backToTicket(err)) return; // the server refused the order itself
      if (err.status === 400) {
        hideConfirm();
        $("#ticket-error").textContent = err.message;
        $("#review-btn").focus();
        return;
      }
      $("#preview-status").textContent = `No what-if preview: ${err.message}`;
      for (const id of ["#preview-commission", "#preview-init", "#preview-maint", "#preview-equity"]) $(id).textContent = "—";
      previewReady = true;
      updateSendEnabled();
    }
  }

  function showConfirm(body) {
    resetLiveGuard();
    $("#confirm-words").textContent = orderWords(body);
    $("#confirm-extra").textContent = orderExtras(body);
    for (const id of ["#preview-commission", "#preview-init", "#preview-maint", "#preview-equity"]) $(id).textContent = "…";
    $("#preview-status").textContent = "Asking the broker for a what-if preview…";
    $("#preview-warning").hidden = true;
    $("#confirm-error").textContent = "";
    const send = $("#confirm-send");
    send.disabled = true; // enabled once the preview answered
    send.textContent = `Confirm ${body.action === "BUY" ? "buy" : "sell"}`;
    send.classList.toggle("buy", body.action === "BUY");
    send.classList.toggle("sell", body.action === "SELL");
    form.hidden = true;
    $("#confirm").hidden = false;
    $("#confirm").classList.toggle("sell", body.action === "SELL");
    $("#confirm-cancel").focus();
    showNotional(body); // also decides whether a live order needs its typed confirmation
  }

  function showPreview(p) {
    const cur = p.commission_currency ? ` ${p.commission_currency}` : "";
    let commission = isNum(p.commission) ? `${fmtMoney(p.commission)}${cur}` : "—";
    if (isNum(p.min_commission) && isNum(p.max_commission) && p.min_commission !== p.max_commission) {
      commission += ` (${fmtMoney(p.min_commission)} – ${fmtMoney(p.max_commission)})`;
    }
    $("#preview-commission").textContent = commission;
    $("#preview-init").textContent = fmtSigned(p.init_margin_change);
    $("#preview-maint").textContent = fmtSigned(p.maint_margin_change);
    $("#preview-equity").textContent = fmtSigned(p.equity_with_loan_change);
    $("#preview-status").textContent = "What-if preview from the broker; nothing has been sent yet.";
    const warning = $("#preview-warning");
    warning.textContent = p.warning_text || "";
    warning.hidden = !p.warning_text;
    previewReady = true;
    updateSendEnabled();
    const send = $("#confirm-send");
    if (!send.disabled) send.focus();
    else if (liveGuardOn && document.activeElement !== $("#live-confirm-input")) $("#live-confirm-input").focus();
  }

  function hideConfirm() {
    if (sending) return;
    previewSeq++;
    confirmBody = null;
    confirmNotional = null;
    previewReady = false;
    resetLiveGuard();
    $("#confirm").hidden = true;
    form.hidden = false;
  }

  function cancelConfirm() {
    if (sending || $("#confirm").hidden) return;
    hideConfirm();
    $("#review-btn").focus();
  }

  async function sendOrder() {
    if (sending || !confirmBody || $("#confirm-send").disabled) return;
    sending = true;
    const send = $("#confirm-send");
    const back = $("#confirm-cancel");
    send.disabled = true;
    back.disabled = true;
    const label = send.textContent;
    send.textContent = "Sending…";
    const body = confirmBody;
    try {
      const res = await api("/api/v1/orders", {method: "POST", body, headers: {"Idempotency-Key": confirmKey}});
      toast(res.replayed ? `Already placed as ${res.id} (not sent twice).` : `${orderWords(body)} — queued as ${res.id}.`, "success");
      sending = false;
      hideConfirm();
      $("#review-btn").focus();
    } catch (err) {
      sending = false;
      if (!backToTicket(err)) {
        $("#confirm-error").textContent = `Not placed: ${err.message}`;
        updateSendEnabled();
      }
    } finally {
      back.disabled = false;
      send.textContent = label;
    }
  }

  // ------------------------------------------------------------------ modify
  let modifying = null;

  function openModify(o) {
    modifying = o;
    const dialog = $("#modify-dialog");
    const mform = $("#modify-form");
    clearErrors(dialog);
    $("#modify-desc").textContent = `${o.id}: ${sideWord(o.action)} ${fmtQty(o.quantity)} ${o.symbol} ${o.order_type} ${priceText(o)}, filled ${fmtQty(o.filled || 0)}`;
    mform.elements.quantity.value = isNum(o.quantity) ? String(o.quantity) : "";
    const hasLimit = o.order_type === "LMT" || o.order_type === "STP LMT";
    const hasStop = o.order_type === "STP" || o.order_type === "STP LMT";
    $("#modify-limit-field").hidden = !hasLimit;
    $("#modify-stop-field").hidden = !hasStop;
    mform.elements.limit_price.value = hasLimit && isNum(o.limit_price) ? String(o.limit_price) : "";
    mform.elements.stop_price.value = hasStop && isNum(o.stop_price) ? String(o.stop_price) : "";
    $("#modify-send").disabled = false;
    dialog.showModal();
    (hasLimit ? mform.elements.limit_price : hasStop ? mform.elements.stop_price : mform.elements.quantity).focus();
  }

  async function sendModify(event) {
    event.preventDefault();
    const o = modifying;
    if (!o) return;
    const dialog = $("#modify-dialog");
    const mform = $("#modify-form");
    clearErrors(dialog);
    const change = {};
    const errors = {};
    const q = numberOf(mform.elements.quantity);
    if (q !== null && q !== o.quantity) change.quantity = q;
    if (!$("#modify-limit-field").hidden) {
      const v = numberOf(mform.elements.limit_price);
      if (v !== null && v !== o.limit_price) change.limit_price = v;
    }
    if (!$("#modify-stop-field").hidden) {
      const v = numberOf(mform.elements.stop_price);
      if (v !== null && v !== o.stop_price) change.stop_price = v;
    }
    if ("quantity" in change) {
      if (!Number.isFinite(change.quantity) || change.quantity <= 0) errors.quantity = "must be greater than 0";
      else if (change.quantity > MAX_QTY) errors.quantity = "must be at most 1,000,000";
      else if (!Number.isInteger(change.quantity)) errors.quantity = "must be a whole number";
    }
    checkPrice(errors, "limit_price", change.limit_price);
    checkPrice(errors, "stop_price", change.stop_price);
    if (!Object.keys(change).length && !Object.keys(errors).length) errors.quantity = "change the quantity or a price first";
    if (Object.keys(errors).length) {
      const first = showErrors(dialog, errors, $("#modify-error"));
      if (first) first.focus();
      return;
    }
    const send = $("#modify-send");
    send.disabled = true;
    pending.set(o.id, "modify");
    try {
      await api(`/api/v1/orders/${encodeURIComponent(o.id)}/modify`, {method: "POST", body: change});
      const words = Object.entries(change).map(([k, v]) => `${k.replace("_", " ")} ${k === "quantity" ? fmtQty(v) : fmtPrice(v)}`).join(", ");
      toast(`Modification sent for ${o.id}: ${words}.`, "info");
      dialog.close();
    } catch (err) {
      const first = showErrors(dialog, serverErrors(err), $("#modify-error"));
      if (!err.field) $("#modify-error").textContent = err.message;
      if (first) first.focus();
    } finally {
      pending.delete(o.id);
      send.disabled = false;
      render();
    }
  }

  // -------------------------------------------------------------- cancel all
  function openCancelAll() {
    const working = latest ? (latest.orders || []).filter((o) => o.open) : [];
    const ours = working.filter((o) => o.ours).length;
    $("#cancel-all-text").textContent =
      `This sends a global cancel to the gateway: it cancels all ${working.length} working order${working.length === 1 ? "" : "s"} ` +
      `of every client (${ours} placed by this dashboard), not only this dashboard's.`;
    $("#cancel-all-error").textContent = "";
    $("#cancel-all-send").disabled = false;
    $("#cancel-all-dialog").showModal();
    $("#cancel-all-keep").focus();
  }

  async function sendCancelAll() {
    const send = $("#cancel-all-send");
    if (send.disabled) return;
    send.disabled = true;
    try {
      const res = await api("/api/v1/orders/cancel-all", {method: "POST", body: {}});
      toast(`Global cancel sent (${res.ours_working} of our orders were working).`, "info");
      $("#cancel-all-dialog").close();
    } catch (err) {
      $("#cancel-all-error").textContent = `Not sent: ${err.message}`;
      send.disabled = false;
    }
  }

  // ------------------------------------------------------------- kill switch
  const kill = {halted: null, reason: null, reasonSeq: 0, busy: false};

  /** Halt or Resume in the header, the TRADING HALTED badge (with the reason once known). */
  function renderKillSwitch(status) {
    const halted = !!status.trading_halted;
    if (halted !== kill.halted) {
      kill.halted = halted;
      kill.reason = null;
      kill.reasonSeq++;
      if (halted && !status.read_only) fetchHaltReason();
    }
    const haltBtn = $("#halt-btn");
    const resumeBtn = $("#resume-btn");
    const active = document.activeElement;
    const usable = !status.read_only;
    haltBtn.hidden = !usable || halted;
    resumeBtn.hidden = !usable || !halted;
    // the button the trader was on turned into the other one: keep the keyboard focus there
    if (active === haltBtn && haltBtn.hidden && !resumeBtn.hidden) resumeBtn.focus();
    else if (active === resumeBtn && resumeBtn.hidden && !haltBtn.hidden) haltBtn.focus();
    const badge = $("#halted-badge");
    badge.hidden = !halted;
    badge.title = `The kill switch is engaged: new orders are refused${kill.reason ? ` (reason: ${kill.reason})` : ""}`;
  }

  async function fetchHaltReason() {
    const seq = kill.reasonSeq;
    try {
      const res = await api("/api/v1/kill-switch");
      if (seq !== kill.reasonSeq || !res || !res.engaged) return;
      kill.reason = res.reason || null;
      renderHeader();
    } catch (err) { /* the badge and the notice say enough without the reason */ }
  }

  /** After a kill-switch change: fetch the state at once (the stream may have nothing new to say). */
  function refreshState() {
    api(STATE_URL).then((state) => onState(state, false)).catch(() => {});
  }

  /** After a dialog closes: back on whichever kill-switch button is showing now. */
  function focusKillControl() {
    requestAnimationFrame(() => {
      const active = document.activeElement;
      if (active && active !== document.body && active.offsetParent !== null) return;
      const target = [$("#resume-btn"), $("#halt-btn")].find((b) => !b.hidden);
      if (target) target.focus();
    });
  }

  function setHaltPhase(phase) { // "ask" → "sending" → "done"
    const done = phase === "done";
    const busy = phase === "sending";
    $("#halt-dialog").dataset.phase = phase;
    $("#halt-title").textContent = done ? "Trading halted" : "Halt trading?";
    $("#halt-ask").hidden = done;
    $("#halt-result").hidden = !done;
    $("#halt-keep").hidden = done;
    $("#halt-send").hidden = done;
    $("#halt-close").hidden = !done;
    $("#halt-keep").disabled = busy;
    $("#halt-send").disabled = busy;
    $("#halt-reason").disabled = busy;
    $("#halt-send").textContent = busy ? "Halting…" : "Halt trading";
  }

  function openHalt() {
    const dialog = $("#halt-dialog");
    if (dialog.open) return;
    if (!kill.busy) {
      setHaltPhase("ask");
      $("#halt-reason").value = "";
      $("#halt-error").textContent = "";
      $("#halt-progress").textContent = "";
    }
    dialog.showModal();
    if (!kill.busy) $("#halt-reason").focus();
  }

  /** What the broker confirmed: {ok, text, open: [rows still working]}. */
  function haltOutcome(res) {
    const rows = Array.isArray(res && res.still_open) ? res.still_open : [];
    const open = rows.filter((o) => o && o.open !== false);
    if (res && res.cancel_confirmed) {
      return {ok: true, text: "Trading halted; every working order cancelled (confirmed by the broker).", open: []};
    }
    if (open.length) {
      const n = open.length;
      return {ok: false, open, text: `Trading halted, but the broker still reports ${n} working order${n === 1 ? "" : "s"}: ` +
        `cancel ${n === 1 ? "it" : "them"} from the Orders panel or in TWS.`};
    }
    return {ok: false, open: [], text: "Trading halted, but the broker has not confirmed the cancels yet: check the Orders panel."};
  }

  function openOrderText(o) {
    const who = o.order_ref ? o.order_ref : `perm ${o.perm_id}`;
    const client = isNum(o.client_id) ? ` (client ${o.client_id})` : "";
    return `${who}${client}: ${sideWord(o.action)} ${fmtQty(o.quantity)} ${o.symbol || "—"} ${o.order_type || ""} ${priceText(o)} — ${o.status || "status unknown"}`;
  }

  async function sendHalt(event) {
    if (event) event.preventDefault();
    if (kill.busy || $("#halt-send").disabled || $("#halt-dialog").dataset.phase === "done") return;
    kill.busy = true;
    const reason = String($("#halt-reason").value || "").trim();
    const body = {engaged: true};
    if (reason) body.reason = reason;
    setHaltPhase("sending");
    $("#halt-error").textContent = "";
    $("#halt-progress").textContent = "Halting: new orders are refused; cancelling every working order and waiting for the broker to confirm…";
    const dialog = $("#halt-dialog");
    try {
      const res = await api("/api/v1/kill-switch", {method: "POST", body});
      const outcome = haltOutcome(res);
      kill.reason = res.reason || reason || null;
      if (dialog.open) {
        $("#halt-progress").textContent = "";
        setHaltPhase("done");
        const result = $("#halt-result");
        result.className = `halt-result ${outcome.ok ? "ok" : "bad"}`;
        $("#halt-outcome").textContent = outcome.text;
        const list = $("#halt-open");
        list.replaceChildren(...outcome.open.map((o) => el("li", {class: "mono", text: openOrderText(o)})));
        list.hidden = !outcome.open.length;
        $("#halt-close").focus();
      } else {
        const rest = outcome.open.map(openOrderText).join("; ");
        toast(rest ? `${outcome.text} ${rest}` : outcome.text, outcome.ok ? "success" : "error");
      }
    } catch (err) {
      const text = `The halt request failed: ${err.message} (the TRADING HALTED badge shows whether the kill switch is engaged).`;
      $("#halt-progress").textContent = "";
      setHaltPhase("ask");
      if (dialog.open) {
        $("#halt-error").textContent = text;
        $("#halt-send").focus();
      } else toast(text, "error");
    } finally {
      kill.busy = false;
      refreshState();
    }
  }

  function openResume() {
    const dialog = $("#resume-dialog");
    if (dialog.open) return;
    $("#resume-error").textContent = "";
    $("#resume-send").disabled = false;
    const why = $("#resume-reason");
    why.textContent = kill.reason ? `Halted because: ${kill.reason}` : "";
    why.hidden = !kill.reason;
    dialog.showModal();
    $("#resume-keep").focus(); // staying halted is the default
  }

  async function sendResume() {
    const send = $("#resume-send");
    if (send.disabled) return;
    send.disabled = true;
    try {
      await api("/api/v1/kill-switch", {method: "POST", body: {engaged: false}});
      toast("Trading resumed: new orders are accepted again.", "success");
      $("#resume-dialog").close();
    } catch (err) {
      $("#resume-error").textContent = `Not resumed: ${err.message}`;
      send.disabled = false;
    } finally {
      refreshState();
    }
  }

  // ------------------------------------------------------------------ wiring
  form.addEventListener("submit", (event) => { event.preventDefault(); review(); });
  F.order_type.addEventListener("change", updateTicketLayout);
  F.trail_unit.addEventListener("change", updateTicketLayout);
  $("#bracket").addEventListener("change", updateTicketLayout);
  for (const radio of $$('input[name="action"]', form)) radio.addEventListener("change", updateTicketLayout);
  F.sec_type.addEventListener("change", () => { updateTicketLayout(); requestQuote(true); });
  F.symbol.addEventListener("input", () => {
    const start = F.symbol.selectionStart;
    const upper = F.symbol.value.toUpperCase();
    if (upper !== F.symbol.value) { F.symbol.value = upper; F.symbol.setSelectionRange(start, start); }
    clearTimeout(quote.debounce);
    quote.debounce = setTimeout(() => requestQuote(false), 350);
  });
  F.symbol.addEventListener("change", () => { clearTimeout(quote.debounce); requestQuote(false); });
  // a corrected field loses its error mark
  form.addEventListener("input", (event) => {
    const field = event.target.closest(".field");
    if (!field) return;
    const slot = $(".field-error", field);
    if (slot && slot.dataset.source !== "quote") slot.textContent = "";
    event.target.removeAttribute("aria-invalid");
  });
  $("#quote-bid-btn").addEventListener("click", () => useQuotePrice("bid"));
  $("#quote-ask-btn").addEventListener("click", () => useQuotePrice("ask"));
  $("#confirm-send").addEventListener("click", sendOrder);
  $("#confirm-cancel").addEventListener("click", cancelConfirm);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("#confirm").hidden && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      cancelConfirm();
    }
  });
  $("#modify-form").addEventListener("submit", sendModify);
  $("#modify-close").addEventListener("click", () => $("#modify-dialog").close());
  $("#modify-dialog").addEventListener("close", () => { modifying = null; });
  $("#cancel-all-btn").addEventListener("click", openCancelAll);
  $("#cancel-all-keep").addEventListener("click", () => $("#cancel-all-dialog").close());
  $("#cancel-all-send").addEventListener("click", sendCancelAll);
  $("#live-confirm-input").addEventListener("input", () => {
    const input = $("#live-confirm-input");
    const start = input.selectionStart;
    const upper = input.value.toUpperCase();
    if (upper !== input.value) { input.value = upper; input.setSelectionRange(start, start); }
    updateSendEnabled();
  });
  $("#live-confirm-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); sendOrder(); } // sends only once Confirm is enabled
  });
  $("#halt-btn").addEventListener("click", openHalt);
  $("#halt-form").addEventListener("submit", sendHalt);
  $("#halt-keep").addEventListener("click", () => $("#halt-dialog").close());
  $("#halt-close").addEventListener("click", () => $("#halt-dialog").close());
  $("#halt-dialog").addEventListener("cancel", (event) => { if (kill.busy) event.preventDefault(); }); // Esc while halting: wait for the outcome
  $("#halt-dialog").addEventListener("close", focusKillControl);
  $("#resume-btn").addEventListener("click", openResume);
  $("#resume-keep").addEventListener("click", () => $("#resume-dialog").close());
  $("#resume-send").addEventListener("click", sendResume);
  $("#resume-dialog").addEventListener("close", focusKillControl);
  document.addEventListener("visibilitychange", () => { if (!document.hidden && quote.symbol) requestQuote(false); });

  // the sticky ticket stays below the top bar, however many rows the bar wraps to
  const topbar = $(".topbar");
  const keepTopbarHeight = () => document.documentElement.style.setProperty("--topbar-height", `${topbar.offsetHeight}px`);
  keepTopbarHeight();
  if ("ResizeObserver" in window) new ResizeObserver(keepTopbarHeight).observe(topbar);

  // data ages keep ticking between updates
  setInterval(() => { if (latest) { renderHeader(); renderNetLiqChart(); } }, 1000);

  updateTicketLayout();
  setFeedMode("connecting");
  startStream();
  if (!("EventSource" in window)) startPolling();
})();
