"""The simulated gateway end to end: the unmodified ib_async 2.1.0 client over loopback.

Every test runs twice, with the server negotiating version 157 (the floor of ib_async,
``ServerSettings(max_version=157)``) and 178 (ib_async's maximum). Tests are plain functions that
run one coroutine with ``asyncio.run`` (see ``async_test``): each ``IB`` object is created,
connected, used and disconnected on that coroutine's loop, and every gateway is stopped by the
fixture that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from itertools import groupby, pairwise
from typing import Any

import pytest
from ib_async import (
    IB,
    ExecutionFilter,
    Forex,
    LimitOrder,
    MarketOrder,
    Order,
    Stock,
    Trade,
)

from conftest import TRADING_CLOCK, later
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

ACCOUNT = "DU1234567"
AAPL_ID, MSFT_ID, EURUSD_ID = 265598, 272093, 12087792
VERSIONS = (157, 178)
CONNECT_TIMEOUT = 3.0
TEST_TIMEOUT = 30.0
FARM_CODES = {2104, 2106, 2158}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(params=VERSIONS, ids=[f"v{v}" for v in VERSIONS])
def version(request: pytest.FixtureRequest) -> int:
    """The server version the gateway negotiates with ib_async."""
    return request.param


@pytest.fixture
def start_gateway(version: int) -> Any:
    """Factory of gateways at ``version`` (extra ServerSettings as keywords); all stopped after."""
    started: list[SimGateway] = []

    def start(**settings: Any) -> SimGateway:
        settings = {"clock_start": TRADING_CLOCK, **settings}
        gw = SimGateway(ServerSettings(max_version=version, **settings), BrokerConfig(seed=7))
        started.append(gw.start())
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(start_gateway: Callable[..., SimGateway]) -> SimGateway:
    """A fresh gateway with default settings (overrides the conftest one: parametrized)."""
    return start_gateway()


class LogCapture(logging.Handler):
    """Collects ib_async's log records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def ib_log() -> Any:
    """Every ib_async log record (the conftest silences them; this turns them back on)."""
    logger = logging.getLogger("ib_async")
    level, capture = logger.level, LogCapture()
    logger.setLevel(logging.DEBUG)
    logger.addHandler(capture)
    yield capture
    logger.removeHandler(capture)
    logger.setLevel(level)


# ----------------------------------------------------------------------------- helpers


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run the coroutine test ``fn`` on a fresh loop (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), TEST_TIMEOUT))

    return run


class Errors:
    """The (reqId, code, text) of every error/notice a client received."""

    def __init__(self, ib: IB) -> None:
        self.items: list[tuple[int, int, str]] = []
        ib.errorEvent += self._on_error

    def _on_error(self, req_id: int, code: int, text: str, contract: Any) -> None:
        self.items.append((req_id, code, text))

    def codes(self, req_id: int | None = None) -> list[int]:
        return [code for rid, code, _ in self.items if req_id in (None, rid)]

    def text(self, code: int) -> str:
        return next(text for _, c, text in self.items if c == code)


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` on the running loop until truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or predicate}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def connected(
    gw: SimGateway, client_id: int = 1, next_ids: list[int] | None = None, **kwargs: Any
) -> AsyncIterator[IB]:
    """An ib_async client connected to ``gw`` (nextValidIds into ``next_ids``); disconnected on exit."""
    ib = IB()
    if next_ids is not None:
        ib.wrapper.nextValidId = next_ids.append  # type: ignore[method-assign, assignment]  # record them
    await ib.connectAsync(gw.host, gw.port, clientId=client_id, timeout=CONNECT_TIMEOUT, **kwargs)
    try:
        yield ib
    finally:
        ib.disconnect()
        await asyncio.sleep(0)  # let the transport finish closing on this loop


def aapl() -> Stock:
    return Stock("AAPL", "SMART", "USD")


def cents(price: float) -> float:
    """A stock price on the 0.01 tick."""
    return round(price, 2)


async def quote(ib: IB, contract: Any) -> Any:
    [ticker] = await ib.reqTickersAsync(contract)
    return ticker


async def qualified(ib: IB, *contracts: Any) -> list[Any]:
    result = await ib.qualifyContractsAsync(*contracts)
    assert all(result), result
    return result


async def status(trade: Trade, wanted: str, timeout: float = 3.0) -> Trade:
    """Wait until the client shows ``wanted`` as the trade's status."""
    try:
        await until(lambda: trade.orderStatus.status == wanted, timeout)
    except AssertionError:
        raise AssertionError(
            f"order {trade.order.orderId} not {wanted} within {timeout}s: {statuses(trade)}"
        ) from None
    return trade


async def filled(ib: IB, contract: Any, action: str, qty: float) -> Trade:
    """A DAY market order that filled, with its commission report in."""
    trade = ib.placeOrder(contract, MarketOrder(action, qty, tif="DAY"))
    await status(trade, "Filled")
    await until(
        lambda: trade.fills and all(f.commissionReport.execId for f in trade.fills),
        what="commission report",
    )
    return trade


def account_value(ib: IB, tag: str, currency: str = "USD") -> float:
    values = [v.value for v in ib.accountValues(ACCOUNT) if v.tag == tag and v.currency == currency]
    assert values, f"no {tag} ({currency}) among the account values"
    return float(values[0])


def statuses(trade: Trade) -> list[str]:
    return [entry.status for entry in trade.log]


def filled_at(trade: Trade) -> float:
    """The gateway's (simulated) time of the trade's first fill, in epoch seconds (IB sends it
    to the second)."""
    return trade.fills[0].execution.time.timestamp()


# ----------------------------------------------------------------------------- connecting


@pytest.mark.parametrize("readonly", [False, True], ids=["readwrite", "readonly"])
@async_test
async def test_connect_is_complete(
    gateway: SimGateway, version: int, readonly: bool, ib_log: LogCapture
) -> None:
    """Every start-up request is answered: no sync time-out (bench/sim_connect.py times it)."""
    ib = IB()
    errors, next_ids = Errors(ib), list[int]()
    ib.wrapper.nextValidId = next_ids.append  # type: ignore[method-assign, assignment]  # ib_async's own wrapper ignores it
    await ib.connectAsync(
        gateway.host, gateway.port, clientId=1, timeout=CONNECT_TIMEOUT, readonly=readonly
    )
    try:
        assert not [m for m in ib_log.messages() if "timed out" in m]
        assert "Synchronization complete" in ib_log.messages()
        assert ib.isConnected()
        assert ib.client.serverVersion() == version
        assert ib.managedAccounts() == [ACCOUNT]
        assert next_ids == [1]
        assert FARM_CODES <= set(errors.codes(-1))
        assert {code for _, code, _ in errors.items} == FARM_CODES
        assert gateway.connected_client_ids() == [1]
        assert account_value(ib, "NetLiquidation") == 1_000_000.0
    finally:
        ib.disconnect()
        await asyncio.sleep(0)


# ----------------------------------------------------------------------------- contracts, quotes


@async_test
async def test_qualify_contracts_and_unknown_symbol(
    gateway: SimGateway, ib_log: LogCapture
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        stock, fx, bogus = aapl(), Forex("EURUSD"), Stock("NOSUCH", "SMART", "USD")
        result = await ib.qualifyContractsAsync(stock, fx, bogus)
        assert result[0] is stock and stock.conId == AAPL_ID
        assert (stock.primaryExchange, stock.localSymbol, stock.tradingClass) == (
            "NASDAQ",
            "AAPL",
            "NMS",
        )
        assert result[1] is fx and fx.conId == EURUSD_ID
        assert (fx.secType, fx.exchange, fx.localSymbol) == ("CASH", "IDEALPRO", "EUR.USD")
        assert result[2] is None
        assert 200 in errors.codes()
        assert "No security definition" in errors.text(200)
        assert any("Unknown contract" in m for m in ib_log.messages())


@async_test
async def test_snapshot_quote(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        stock, fx = await qualified(ib, aapl(), Forex("EURUSD"))
        for ticker in await ib.reqTickersAsync(stock, fx):
            assert 0 < ticker.bid < ticker.ask
            assert ticker.bid <= ticker.last <= ticker.ask
            assert ticker.close > 0 and not math.isnan(ticker.close)
            assert ticker.bidSize > 0 and ticker.askSize > 0
        assert abs((await quote(ib, stock)).last - 190) < 5  # AAPL starts at 190


@async_test
async def test_streaming_market_data_updates_over_time(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        ticker = ib.reqMktData(stock)
        updates: list[float] = []
        kinds: set[int] = set()

        def on_update(t: Any) -> None:
            updates.append(time.monotonic())
            kinds.update(tick.tickType for tick in t.ticks)

        ticker.updateEvent += on_update
        try:
            await until(lambda: bursts(updates) >= 4, 3.0, "four separate pushes")
            assert ticker.bid < ticker.ask and ticker.last > 0
            assert {1, 2, 4, 8} <= kinds  # bid, ask, last, volume
        finally:
            ib.cancelMktData(stock)
        await ib.reqCurrentTimeAsync()  # the cancel is read; pushes sent before it are in
        count = len(updates)
        # a second stream shows the quote loop going round: three pushes of it, none of AAPL
        [msft] = await qualified(ib, Stock("MSFT", "SMART", "USD"))
        witness, pushes = ib.reqMktData(msft), list[float]()
        witness.updateEvent += lambda _: pushes.append(time.monotonic())
        await until(lambda: bursts(pushes) >= 3, 3.0, "three pushes of the second stream")
        ib.cancelMktData(msft)
        assert len(updates) == count  # cancelled: no more pushes


def bursts(times: list[float], gap: float = 0.1) -> int:
    """How many groups separated by more than ``gap`` seconds ``times`` fall into."""
    return sum(1 for before, after in pairwise([-math.inf, *times]) if after - before > gap)


@async_test
async def test_delayed_market_data(start_gateway: Callable[..., SimGateway]) -> None:
    """An account without a live subscription (with one, IB sends live data whatever type is
    asked: see test_sim_bad_days)."""
    async with connected(start_gateway(market_data="delayed")) as ib:
        [stock] = await qualified(ib, aapl())
        ib.reqMarketDataType(3)
        ticker = ib.reqMktData(stock)
        kinds: set[int] = set()
        ticker.updateEvent += lambda t: kinds.update(tick.tickType for tick in t.ticks)
        try:
            await until(lambda: {66, 67, 68, 74} <= kinds, what="delayed bid, ask, last, volume")
            assert ticker.marketDataType == 3
            assert not kinds & {1, 2, 4, 8}  # no real-time ticks
            assert 0 < ticker.bid < ticker.ask and ticker.last > 0
        finally:
            ib.cancelMktData(stock)


# ----------------------------------------------------------------------------- orders


@async_test
async def test_market_order_fills_with_commission_position_and_account(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        before = await quote(ib, stock)
        cash_before = account_value(ib, "TotalCashValue")
        net_before = account_value(ib, "NetLiquidation")
        assert cash_before == net_before == 1_000_000.0

        trade = await filled(ib, stock, "BUY", 10)

        assert (
            statuses(trade)[:2] == ["PendingSubmit", "PreSubmitted"]
            and trade.orderStatus.status == "Filled"
        )
        assert (trade.orderStatus.filled, trade.orderStatus.remaining) == (10, 0)
        assert trade.order.permId > 0
        [fill] = trade.fills
        execution = fill.execution
        assert (execution.side, execution.shares, execution.acctNumber) == ("BOT", 10, ACCOUNT)
        assert abs(execution.price - before.ask) < 0.01 * before.ask
        assert trade.orderStatus.avgFillPrice == execution.price
        assert fill.commissionReport.commission == 1.0  # 10 × 0.005 < the 1.00 minimum
        assert fill.commissionReport.currency == "USD"

        await until(
            lambda: [p for p in ib.positions() if p.contract.conId == AAPL_ID], what="position"
        )
        [position] = [p for p in ib.positions() if p.contract.conId == AAPL_ID]
        assert position.position == 10 and position.account == ACCOUNT
        assert abs(position.avgCost - (execution.price * 10 + 1.0) / 10) < 1e-6
        # the portfolio row comes with the account updates, not with the position message
        await until(
            lambda: [i for i in ib.portfolio() if i.contract.conId == AAPL_ID], what="portfolio"
        )
        [item] = [i for i in ib.portfolio() if i.contract.conId == AAPL_ID]
        assert item.position == 10 and item.marketValue > 0
        cash_expected = 1_000_000.0 - 10 * execution.price - 1.0
        await until(lambda: account_value(ib, "TotalCashValue") != cash_before, what="cash update")
        assert abs(account_value(ib, "TotalCashValue") - cash_expected) < 0.011
        assert account_value(ib, "NetLiquidation") != net_before
        assert [o.status for o in gateway.completed_orders()] == ["Filled"]


@async_test
async def test_a_fill_pushes_the_account_values_that_changed(gateway: SimGateway) -> None:
    """reqAccountUpdates: the whole account once, then what a fill changed (cash, net
    liquidation...), not the unchanging rows (account code, type) again."""
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        pushed: list[str] = []
        ib.accountValueEvent += lambda value: pushed.append(value.tag)
        await filled(ib, stock, "BUY", 10)
        await until(lambda: "TotalCashValue" in pushed, what="the new cash")
        await ib.reqCurrentTimeAsync()  # the fill's pushes sent before it are in
        assert {"NetLiquidation", "TotalCashValue"} <= set(pushed)
        assert not {"AccountCode", "AccountType"} & set(pushed)


@async_test
async def test_limit_order_rests_is_modified_then_cancelled(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        bid = (await quote(ib, stock)).bid
        trade = ib.placeOrder(stock, LimitOrder("BUY", 10, cents(bid - 5), tif="DAY"))
        await status(trade, "Submitted")
        order_id = trade.order.orderId

        change = copy.copy(trade.order)  # the trade keeps the old object: only the gateway's
        change.lmtPrice, change.totalQuantity = cents(bid - 6), 20  # openOrder can update it
        assert ib.placeOrder(stock, change) is trade
        await until(
            lambda: (trade.order.lmtPrice, trade.order.totalQuantity) == (cents(bid - 6), 20),
            what="modified order echoed",
        )
        await until(lambda: trade.orderStatus.remaining == 20, what="orderStatus remaining 20")
        assert trade.orderStatus.status == "Submitted"
        [live] = gateway.open_orders()
        assert (live.order_id, live.lmt_price, live.total_quantity) == (
            order_id,
            cents(bid - 6),
            20,
        )

        ib.cancelOrder(trade.order)
        await status(trade, "Cancelled")
        await until(lambda: 202 in errors.codes(order_id), what="error 202")
        assert "PendingCancel" in statuses(trade)
        assert gateway.open_orders() == []
        assert [o.status for o in gateway.completed_orders()] == ["Cancelled"]


@async_test
async def test_bracket_parent_fills_children_work_cancelling_parent_cancels_children(
    gateway: SimGateway,
) -> None:
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        ticker = await quote(ib, stock)
        # filled parent: take-profit far above, stop-loss far below → both keep working
        bracket = ib.bracketOrder(
            "BUY",
            10,
            cents(ticker.ask + 1),
            cents(ticker.ask + 20),
            cents(ticker.bid - 20),
            tif="DAY",
        )
        parent, profit, loss = [ib.placeOrder(stock, order) for order in bracket]
        await status(parent, "Filled")
        await status(profit, "Submitted")  # a resting limit
        await status(loss, "PreSubmitted")  # a stop waiting for its trigger
        assert profit.order.parentId == loss.order.parentId == parent.order.orderId
        assert len(gateway.open_orders()) == 2

        # resting parent (limit far below): children wait for it, and die with it
        bracket = ib.bracketOrder(
            "BUY",
            5,
            cents(ticker.bid - 20),
            cents(ticker.ask + 20),
            cents(ticker.bid - 30),
            tif="DAY",
        )
        parent2, profit2, loss2 = [ib.placeOrder(stock, order) for order in bracket]
        await status(parent2, "Submitted")
        await until(
            lambda: profit2.orderStatus.status == loss2.orderStatus.status == "PreSubmitted"
        )
        ib.cancelOrder(parent2.order)
        for trade in (parent2, profit2, loss2):
            await status(trade, "Cancelled")
        assert (
            profit.orderStatus.status == "Submitted" and loss.orderStatus.status == "PreSubmitted"
        )
        assert len(gateway.open_orders()) == 2


@async_test
async def test_bracket_take_profit_fill_cancels_stop_loss(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        ticker = await quote(ib, stock)
        # the take-profit sell limit is below the bid: marketable as soon as the parent fills
        bracket = ib.bracketOrder(
            "BUY",
            10,
            cents(ticker.ask + 1),
            cents(ticker.bid - 1),
            cents(ticker.bid - 20),
            tif="DAY",
        )
        parent, profit, loss = [ib.placeOrder(stock, order) for order in bracket]
        await status(parent, "Filled")
        await status(profit, "Filled")
        await status(loss, "Cancelled")
        assert 202 in errors.codes(loss.order.orderId)
        [sold] = profit.fills
        assert sold.execution.side == "SLD" and sold.execution.shares == 10
        assert loss.fills == []
        assert gateway.open_orders() == []
        await until(
            lambda: not [p for p in ib.positions() if p.contract.conId == AAPL_ID],
            what="flat position",
        )
        assert gateway.positions() == []


@async_test
async def test_what_if_order_reports_margin_and_commission_only(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        ask = (await quote(ib, stock)).ask
        state = await ib.whatIfOrderAsync(stock, MarketOrder("BUY", 100, tif="DAY"))
        assert state.commission == 1.0 and state.commissionCurrency == "USD"
        assert abs(float(state.initMarginChange) - 100 * ask / 4) < 100 * ask * 0.01
        assert float(state.maintMarginChange) > 0
        assert float(state.initMarginBefore) == 0.0
        assert float(state.initMarginAfter) == float(state.initMarginChange)
        assert float(state.equityWithLoanBefore) == 1_000_000.0
        assert state.warningText == ""
        await ib.reqCurrentTimeAsync()  # anything the what-if set off has been sent before this
        assert ib.trades() == [] and ib.fills() == []
        assert gateway.open_orders() == [] and gateway.completed_orders() == []
        assert gateway.positions() == []


# ----------------------------------------------------------------------------- account queries


@async_test
async def test_account_summary(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        rows = await ib.accountSummaryAsync()
        by_tag = {row.tag: row for row in rows}
        assert {row.account for row in rows} == {ACCOUNT}
        for tag in (
            "NetLiquidation",
            "TotalCashValue",
            "BuyingPower",
            "AvailableFunds",
            "ExcessLiquidity",
            "InitMarginReq",
            "MaintMarginReq",
            "GrossPositionValue",
        ):
            assert by_tag[tag].currency == "USD", tag
        assert float(by_tag["NetLiquidation"].value) == 1_000_000.0
        assert float(by_tag["BuyingPower"].value) == 4_000_000.0
        assert by_tag["AccountType"].value == "INDIVIDUAL"


@async_test
async def test_req_executions_with_and_without_filter(gateway: SimGateway) -> None:
    async with connected(gateway, 1) as ib, connected(gateway, 2) as other:
        stock, fx = await qualified(ib, aapl(), Forex("EURUSD"))
        [msft] = await qualified(other, Stock("MSFT", "SMART", "USD"))
        await filled(ib, stock, "BUY", 10)
        await filled(ib, fx, "BUY", 20_000)
        await filled(other, msft, "BUY", 5)

        every = await ib.reqExecutionsAsync()
        assert sorted(f.contract.symbol for f in every) == ["AAPL", "EUR", "MSFT"]
        assert {f.execution.clientId for f in every} == {1, 2}
        only_aapl = await ib.reqExecutionsAsync(ExecutionFilter(symbol="AAPL"))
        assert [(f.contract.conId, f.execution.side, f.execution.shares) for f in only_aapl] == [
            (AAPL_ID, "BOT", 10)
        ]
        of_client_2 = await ib.reqExecutionsAsync(ExecutionFilter(clientId=2))
        assert [(f.contract.conId, f.execution.clientId) for f in of_client_2] == [(MSFT_ID, 2)]
        fx_only = await ib.reqExecutionsAsync(ExecutionFilter(secType="CASH"))
        assert [f.contract.localSymbol for f in fx_only] == ["EUR.USD"]
        assert await ib.reqExecutionsAsync(ExecutionFilter(symbol="IBM")) == []
        after = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(time.time() + 60))
        assert await ib.reqExecutionsAsync(ExecutionFilter(time=after)) == []
        [fx_fill] = [f for f in ib.fills() if f.contract.conId == EURUSD_ID]
        assert fx_fill.commissionReport.commission == 2.0  # FX minimum


@async_test
async def test_req_executions_with_a_malformed_time_is_refused_not_fatal(
    gateway: SimGateway,
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        await filled(ib, stock, "BUY", 1)
        refused = await asyncio.wait_for(
            ib.reqExecutionsAsync(ExecutionFilter(time="yesterday")), 1.0
        )
        assert refused == []
        assert 321 in errors.codes() and "yesterday" in errors.text(321)
        assert ib.isConnected()
        assert len(await ib.reqExecutionsAsync()) == 1


@async_test
async def test_req_completed_orders(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        bought = await filled(ib, stock, "BUY", 10)
        resting = ib.placeOrder(stock, LimitOrder("BUY", 1, 100.0, tif="GTC"))
        await status(resting, "Submitted")
        ib.cancelOrder(resting.order)
        await status(resting, "Cancelled")

        completed = await ib.reqCompletedOrdersAsync(apiOnly=False)
        by_perm = {t.order.permId: t for t in completed}
        assert set(by_perm) == {bought.order.permId, resting.order.permId}
        done_buy, done_lmt = by_perm[bought.order.permId], by_perm[resting.order.permId]
        assert (
            done_buy.orderStatus.status,
            done_buy.order.orderType,
            done_buy.order.totalQuantity,  # IB reports 0 once filled (real captures)
            done_buy.order.filledQuantity,
        ) == ("Filled", "MKT", 0, 10)
        assert done_buy.orderStatus.filled == 0  # completedOrder carries no fill figures
        assert (done_lmt.orderStatus.status, done_lmt.order.lmtPrice, done_lmt.order.tif) == (
            "Cancelled",
            100.0,
            "GTC",
        )
        assert (done_lmt.order.totalQuantity, done_lmt.order.filledQuantity) == (1, 0)
        assert done_lmt.contract.conId == AAPL_ID


# ----------------------------------------------------------------------------- ownership


class OrderEvents:
    """Live order callbacks one client receives."""

    def __init__(self, ib: IB) -> None:
        self.open: list[Trade] = []
        self.status: list[tuple[int, int, str]] = []
        self.fills: list[Any] = []
        self.commissions: list[Any] = []
        ib.openOrderEvent += self.open.append
        ib.orderStatusEvent += lambda t: self.status.append(
            (t.order.clientId, t.order.orderId, t.orderStatus.status)
        )
        ib.execDetailsEvent += lambda t, f: self.fills.append(f)
        ib.commissionReportEvent += lambda t, f, r: self.commissions.append(r)

    def count(self) -> int:
        return len(self.open) + len(self.status) + len(self.fills) + len(self.commissions)


@async_test
async def test_non_master_client_sees_other_orders_only_by_query(gateway: SimGateway) -> None:
    async with connected(gateway, 2) as watcher, connected(gateway, 1) as trader:
        events = OrderEvents(watcher)
        [stock] = await qualified(trader, aapl())
        bought = await filled(trader, stock, "BUY", 10)
        resting = trader.placeOrder(stock, LimitOrder("BUY", 3, 150.0, tif="DAY"))
        await status(resting, "Submitted")
        # account-wide streams do reach the watcher (and after any order traffic would have)
        await until(lambda: [p for p in watcher.positions() if p.contract.conId == AAPL_ID])
        await watcher.reqCurrentTimeAsync()  # whatever the gateway sent the watcher is in
        assert events.count() == 0
        assert watcher.trades() == [] and watcher.fills() == []

        [snapshot] = await watcher.reqAllOpenOrdersAsync()  # (its orderStatus fires an event)
        assert (snapshot.order.clientId, snapshot.order.orderId, snapshot.order.permId) == (
            1,
            resting.order.orderId,
            resting.order.permId,
        )
        assert snapshot.orderStatus.status == "Submitted" and snapshot.order.lmtPrice == 150.0
        assert await watcher.reqOpenOrdersAsync() == []  # its own: none

        completed = await watcher.reqCompletedOrdersAsync(apiOnly=False)
        assert [(t.order.permId, t.orderStatus.status) for t in completed] == [
            (bought.order.permId, "Filled")
        ]
        [execution] = await watcher.reqExecutionsAsync()
        assert (
            execution.execution.clientId,
            execution.execution.orderId,
            execution.execution.permId,
        ) == (1, bought.order.orderId, bought.order.permId)

        seen = events.count()
        trader.cancelOrder(resting.order)
        await status(resting, "Cancelled")
        await filled(trader, stock, "SELL", 10)
        await until(lambda: not [p for p in watcher.positions() if p.contract.conId == AAPL_ID])
        assert events.count() == seen  # still nothing live: only the snapshot was delivered
        assert events.fills == []


@async_test
async def test_master_client_gets_live_updates_of_other_clients(start_gateway: Any) -> None:
    gw = start_gateway(master_client_id=9)
    async with connected(gw, 9) as master, connected(gw, 1) as trader:
        events = OrderEvents(master)
        [stock] = await qualified(trader, aapl())
        bought = await filled(trader, stock, "BUY", 10)
        resting = trader.placeOrder(stock, LimitOrder("BUY", 3, 150.0, tif="DAY"))
        await status(resting, "Submitted")

        await until(
            lambda: (1, bought.order.orderId, "Filled") in events.status, what="master Filled"
        )
        await until(lambda: events.commissions, what="master commission")
        [fill] = events.fills
        assert (fill.execution.clientId, fill.execution.orderId) == (1, bought.order.orderId)
        assert events.commissions[0].commission == 1.0
        await until(lambda: (1, resting.order.orderId, "Submitted") in events.status)
        mirrored = {(t.order.clientId, t.order.orderId): t for t in master.trades()}
        assert mirrored[(1, resting.order.orderId)].order.permId == resting.order.permId

        trader.cancelOrder(resting.order)
        await until(
            lambda: (1, resting.order.orderId, "Cancelled") in events.status,
            what="master Cancelled",
        )
        assert mirrored[(1, bought.order.orderId)].orderStatus.status == "Filled"
        # a third, non-master client still sees nothing live
        async with connected(gw, 3) as bystander:
            others = OrderEvents(bystander)
            await filled(trader, stock, "SELL", 10)
            await until(
                lambda: not [p for p in bystander.positions() if p.contract.conId == AAPL_ID]
            )
            assert others.count() == 0


# ----------------------------------------------------------------------------- error codes


@async_test
async def test_duplicate_client_id_is_refused_and_first_session_survives(
    gateway: SimGateway,
) -> None:
    async with connected(gateway, 5) as first:
        second = IB()
        errors = Errors(second)
        with pytest.raises(TimeoutError):
            await second.connectAsync(gateway.host, gateway.port, clientId=5, timeout=2)
        assert not second.isConnected()
        assert 326 in errors.codes(-1)
        assert first.isConnected()
        assert await asyncio.wait_for(first.reqCurrentTimeAsync(), 5.0)
        assert gateway.connected_client_ids() == [5]


@async_test
async def test_duplicate_order_id_is_error_103(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        first = await filled(ib, stock, "BUY", 1)
        stale = LimitOrder("BUY", 1, 150.0, tif="DAY")
        stale.orderId = first.order.orderId - 1  # below the highest id this client used
        trade = ib.placeOrder(stock, stale)
        await status(trade, "Cancelled")
        assert errors.codes(stale.orderId) == [103]
        assert "Duplicate order id" in errors.text(103)
        assert gateway.open_orders() == []
        assert len(gateway.completed_orders()) == 1


@async_test
async def test_cancel_errors_10147_and_10148(gateway: SimGateway) -> None:
    async with connected(gateway, 1) as owner, connected(gateway, 2) as other:
        owner_errors, other_errors = Errors(owner), Errors(other)
        [stock] = await qualified(owner, aapl())
        resting = owner.placeOrder(stock, LimitOrder("BUY", 1, 150.0, tif="DAY"))
        await status(resting, "Submitted")

        other.cancelOrder(copy.copy(resting.order))  # same id, but in client 2's id space
        await until(
            lambda: 10147 in other_errors.codes(resting.order.orderId), what="10147 foreign"
        )
        assert "not found" in other_errors.text(10147)
        unknown = Order(orderId=987_654, clientId=1)
        owner.cancelOrder(unknown)
        await until(lambda: 10147 in owner_errors.codes(987_654), what="10147 unknown")
        assert resting.orderStatus.status == "Submitted"
        assert [o.order_id for o in gateway.open_orders()] == [resting.order.orderId]

        bought = await filled(owner, stock, "BUY", 1)
        owner.cancelOrder(bought.order)
        await until(lambda: 10148 in owner_errors.codes(bought.order.orderId), what="10148")
        assert "state: Filled" in owner_errors.text(10148)
        assert bought.orderStatus.status == "Filled"


# ----------------------------------------------------------------------------- pacing


@async_test
async def test_flooding_more_than_50_messages_per_second_gets_error_100(
    gateway: SimGateway,
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        ib.client.MaxRequests = 0  # switch ib_async's own throttle off
        for _ in range(80):
            ib.client.reqCurrentTime()
        await until(lambda: 100 in errors.codes(-1), what="error 100")
        assert "Max rate of messages per second has been exceeded" in errors.text(100)
        stats = gateway.stats()
        assert stats.pacing_violations > 0
        assert stats.peak_rate_by_client[1] > 50
        assert ib.isConnected()


@pytest.mark.slow
@async_test
async def test_ib_async_throttled_requests_never_exceed_the_pacing_limit(
    gateway: SimGateway,
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        sent_before = gateway.stats().received_by_client[1]
        throttled: list[bool] = []
        ib.client.throttleStart += lambda: throttled.append(True)
        # 60: a burst of 45, then the rest a second later as the first leave ib_async's
        # sliding window, into the gateway's bucket refilled meanwhile
        for _ in range(60):
            ib.client.reqCurrentTime()  # queued by ib_async's throttle (45/s)
        assert throttled
        await until(
            lambda: gateway.stats().received_by_client[1] >= sent_before + 60,
            5.0,
            "60 requests received",
        )
        await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5.0)
        assert gateway.stats().pacing_violations == 0
        assert 100 not in errors.codes()


# ----------------------------------------------------------------------------- fault switches


@async_test
async def test_validation_delay_keeps_order_pending_submit(gateway: SimGateway) -> None:
    gateway.set_validation_delay(30)  # of clock time: over when the test moves the clock
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        placed = gateway.now()
        trade = ib.placeOrder(stock, MarketOrder("BUY", 1, tif="DAY"))
        await ib.reqCurrentTimeAsync()  # the gateway has read the order
        assert trade.orderStatus.status == "PendingSubmit"
        assert gateway.open_orders() == []  # still being validated
        later(gateway, 30)
        await status(trade, "Filled", 5.0)
        assert filled_at(trade) >= placed + 29  # not before the validation delay was over
        assert statuses(trade)[:2] == ["PendingSubmit", "PreSubmitted"]


@async_test
async def test_fill_delay_acknowledges_then_fills_later(gateway: SimGateway) -> None:
    gateway.set_fill_delay(30)  # of clock time: due when the test moves the clock
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        placed = gateway.now()
        trade = ib.placeOrder(stock, MarketOrder("BUY", 1, tif="DAY"))
        await status(trade, "PreSubmitted", 5.0)
        await ib.reqCurrentTimeAsync()  # whatever the gateway sent with the ack is in
        assert trade.fills == [] and gateway.executions() == []
        later(gateway, 30)
        await status(trade, "Filled", 5.0)
        assert filled_at(trade) >= placed + 29  # not before the fill delay was over
        assert len(trade.fills) == 1
        changes = [name for name, _ in groupby(statuses(trade))]  # ack and status repeat it
        assert changes == ["PendingSubmit", "PreSubmitted", "Filled"]


@async_test
async def test_tif_preset_warning_makes_ib_async_cancel_a_live_order(gateway: SimGateway) -> None:
    """Pitfall (ib_async #191/#217): error 10349 "Order TIF was set to DAY based on order preset"
    is informational: the order stays live at the gateway and fills. But ib_async 2.1.0 does not
    count 10349 as a warning, so it marks the trade Cancelled (log entry with errorCode 10349) and
    fires ``cancelledEvent``/``orderStatusEvent``: an app that reacts to that event, or reads the
    status at that moment, believes a live order is dead. Only later status messages (here the
    acknowledgement, then the fill) overwrite the false Cancelled. Always set ``order.tif``
    explicitly, and confirm terminal states from the broker (executions, completed orders)."""
    gateway.set_tif_preset_warning(True)
    gateway.set_fill_delay(30)  # of clock time: the order fills when the test moves the clock
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        seen_at_cancel: list[tuple[str, int]] = []
        order = MarketOrder("BUY", 1)
        assert order.tif == ""  # ib_async's default: no TIF sent
        trade = ib.placeOrder(stock, order)
        trade.cancelledEvent += lambda t: seen_at_cancel.append(
            (t.orderStatus.status, t.log[-1].errorCode)
        )
        await until(lambda: seen_at_cancel, what="cancelledEvent")
        assert seen_at_cancel == [("Cancelled", 10349)]
        assert errors.codes(order.orderId) == [10349]
        assert [(e.status, e.errorCode) for e in trade.log if e.errorCode] == [("Cancelled", 10349)]
        [live] = gateway.open_orders()  # ...yet the gateway still works the order
        assert (live.order_id, live.status, live.tif) == (order.orderId, "PreSubmitted", "DAY")
        later(gateway, 30)
        await until(lambda: trade.fills, 5.0, "the 'cancelled' order fills")
        assert trade.fills[0].execution.shares == 1
        assert [o.status for o in gateway.completed_orders()] == ["Filled"]
        await status(trade, "Filled")

        explicit = ib.placeOrder(stock, MarketOrder("BUY", 1, tif="DAY"))
        cancelled_again: list[Trade] = []
        explicit.cancelledEvent += cancelled_again.append
        await status(explicit, "PreSubmitted", 5.0)
        later(gateway, 30)
        await status(explicit, "Filled", 5.0)
        assert errors.codes(explicit.order.orderId) == [] and cancelled_again == []


@async_test
async def test_reject_next_order_gives_inactive_201_then_inactive_again(
    gateway: SimGateway,
) -> None:
    """IB's order (ib_insync #554's wire log): Inactive, then 201, then Inactive again."""
    gateway.reject_next_order("Simulated rejection for the test")
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        trade = ib.placeOrder(stock, LimitOrder("BUY", 1, 150.0, tif="DAY"))
        await until(lambda: statuses(trade)[-1] == "Inactive" and errors.codes(), what="201")
        await status(trade, "Inactive")
        assert errors.codes(trade.order.orderId) == [201]
        assert "Simulated rejection for the test" in errors.text(201)
        assert statuses(trade) == ["PendingSubmit", "Inactive"]  # ib_async: Inactive is done
        assert [o.status for o in gateway.completed_orders()] == ["Inactive"]
        after = ib.placeOrder(stock, LimitOrder("BUY", 1, 150.0, tif="DAY"))  # only the next one
        await status(after, "Submitted")


@async_test
async def test_drop_connections_disconnects_clients_at_once(gateway: SimGateway) -> None:
    async with connected(gateway, 1) as one, connected(gateway, 2) as two:
        lost: list[tuple[int, float]] = []
        one.disconnectedEvent += lambda: lost.append((1, time.monotonic()))
        two.disconnectedEvent += lambda: lost.append((2, time.monotonic()))
        started = time.monotonic()
        gateway.drop_connections()
        await until(lambda: len(lost) == 2, 5.0, "both clients see the disconnect")
        # at once (no tick, stall or reconnect to wait for); generous for a loaded machine
        assert max(at for _, at in lost) - started < 1.0
        assert not one.isConnected() and not two.isConnected()
        assert gateway.connected_client_ids() == []
        async with connected(gateway, 1) as again:  # the listener is still up
            assert again.isConnected()


@async_test
async def test_stall_answers_nothing_but_keeps_the_socket_open(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        lost: list[bool] = []
        ib.disconnectedEvent += lambda: lost.append(True)
        assert await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5.0)
        with gateway.stalled():  # until the test has looked, however slow the machine
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ib.reqCurrentTimeAsync(), 0.5)
            assert ib.isConnected() and not lost
            assert gateway.connected_client_ids() == [1]
        answer = await asyncio.wait_for(ib.reqCurrentTimeAsync(), 7.0)
        assert abs(answer.timestamp() - gateway.now()) < 5  # the gateway's simulated clock
        assert ib.isConnected() and not lost


@async_test
async def test_a_stall_ended_early_answers_what_it_held(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        gateway.stall(60.0)
        asked = asyncio.ensure_future(ib.reqCurrentTimeAsync())
        await asyncio.sleep(0.5)
        assert not asked.done()  # held by the stall
        started = time.monotonic()
        await asyncio.to_thread(gateway.end_stall)
        assert await asyncio.wait_for(asked, 5.0)  # answered now, not in a minute
        assert time.monotonic() - started < 5.0
        assert await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5.0)  # and answering again


@async_test
async def test_requests_of_a_connection_dropped_during_a_stall_are_discarded(
    gateway: SimGateway,
) -> None:
    """What a stalled gateway had not processed when it cut the connection is lost with it."""
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        lost: list[bool] = []
        ib.disconnectedEvent += lambda: lost.append(True)
        with gateway.stalled():  # until the drop is done, however slow the machine
            trade = ib.placeOrder(stock, MarketOrder("BUY", 1, tif="DAY"))
            transport = ib.client.conn.transport
            await until(lambda: transport.get_write_buffer_size() == 0, 2.0, "order sent")
            gateway.drop_connections()  # the order sits unread in the gateway's socket
            await until(lambda: lost, 3.0, "disconnect")
        async with connected(gateway, 2):  # a new client's handshake is answered again
            pass
        assert trade.orderStatus.status == "PendingSubmit"  # frozen: outcome unknown to ib_async
        assert gateway.open_orders() == [] and gateway.completed_orders() == []
        assert gateway.executions() == []


@async_test
async def test_a_gateway_stopped_during_a_stall_ends_its_sessions_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A session waiting out a stall was left pending when the gateway stopped: cancelled at
    the loop's end, which asyncio reports as an error (Python 3.11)."""
    gateway = SimGateway(ServerSettings(port=0, clock_start=TRADING_CLOCK)).start()
    try:
        async with connected(gateway) as ib:
            lost: list[bool] = []
            ib.disconnectedEvent += lambda: lost.append(True)
            gateway.stall(5.0)
            ib.client.reqCurrentTime()  # read by the gateway, left waiting for the stall's end
            transport = ib.client.conn.transport
            await until(lambda: transport.get_write_buffer_size() == 0, 1.0, "request sent")
            for _ in range(3):  # turns of the gateway's loop: it has read the request
                gateway.broker_call(lambda broker: None)
            gateway.stop()
            await until(lambda: lost, 1.0, "disconnect")
    finally:
        gateway.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@async_test
async def test_restart_cuts_clients_and_keeps_orders_and_positions(gateway: SimGateway) -> None:
    port = gateway.port
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        await filled(ib, stock, "BUY", 10)
        resting = ib.placeOrder(stock, LimitOrder("BUY", 2, 150.0, tif="GTC"))
        await status(resting, "Submitted")
        lost: list[float] = []
        ib.disconnectedEvent += lambda: lost.append(time.monotonic())
        with gateway.down():  # down until the block ends, however slow the machine
            await until(lambda: lost, 5.0, "disconnect on restart")
            with pytest.raises(ConnectionRefusedError):  # the listener is down meanwhile
                await IB().connectAsync(gateway.host, port, clientId=2, timeout=1.0)
    assert gateway.port == port
    next_ids: list[int] = []
    async with connected(gateway, next_ids=next_ids) as ib:
        assert next_ids == [resting.order.orderId + 1]  # ids not rolled back
        [again] = [t for t in ib.openTrades() if t.order.permId == resting.order.permId]
        assert (again.order.orderId, again.orderStatus.status, again.order.lmtPrice) == (
            resting.order.orderId,
            "Submitted",
            150.0,
        )
        [position] = [p for p in ib.positions() if p.contract.conId == AAPL_ID]
        assert position.position == 10
        assert len(ib.fills()) == 1


@async_test
async def test_restart_rolling_back_ids_still_gives_unique_perm_ids(gateway: SimGateway) -> None:
    first_ids: list[int] = []
    async with connected(gateway, next_ids=first_ids) as ib:
        [stock] = await qualified(ib, aapl())
        trades = [await filled(ib, stock, "BUY", 1) for _ in range(2)]
    await asyncio.to_thread(gateway.restart, 0.1, True)

    second_ids: list[int] = []
    async with connected(gateway, next_ids=second_ids) as ib:
        assert first_ids == [1]
        assert second_ids == [1]  # rolled back below the ids used before the restart
        [stock] = await qualified(ib, aapl())
        reused = MarketOrder("BUY", 1, tif="DAY")
        reused.orderId = trades[0].order.orderId  # an id this client already used today
        trade = ib.placeOrder(stock, reused)
        await status(trade, "Filled")
        old_perm_ids = {t.order.permId for t in trades}
        assert trade.order.permId not in old_perm_ids and trade.order.permId > max(old_perm_ids)
        executions = gateway.executions()
        assert len({e.perm_id for e, _ in executions}) == 3
        assert len({e.exec_id for e, _ in executions}) == 3
        assert [e.order_id for e, _ in executions].count(reused.orderId) == 2
        assert len(await ib.reqExecutionsAsync()) == 3


@async_test
async def test_send_error_reaches_the_client(gateway: SimGateway) -> None:
    async with connected(gateway, 4) as ib:
        errors = Errors(ib)
        text = "Connectivity between IB and Trader Workstation has been lost."
        assert gateway.send_error(4, -1, 1100, text) is True
        await until(lambda: 1100 in errors.codes(-1), what="error 1100")
        assert errors.text(1100) == text
        assert gateway.send_error(77, -1, 1100, text) is False  # no such client
        assert ib.isConnected()


# ----------------------------------------------------------------------------- persistence


@async_test
async def test_state_file_keeps_positions_orders_and_executions(
    start_gateway: Any, tmp_path: Any
) -> None:
    state = tmp_path / "gateway-state.json"
    first = start_gateway(state_file=str(state))
    async with connected(first) as ib:
        [stock] = await qualified(ib, aapl())
        bought = await filled(ib, stock, "BUY", 10)
        resting = ib.placeOrder(stock, LimitOrder("BUY", 1, 150.0, tif="GTC"))
        await status(resting, "Submitted")
        ib.cancelOrder(resting.order)
        await status(resting, "Cancelled")
    first.stop()
    assert state.exists()

    second = start_gateway(state_file=str(state))
    async with connected(second) as ib:
        [position] = [p for p in ib.positions() if p.contract.conId == AAPL_ID]
        assert position.position == 10
        completed = await ib.reqCompletedOrdersAsync(apiOnly=False)
        assert {(t.order.permId, t.orderStatus.status) for t in completed} == {
            (bought.order.permId, "Filled"),
            (resting.order.permId, "Cancelled"),
        }
        executions = await ib.reqExecutionsAsync()
        assert [(f.execution.permId, f.execution.shares) for f in executions] == [
            (bought.order.permId, 10)
        ]
        assert executions[0].execution.execId == bought.fills[0].execution.execId
        assert account_value(ib, "TotalCashValue") < 1_000_000.0 - 1_000


# ----------------------------------------------------------------------------- limits


@async_test
async def test_unsupported_requests_get_a_clear_error(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        ib.client.reqScannerParameters()  # no reqId: ib_async's own future would never end
        await until(lambda: errors.items, what="error for reqScannerParameters")
        [(req_id, code, text)] = errors.items
        assert (req_id, code) == (-1, 322)
        assert "REQ_SCANNER_PARAMETERS" in text and "not supported" in text

        started = time.monotonic()
        ticks = await ib.reqHistoricalTicksAsync(stock, "", "20261130 10:00:00", 10, "TRADES", True)
        assert time.monotonic() - started < 5.0  # the error ends the request (no hang)
        assert list(ticks) == []
        [(req_id, code, text)] = errors.items[1:]
        assert req_id > 0 and code == 322
        assert "REQ_HISTORICAL_TICKS" in text and "not supported" in text
        assert ib.isConnected()


@async_test
async def test_32_clients_accepted_33rd_refused(gateway: SimGateway) -> None:
    clients = [IB() for _ in range(32)]
    try:
        await asyncio.gather(
            *[
                ib.connectAsync(
                    gateway.host, gateway.port, clientId=100 + n, timeout=5, readonly=True
                )
                for n, ib in enumerate(clients)
            ]
        )
        assert all(ib.isConnected() for ib in clients)
        assert sorted(gateway.connected_client_ids()) == list(range(100, 132))
        extra = IB()
        errors = Errors(extra)
        with pytest.raises(TimeoutError):
            await extra.connectAsync(gateway.host, gateway.port, clientId=200, timeout=2)
        assert 502 in errors.codes(-1)
        assert len(gateway.connected_client_ids()) == 32
        assert all(ib.isConnected() for ib in clients)
    finally:
        for ib in clients:
            ib.disconnect()
        await asyncio.sleep(0)
