"""The long-lived services of the app: simulator (optional), read and write paths.

``create_app`` builds one ``Services`` and stores it in
``app.extensions["trading"]``. Nothing here starts at import time.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from change_feed import ChangeFeed
from config import Settings
from ib_connection import NotConnectedError
from ib_connector import IBConnector
from journal import Journal
from market_data import DELAYED_TYPES, TYPE_NAMES
from order_handler import OrderHandler
from quote_hub import QuoteHub
from rate_window import SlidingWindow
from read_cache import ReadCache
from risk import RiskGate, RiskQuote
from screen_store import ScreenStore
from security import data_dir, naming

if TYPE_CHECKING:
    from sim_gateway.controller import SimGateway

log = logging.getLogger(__name__)

SERVER_THREADS = 16  # waitress worker threads (one process, threads only)
RESERVED_THREADS = 4  # never held by a long call: the kill switch, /health, /status stay served
LONG_CALL_SLOTS = SERVER_THREADS - RESERVED_THREADS  # streams, ?wait=1, quotes, confirmations
PORT_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)  # taken, privileged, not ours
RISK_QUOTE_SILENCE = 0.8  # seconds of total gateway silence before the risk gate answers 503


class GatewayNotAnswering(NotConnectedError):
    """Connected, but the gateway did not answer in time: retry shortly (503 + Retry-After)."""


class Services:
    """Starts and stops the gateway connections (and the embedded simulator)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.simulator: SimGateway | None = None
        self._connector: IBConnector | None = None
        self.handler: OrderHandler | None = None
        self.journal: Journal | None = None
        self.gate: RiskGate | None = None
        self.webhook_limiter = SlidingWindow(settings.webhook_rate_per_minute, 60.0)
        self.feed = ChangeFeed()
        self.screen_store = ScreenStore(data_dir(settings))  # watchlist and alerts
        self.quotes: QuoteHub | None = None  # streaming quotes on the reader (quote_hub.py)
        self.symbol_searches: dict[str, tuple[float, list]] = {}  # /symbols answers (60 s)
        self.read_cache = ReadCache()  # JSON bodies by data version
        # calls that hold a server thread for seconds take one of these or are refused/shortened
        self.long_calls = threading.BoundedSemaphore(LONG_CALL_SLOTS)
        self.host = settings.ib_host or "127.0.0.1"
        self.port = settings.ib_port

    @property
    def connector(self) -> IBConnector:
        """The reader connection; made by ``start()``."""
        if self._connector is None:
            raise RuntimeError("services not started: no reader connection")
        return self._connector

    def start(self) -> Services:
        """Start everything; on failure stop what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        s = self.settings
        if s.simulator_despite_port:
            log.warning("⚠️ %s", s.simulator_despite_port)
        if s.use_simulator:
            # imported here: an app on a real gateway never loads the simulator (~0.2 s of CPU)
            from sim_gateway.broker import BrokerConfig
            from sim_gateway.controller import SimGateway
            from sim_gateway.server import ServerSettings
            from sim_gateway.sessions import demo_clock_start

            # the demo account lives next to the journal, so both survive a restart together
            state = None
            if s.journal_path != ":memory:":
                folder = os.path.dirname(os.path.abspath(s.journal_path))
                os.makedirs(folder, exist_ok=True)
                state = os.path.join(folder, "sim_state.json")
            simulator = SimGateway(
                ServerSettings(
                    host="127.0.0.1",
                    port=s.sim_port,
                    master_client_id=s.sim_master_client_id,
                    state_file=state,
                    clock_start=demo_clock_start(time.time()),
                    market_data=s.sim_market_data,
                    nightly_reset=None if s.sim_nightly_reset == "off" else s.sim_nightly_reset,
                ),
                BrokerConfig(account=s.sim_account, seed=s.sim_seed),
            )
            where = f"the embedded simulator cannot listen on 127.0.0.1:{s.sim_port}"
            with naming("SIM_PORT", s.sim_port, f"{where} (0 = any free port)", PORT_ERRORS):
                self.simulator = simulator.start()
            self.simulator.set_validation_delay(s.sim_validation_delay)
            self.host, self.port = "127.0.0.1", self.simulator.port
            log.info("🧪 Embedded simulated IB Gateway on 127.0.0.1:%d", self.port)
        self.journal = Journal(s.journal_path)
        self.journal.health.on_change = self.feed.bump  # /status and the page say so at once
        self._connector = connector = IBConnector(
            self.host,
            self.port,
            s.client_id,
            s.connect_timeout,
            s.account,
            on_change=self.feed.bump,
            own_client_id=None if s.read_only else s.order_client_id,
            market_data_type=s.market_data_type,
        )
        connector.state_listener = self.feed.bump
        # both connections' handshakes run at once (each ~0.1-0.2 s, mostly the request
        # throttle); start() waits for both first attempts below
        connector.start(wait_connected=False)
        self.quotes = QuoteHub(
            connector, self.screen_store, s.market_data_lines, self.feed.bump_quotes
        )
        self.quotes.start()
        if s.read_only:
            log.warning("📖 READ_ONLY: the order thread is not started; every order is refused")
            connector.wait_first_attempt()
            return
        assert s.order_client_id is not None  # Settings fills it in (client_id + 1 by default)
        self.handler = OrderHandler(
            self.host,
            self.port,
            s.order_client_id,
            s.connect_timeout,
            s.account,
            settle=(s.settle_first, s.settle_validation, s.settle_final),
            monitor_timeout=s.monitor_timeout,
            on_change=self._order_changed,
            journal=self.journal,
            reconcile_grace=s.reconcile_grace,
        )
        self.handler.state_listener = self.feed.bump
        self.handler.on_record = self.feed.bump
        connector.own_commission = self.handler.commission_of  # see reader_orders
        self.handler.start(wait_connected=False)
        connector.wait_first_attempt()
        self.handler.wait_first_attempt()
        midnight = time.time() - time.time() % 86400  # UTC midnight
        self.gate = RiskGate(
            s,
            self._quote_for_risk,
            self.handler.working_count,
            self._accounts,
            self.journal.notional_since(midnight),
            base_currency=self._base_currency,
        )

    def _quote_for_risk(
        self, symbol: str, sec_type: str, con_id: int = 0, currency: str = "USD"
    ) -> RiskQuote:
        """Prices for the risk gate (delayed ones marked, IB's reason when none); LookupError
        for an unknown symbol; ``con_id``: a derivative's own quote, not its underlying's;
        ``currency``: the listing the order trades (AAPL in EUR is not AAPL in USD).
        GatewayNotAnswering when the gateway is down or silent (the client should retry)."""
        try:
            q = self.connector.quote(
                symbol, sec_type, currency, silence=RISK_QUOTE_SILENCE, con_id=con_id
            )
        except (TimeoutError, NotConnectedError) as exc:
            log.warning(
                "⏳ risk gate: no quote for %s (%s): order refused, retryable",
                symbol,
                exc or type(exc).__name__,
            )
            raise GatewayNotAnswering(
                f"the gateway is not answering (no quote for {symbol}: {exc}); nothing was "
                "sent, retry shortly"
            ) from None
        delayed = q.market_data in {TYPE_NAMES[t] for t in DELAYED_TYPES}
        return RiskQuote(q.bid, q.ask, q.last if q.last is not None else q.close, delayed, q.notice)

    def _base_currency(self) -> str:
        """The account's base currency as the reader knows it: the risk limits are in it."""
        account = self.connector.snapshot().account
        return account.currency if account is not None else "USD"

    def _accounts(self) -> tuple[str, ...]:
        """Managed accounts as either connection knows them (either may be down)."""
        assert self.handler is not None
        return self.connector.state().accounts or self.handler.state().accounts

    def _order_changed(self) -> None:
        """An order moved at the broker: refresh the reader's view of every client's orders."""
        if self._connector is not None:
            self._connector.request_refresh()

    def stop(self) -> None:
        """Graceful: refuse new orders, stop the order thread, flush the journal, then the
        reader and the simulator."""
        self.feed.close()
        if self.quotes is not None:
            self.quotes.stop()
        if self.handler is not None:
            self.handler.close_intake()
        for name in ("handler", "journal", "_connector", "simulator"):
            service = getattr(self, name)
            if service is None:
                continue
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s failed; carrying on", name.lstrip("_"))
