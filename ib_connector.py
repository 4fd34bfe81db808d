"""Read path: IBConnector keeps snapshots of the account fresh for Flask.

It is an ``IBConnection`` (clientId 999 by default, its own loop thread) that
subscribes to the account-wide streams (account values, portfolio,
positions) and keeps a table of every client's orders and executions. Orders
of other clients are not pushed to a non-master client, so the table is
refreshed with reqAllOpenOrders / reqCompletedOrders / reqExecutions whenever
something suggests a change (a position or portfolio update, a live order
event, a nudge from the in-process OrderHandler) and at least once a second.
This works whether or not 999 is the gateway's Master API client id.

Flask reads ``snapshot()``: a frozen dataclass rebuilt on the loop thread and
swapped in atomically. A GET never waits on the broker.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ib_async import IB, Contract, Forex, Stock
from ib_async.objects import Fill
from ib_async.order import Trade

from config import is_paper_account
from ib_connection import ConnectionState, IBConnection

REFRESH_INTERVAL = 1.0  # poll for other clients' orders at least this often
REFRESH_MIN_GAP = 0.05  # coalesce bursts of triggers
KEEP_COMPLETED = 500  # completed orders in the snapshot (newest first)
KEEP_EXECUTIONS = 1000  # executions in the snapshot (newest first)
QUOTE_TIMEOUT = 5.0
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
    market_value: float | None
    unrealized_pnl: float | None
    realized_pnl: float | None


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
    side: str
    shares: float
    price: float
    commission: float | None
    currency: str
    realized_pnl: float | None


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


@dataclass
class _OrderBook:
    """Mutable order/execution tables, touched only on the loop thread."""

    orders: dict[int, OrderRow] = field(default_factory=dict)  # by permId
    executions: dict[str, ExecutionRow] = field(default_factory=dict)  # by execId


class IBConnector(IBConnection):
    """The read-only connection and the snapshots it keeps."""

    readonly = True  # no order sync at connect: we ask for every client's orders ourselves

    def __init__(self, host: str, port: int, client_id: int = 999,
                 connect_timeout: float = 10.0, account: str = "",
                 on_change: Callable[[], None] | None = None) -> None:
        super().__init__("ib-connector", host, port, client_id, connect_timeout, account)
        self.on_change = on_change
        self._book = _OrderBook()
        self._snapshot = Snapshot(self.state(), None, (), (), (), None, None)
        self._refresh_wanted: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._rebuild_scheduled = False
        self._updated_at: float | None = None
        self._orders_updated_at: float | None = None
        self._version = 0
        self._contracts: dict[tuple[str, str], Contract] = {}
        self._full_refresh = True

    # -------------------------------------------------------------- Flask side
    def snapshot(self) -> Snapshot:
        """The latest snapshot (with the connection state as of now)."""
        snap = self._snapshot
        return Snapshot(self.state(), snap.account, snap.positions, snap.orders,
                        snap.executions, snap.updated_at, snap.orders_updated_at, snap.version)

    def request_refresh(self) -> None:
        """Ask for an order/execution refresh soon (thread-safe; never blocks)."""
        event = self._refresh_wanted
        if event is not None and self.thread.is_alive:
            try:
                self.thread.call_soon(event.set)
            except RuntimeError:
                self.log.debug("refresh requested while stopping")

    def quote(self, symbol: str, sec_type: str = "STK", currency: str = "USD") -> Quote:
        """A snapshot quote (one broker round trip; not a snapshot read)."""
        self.require_connected()
        return self.thread.call(self._quote(symbol, sec_type, currency), QUOTE_TIMEOUT + 1)

    # ----------------------------------------------------------- loop side
    async def on_connected(self, ib: IB) -> None:
        self._refresh_wanted = asyncio.Event()
        for event in (ib.accountValueEvent, ib.updatePortfolioEvent, ib.positionEvent,
                      ib.pnlEvent):
            event += self._on_account_data
        # live events only: commissionReportEvent also fires for every execution that a
        # reqExecutions answer replays, which would make each refresh ask for the next
        for event in (ib.openOrderEvent, ib.orderStatusEvent, ib.execDetailsEvent,
                      ib.positionEvent, ib.updatePortfolioEvent):
            event += self._on_order_hint
        await self._refresh_orders(ib)
        self._updated_at = time.time()
        self._rebuild()
        self._tasks = [asyncio.create_task(self._refresher(ib), name="connector-refresher")]

    async def on_disconnected(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._contracts.clear()
        self._rebuild()

    async def before_disconnect(self) -> None:
        await self.on_disconnected()

    def _on_account_data(self, *_: object) -> None:
        self._updated_at = time.time()
        self._schedule_rebuild()

    def _on_order_hint(self, *_: object) -> None:
        self._full_refresh = True  # something finished or filled: completed orders too
        if self._refresh_wanted is not None:
            self._refresh_wanted.set()

    async def _refresher(self, ib: IB) -> None:
        """Refresh the order table when asked, and at least every second."""
        assert self._refresh_wanted is not None
        wanted = self._refresh_wanted
        while ib.isConnected():
            try:
                await asyncio.wait_for(wanted.wait(), REFRESH_INTERVAL)
            except asyncio.TimeoutError:
                pass
            wanted.clear()
            full, self._full_refresh = self._full_refresh, False
            try:
                await self._refresh_orders(ib, full)
            except (ConnectionError, asyncio.TimeoutError) as exc:
                self.log.warning("order refresh failed: %s", exc)
            self._rebuild()
            await asyncio.sleep(REFRESH_MIN_GAP)

    async def _refresh_orders(self, ib: IB, full: bool = True) -> None:
        """Every client's open orders; completed orders and executions too when ``full``
        (asked for by a fill/position hint) or when an open order has disappeared."""
        open_trades = await asyncio.wait_for(ib.reqAllOpenOrdersAsync(), 10)
        open_rows = {row.perm_id: row for row in
                     (_order_row(trade, is_open=True) for trade in open_trades)}
        was_open = {p for p, row in self._book.orders.items() if row.open}
        if full or not was_open <= open_rows.keys():
            completed = await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), 10)
            await asyncio.wait_for(ib.reqExecutionsAsync(), 10)
            done_rows = {row.perm_id: row for row in
                         (_order_row(trade, is_open=False) for trade in completed)}
        else:
            done_rows = {p: row for p, row in self._book.orders.items() if not row.open}
        orders: dict[int, OrderRow] = {**done_rows, **open_rows}
        for fill in ib.fills():  # ib_async's own table carries the commission reports
            row = _execution_row(fill)
            self._book.executions[row.exec_id] = row
        self._fill_order_ids(orders)
        self._book.orders = orders
        self._trim(ib, open_trades)

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
        for table in (wrapper.trades, wrapper.permId2Trade):
            for key in [k for k, trade in table.items() if id(trade) not in live]:
                del table[key]
        wrapper.fills.clear()  # rows are in the book; the next reqExecutions refills it
        self._orders_updated_at = time.time()

    def _fill_order_ids(self, orders: dict[int, OrderRow]) -> None:
        """completedOrder carries no orderId, clientId or fill price: take them from
        what we saw of the order before, or from its executions."""
        known = self._book.orders
        fills: dict[int, list[ExecutionRow]] = {}
        for execution in self._book.executions.values():
            fills.setdefault(execution.perm_id, []).append(execution)
        for perm_id, row in list(orders.items()):
            if row.open:
                continue
            old = known.get(perm_id)
            own = fills.get(perm_id, [])
            order_id = row.order_id or (old.order_id if old else 0) or \
                (own[0].order_id if own else 0)
            client_id = row.client_id or (old.client_id if old else 0) or \
                (own[0].client_id if own else 0)
            shares = sum(e.shares for e in own)
            avg = row.avg_fill_price or (sum(e.shares * e.price for e in own) / shares
                                         if shares else None)
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
        account = _account_snapshot(ib, self.account) if connected else old.account
        positions = _positions(ib) if connected else old.positions
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
                self.log.exception("on_change callback failed; carrying on")

    async def _quote(self, symbol: str, sec_type: str, currency: str) -> Quote:
        ib = self.ib
        assert ib is not None
        contract = await self._qualified(ib, symbol, sec_type, currency)
        tickers = await asyncio.wait_for(ib.reqTickersAsync(contract), QUOTE_TIMEOUT)
        ticker = tickers[0]
        return Quote(symbol=symbol, sec_type=sec_type, con_id=contract.conId,
                     bid=_num(ticker.bid), ask=_num(ticker.ask), last=_num(ticker.last),
                     close=_num(ticker.close), time=time.time())

    async def _qualified(self, ib: IB, symbol: str, sec_type: str, currency: str) -> Contract:
        key = (symbol, sec_type)
        if key not in self._contracts:
            contract = make_contract(symbol, sec_type, currency)
            found = await asyncio.wait_for(ib.qualifyContractsAsync(contract), QUOTE_TIMEOUT)
            if not found or found[0] is None:
                raise LookupError(f"unknown symbol {symbol!r} ({sec_type})")
            self._contracts[key] = found[0]
        return self._contracts[key]


def make_contract(symbol: str, sec_type: str = "STK", currency: str = "USD") -> Contract:
    """An unqualified ib_async contract for a validated symbol."""
    if sec_type == "CASH":
        return Forex(symbol.replace(".", "").replace("/", ""))
    return Stock(symbol, "SMART", currency)


def _num(value: float | None) -> float | None:
    """ib_async uses nan / -1 for 'no value'; the API uses null."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == -1:
        return None
    return float(value)


def _unset(value: float) -> float | None:
    return None if value is None or value >= 1.7e308 or math.isnan(value) else float(value)


def _account_snapshot(ib: IB, wanted: str) -> AccountSnapshot | None:
    accounts = ib.managedAccounts()
    account = wanted or (accounts[0] if accounts else "")
    if not account:
        return None
    values: dict[str, str] = {}
    figures: dict[str, float | None] = {name: None for name in ACCOUNT_KEYS.values()}
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
    return AccountSnapshot(account=account, paper=is_paper_account(account), currency=currency,
                           figures=figures, values=values)


def _positions(ib: IB) -> tuple[PositionRow, ...]:
    portfolio = {(item.account, item.contract.conId): item for item in ib.portfolio()}
    rows = []
    for pos in ib.positions():
        if not pos.position:
            continue
        item = portfolio.get((pos.account, pos.contract.conId))
        rows.append(PositionRow(
            account=pos.account, con_id=pos.contract.conId, symbol=_symbol(pos.contract),
            sec_type=pos.contract.secType, currency=pos.contract.currency,
            quantity=pos.position, avg_cost=pos.avgCost,
            market_price=item.marketPrice if item else None,
            market_value=item.marketValue if item else None,
            unrealized_pnl=item.unrealizedPNL if item else None,
            realized_pnl=item.realizedPNL if item else None))
    return tuple(sorted(rows, key=lambda r: r.symbol))


def _symbol(contract: Contract) -> str:
    if contract.secType == "CASH":
        return contract.localSymbol or f"{contract.symbol}.{contract.currency}"
    return contract.symbol


def _order_row(trade: Trade, is_open: bool) -> OrderRow:
    order, status, contract = trade.order, trade.orderStatus, trade.contract
    state = status.status
    filled = status.filled if is_open else (order.filledQuantity if _unset(order.filledQuantity)
                                            is not None else status.filled)
    quantity = order.totalQuantity
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
        open=is_open and state in OPEN_STATUSES | {"ValidationError"})


def _execution_row(fill: Fill) -> ExecutionRow:
    ex, report = fill.execution, fill.commissionReport
    return ExecutionRow(
        exec_id=ex.execId, perm_id=ex.permId, order_id=ex.orderId, client_id=ex.clientId,
        order_ref=ex.orderRef or "", time=ex.time.isoformat() if ex.time else "",
        account=ex.acctNumber, symbol=_symbol(fill.contract), side=ex.side, shares=ex.shares,
        price=ex.price, commission=report.commission if report.execId else None,
        currency=report.currency or "", realized_pnl=report.realizedPNL if report.execId else None)
