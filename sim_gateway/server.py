"""asyncio TCP server of the simulated gateway: sessions, routing, pacing, faults.

Pure layers do the real work: ``codec`` frames bytes, ``protocol`` turns
fields into request dataclasses and value types into fields, ``broker``
decides what happens to orders and money. This module owns the sockets, maps
each request type to a handler (a table, not a chain of ifs) and routes the
broker's events to the sessions that should see them:

* order events (openOrder, orderStatus, execDetails, commissionReport, order
  errors) go to the owning clientId and to the Master API client id;
* account, position and P&L events go to every session subscribed to them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import bad_days as bd
from . import broker as b
from . import errors, sessions
from . import protocol as p
from .bad_day_service import BadDayHandlers, BadDayState
from .chart_service import BarStream, ChartHandlers
from .clock import SimClock
from .codec import Hello, ProtocolError, ServerFrameReader, encode_frame, encode_handshake_reply
from .instrument_service import DepthSubscription, InstrumentHandlers
from .marks import MarkStreams
from .pacing import Pacer, Verdict
from .state_store import StateStore
from .types import AccountValue, Contract, ContractQuery, OrderView, Quote

log = logging.getLogger(__name__)

MIN_VERSION = 157
MAX_VERSION = 178
MAX_SUMMARY_SUBSCRIPTIONS = 2
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
    pacing_disconnect_after: int = 3  # pacing violations tolerated before the socket closes (0 = never)
    max_version: int = MAX_VERSION
    state_file: str | None = None
    clock_start: float | None = None  # epoch seconds of a simulated clock (None = real time)
    clock_speed: float = 1.0
    market_data: str = "live"  # the account's entitlement: live | delayed | none (bad_days)
    outages: tuple[str, ...] = ()  # AT:FOR[:lost] windows (bad_days.parse_window)
    nightly_reset: str | None = None  # HH:MM/SECONDS[/lost], New York time
    competing_sessions: tuple[str, ...] = ()  # AT:FOR windows of a competing live session
    market_data_lines: int = 100  # concurrent reqMktData streams of the account (IB's default)


@dataclass
class Session:
    """One client connection and what it subscribed to."""

    writer: asyncio.StreamWriter
    peer: str
    version: int = 0
    client_id: int | None = None
    started: bool = False
    positions: bool = False
    account_updates: bool = False
    multi: set[int] = field(default_factory=set)
    summaries: dict[int, frozenset[str]] = field(default_factory=dict)
    pnl: set[int] = field(default_factory=set)
    pnl_single: dict[int, int] = field(default_factory=dict)
    streams: dict[int, int] = field(default_factory=dict)  # reqId -> conId
    stream_types: dict[int, int] = field(default_factory=dict)  # reqId -> market data type sent
    depth: dict[int, DepthSubscription] = field(default_factory=dict)  # reqMktDepth by reqId
    bar_streams: dict[int, BarStream] = field(default_factory=dict)  # keepUpToDate by reqId
    rt_bars: dict[int, BarStream] = field(default_factory=dict)  # reqRealTimeBars by reqId
    marks_sent: dict[tuple, Any] = field(default_factory=dict)  # what marks.py last pushed
    market_data_type: int = 1
    seen_orders: set[tuple[int, int]] = field(default_factory=set)
    pacer: Pacer = field(default_factory=lambda: Pacer(50))
    queued: collections.deque = field(default_factory=collections.deque)  # +PACEAPI backlog
    received: int = 0
    peak_rate: int = 0
    held: list[bytes] = field(default_factory=list)

    def label(self) -> str:
        """Short name for logs."""
        return f"client {self.client_id}" if self.client_id is not None else self.peer


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


class GatewayServer(InstrumentHandlers, ChartHandlers, BadDayHandlers, MarkStreams):
    """The simulated gateway; all methods run on the server's event loop."""

    def __init__(self, settings: ServerSettings, broker_config: b.BrokerConfig | None = None) -> None:
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

    def _write_ahead(self, events: list[Any]) -> None:
        """Log what order events report before they leave, like a real gateway's own store:
        an acknowledged order or a reported fill survives a SIGKILL of the simulator."""
        if self.store is None:
            return
        perm_ids = {p for p in map(self._perm_id, events) if p is not None}
        if perm_ids:
            self.store.append(self.broker.changes(perm_ids, self.store.marks), self.broker.marks())

    def _perm_id(self, event: Any) -> int | None:
        """The permId of the order an event concerns (None: not an order event)."""
        if isinstance(event, (b.OpenOrderEvent, b.OrderStatusEvent)):
            return int(event.order.perm_id)
        if isinstance(event, b.ExecutionEvent):
            return int(event.execution.perm_id)
        if isinstance(event, (b.CommissionEvent, b.OrderErrorEvent)):
            return self.broker.perm_id_of(event.client_id, event.order_id) or 0
        return None

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
        log.info("🟢 Simulated IB Gateway listening on %s:%d (account %s)",
                 self.settings.host, self.port, self.broker_config.account)

    async def stop(self) -> None:
        """Close the listener and every session; save state."""
        self._stopped = True  # a restart still sleeping must not reopen the listener
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self._close_listener()
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

    # ---------------------------------------------------------------- faults
    def drop_connections(self) -> None:
        """Hard-close every client socket (as a crashing gateway does): unsent data is lost.

        ``abort``, not ``close``: a graceful close first flushes what is buffered, and never
        completes while a client does not read.
        """
        for session in list(self.sessions):
            session.writer.transport.abort()
            self._close_session(session)

    def stall(self, seconds: float) -> None:
        """Stop reading and answering for ``seconds`` with sockets left open."""
        self._stalled_until = time.monotonic() + seconds
        self._stall_done.clear()
        asyncio.get_running_loop().call_later(seconds, self._end_stall)
        log.warning("🧊 Gateway stalled for %.1fs", seconds)

    def _end_stall(self) -> None:
        if time.monotonic() + 1e-3 < self._stalled_until:
            return
        self._stall_done.set()
        for session in self.sessions:
            for data in session.held:
                session.writer.write(data)
            session.held.clear()
        log.warning("🔥 Gateway stall over")

    @property
    def stalled(self) -> bool:
        """True while a stall is in effect."""
        return not self._stall_done.is_set()

    async def restart(self, down_seconds: float = 0.5, roll_back_ids: bool = False) -> None:
        """Listener down (all clients cut), state kept, listener up on the same port."""
        log.warning("🔄 Gateway restarting (down %.1fs)", down_seconds)
        await self._close_listener()
        if roll_back_ids:
            self.broker.roll_back_order_ids()
        self.save_state()
        await asyncio.sleep(down_seconds)
        if not self._stopped:
            await self._listen()

    def send_error(self, client_id: int, req_id: int, code: int, text: str) -> bool:
        """Send an arbitrary error/notice message to one client (harness switch)."""
        session = self._session_of(client_id)
        if session is None:
            return False
        self._send(session, p.error(req_id, code, text, session.version))
        return True

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

    # ------------------------------------------------------------ connection
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        session = Session(writer=writer, peer=peer, pacer=Pacer(
            self.settings.max_rate, self.settings.pacing_disconnect_after))
        session.pacer.start(time.monotonic())
        self.sessions.append(session)
        self.stats.connections += 1
        frames = ServerFrameReader()
        try:
            while not writer.is_closing():
                data = await reader.read(65536)
                if not data:
                    break
                await self._stall_done.wait()
                if writer.is_closing():  # cut during the stall: its unread requests die with it
                    break
                frames.feed(data)
                while (event := frames.next_event()) is not None:
                    self._on_frame(session, event)
                    if writer.is_closing():
                        break
                await self._drain(session)
        except ProtocolError as exc:
            log.warning("%s: protocol error, closing: %s", session.label(), exc)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("%s: connection lost: %s", session.label(), exc)
        finally:
            self._close_session(session)

    async def _drain(self, session: Session) -> None:
        try:
            await session.writer.drain()
        except ConnectionError:
            self._close_session(session)

    def _close_session(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
            log.info("🔌 %s disconnected", session.label())
        if not session.writer.is_closing():
            session.writer.close()

    def _on_frame(self, session: Session, event: Hello | list[str]) -> None:
        if isinstance(event, Hello):
            self._on_hello(session, event)
            return
        if not session.version:
            raise ProtocolError("message before handshake")
        if session.queued or not self._within_rate(session):
            if session.pacer.queue and not session.writer.is_closing():
                self._enqueue(session, event)
            return
        self._on_fields(session, event)

    def _enqueue(self, session: Session, event: list[str]) -> None:
        """+PACEAPI: keep the message and process it when the budget allows (in order)."""
        session.queued.append(event)
        if len(session.queued) == 1:
            self._schedule_queue(session)

    def _schedule_queue(self, session: Session) -> None:
        wait = session.pacer.wait(time.monotonic())
        asyncio.get_running_loop().call_later(wait, self._run_queue, session)

    def _run_queue(self, session: Session) -> None:
        while session.queued and not session.writer.is_closing():
            if not session.pacer.take(time.monotonic()):
                self._schedule_queue(session)
                return
            try:
                self._on_fields(session, session.queued.popleft())
            except Exception:
                log.exception("%s: queued request failed; carrying on", session.label())
        session.queued.clear()

    def _on_fields(self, session: Session, event: list[str]) -> None:
        try:
            request = p.decode_request(event, session.version)
        except p.DecodeError as exc:
            self.stats.decode_errors += 1
            log.warning("%s: undecodable request %s: %s", session.label(), event[:3], exc)
            self._send(session, p.error(-1, 320, f"Error reading request. {exc}", session.version))
            return
        if session.client_id is not None:
            self.stats.requests_by_client[session.client_id, type(request).__name__] += 1
        if isinstance(request, p.StartApi):
            self._on_start_api(session, request)
        elif not session.started:
            self._send(session, p.error(-1, 321, "Error validating request: API not started",
                                        session.version))
        elif not self._held_by_outage(session, request):
            self._handlers[type(request)](session, request)

    def _on_hello(self, session: Session, hello: Hello) -> None:
        """Negotiate like TWS: answer min(own max, client max); a client whose range this
        gateway cannot serve is told so the way a real gateway does (see ``_refuse``)."""
        top = self.settings.max_version
        if hello.max_version < MIN_VERSION or hello.min_version > top:
            self._refuse(session, hello)
            return
        session.version = min(hello.max_version, top)
        if session.version == 158:  # ib_async and IB disagree on openOrder at 158
            session.version = 157
        session.pacer.queue = "+PACEAPI" in hello.options.split()
        if session.pacer.queue:
            log.info("%s asked for +PACEAPI: excess messages are queued, not rejected", session.peer)
        session.writer.write(encode_handshake_reply(session.version, self._connection_time()))

    def _connection_time(self) -> str:
        """IB's "20250323 22:21:01 Greenwich Mean Time" (rust-ibapi PR #232 recording)."""
        return time.strftime("%Y%m%d %H:%M:%S", time.gmtime(self.clock.now())) + " Greenwich Mean Time"

    def _refuse(self, session: Session, hello: Hello) -> None:
        """A client range outside MIN_VERSION..max_version.

        A real TWS does not refuse in the handshake: it answers its own version (min of its max and
        the client's max) and the client library decides (ib_async: "TWS/gateway version must be >=
        972" and disconnect, ib_async client.py:388-390; IB's EClient: error 503 "The TWS is out of
        date and must be upgraded."). Too new a client therefore gets this gateway's highest
        version and decides for itself. Too old a client (max below 157) gets our lowest version,
        157, which it cannot speak either, then the socket closes: the simulator has no encoders
        below 157 (a real TWS would serve such a client down to v100).
        """
        too_new = hello.min_version > self.settings.max_version
        answer = self.settings.max_version if too_new else MIN_VERSION
        log.warning("⛔ %s: client versions %d..%d are outside %d..%d: answering %d (%s)", session.peer,
                    hello.min_version, hello.max_version, MIN_VERSION, self.settings.max_version, answer,
                    "the client will refuse it" if too_new else "too old a client; closing")
        session.writer.write(encode_handshake_reply(answer, self._connection_time()))
        if too_new:
            session.version = answer  # a client that accepts anyway is served at our version
        else:
            self._close_session(session)

    def _within_rate(self, session: Session) -> bool:
        """Pacing (see ``pacing``): error 100 per excess message, the socket closed after
        ``pacing_disconnect_after`` violations; a +PACEAPI client is queued instead."""
        now = time.monotonic()
        in_last_second = self._count_rate(session, now)
        verdict = session.pacer.judge(now)
        if verdict in (Verdict.ADMIT, Verdict.QUEUE):
            return verdict is Verdict.ADMIT
        self.stats.pacing_violations += 1
        if verdict is Verdict.DISCONNECT:
            log.warning("⛔ %s: %d pacing violations (over %d msg/s): closing the connection",
                        session.label(), session.pacer.violations, self.settings.max_rate)
            session.writer.transport.abort()
            self._close_session(session)
            return False
        text = errors.text(100, max=self.settings.max_rate, rec=in_last_second,
                           count=session.pacer.violations)
        self._send(session, p.error(-1, 100, text, session.version))
        return False

    def _count_rate(self, session: Session, now: float) -> int:
        """Count the message in the stats; returns how many arrived in the last second."""
        in_last_second = session.pacer.count(now)
        session.received += 1
        if session.client_id is not None:
            self.stats.received_by_client[session.client_id] += 1
            peak = max(self.stats.peak_rate_by_client.get(session.client_id, 0), in_last_second)
            self.stats.peak_rate_by_client[session.client_id] = peak
        return in_last_second

    # ------------------------------------------------------------- sending
    def _send(self, session: Session, fields: list[str]) -> None:
        data = encode_frame(fields)
        if session.writer.is_closing():
            return
        self.stats.sent_by_client[session.client_id, int(fields[0])] += 1
        if self.stalled:
            session.held.append(data)
        else:
            session.writer.write(data)

    def _session_of(self, client_id: int) -> Session | None:
        for session in self.sessions:
            if session.started and session.client_id == client_id:
                return session
        return None

    def _order_audience(self, owner: int) -> list[Session]:
        sessions = []
        own = self._session_of(owner)
        if own is not None:
            sessions.append(own)
        master = self.settings.master_client_id
        if master is not None and master != owner:
            m = self._session_of(master)
            if m is not None:
                sessions.append(m)
        return sessions

    def _dispatch(self, events: list[Any]) -> None:
        self._write_ahead(events)
        if not self._hold_events(events):
            self._route_events(events)
        if events:
            self._dirty = True
        self.poke()

    # -------------------------------------------------------- event routing
    def _send_open_order(self, session: Session, order: OrderView) -> None:
        session.seen_orders.add((order.client_id, order.order_id))
        self._send(session, p.open_order(order, session.version))

    def _route_open_order(self, event: b.OpenOrderEvent) -> None:
        for session in self._order_audience(event.order.client_id):
            self._send_open_order(session, event.order)

    def _route_order_status(self, event: b.OrderStatusEvent) -> None:
        order = event.order
        for session in self._order_audience(order.client_id):
            if (order.client_id, order.order_id) not in session.seen_orders:
                self._send_open_order(session, order)
            self._send(session, p.order_status(order))

    def _route_execution(self, event: b.ExecutionEvent) -> None:
        for session in self._order_audience(event.execution.client_id):
            self._send(session, p.exec_details(-1, event.execution, session.version))

    def _route_commission(self, event: b.CommissionEvent) -> None:
        for session in self._order_audience(event.client_id):
            self._send(session, p.commission_report(event.report))

    def _route_order_error(self, event: b.OrderErrorEvent) -> None:
        # Only the owner: an error carrying another client's orderId would hit an
        # unrelated local order with the same id in the master's client library.
        session = self._session_of(event.client_id)
        if session is not None:
            self._send(session, p.error(event.order_id, event.code, event.text, session.version))

    def _route_what_if(self, event: b.WhatIfEvent) -> None:
        session = self._session_of(event.client_id)
        if session is not None:
            self._send(session, p.open_order(event.order, session.version))

    def _route_position(self, event: b.PositionEvent) -> None:
        for session in self.sessions:
            if session.started and session.positions:
                self._send(session, p.position(event.position))

    def _route_portfolio(self, event: b.PortfolioEvent) -> None:
        for session in self.sessions:
            if session.started and session.account_updates:
                self._send(session, p.portfolio_value(event.item))

    def _route_account_values(self, event: b.AccountValuesEvent) -> None:
        hhmm = self._hhmm()
        for session in self.sessions:
            if not session.started:
                continue
            if session.account_updates:
                for value in event.values:
                    self._send(session, p.account_value(value))
                self._send(session, p.account_update_time(hhmm))
            for req_id in session.multi:
                for value in event.values:
                    self._send(session, p.account_update_multi(req_id, value, ""))
            for req_id, tags in session.summaries.items():
                for value in _summary_rows(event.values, tags):
                    self._send(session, p.account_summary(req_id, value))

    def _route_pnl(self, event: b.PnLEvent) -> None:
        for session in self.sessions:
            for req_id in session.pnl:
                self._send(session, p.pnl(req_id, event.pnl))

    def _route_pnl_single(self, event: b.PnLSingleEvent) -> None:
        for session in self.sessions:
            for req_id, con_id in session.pnl_single.items():
                if con_id == event.con_id:
                    self._send(session, p.pnl_single(req_id, event.pnl_single))

    # ------------------------------------------------------------- requests
    def _on_start_api(self, session: Session, request: p.StartApi) -> None:
        version = session.version
        if session.started:
            self._send(session, p.error(-1, 321, "Error validating request: API already started",
                                        version))
            return
        if self._session_of(request.client_id) is not None:
            log.warning("⛔ clientId %d already in use: refusing %s", request.client_id, session.peer)
            self._send(session, p.error(-1, 326, errors.text(326), version))
            self._close_session(session)
            return
        if sum(s.started for s in self.sessions) >= self.settings.max_clients:
            self._send(session, p.error(
                -1, 502, f"Maximum number of API connections ({self.settings.max_clients}) "
                "reached.", version))
            self._close_session(session)
            return
        session.client_id = request.client_id
        session.started = True
        log.info("🔗 client %d connected (version %d) from %s", request.client_id, version,
                 session.peer)
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

    def _hhmm(self) -> str:
        """The account update time (HH:MM, the gateway's local time)."""
        return time.strftime("%H:%M", time.localtime(self.clock.now()))

    def _on_managed_accounts(self, session: Session, request: p.ReqManagedAccts) -> None:
        self._send(session, p.managed_accounts([self.broker_config.account]))

    def _on_contract_details(self, session: Session, request: p.ReqContractDetails) -> None:
        found = self.broker.find_contracts(request.contract)
        if not found:
            self._send_unknown_contract(session, request.req_id)
            return
        now = self.clock.now()
        for contract in found:
            hours = sessions.contract_hours(contract, now) if self.broker_config.market_hours else None
            self._send(session, p.contract_data(request.req_id, contract, session.version, hours))
        self._send(session, p.contract_data_end(request.req_id))

    def _send_unknown_contract(self, session: Session, req_id: int) -> None:
        self._send(session, p.error(
            req_id, 200, errors.text(200), session.version))

    def _resolve(self, query: ContractQuery) -> Contract | None:
        found = self.broker.find_contracts(query)
        return found[0] if len(found) == 1 else None

    def _on_mkt_data(self, session: Session, request: p.ReqMktData) -> None:
        contract = self._resolve(request.contract)
        if contract is None:
            self._send_unresolved(session, request.req_id, request.contract)
            return
        req_id = request.req_id
        if not (request.snapshot or request.regulatory_snapshot) and (
                self._lines_in_use() >= self.settings.market_data_lines):
            self._send(session, p.error(req_id, 101, errors.text(101), session.version))
            return
        self._send(session, p.tick_req_params(req_id, contract.min_tick, "SMART", 3))
        delivered = self._market_data_gate(session, req_id, contract)
        snapshot = request.snapshot or request.regulatory_snapshot
        if delivered is None:  # 354 / 10168 / 10197: no ticks, the request is over
            return
        if not self.outage_active:  # the data farm is down: a stream stays silent meanwhile
            self._send_ticks(session, req_id, self.broker.quote(contract.con_id), full=True,
                             delivered=delivered)
        if snapshot:
            self._send(session, p.tick_snapshot_end(req_id))
        else:
            session.streams[req_id] = contract.con_id
            session.stream_types[req_id] = delivered

    def _send_ticks(self, session: Session, req_id: int, quote: Quote, full: bool,
                    delivered: int = 1) -> None:
        delayed = delivered in (3, 4)
        prices: tuple[tuple[int, float, float], ...] = (
            (1, quote.bid, quote.bid_size), (2, quote.ask, quote.ask_size),
            (4, quote.last, quote.last_size))
        if full:
            prices += ((6, quote.high, 0.0), (7, quote.low, 0.0), (9, quote.close, 0.0),
                       (14, quote.open, 0.0))
        prices = self._shown_ticks(quote.con_id, prices)
        for tick_type, price, size in prices:
            tick_type = _DELAYED_TICK.get(tick_type, tick_type) if delayed else tick_type
            self._send(session, p.tick_price(req_id, tick_type, price, size, 0))
        volume_tick = 74 if delayed else 8
        self._send(session, p.tick_size(req_id, volume_tick, quote.volume))
        self._send_option_ticks(session, req_id, quote.con_id, full, delayed)

    def _lines_in_use(self) -> int:
        """Market data lines taken: every live reqMktData stream of every session."""
        return sum(len(s.streams) for s in self.sessions)

    def _on_cancel_mkt_data(self, session: Session, request: p.CancelMktData) -> None:
        session.streams.pop(request.req_id, None)
        session.stream_types.pop(request.req_id, None)

    def _on_market_data_type(self, session: Session, request: p.ReqMarketDataType) -> None:
        session.market_data_type = request.market_data_type

    def _on_place_order(self, session: Session, request: p.PlaceOrder) -> None:
        self._dispatch(self.broker.place_order(_client_id(session), request.order, self.clock.now()))

    def _on_cancel_order(self, session: Session, request: p.CancelOrder) -> None:
        self._dispatch(self.broker.cancel_order(_client_id(session), request.order_id,
                                                 self.clock.now()))

    def _on_global_cancel(self, session: Session, request: p.ReqGlobalCancel) -> None:
        self._dispatch(self.broker.global_cancel(self.clock.now()))

    def _send_order_list(self, session: Session, orders: list[OrderView]) -> None:
        for order in orders:
            self._send_open_order(session, order)
            self._send(session, p.order_status(order))
        self._send(session, p.open_order_end())

    def _on_open_orders(self, session: Session, request: p.ReqOpenOrders) -> None:
        self._send_order_list(session, self.broker.open_orders(session.client_id))

    def _on_all_open_orders(self, session: Session, request: p.ReqAllOpenOrders) -> None:
        self._send_order_list(session, self.broker.open_orders(None))

    def _on_auto_open_orders(self, session: Session, request: p.ReqAutoOpenOrders) -> None:
        if session.client_id != 0:
            self._send(session, p.error(
                -1, 327, "Only API connections with clientId set to 0 can set the auto bind "
                "TWS orders property.", session.version))

    def _on_completed_orders(self, session: Session, request: p.ReqCompletedOrders) -> None:
        for order in self.broker.completed_orders():
            self._send(session, p.completed_order(order, session.version))
        self._send(session, p.completed_orders_end())

    def _on_executions(self, session: Session, request: p.ReqExecutions) -> None:
        try:
            fills = self.broker.executions(request.filter)
        except ValueError as exc:  # a malformed filter time: refuse the request, keep the session
            self._send(session, p.error(request.req_id, 321, "Error validating request.-'sim' : "
                                        f"cause - invalid execution filter time "
                                        f"{request.filter.time!r}: {exc}", session.version))
            fills = []
        for execution, report in fills:
            self._send(session, p.exec_details(request.req_id, execution, session.version))
            self._send(session, p.commission_report(report))
        self._send(session, p.exec_details_end(request.req_id))

    def _on_positions(self, session: Session, request: p.ReqPositions) -> None:
        session.positions = True
        for position in self.broker.positions():
            self._send(session, p.position(position))
        self._send(session, p.position_end())

    def _on_cancel_positions(self, session: Session, request: p.CancelPositions) -> None:
        session.positions = False

    def _known_account(self, session: Session, account: str, req_id: int) -> bool:
        if account in ("", self.broker_config.account):
            return True
        self._send(session, p.error(req_id, 321, f"Error validating request: unknown account "
                                    f"{account!r}", session.version))
        return False

    def _on_account_updates(self, session: Session, request: p.ReqAccountUpdates) -> None:
        if not request.subscribe:
            session.account_updates = False
            return
        if not self._known_account(session, request.account, -1):
            return
        session.account_updates = True
        for value in self.broker.account_values():
            self._send(session, p.account_value(value))
        for item in self.broker.portfolio():
            self._send(session, p.portfolio_value(item))
        self._send(session, p.account_update_time(self._hhmm()))
        self._send(session, p.account_download_end(self.broker_config.account))

    def _on_account_updates_multi(self, session: Session, request: p.ReqAccountUpdatesMulti) -> None:
        if not self._known_account(session, request.account, request.req_id):
            return
        session.multi.add(request.req_id)
        for value in self.broker.account_values():
            self._send(session, p.account_update_multi(request.req_id, value, request.model_code))
        self._send(session, p.account_update_multi_end(request.req_id))

    def _on_cancel_account_updates_multi(self, session: Session,
                                         request: p.CancelAccountUpdatesMulti) -> None:
        session.multi.discard(request.req_id)

    def _on_account_summary(self, session: Session, request: p.ReqAccountSummary) -> None:
        if len(session.summaries) >= MAX_SUMMARY_SUBSCRIPTIONS:
            self._send(session, p.error(request.req_id, 322, "Maximum number of account summary "
                                        "requests exceeded", session.version))
            return
        tags = frozenset(request.tags)
        session.summaries[request.req_id] = tags
        for value in _summary_rows(self.broker.account_values(), tags):
            self._send(session, p.account_summary(request.req_id, value))
        self._send(session, p.account_summary_end(request.req_id))

    def _on_cancel_account_summary(self, session: Session, request: p.CancelAccountSummary) -> None:
        session.summaries.pop(request.req_id, None)

    def _on_pnl(self, session: Session, request: p.ReqPnL) -> None:
        if not self._known_account(session, request.account, request.req_id):
            return
        session.pnl.add(request.req_id)
        self._send(session, p.pnl(request.req_id, self.broker.pnl()))

    def _on_cancel_pnl(self, session: Session, request: p.CancelPnL) -> None:
        session.pnl.discard(request.req_id)

    def _on_pnl_single(self, session: Session, request: p.ReqPnLSingle) -> None:
        if not self._known_account(session, request.account, request.req_id):
            return
        session.pnl_single[request.req_id] = request.con_id
        single = self.broker.pnl_single(request.con_id)
        if single is not None:
            self._send(session, p.pnl_single(request.req_id, single))

    def _on_cancel_pnl_single(self, session: Session, request: p.CancelPnLSingle) -> None:
        session.pnl_single.pop(request.req_id, None)

    def _on_unsupported(self, session: Session, request: p.Unsupported) -> None:
        log.warning("%s: unsupported request %s (id %d)", session.label(), request.name,
                    request.msg_id)
        self._send(session, p.error(
            request.req_id, UNSUPPORTED_CODE, f"Error processing request.-'sim' : cause - "
            f"{request.name} (message {request.msg_id}) is not supported by the simulated "
            "gateway", session.version))

    # --------------------------------------------------------------- ticker
    async def _tick_loop(self) -> None:
        """Advance the broker (prices, triggers, delayed acks/fills) and stream quotes."""
        last_save = time.monotonic()
        while True:
            due = self.broker.next_due()
            wait = TICK_INTERVAL if due is None else self.clock.wall_seconds(due - self.clock.now())
            delay = min(TICK_INTERVAL, max(0.0, wait))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            try:
                self._bad_day_step()
                self._dispatch_quiet(self.broker.advance(self.clock.now()))
                if not self.outage_active:
                    self._stream_quotes()
                    self._stream_bars()
                if not self.outage_active and not self.bad.held_events:
                    self._stream_marks()
                self._stream_depth()
                if self._dirty and time.monotonic() - last_save > 1.0:
                    self.save_state()
                    last_save = time.monotonic()
            except Exception:
                log.exception("ticker step failed; carrying on")

    def _dispatch_quiet(self, events: list[Any]) -> None:
        self._write_ahead(events)
        if not self._hold_events(events):
            self._route_events(events)
        if events:
            self._dirty = True

    def _stream_quotes(self) -> None:
        quotes: dict[int, Quote] = {}
        for session in self.sessions:
            for req_id, con_id in session.streams.items():
                quote = quotes.get(con_id) or quotes.setdefault(con_id, self.broker.quote(con_id))
                self._send_ticks(session, req_id, quote, full=False,
                                 delivered=session.stream_types.get(req_id, 1))


_DELAYED_TICK = {1: 66, 2: 67, 4: 68, 6: 72, 7: 73, 9: 75, 14: 76}
_SUMMARY_ALIASES = {"$LEDGER", "$LEDGER:ALL", "$LEDGER:USD"}


def _summary_rows(values: tuple[AccountValue, ...] | list[AccountValue],
                  tags: frozenset[str]) -> list[AccountValue]:
    """The account values an accountSummary subscription with ``tags`` should see."""
    every = bool(tags & _SUMMARY_ALIASES)
    return [v for v in values if v.key in tags or (every and v.currency)]


def _client_id(session: Session) -> int:
    """The client id of a started session (requests are only dispatched after the hello)."""
    if session.client_id is None:
        raise RuntimeError(f"{session.peer}: request before the API was started")
    return session.client_id


def bad_day_state(settings: ServerSettings, origin: float) -> BadDayState:
    """The bad-day switches of ``settings``; ValueError names a malformed one."""
    return BadDayState(
        entitlement=bd.Entitlement(settings.market_data),
        outages=bd.Schedule(tuple(bd.parse_window(text, origin) for text in settings.outages),
                            bd.parse_nightly(settings.nightly_reset)
                            if settings.nightly_reset else None),
        competing=bd.Schedule(tuple(bd.parse_window(text, origin, allow_lost=False)
                                    for text in settings.competing_sessions)))
