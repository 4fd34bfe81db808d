"""The long-lived services of the app: simulator (optional), read and write paths.

``create_app`` builds one ``Services`` and stores it in
``app.extensions["trading"]``. Nothing here starts at import time.
"""

from __future__ import annotations

import logging

from change_feed import ChangeFeed
from config import Settings
from ib_connector import IBConnector
from journal import Journal
from order_handler import OrderHandler
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

log = logging.getLogger("services")


class Services:
    """Starts and stops the gateway connections (and the embedded simulator)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.simulator: SimGateway | None = None
        self.connector: IBConnector | None = None
        self.handler: OrderHandler | None = None
        self.journal: Journal | None = None
        self.feed = ChangeFeed()
        self.host = settings.ib_host or "127.0.0.1"
        self.port = settings.ib_port

    def start(self) -> "Services":
        """Start everything; on failure stop what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        s = self.settings
        if s.use_simulator:
            self.simulator = SimGateway(
                ServerSettings(host="127.0.0.1", port=s.sim_port,
                               master_client_id=s.sim_master_client_id),
                BrokerConfig(account=s.sim_account, seed=s.sim_seed)).start()
            self.simulator.set_validation_delay(s.sim_validation_delay)
            self.host, self.port = "127.0.0.1", self.simulator.port
            log.info("🧪 Embedded simulated IB Gateway on 127.0.0.1:%d", self.port)
        self.journal = Journal(s.journal_path)
        self.connector = IBConnector(self.host, self.port, s.client_id, s.connect_timeout,
                                     s.account, on_change=self.feed.bump)
        self.connector.state_listener = self.feed.bump
        self.connector.start()
        self.handler = OrderHandler(
            self.host, self.port, s.order_client_id, s.connect_timeout, s.account,
            settle=(s.settle_first, s.settle_validation, s.settle_final),
            monitor_timeout=s.monitor_timeout, on_change=self._order_changed,
            journal=self.journal, reconcile_grace=s.reconcile_grace)
        self.handler.state_listener = self.feed.bump
        self.handler.start()

    def _order_changed(self) -> None:
        """An order record changed: refresh the broker view and wake the streams."""
        if self.connector is not None:
            self.connector.request_refresh()
        self.feed.bump()

    def stop(self) -> None:
        """Graceful: refuse new orders, stop the order thread, flush the journal, then the
        reader and the simulator."""
        self.feed.close()
        if self.handler is not None:
            self.handler.close_intake()
        for name in ("handler", "journal", "connector", "simulator"):
            service = getattr(self, name)
            if service is None:
                continue
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s failed; carrying on", name)
