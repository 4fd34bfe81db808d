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
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from ib_async import IB, Contract
from ib_async.objects import ExecutionFilter, Fill
from ib_async.order import Order, OrderState, OrderStatus, Trade

import history
import instruments
import market_data
import options_data
from config import is_paper_account
from ib_compat import make_contract
from ib_connection import ConnectionState, IBConnection
from live_marks import LiveMarks, Mark

log = logging.getLogger(__name__)
T = TypeVar("T")

REFRESH_INTERVAL = 1.0  # poll for other clients' orders at least this often
REFRESH_MIN_GAP = 0.05  # coalesce bursts of triggers
KEEP_COMPLETED = 500  # completed orders in the snapshot (newest first)
KEEP_EXECUTIONS = 1000  # executions in the snapshot (newest first)
EXEC_OVERLAP = 2.0  # s: executions re-asked before the newest one seen (filter has 1 s steps)
EXEC_SWEEP = 5.0  # s: ask for new executions at least this often, hint or not
COMPLETED_SWEEP = 30.0  # s: ask for completed orders at least this often
COMPLETED_DUTY = 0.1  # at most this share of the time goes to asking for completed orders
QUOTE_TIMEOUT = 5.0
HISTORY_TIMEOUT = 10.0
IB_SIDES = {"BOT": "BUY", "SLD": "SELL"}  # an execution's side in the words orders use
ACCOUNT_KEYS = {
    "NetLiquidation": "net_liquidation", "TotalCashValue": "cash",
    "BuyingPower": "buying_power", "AvailableFunds": "available_funds",
    "ExcessLiquidity": "excess_liquidity", "GrossPositionValue": "gross_position_value",
    "UnrealizedPnL": "unrealized_pnl", "RealizedPnL": "realized_pnl",
    "InitMarginReq": "init_margin", "MaintMarginReq": "maint_margin",
    "EquityWithLoanValue": "equity_with_loan",
}
OPEN_STATUSES = {"PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "PendingCancel"}


@dataclass(frozen=True)
class AccountSnapshot:
    """Headline figures of the account plus every raw key."""

    account: str
    paper: bool
    currency: str
    figures: dict[str, float | None]
    values: dict[str, str]


@dataclass(frozen=True)
class PositionRow:
    """One position with its market figures."""

    account: str
    con_id: int
    symbol: str
    sec_type: str
    currency: str
    quantity: float
    avg_cost: float
    market_price: float | None
    market_value: float | None  # IB's: price x quantity x multiplier
    unrealized_pnl: float | None
    realized_pnl: float | None
    description: str = ""  # IB's words: "AAPL 20261218 200 C", "ES 202612", the symbol
    multiplier: float = 1.0  # avg_cost, market_value and P&L have it applied (IB's figures)
    local_symbol: str = ""
    avg_price: float | None = None  # avg_cost / multiplier: comparable with market_price
    daily_pnl: float | None = None  # P&L today (IB's pnlSingle)
    # what market data the price and value are (live | delayed | ..., market_data.TYPE_NAMES);
    # None until a quote told (market_data.Entitlements)
    market_data: str | None = None


@dataclass(frozen=True)
class OrderRow:
    """One order of any client, as the gateway reports it."""

    perm_id: int
    order_id: int
    client_id: int
    order_ref: str
    account: str
    symbol: str
    sec_type: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    stop_price: float | None
    tif: str
    status: str
    filled: float
    remaining: float
    avg_fill_price: float | None
    open: bool
    description: str = ""  # the contract in IB's words


@dataclass(frozen=True)
class ExecutionRow:
    """One fill with its commission."""

    exec_id: str
    perm_id: int
    order_id: int
    client_id: int
    order_ref: str
    time: str
    account: str
    symbol: str
    side: str  # BUY / SELL, as for orders
    shares: float
    price: float
    commission: float | None
    currency: str
    realized_pnl: float | None
    description: str = ""  # the contract in IB's words
    multiplier: float = 1.0
    value: float | None = None  # shares x price x multiplier
    ib_side: str = ""  # IB's own word for it: BOT / SLD


@dataclass(frozen=True)
class Snapshot:
    """Everything the read endpoints serve, as of ``updated_at``."""

    connection: ConnectionState
    account: AccountSnapshot | None
    positions: tuple[PositionRow, ...]
    orders: tuple[OrderRow, ...]
    executions: tuple[ExecutionRow, ...]
    updated_at: float | None  # epoch seconds of the last broker data
    orders_updated_at: float | None
    version: int = 0


@dataclass(frozen=True)
class Quote:
    """A snapshot quote for one symbol."""

    symbol: str
    sec_type: str
    con_id: int
    bid: float | None
    ask: float | None
    last: float | None
    close: float | None
    time: float
    market_data: str = "live"  # live | frozen | delayed | delayed-frozen (market_data.TYPE_NAMES)
    notice_code: int | None = None  # IB's reason when there is no price (354, 10168, 10197...)
    notice: str | None = None  # that reason and what to do, in words


@dataclass
class _OrderBook:
    """Mutable order/execution tables, touched only on the loop thread."""

    orders: dict[int, OrderRow] = field(default_factory=dict)  # by permId
    executions: dict[str, ExecutionRow] = field(default_factory=dict)  # by execId
    uncommissioned: set[str] = field(default_factory=set)  # execIds still without a report


@dataclass
class _DutyPacer:
    """Spaces a costly request so that it takes at most ``duty`` of the time."""

    duty: float
    next_at: float = 0.0  # monotonic
    last_at: float = 0.0  # monotonic; 0 = never

    def ready(self, now: float) -> bool:
        """True when the request may run now."""
        return now >= self.next_at

    def ran(self, started: float, ended: float) -> None:
        """Record one run; the next may start after a pause in proportion to its cost."""
        self.last_at = ended
        self.next_at = ended + (ended - started) * (1 - self.duty) / self.duty


class _CompletedSink:
    """Rows of one reqCompletedOrders answer, newest ``keep`` by permId, built as they arrive."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.rows: dict[int, OrderRow] = {}
        self.count = 0

    def add(self, row: OrderRow) -> None:
        """Take one row; trim in batches so that the answer never piles up."""
        self.count += 1
        self.rows[row.perm_id] = row
        if len(self.rows) >= 2 * self.keep:
            self.trim()

    def trim(self) -> dict[int, OrderRow]:
        """Keep the newest ``keep`` rows; returns them."""
        if len(self.rows) > self.keep:
            newest = sorted(self.rows, reverse=True)[:self.keep]
            self.rows = {perm_id: self.rows[perm_id] for perm_id in newest}
        return self.rows


class IBConnector(IBConnection):
    """The read-only connection and the snapshots it keeps."""

    readonly = True  # no order sync at connect: we ask for every client's orders ourselves

    def __init__(self, host: str, port: int, client_id: int = 999,
                 connect_timeout: float = 10.0, account: str = "",
                 on_change: Callable[[], None] | None = None,
                 own_client_id: int | None = None, market_data_type: int = 3) -> None:
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
        self._tasks: list[asyncio.Task] = []
        self._rebuild_scheduled = False
        self._updated_at: float | None = None
        self._orders_updated_at: float | None = None
        self._version = 0
        self._contracts: dict[tuple[str, str, int], Contract] = {}
        self._market_rules: dict[int, instruments.Increments] = {}  # by id: they never change
        # one snapshot request in flight per contract: ib_async shares one Ticker per contract,
        # so a second request would clear the prices the first one is about to read
        self._quoting: dict[int, asyncio.Future[Quote]] = {}
        self._entitled = market_data.Entitlements()  # what the positions' prices are
        self._probe: asyncio.Task | None = None  # one quote asked to learn it, per session
        self._quantities: dict[tuple[str, int], float] = {}  # position per (account, conId)
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
        snap = self._snapshot
        return Snapshot(self.state(), snap.account, snap.positions, snap.orders,
                        snap.executions, snap.updated_at, snap.orders_updated_at, snap.version)

    def request_refresh(self) -> None:
        """Ask for an order and execution refresh soon (thread-safe; never blocks)."""
        if self._refresh_wanted is not None and self.thread.is_alive:
            try:
                self.thread.call_soon(self._on_order_hint)
            except RuntimeError:
                log.debug("refresh requested while stopping")

    def quote(self, symbol: str, sec_type: str = "STK", currency: str = "USD",
              silence: float | None = None, con_id: int = 0) -> Quote:
        """A snapshot quote (one broker round trip; not a snapshot read). TimeoutError when
        the gateway has not answered within QUOTE_TIMEOUT, or (with ``silence``) has sent
        nothing at all for ``silence`` seconds meanwhile. ``con_id``: a derivative the broker
        resolved (``contract``)."""
        self.require_connected()
        return self.thread.call(self.answer_within(
            self._quote(symbol, sec_type, currency, con_id), QUOTE_TIMEOUT, silence),
            QUOTE_TIMEOUT + 1)

    def contract(self, spec: instruments.ContractSpec) -> instruments.Resolved:
        """The one derivative ``spec`` names at the broker (instruments.ContractError when
        none or several match)."""
        self.require_connected()
        return self.thread.call(self.answer_within(
            self._resolve(spec), QUOTE_TIMEOUT * 2), QUOTE_TIMEOUT * 2 + 1)

    def option_chain(self, symbol: str) -> options_data.Chain:
        """Expiries and strikes of ``symbol``'s options (reqSecDefOptParams)."""
        self.require_connected()
        return self.thread.call(self.answer_within(
            self._on_ib(lambda ib: options_data.chain(ib, symbol)), QUOTE_TIMEOUT * 2),
            QUOTE_TIMEOUT * 2 + 1)

    def option_quotes(self, symbol: str, expiry: str, around: int) -> options_data.Board:
        """Calls and puts of one expiry, ``around`` strikes each side of the money."""
        self.require_connected()
        return self.thread.call(self.answer_within(
            self._on_ib(lambda ib: options_data.board(ib, symbol, expiry, around)),
            options_data.BOARD_TIMEOUT), options_data.BOARD_TIMEOUT + 1)

    def future_months(self, symbol: str, exchange: str = "") -> tuple[instruments.FutureMonth, ...]:
        """The listed contract months of a futures product (contract details)."""
        self.require_connected()
        return self.thread.call(self.answer_within(
            self._on_ib(lambda ib: instruments.future_months(ib, symbol, exchange)),
            QUOTE_TIMEOUT * 2), QUOTE_TIMEOUT * 2 + 1)

    async def _resolve(self, spec: instruments.ContractSpec) -> instruments.Resolved:
        ib = self.ib
        assert ib is not None
        return await instruments.resolve(ib, spec, self._market_rules)

    async def _on_ib(self, call: Callable[[IB], Awaitable[T]]) -> T:
        ib = self.ib
        assert ib is not None
        return await call(ib)

    def bars(self, key: history.BarsKey) -> tuple[history.Bars, bool]:
        """Historical bars and whether they came from the cache (paced below IB's limits, see
        ``history``). HistoryBudgetSpent / HistoryRefused / TimeoutError when there are none."""
        self.require_connected()
        return self.thread.call(self._bars(key), HISTORY_TIMEOUT + history.BURST_WINDOW + 1)

    async def _bars(self, key: history.BarsKey) -> tuple[history.Bars, bool]:
        ib = self.ib
        assert ib is not None
        hit = self._history.cached(key, time.monotonic())
        if hit is not None:
            return hit, True
        if key in self._history_inflight:  # the same request is on its way: share its answer
            return await asyncio.shield(self._history_inflight[key]), True
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._history_inflight[key] = done
        try:
            while (delay := self._history.wait(key, time.monotonic())) > 0:
                await asyncio.sleep(delay)
            contract = await self._qualified(ib, key.symbol, key.sec_type, "USD")
            bars = await history.fetch_bars(ib, contract, key, HISTORY_TIMEOUT)
            self._history.store(key, bars, time.monotonic())
            done.set_result(bars)
            return bars, False
        except asyncio.CancelledError:
            done.cancel()
            raise
        except Exception as exc:  # handed to whoever shares this request, then re-raised
            done.set_exception(exc)
            done.exception()  # retrieved: no "never retrieved" warning when nobody shared it
            raise
        finally:
            del self._history_inflight[key]

    # ----------------------------------------------------------- loop side
    async def on_connected(self, ib: IB) -> None:
        self._refresh_wanted = asyncio.Event()
        ib.reqMarketDataType(self.market_data_type)  # 3: live where subscribed, else delayed
        self._entitled.clear()  # learned again this session (the first position's quote)
        self._probe = None
        # each completed order becomes a row as it arrives (see the module docstring)
        ib.wrapper.completedOrder = self._on_completed_order  # type: ignore[method-assign, assignment]  # replaces ib_async's handler on purpose
        self._executions_from = None  # a new session: ask for every execution once
        self._completed = _DutyPacer(COMPLETED_DUTY)
        for event in (ib.accountValueEvent, ib.updatePortfolioEvent, ib.positionEvent,
                      ib.pnlEvent, ib.pnlSingleEvent):
            event += self._on_account_data
        # live events only: commissionReportEvent also fires for every execution that a
        # reqExecutions answer replays, which would make each refresh ask for the next
        for event in (ib.openOrderEvent, ib.orderStatusEvent, ib.execDetailsEvent):
            event += self._on_order_hint
        # position streams: only a change of quantity means a fill (the portfolio stream also
        # repeats positions when their market value moves)
        self._quantities = {(p.account, p.contract.conId): p.position for p in ib.positions()}
        ib.positionEvent += lambda pos: self._on_position(pos.account, pos.contract, pos.position)
        ib.updatePortfolioEvent += lambda item: self._on_position(item.account, item.contract,
                                                                   item.position)
        accounts = ib.managedAccounts()
        self._marks = LiveMarks(ib, self.account or (accounts[0] if accounts else ""))
        self._marks.sync()
        await self._refresh_orders(ib, full=True)
        self._updated_at = time.time()
        self._rebuild()
        self._tasks = [asyncio.create_task(self._refresher(ib), name="connector-refresher"),
                       asyncio.create_task(self._measure_clock(ib), name="connector-clock")]

    async def on_disconnected(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._contracts.clear()
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
        self._updated_at = time.time()
        self._schedule_rebuild()

    def _on_position(self, account: str, contract: Contract, quantity: float) -> None:
        key = (account, contract.conId)
        if self._quantities.get(key) != quantity:
            self._quantities[key] = quantity
            if self._marks is not None:
                self._marks.sync()
            self._on_order_hint()

    def _on_order_hint(self, *_: object) -> None:
        self._executions_wanted = True  # something filled or moved: ask for new executions
        if self._refresh_wanted is not None:
            self._refresh_wanted.set()

    async def _refresher(self, ib: IB) -> None:
        """Refresh the order table when asked, and at least every second."""
        assert self._refresh_wanted is not None
        wanted = self._refresh_wanted
        while ib.isConnected():
            timeout = REFRESH_INTERVAL
            if self._completed_pending:  # come back as soon as the pacer allows
                timeout = min(timeout, max(0.0, self._completed.next_at - time.monotonic()))
            try:
                await asyncio.wait_for(wanted.wait(), timeout)
            except TimeoutError:
                pass
            wanted.clear()
            try:
                await self._refresh_orders(ib)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("order refresh failed: %s", exc)
            self._rebuild()
            self.refreshes += 1
            await asyncio.sleep(REFRESH_MIN_GAP)

    async def _refresh_orders(self, ib: IB, full: bool = False) -> None:
        """Every client's open orders; new executions when hinted, when an open order vanished
        or every EXEC_SWEEP s; completed orders only when needed (see the module docstring)."""
        book, now = self._book, time.monotonic()
        asked = full or self._executions_wanted or now - self._executions_at >= EXEC_SWEEP
        # both requests go out at once, open orders first: the gateway answers in order, so the
        # executions are at least as new as the open-order list (what _close_vanished needs)
        open_answer = asyncio.wait_for(ib.reqAllOpenOrdersAsync(), 10)
        if asked:
            open_trades, fresh = await asyncio.gather(open_answer, self._fetch_executions(ib))
        else:
            open_trades, fresh = await open_answer, []
        open_rows = {row.perm_id: row for row in
                     (_order_row(trade, is_open=True) for trade in open_trades)}
        vanished = {p: row for p, row in book.orders.items()
                    if row.open and p not in open_rows}
        if vanished and not asked:
            fresh = await self._fetch_executions(ib)
        done = {p: row for p, row in book.orders.items() if not row.open}
        unexplained = self._close_vanished(vanished, done)
        unknown = {e.perm_id for e in fresh if e.perm_id not in book.orders
                   and e.perm_id not in open_rows and e.client_id != self.own_client_id}
        needed = full or bool(unexplained or unknown) or self._completed_pending or \
            now - self._completed.last_at >= COMPLETED_SWEEP
        if needed and self._completed.ready(now):
            done.update(await self._fetch_completed(ib))
            unexplained = {p: row for p, row in unexplained.items() if p not in done}
            self._completed_pending = False
        else:
            self._completed_pending = needed
        # a vanished order not yet explained keeps its last known row until it is
        orders: dict[int, OrderRow] = {**done, **unexplained, **open_rows}
        self._book.orders = orders
        self._trim(ib, open_trades)

    async def _measure_clock(self, ib: IB) -> None:
        """The gateway's clock offset, right after the first refresh (the heartbeat keeps it)."""
        try:
            await self.gateway_time(ib, 10)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("gateway clock not read: %s (the heartbeat will)", exc)

    async def _fetch_executions(self, ib: IB) -> list[ExecutionRow]:
        """Executions since the previous ask (every one after a connect); returns those not
        seen before."""
        self._executions_wanted = False
        self._executions_at = time.monotonic()
        # "since" is written on the GATEWAY's clock (minus an overlap for late reports): its
        # executions are stamped by it, so our clock and time zone do not matter
        offset, start = self.gateway_clock_offset, self._executions_from
        since = "" if offset is None or start is None else datetime.fromtimestamp(
            start + offset - EXEC_OVERLAP, UTC).strftime("%Y%m%d-%H:%M:%S")
        asked_at = time.time()
        fills = await asyncio.wait_for(ib.reqExecutionsAsync(ExecutionFilter(time=since)), 10)
        self._executions_from = asked_at  # only once answered: a failed ask is asked again
        return self._absorb_executions(ib, fills)

    def _absorb_executions(self, ib: IB, fills: list[Fill]) -> list[ExecutionRow]:
        """Put fills into the book (with their commission, which may come later)."""
        book, stored = self._book, ib.wrapper.fills
        fresh = []
        for answer in fills:
            fill = stored.get(answer.execution.execId, answer)  # the one reports update
            row = _execution_row(fill)
            old = book.executions.get(row.exec_id)
            if old is None:
                fresh.append(row)
            elif row.commission is None and old.commission is not None:
                continue  # asked again in the overlap: what we have is better
            book.executions[row.exec_id] = row
            if row.commission is None:
                book.uncommissioned.add(row.exec_id)
        for exec_id in list(book.uncommissioned):  # commission reports that came later
            reported = stored.get(exec_id)
            if exec_id not in book.executions:
                book.uncommissioned.discard(exec_id)
            elif reported is not None and reported.commissionReport.execId:
                book.executions[exec_id] = _execution_row(reported)
                book.uncommissioned.discard(exec_id)
        return fresh

    async def _fetch_completed(self, ib: IB) -> dict[int, OrderRow]:
        """The newest KEEP_COMPLETED completed orders of every client, as rows."""
        sink = _CompletedSink(KEEP_COMPLETED)
        self._completed_sink = sink
        started = time.monotonic()
        try:
            await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), 10)
        finally:
            self._completed_sink = None
            self._completed.ran(started, time.monotonic())
        rows = sink.trim()
        self._fill_order_ids(rows)
        log.debug("%d completed orders in %.0f ms", sink.count,
                  (time.monotonic() - started) * 1000)
        return rows

    def _on_completed_order(self, contract: Contract, order: Order,
                            order_state: OrderState) -> None:
        """Replaces ib_async's ``wrapper.completedOrder`` on this connection: a row at once,
        and no ``Trade`` kept (ib_async would keep one per completed order of the day)."""
        sink = self._completed_sink
        if sink is None:
            log.warning("completed order %s outside a request; ignored", order.permId)
            return
        trade = Trade(Contract.recreate(contract), order,
                      OrderStatus(orderId=order.orderId, status=order_state.status))
        sink.add(_order_row(trade, is_open=False))

    def _close_vanished(self, vanished: dict[int, OrderRow],
                        done: dict[int, OrderRow]) -> dict[int, OrderRow]:
        """Open orders no longer open whose executions cover their whole quantity are Filled
        (added to ``done``); returns the others, which need the completed orders."""
        if not vanished:
            return {}
        fills: dict[int, list[ExecutionRow]] = {}
        for execution in self._book.executions.values():
            if execution.perm_id in vanished:
                fills.setdefault(execution.perm_id, []).append(execution)
        unexplained = {}
        for perm_id, row in vanished.items():
            own = fills.get(perm_id, [])
            shares = sum(e.shares for e in own)
            if row.quantity and math.isclose(shares, row.quantity):
                done[perm_id] = replace(
                    row, status="Filled", filled=shares, remaining=0.0, open=False,
                    avg_fill_price=sum(e.shares * e.price for e in own) / shares)
            else:
                unexplained[perm_id] = row
        return unexplained

    def _trim(self, ib: IB, open_trades: list[Trade]) -> None:
        """Bound memory: the newest completed orders and executions only, and none of
        ib_async's objects for orders that are no longer open (the gateway has them)."""
        book = self._book
        done = sorted((p for p, row in book.orders.items() if not row.open), reverse=True)
        for perm_id in done[KEEP_COMPLETED:]:
            del book.orders[perm_id]
        if len(book.executions) > KEEP_EXECUTIONS:
            newest = sorted(book.executions.values(), key=lambda e: e.time, reverse=True)
            book.executions = {e.exec_id: e for e in newest[:KEEP_EXECUTIONS]}
        live = {id(trade) for trade in open_trades}
        wrapper = ib.wrapper
        tables: tuple[dict[Any, Trade], ...] = (wrapper.trades, wrapper.permId2Trade)
        for table in tables:
            for key in [k for k, trade in table.items() if id(trade) not in live]:
                del table[key]
        # rows are in the book; keep only fills whose commission report may still come
        for exec_id in [k for k in wrapper.fills if k not in book.uncommissioned]:
            del wrapper.fills[exec_id]
        self._orders_updated_at = time.time()

    def _fill_order_ids(self, orders: dict[int, OrderRow]) -> None:
        """completedOrder carries no orderId, clientId or fill price: take them from
        what we saw of the order before, or from its executions."""
        known = self._book.orders
        fills: dict[int, list[ExecutionRow]] = {}
        for execution in self._book.executions.values():
            if execution.perm_id in orders:
                fills.setdefault(execution.perm_id, []).append(execution)
        for perm_id, row in list(orders.items()):
            old = known.get(perm_id)
            own = fills.get(perm_id, [])
            order_id = row.order_id or (old.order_id if old else 0) or \
                (own[0].order_id if own else 0)
            client_id = row.client_id or (old.client_id if old else 0) or \
                (own[0].client_id if own else 0)
            shares = sum(e.shares for e in own)
            avg = row.avg_fill_price or (sum(e.shares * e.price for e in own) / shares
                                         if shares else None)
            if (order_id, client_id, avg) != (row.order_id, row.client_id, row.avg_fill_price):
                orders[perm_id] = replace(row, order_id=order_id, client_id=client_id,
                                          avg_fill_price=avg)

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
        if positions and connected and self._probe is None and not self._entitled.known:
            self._probe = asyncio.ensure_future(self._probe_market_data(positions[0]))
        orders = tuple(sorted(self._book.orders.values(), key=lambda o: -o.perm_id))
        executions = tuple(sorted(self._book.executions.values(), key=lambda e: e.time,
                                  reverse=True))
        changed = (account, positions, orders, executions) != (
            old.account, old.positions, old.orders, old.executions)
        self._version += changed
        self._snapshot = Snapshot(
            connection=self.state(), account=account, positions=positions, orders=orders,
            executions=executions, updated_at=self._updated_at,
            orders_updated_at=self._orders_updated_at, version=self._version)
        if changed and self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("on_change callback failed; carrying on")

    async def _quote(self, symbol: str, sec_type: str, currency: str, con_id: int = 0) -> Quote:
        ib = self.ib
        assert ib is not None
        contract = await self._qualified(ib, symbol, sec_type, currency, con_id)
        pending = self._quoting.get(contract.conId)
        if pending is None:
            pending = asyncio.ensure_future(self._snapshot_quote(ib, contract, symbol, sec_type))
            self._quoting[contract.conId] = pending
            pending.add_done_callback(lambda _done: self._quoting.pop(contract.conId, None))
        return await asyncio.shield(pending)  # a waiter that gives up leaves it to the others

    async def _snapshot_quote(self, ib: IB, contract: Contract, symbol: str,
                              sec_type: str) -> Quote:
        notices: list[tuple[int, str]] = []

        def on_error(req_id: int, code: int, text: str, about: Contract | None) -> None:
            if code in market_data.NOTICE_CODES and about is not None \
                    and about.conId == contract.conId:
                notices.append((code, text))

        market_data.reset_ticker(ib.ticker(contract))
        ib.errorEvent += on_error
        try:
            tickers = await ib.reqTickersAsync(contract)
        finally:
            ib.errorEvent -= on_error
        ticker = tickers[0]
        code, notice = market_data.explain(notices, symbol)
        kind = market_data.type_name(ticker.marketDataType)
        priced = any(_num(p) is not None for p in (ticker.bid, ticker.ask, ticker.last,
                                                    ticker.close))
        if priced and self._entitled.learn(contract.conId, kind):
            self._schedule_rebuild()  # the positions' label follows
        return Quote(symbol=symbol, sec_type=sec_type, con_id=contract.conId,
                     bid=_num(ticker.bid), ask=_num(ticker.ask), last=_num(ticker.last),
                     close=_num(ticker.close), time=time.time(),
                     market_data=kind, notice_code=code, notice=notice)

    async def _probe_market_data(self, row: PositionRow) -> None:
        """Ask one quote of a held contract, so the positions' prices say whether they are
        live or delayed before anyone asked for a quote (once per session)."""
        plain = row.sec_type in ("STK", "CASH")  # by symbol, as the quote panel asks
        try:
            await asyncio.wait_for(self._quote(row.symbol, row.sec_type, row.currency,
                                               0 if plain else row.con_id), QUOTE_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # log and carry on: the positions stay unlabelled
            log.warning("could not learn whether %s's price is live or delayed: %s",
                        row.symbol, exc)

    async def contract_for(self, symbol: str, sec_type: str) -> Contract:
        """The qualified contract (cached; loop side). LookupError when unknown."""
        ib = self.ib
        if ib is None:
            raise LookupError("not connected")
        return await self._qualified(ib, symbol, sec_type, "USD")

    def matching_symbols(self, pattern: str) -> list[Contract]:
        """IB's symbol search (reqMatchingSymbols): stocks and FX pairs first."""
        self.require_connected()

        async def ask() -> list[Contract]:
            ib = self.ib
            assert ib is not None
            found = await asyncio.wait_for(ib.reqMatchingSymbolsAsync(pattern), QUOTE_TIMEOUT)
            return [d.contract for d in found or [] if d.contract is not None]
        return self.thread.call(ask(), QUOTE_TIMEOUT + 1)

    async def _qualified(self, ib: IB, symbol: str, sec_type: str, currency: str,
                         con_id: int = 0) -> Contract:
        key = (symbol, sec_type, con_id)
        if key not in self._contracts:
            contract = make_contract(symbol, sec_type, currency, con_id)
            found = await asyncio.wait_for(ib.qualifyContractsAsync(contract), QUOTE_TIMEOUT)
            if not found or not isinstance(found[0], Contract):  # None: unknown or ambiguous
                raise LookupError(f"unknown symbol {symbol!r} ({sec_type})")
            self._contracts[key] = found[0]
        return self._contracts[key]


def _num(value: float | None) -> float | None:
    """ib_async uses nan / -1 for 'no value'; the API uses null."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == -1:
        return None
    return float(value)


def _unset(value: float | Decimal | None) -> float | None:
    return None if value is None or value >= 1.7e308 or math.isnan(value) else float(value)


def _account_snapshot(ib: IB, wanted: str, marks: LiveMarks | None = None) -> AccountSnapshot | None:
    accounts = ib.managedAccounts()
    account = wanted or (accounts[0] if accounts else "")
    if not account:
        return None
    values: dict[str, str] = {}
    figures: dict[str, float | None] = {name: None for name in ACCOUNT_KEYS.values()}
    figures["daily_pnl"] = None
    currency = "USD"
    for v in ib.accountValues(account):
        if v.currency in ("BASE",) or v.modelCode:
            continue
        values[v.tag if not v.currency or v.currency == currency else f"{v.tag}.{v.currency}"] \
            = v.value
        if v.tag in ACCOUNT_KEYS and v.currency in ("USD", currency):
            try:
                figures[ACCOUNT_KEYS[v.tag]] = float(v.value)
            except ValueError:
                figures[ACCOUNT_KEYS[v.tag]] = None
    if marks is not None:  # IB's pnl: pushed every second, the instant of the rows' pnlSingle
        figures.update({k: v for k, v in marks.figures().items() if v is not None})
    return AccountSnapshot(account=account, paper=is_paper_account(account), currency=currency,
                           figures=figures, values=values)


def _positions(ib: IB, entitled: market_data.Entitlements,
               marks: LiveMarks | None = None) -> tuple[PositionRow, ...]:
    portfolio = {(item.account, item.contract.conId): item for item in ib.portfolio()}
    live = marks.row_marks() if marks is not None else {}
    rows = []
    for pos in ib.positions():
        if not pos.position:
            continue
        item = portfolio.get((pos.account, pos.contract.conId))
        multiplier = instruments.multiplier_of(pos.contract.multiplier)
        rows.append(PositionRow(
            account=pos.account, con_id=pos.contract.conId, symbol=_symbol(pos.contract),
            sec_type=pos.contract.secType, currency=pos.contract.currency,
            quantity=pos.position, avg_cost=pos.avgCost,
            market_price=item.marketPrice if item else None,
            market_value=item.marketValue if item else None,
            unrealized_pnl=item.unrealizedPNL if item else None,
            realized_pnl=item.realizedPNL if item else None,
            description=_description(pos.contract),
            multiplier=multiplier, local_symbol=pos.contract.localSymbol,
            avg_price=pos.avgCost / multiplier, market_data=entitled.of(pos.contract.conId)))
        mark = live.get(pos.contract.conId) if pos.account == (marks.account if marks else "") \
            else None
        if mark is not None:
            rows[-1] = _marked(rows[-1], mark, pos.contract.multiplier)
    return tuple(sorted(rows, key=lambda r: r.symbol))


def _description(contract: Contract) -> str:
    return instruments.describe(contract.symbol, contract.secType,
                                contract.lastTradeDateOrContractMonth, contract.strike,
                                contract.right, _symbol(contract))


def _marked(row: PositionRow, mark: Mark, multiplier: str) -> PositionRow:
    """A position row with IB's pnlSingle figures (fresher than the portfolio's)."""
    value = mark.value if mark.value is not None else row.market_value
    try:
        size = row.quantity * (float(multiplier) if multiplier else 1.0)
    except ValueError:
        size = row.quantity
    price = value / size if value is not None and size else row.market_price
    return replace(row, market_price=price, market_value=value,
                   unrealized_pnl=_pick(mark.unrealized_pnl, row.unrealized_pnl),
                   realized_pnl=_pick(mark.realized_pnl, row.realized_pnl),
                   daily_pnl=mark.daily_pnl)


def _pick(first: float | None, second: float | None) -> float | None:
    return first if first is not None else second


def _symbol(contract: Contract) -> str:
    if contract.secType == "CASH":
        return contract.localSymbol or f"{contract.symbol}.{contract.currency}"
    return contract.symbol


def _order_row(trade: Trade, is_open: bool) -> OrderRow:
    order, status, contract = trade.order, trade.orderStatus, trade.contract
    state = status.status
    filled = float(status.filled if is_open else (
        order.filledQuantity if _unset(order.filledQuantity) is not None else status.filled))
    quantity = float(order.totalQuantity)
    if not is_open and state == "Filled" and not quantity:
        quantity = filled  # completed orders report totalQuantity 0 once filled
    return OrderRow(
        perm_id=order.permId, order_id=order.orderId, client_id=order.clientId,
        order_ref=order.orderRef or "", account=order.account, symbol=_symbol(contract),
        sec_type=contract.secType, action=order.action, quantity=quantity,
        order_type=order.orderType, limit_price=_unset(order.lmtPrice) or None,
        stop_price=_unset(order.auxPrice) or None, tif=order.tif, status=state,
        filled=filled or 0.0, remaining=status.remaining if is_open else 0.0,
        avg_fill_price=_num(status.avgFillPrice) or None,
        open=is_open and state in OPEN_STATUSES | {"ValidationError"},
        description=_description(contract))


def _execution_row(fill: Fill) -> ExecutionRow:
    ex, report = fill.execution, fill.commissionReport
    multiplier = instruments.multiplier_of(fill.contract.multiplier)
    return ExecutionRow(
        exec_id=ex.execId, perm_id=ex.permId, order_id=ex.orderId, client_id=ex.clientId,
        order_ref=ex.orderRef or "", time=ex.time.isoformat() if ex.time else "",
        account=ex.acctNumber, symbol=_symbol(fill.contract), side=IB_SIDES.get(ex.side, ex.side),
        ib_side=ex.side, shares=ex.shares,
        price=ex.price, commission=report.commission if report.execId else None,
        currency=report.currency or "", realized_pnl=report.realizedPNL if report.execId else None,
        description=_description(fill.contract), multiplier=multiplier,
        value=ex.shares * ex.price * multiplier)
