// The trader's dashboard (entry module): live state over Server-Sent Events, an order ticket
// with a confirmation step, order / position / fill tables. Each concern is its own module;
// this one only starts them. A new panel is a module with an init function added here.
import {onSignedOut} from "./api.js";
import {initAccount, renderNetLiqChart} from "./account.js";
import {initConfirm} from "./confirm.js";
import {initDialogs} from "./dialogs.js";
import {$} from "./dom.js";
import {initHealth} from "./health.js";
import {initKillSwitch} from "./killswitch.js";
import {loadRules} from "./rules.js";
import {initStale} from "./stale.js";
import {render, renderHeader, store} from "./store.js";
import {restartStream, setFeedMode, startPolling, startStream, stopFeed} from "./stream.js";
import {initTables} from "./tables.js";
import {initTheme} from "./theme.js";
import {initTicket, updateTicketLayout} from "./ticket.js";

initTheme();
initHealth();
initStale();
initKillSwitch();
initAccount();
initTables();
initTicket();
initConfirm();
initDialogs();
loadRules().then(updateTicketLayout);

/** The session is gone (signed out in another tab, expired, or the app restarted with a new
 * secret): the account's figures leave the screen and every panel stops asking, so the page
 * goes to the sign-in form, which says why. */
onSignedOut(() => {
  if (store.authLost) return;
  store.authLost = true;
  stopFeed(); // every further request would be refused too
  renderHeader();
  window.location.replace("/login?ended=1");
});

// the sticky ticket stays below the top bar, however many rows the bar wraps to
const topbar = $(".topbar");
const keepTopbarHeight = () => document.documentElement.style.setProperty("--topbar-height", `${topbar.offsetHeight}px`);
keepTopbarHeight();
if ("ResizeObserver" in window) new ResizeObserver(keepTopbarHeight).observe(topbar);

// data ages keep ticking between updates; at midnight every row is drawn again (a fill of
// today shows its clock only, one of an earlier day its date too)
let today = new Date().toDateString();
setInterval(() => {
  if (!store.latest) return;
  renderHeader();
  renderNetLiqChart();
  if (today !== new Date().toDateString()) { today = new Date().toDateString(); render(); }
}, 1000);

// static/screen/'s chart changed symbol: reopen the stream with its new `watch`
window.addEventListener("dashboard:restream", restartStream);

setFeedMode("connecting");
startStream();
if (!("EventSource" in window)) startPolling();
