"""Read path: IBConnector keeps snapshots of the account fresh for Flask.

It is an ``IBConnection`` (clientId 999 by default, its own loop thread) that
subscribes to the account-wide streams (account values, portfolio,
positions) and keeps a table of every client's orders and executions. Orders
of other clients are not pushed to a non-master client, so the table is
refreshed whenever something suggests a change (a position or portfolio
update, a live order event, a nudge from the in-process OrderHandler) and at
least once a second. This works whether or not 999 is the gateway's Master
API client id.

A refresh must stay cheap however many orders the day has seen:

* reqAllOpenOrders every time (it returns only what is open);
* reqExecutions with a time filter: only the executions since the newest one
  already seen (minus an overlap, IB's filter has whole seconds);
* reqCompletedOrders returns EVERY completed order of the day, so it is asked
  only when something cannot be explained otherwise (an open order vanished
  without executions for its whole quantity, or an execution of an order of
  another client that was never seen open), at start-up and every
  ``COMPLETED_SWEEP`` seconds, and never for more than ``COMPLETED_DUTY`` of
  the time. Its answer is turned into rows as it streams in (ib_async's
  ``completedOrder`` callback is replaced on this connection), so only the
  newest ``KEEP_COMPLETED`` are held, never the whole day.

Flask reads ``snapshot()``: a frozen dataclass rebuilt on the loop thread and
swapped in atomically. A GET never waits on the broker.

What a snapshot says about a fill. Positions are pushed (reqPositions) and name no execution;
executions are asked for, on a hint or a sweep. One thing of the gateway ties them: it sends a
fill's position update when it reports the fill (the simulator does), so on this one socket the
update comes before the answer to any request sent after the fill was reported to a client. A
snapshot's positions are read after the executions it lists were taken in, so they include
every fill it lists, and every fill reported to the OrderHandler before ``executions_asked_at``
(our clock when the reader asked for them). Nothing else ties the two sockets: the
OrderHandler may hear of a fill before or after this one's position moves. A target-position
alert (web/tradingview.py) waits until the snapshot covers each of our fills of its contract.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from ib_async import IB, Contract

import history
import instruments
import market_data
from ib_compat import logged
from ib_connection import IBConnection
from live_marks import LiveMarks
from reader_market import MarketData
from reader_orders import (
    COMPLETED_DUTY,
    OrderTable,
    _CompletedSink,
    _DutyPacer,
    _OrderBook,
)
from reader_rows import (
    PositionRow,
    Quote,
    Snapshot,
    _account_snapshot,
    _positions,
)

log = logging.getLogger(__name__)


class IBConnector(OrderTable, MarketData, IBConnection):
    """The read-only connection and the snapshots it keeps."""

    readonly = True  # no order sync at connect: we ask for every client's orders ourselves

    def __init__(
        self,
        host: str,
        port: int,
        client_id: int = 999,
        connect_timeout: float = 10.0,
        account: str = "",
        on_change: Callable[[], None] | None = None,
        own_client_id: int | None = None,
        market_data_type: int = 3,
    ) -> None:
        super().__init__("ib-connector", host, port, client_id, connect_timeout, account)
        self.market_data_type = market_data_type
        self._history = history.HistoryPacer()
        self._history_inflight: dict[history.BarsKey, asyncio.Future] = {}
        self.on_change = on_change
        # the in-process OrderHandler's clientId: it keeps the lifecycle of its own orders, so
        # an execution of one of them never makes us download every completed order
        self.own_client_id = own_client_id
        self._book = _OrderBook()
        self._snapshot = Snapshot(self.state(), None, (), (), (), None, None)
        self._refresh_wanted: asyncio.Event | None = None
        self._hint_pending = False  # a hint is on its way to the loop: later ones ride along
        self._tasks: list[asyncio.Task] = []
        self._rebuild_scheduled = False
        self._updated_at: float | None = None
        self._orders_updated_at: float | None = None
        self._version = 0
        self._orders_version = 0  # conditional GETs of /orders: only orders count
        self._executions_version = 0
        self._positions_version = 0  # /positions: quantities, prices and P&L
        self._contracts: dict[tuple[str, str, str, int], Contract] = {}
        self._market_rules: dict[int, instruments.Increments] = {}  # by id: they never change
        # one snapshot request in flight per contract: ib_async shares one Ticker per contract,
        # so a second request would clear the prices the first one is about to read
        self._quoting: dict[int, asyncio.Future[Quote]] = {}
        self._entitled = market_data.Entitlements()  # what the positions' prices are
        self._probe: asyncio.Task | None = None  # a quote asked to learn it (one at a time)
        self._probed: set[int] = set()  # the contracts asked once this session
        # position per (stream, account, conId): each stream's change is news (they come in
        # either order, and a position is held while either says so: live_marks)
        self._quantities: dict[tuple[str, str, int], float] = {}
        self._executions_wanted = True
        self._executions_at = 0.0  # monotonic time of the last reqExecutions
        self._executions_from: float | None = None  # our clock at the last ask; None = all
        self._completed = _DutyPacer(COMPLETED_DUTY)
        self._completed_sink: _CompletedSink | None = None
        self._completed_pending = False  # something unexplained waits for the pacer
        self.refreshes = 0  # order refreshes finished (what tests wait on instead of time)
        self._marks: LiveMarks | None = None  # reqPnL / reqPnLSingle (live_marks.py)

    # -------------------------------------------------------------- Flask side
    def snapshot(self) -> Snapshot:
        """The latest snapshot (with the connection state as of now)."""
        return replace(self._snapshot, connection=self.state())

    @property
    def orders_version(self) -> int:
        """The latest snapshot's order version, without copying the snapshot (the ETag of a
        polled /orders)."""
        return self._snapshot.orders_version

    @property
    def executions_version(self) -> int:
        """The latest snapshot's executions version (see ``orders_version``)."""
        return self._snapshot.executions_version

    def request_refresh(self) -> None:
        """Ask for an order and execution refresh soon (thread-safe; never blocks)."""
        if self._refresh_wanted is not None and self.thread.is_alive and not self._hint_pending:
            self._hint_pending = True  # the order thread hints on every status: one wake-up
            try:
                self.thread.call_soon(self._on_order_hint)
            except RuntimeError:
                self._hint_pending = False
                log.debug("refresh requested while stopping")

    # ----------------------------------------------------------- loop side
    async def on_connected(self, ib: IB) -> None:
        self._refresh_wanted = asyncio.Event()
        ib.reqMarketDataType(self.market_data_type)  # 3: live where subscribed, else delayed
        self._entitled.clear()  # learned again this session (a quote of each position's)
        self._probe = None
        self._probed = set()
        # each completed order becomes a row as it arrives (see the module docstring)
        ib.wrapper.completedOrder = self._on_completed_order  # type: ignore[method-assign, assignment]  # replaces ib_async's handler on purpose
        self._executions_from = None  # a new session: ask for every execution once
        self._completed = _DutyPacer(COMPLETED_DUTY)
        for event in (
            ib.accountValueEvent,
            ib.updatePortfolioEvent,
            ib.positionEvent,
            ib.pnlEvent,
            ib.pnlSingleEvent,
        ):
            event += self._on_account_data
        # live events only: commissionReportEvent also fires for every execution that a
        # reqExecutions answer replays, which would make each refresh ask for the next
        for event in (ib.openOrderEvent, ib.orderStatusEvent, ib.execDetailsEvent):
            event += self._on_order_hint
        # position streams: only a change of quantity means a fill (the portfolio stream also
        # repeats positions when their market value moves)
        self._quantities = {
            ("position", p.account, p.contract.conId): p.position for p in ib.positions()
        }
        self._quantities |= {
            ("portfolio", i.account, i.contract.conId): i.position for i in ib.portfolio()
        }
        ib.positionEvent += logged(
            log,
            "a position",
            lambda pos: self._on_position("position", pos.account, pos.contract, pos.position),
        )
        ib.updatePortfolioEvent += logged(
            log,
            "a portfolio row",
            lambda i: self._on_position("portfolio", i.account, i.contract, i.position),
        )
        accounts = ib.managedAccounts()
        self._marks = LiveMarks(ib, self.account or (accounts[0] if accounts else ""))
        self._marks.sync()
        await self._refresh_orders(ib, full=True)
        self._data_arrived()
        self._rebuild()
        self._tasks = [
            asyncio.create_task(self._refresher(ib), name="connector-refresher"),
            asyncio.create_task(self._measure_clock(ib), name="connector-clock"),
        ]

    async def on_disconnected(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._contracts.clear()
        self.forget_quotes()
        self._marks = None
        self._rebuild()

    async def before_disconnect(self) -> None:
        await self.on_disconnected()

    async def on_link_restored(self, ib: IB, data_lost: bool) -> None:
        """1102: refresh orders, executions and completed orders now; 1101: reconnect (every
        subscription is made again)."""
        if data_lost:
            await super().on_link_restored(ib, data_lost)
            return
        self._completed_pending = True
        self._on_order_hint()

    def _on_account_data(self, *_: object) -> None:
        self._data_arrived()
        self._schedule_rebuild()

    def _data_arrived(self) -> None:
        """The account's data are current as of now, unless the gateway has lost IB's servers:
        what it sends then (a reconnect's first download) is what it knew at the outage."""
        if self.link_state().reachable:
            self._updated_at = time.time()

    def _on_position(self, stream: str, account: str, contract: Contract, quantity: float) -> None:
        key = (stream, account, contract.conId)
        if self._quantities.get(key) != quantity:
            self._quantities[key] = quantity
            if self._marks is not None:
                self._marks.sync()
            self._on_order_hint()

    def _on_order_hint(self, *_: object) -> None:
        self._hint_pending = False  # first: a hint from now on schedules its own call
        self._executions_wanted = True  # something filled or moved: ask for new executions
        if self._refresh_wanted is not None:
            self._refresh_wanted.set()

    async def _measure_clock(self, ib: IB) -> None:
        """The gateway's clock offset, right after the first refresh (the heartbeat keeps it)."""
        try:
            await self.gateway_time(ib, 10)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("gateway clock not read: %s (the heartbeat will)", exc)

    def _probe_next(self, positions: tuple[PositionRow, ...]) -> None:
        """Quote one held contract whose price is not known to be live or delayed yet (one at
        a time; each once a session), then the next."""
        row = next(
            (
                p
                for p in positions
                if self._entitled.of(p.con_id) is None and p.con_id not in self._probed
            ),
            None,
        )
        if row is None:
            return
        self._probed.add(row.con_id)
        probe = self._probe = asyncio.ensure_future(self._probe_market_data(row))

        def done(_: object) -> None:
            if self._probe is probe:  # (not a new session's)
                self._probe = None
                self._schedule_rebuild()  # labels the row, and asks for the next one

        probe.add_done_callback(done)

    def _schedule_rebuild(self) -> None:
        if not self._rebuild_scheduled:
            self._rebuild_scheduled = True
            asyncio.get_running_loop().call_soon(self._rebuild)

    def _rebuild(self) -> None:
        """Build a new frozen snapshot; tell the listener only if its content changed."""
        self._rebuild_scheduled = False
        ib = self.ib
        connected = ib is not None and ib.isConnected()
        old = self._snapshot
        marks = self._marks if connected else None
        account = _account_snapshot(ib, self.account, marks) if ib and connected else old.account
        positions = _positions(ib, self._entitled, marks) if ib and connected else old.positions
        if connected and self._probe is None:
            self._probe_next(positions)
        orders = tuple(sorted(self._book.orders.values(), key=lambda o: -o.perm_id))
        executions = tuple(
            sorted(self._book.executions.values(), key=lambda e: e.time, reverse=True)
        )
        changed = (account, positions, orders, executions) != (
            old.account,
            old.positions,
            old.orders,
            old.executions,
        )
        self._version += changed
        self._orders_version += orders != old.orders
        self._executions_version += executions != old.executions
        self._positions_version += positions != old.positions
        self._snapshot = Snapshot(
            connection=self.state(),
            account=account,
            positions=positions,
            orders=orders,
            executions=executions,
            updated_at=self._updated_at,
            orders_updated_at=self._orders_updated_at,
            version=self._version,
            orders_version=self._orders_version,
            executions_version=self._executions_version,
            positions_version=self._positions_version,
            executions_asked_at=self._executions_from,
        )
        if changed and self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("on_change callback failed; carrying on")
