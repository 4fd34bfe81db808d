// The derivatives panel of the dashboard (options chain and the options / futures ticket).
// Loaded as <script type="module"> next to app.js; it talks to app.js only through DOM
// CustomEvents ("deriv:close-position" from the positions table).
import {mountChain} from "./chain.js";
import {mountTicket} from "./ticket.js";

const panel = document.getElementById("deriv-panel");
if (panel) {
  mountChain(document.getElementById("deriv-chain"));
  mountTicket(document.getElementById("deriv-ticket"));
}
