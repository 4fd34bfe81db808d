"""asyncio TCP server of the simulated gateway: sessions, routing, pacing, faults.

Pure layers do the real work: ``codec`` frames bytes, ``protocol`` turns
fields into request dataclasses and value types into fields, ``broker``
decides what happens to orders and money. This module owns the listener, the
ticker and the faults, and maps each request type to a handler (a table, not a
chain of ifs); the handlers and the rest live in mixins of ``GatewayServer``:

* ``connections``: sockets, handshake, pacing, sending (``Session``);
* ``event_routing``: the broker's events to the sessions that should see them;
* ``faults``: the harness's fault switches (drop every client, stall, restart, send an error);
* ``account_service``, ``order_service``, ``market_data_service``,
  ``instrument_service``, ``chart_service``, ``bad_day_service``, ``marks``:
  the requests and streams of each family.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loop_thread import wait_event

from . import bad_days as bd
from . import broker as b
from . import errors, sessions
from . import protocol as p
from .account_service import AccountHandlers
from .bad_day_service import BadDayHandlers, BadDayState
from .chart_service import ChartHandlers
from .clock import SimClock
from .connections import MAX_VERSION, ConnectionHandlers, Session, _client_id
from .event_routing import EventRouting
from .faults import FaultSwitches
from .instrument_service import InstrumentHandlers
from .market_data_service import MarketDataHandlers
from .marks import MarkStreams
from .order_service import OrderHandlers
from .state_store import StateStore
from .types import Contract

log = logging.getLogger(__name__)

UNSUPPORTED_CODE = 322  # "Error processing request": an error (not a warning) for ib_async
TICK_INTERVAL = 0.25  # seconds between market data pushes / price steps checks
ACCEPT_HANDOVER_TURNS = 5  # loop turns a just-accepted connection gets to reach _serve (3 needed)


@dataclass(frozen=True)
class ServerSettings:
    """How the listener behaves (the broker has its own config)."""

    host: str = "127.0.0.1"
    port: int = 0
    master_client_id: int | None = None
    max_clients: int = 32
    max_rate: int = 50  # messages per second per client (burst allowance too) before error 100
    pacing_disconnect_after: int = (
        3  # pacing violations tolerated before the socket closes (0 = never)
    )
    max_version: int = MAX_VERSION
    state_file: str | None = None
    clock_start: float | None = None  # epoch seconds of a simulated clock (None = real time)
    clock_speed: float = 1.0
    market_data: str = "live"  # the account's entitlement: live | delayed | api-delayed | none
    outages: tuple[str, ...] = ()  # AT:FOR[:lost] windows (bad_days.parse_window)
    nightly_reset: str | None = None  # HH:MM/SECONDS[/lost], New York time
    competing_sessions: tuple[str, ...] = ()  # AT:FOR windows of a competing live session
    market_data_lines: int = 100  # concurrent reqMktData streams of the account (IB's default)


@dataclass
class Stats:
    """Counters tests and benchmarks read."""

    received_by_client: collections.Counter = field(default_factory=collections.Counter)
    # (clientId, request type name) -> count, e.g. (999, "ReqCompletedOrders")
    requests_by_client: collections.Counter = field(default_factory=collections.Counter)
    # (clientId, outgoing message id) -> count, e.g. (999, 11) for execDetails
    sent_by_client: collections.Counter = field(default_factory=collections.Counter)
    peak_rate_by_client: dict[int, int] = field(default_factory=dict)
    pacing_violations: int = 0
    decode_errors: int = 0
    connections: int = 0


# The mixins that hold ``_send`` and ``_hhmm`` come first: the later ones declare those as stubs,
# which must not shadow the real ones.
class GatewayServer(
    ConnectionHandlers,
    EventRouting,
    AccountHandlers,
    OrderHandlers,
    MarketDataHandlers,
    InstrumentHandlers,
    ChartHandlers,
    BadDayHandlers,
    MarkStreams,
    FaultSwitches,
):
    """The simulated gateway; all methods run on the server's event loop."""

    def __init__(
        self, settings: ServerSettings, broker_config: b.BrokerConfig | None = None
    ) -> None:
        self.settings = settings
        self.broker_config = broker_config or b.BrokerConfig()
        self.clock = SimClock(settings.clock_start, settings.clock_speed)
        self.store = StateStore(settings.state_file) if settings.state_file else None
        self.broker = self._load_broker()
        self.bad = bad_day_state(settings, self.clock.now())
        self.sessions: list[Session] = []
        self.stats = Stats()
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stalled_until = 0.0
        self._stall_done: asyncio.Event = asyncio.Event()
        self._stall_done.set()
        self.commission_delay = 0.0
        self.executions_answer = "full"  # order_drills.set_executions_answer
        self.open_orders_answered = True  # order_drills.set_open_orders_answered
        self.pnl_delay = 0.0
        self._pnl_held: dict[int, float] = {}
        self._dirty = False
        self._stopped = False
        self.port = settings.port
        self._handlers: dict[type, Callable[[Session, Any], None]] = {
            p.ReqIds: self._on_req_ids,
            p.ReqCurrentTime: self._on_current_time,
            p.ReqManagedAccts: self._on_managed_accounts,
            p.ReqContractDetails: self._on_contract_details,
            p.ReqMktData: self._on_mkt_data,
            p.CancelMktData: self._on_cancel_mkt_data,
            p.ReqMarketDataType: self._on_market_data_type,
            p.PlaceOrder: self._on_place_order,
            p.CancelOrder: self._on_cancel_order,
            p.ReqOpenOrders: self._on_open_orders,
            p.ReqAllOpenOrders: self._on_all_open_orders,
            p.ReqAutoOpenOrders: self._on_auto_open_orders,
            p.ReqCompletedOrders: self._on_completed_orders,
            p.ReqExecutions: self._on_executions,
            p.ReqPositions: self._on_positions,
            p.CancelPositions: self._on_cancel_positions,
            p.ReqAccountUpdates: self._on_account_updates,
            p.ReqAccountUpdatesMulti: self._on_account_updates_multi,
            p.CancelAccountUpdatesMulti: self._on_cancel_account_updates_multi,
            p.ReqAccountSummary: self._on_account_summary,
            p.CancelAccountSummary: self._on_cancel_account_summary,
            p.ReqPnL: self._on_pnl,
            p.CancelPnL: self._on_cancel_pnl,
            p.ReqPnLSingle: self._on_pnl_single,
            p.CancelPnLSingle: self._on_cancel_pnl_single,
            p.ReqGlobalCancel: self._on_global_cancel,
            p.Unsupported: self._on_unsupported,
            **self._instrument_handlers(),
            **self._bad_day_handlers(),
            **self._chart_handlers(),
        }
        self._routes: dict[type, Callable[[Any], None]] = {
            b.OpenOrderEvent: self._route_open_order,
            b.OrderStatusEvent: self._route_order_status,
            b.ExecutionEvent: self._route_execution,
            b.CommissionEvent: self._route_commission,
            b.OrderErrorEvent: self._route_order_error,
            b.WhatIfEvent: self._route_what_if,
            b.PositionEvent: self._route_position,
            b.PortfolioEvent: self._route_portfolio,
            b.AccountValuesEvent: self._route_account_values,
            b.PnLEvent: self._route_pnl,
            b.PnLSingleEvent: self._route_pnl_single,
        }

    # ------------------------------------------------------------------ life
    def _load_broker(self) -> b.Broker:
        state = self.store.load() if self.store is not None else None
        if state is not None:
            log.info("💾 Restored broker state from %s", self.settings.state_file)
            return b.Broker.from_state(state, self.broker_config, self.clock.now())
        return b.Broker(self.broker_config, self.clock.now())

    def save_state(self) -> None:
        """Write a snapshot of the broker state to the state file, if one is set."""
        if self.store is not None:
            self.store.snapshot(self.broker.to_state(), self.broker.marks())
        self._dirty = False

    async def start(self) -> None:
        """Open the listener and start the market ticker."""
        self.save_state()  # the base the write-ahead log builds on
        await self._listen()
        self._ticker = asyncio.create_task(self._tick_loop(), name="sim-ticker")

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.settings.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "🟢 Simulated IB Gateway listening on %s:%d (account %s)",
            self.settings.host,
            self.port,
            self.broker_config.account,
        )

    async def stop(self) -> None:
        """Close the listener and every session; save state."""
        self._stopped = True  # a restart still sleeping must not reopen the listener
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self._close_listener()
        if not self._stall_done.is_set():  # sessions waiting out a stall: their connections
            self._stall_done.set()  # are cut, they see it and end (not cancelled at loop end)
            await asyncio.sleep(0)
        self.save_state()
        if self.store is not None:
            self.store.close()

    async def _close_listener(self) -> None:
        """Stop accepting, cut every client, then wait for the listener to close.

        The clients go before ``wait_closed``: from Python 3.12 on it also waits until every
        accepted connection has ended, so awaiting it with clients still connected hangs.
        """
        server, self._server = self._server, None
        if server is not None:
            # Stop accepting, but close the server only once the connections it has just
            # accepted reached ``_serve`` (asyncio hands one over in three loop turns: accept,
            # connection_made, the ``_serve`` task). Closed earlier, a handover still under way
            # fails (Python 3.11) or is cancelled when the loop stops, and leaks the accepted
            # socket: the intermittent "unclosed socket" ResourceWarning in the tests.
            loop = asyncio.get_running_loop()
            for sock in server.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(ACCEPT_HANDOVER_TURNS):
                await asyncio.sleep(0)
            server.close()
        self.drop_connections()
        if server is not None:
            await server.wait_closed()

    def clock_label(self) -> str:
        """A short note for dashboards: "" on real time, else whether US stocks trade now."""
        if not self.clock.simulated:
            return ""
        probe = Contract(con_id=0, symbol="")
        state = "open" if sessions.is_open(probe, self.clock.now(), False) else "closed"
        return f"simulated clock, market {state}"

    def poke(self) -> None:
        """Wake the ticker (after a change of the broker's scheduled work)."""
        self._wake.set()

    # ------------------------------------------------------------- requests
    def _on_start_api(self, session: Session, request: p.StartApi) -> None:
        version = session.version
        if session.started:
            self._send(
                session, p.error(-1, 321, "Error validating request: API already started", version)
            )
            return
        if self._session_of(request.client_id) is not None:
            log.warning(
                "⛔ clientId %d already in use: refusing %s", request.client_id, session.peer
            )
            self._send(session, p.error(-1, 326, errors.text(326), version))
            self._close_session(session)
            return
        if sum(s.started for s in self.sessions) >= self.settings.max_clients:
            self._send(
                session,
                p.error(
                    -1,
                    502,
                    f"Maximum number of API connections ({self.settings.max_clients}) reached.",
                    version,
                ),
            )
            self._close_session(session)
            return
        session.client_id = request.client_id
        session.started = True
        log.info(
            "🔗 client %d connected (version %d) from %s", request.client_id, version, session.peer
        )
        self._send(session, p.managed_accounts([self.broker_config.account]))
        self._send(session, p.next_valid_id(self.broker.next_valid_id(request.client_id)))
        for code, text in self._start_notices():
            self._send(session, p.error(-1, code, text, version))
        for order in self.broker.open_orders(request.client_id):
            self._send_open_order(session, order)
            self._send(session, p.order_status(order))

    def _on_req_ids(self, session: Session, request: p.ReqIds) -> None:
        self._send(session, p.next_valid_id(self.broker.next_valid_id(_client_id(session))))

    def _on_current_time(self, session: Session, request: p.ReqCurrentTime) -> None:
        self._send(session, p.current_time(int(self.clock.now())))

    def _on_managed_accounts(self, session: Session, request: p.ReqManagedAccts) -> None:
        self._send(session, p.managed_accounts([self.broker_config.account]))

    def _on_unsupported(self, session: Session, request: p.Unsupported) -> None:
        log.warning(
            "%s: unsupported request %s (id %d)", session.label(), request.name, request.msg_id
        )
        self._send(
            session,
            p.error(
                request.req_id,
                UNSUPPORTED_CODE,
                f"Error processing request.-'sim' : cause - "
                f"{request.name} (message {request.msg_id}) is not supported by the simulated "
                "gateway",
                session.version,
            ),
        )

    # --------------------------------------------------------------- ticker
    async def _tick_loop(self) -> None:
        """Advance the broker (prices, triggers, delayed acks/fills) and stream quotes."""
        last_save = time.monotonic()
        while True:
            due = self.broker.next_due()
            wait = TICK_INTERVAL if due is None else self.clock.wall_seconds(due - self.clock.now())
            delay = min(TICK_INTERVAL, max(0.0, wait))
            self._wake.clear()
            await wait_event(self._wake, delay)
            try:
                self._bad_day_step()
                self._dispatch_quiet(self.broker.advance(self.clock.now()))
                if not self.outage_active:
                    self._stream_quotes()
                    self._stream_bars()
                if not self.outage_active and not self.bad.held_events and not self.bad.farms_down:
                    self._stream_marks()
                self._stream_depth()
                if self._dirty and time.monotonic() - last_save > 1.0:
                    self.save_state()
                    last_save = time.monotonic()
            except Exception:
                log.exception("ticker step failed; carrying on")


def bad_day_state(settings: ServerSettings, origin: float) -> BadDayState:
    """The bad-day switches of ``settings``; ValueError names a malformed one."""
    return BadDayState(
        entitlement=bd.Entitlement(settings.market_data),
        outages=bd.Schedule(
            tuple(bd.parse_window(text, origin) for text in settings.outages),
            bd.parse_nightly(settings.nightly_reset) if settings.nightly_reset else None,
        ),
        competing=bd.Schedule(
            tuple(
                bd.parse_window(text, origin, allow_lost=False)
                for text in settings.competing_sessions
            )
        ),
    )
