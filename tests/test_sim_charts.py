"""The trader's screen in the simulated gateway, seen by unmodified ib_async 2.1.0 and ibapi 9.81:
historical bars from one price process (joining the live ticks), keepUpToDate, head time stamps,
5-second real-time bars, P&L pushed as prices move, symbol search, the market data line limit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from ib_async import Forex, MarketOrder, Stock
from ibapi.common import BarData
from test_sim_ibapi import App, app, assert_healthy, buy_filled, ibapi_log  # noqa: F401 - fixtures for the ibapi tests
from test_sim_ibapi import aapl as ibapi_aapl
from test_sim_server import Errors, aapl, async_test, connected, qualified, until

from conftest import TRADING_CLOCK
from sim_gateway.controller import SimGateway

ACCOUNT = "DU1234567"


@pytest.fixture
def gateway(start_gateway: Callable[..., SimGateway]) -> SimGateway:
    return start_gateway(clock_speed=10.0)  # 10 simulated seconds a second: bars finish fast


@pytest.fixture
def fast_gateway(start_gateway: Callable[..., SimGateway]) -> SimGateway:
    return start_gateway(clock_speed=60.0)  # a 1-minute bar in 1 s


def consistent(bar: Any) -> bool:
    first = getattr(bar, "open", None) or bar.open_  # ib_async's RealTimeBar has open_
    return bar.low <= min(first, bar.close) <= max(first, bar.close) <= bar.high


# ----------------------------------------------------------------------------- ib_async
@async_test
async def test_bar_sizes_aggregate_one_process_and_end_at_the_live_price(
    start_gateway: Callable[..., SimGateway],
) -> None:
    async with connected(start_gateway()) as ib:
        [stock] = await qualified(ib, aapl())
        ticker = ib.reqMktData(stock)
        lasts: set[float] = set()
        ticker.updateEvent += lambda t: lasts.add(t.last)
        await until(lambda: lasts, what="a first quote")
        minutes = await ib.reqHistoricalDataAsync(
            stock, "", "1 D", "1 min", "TRADES", False, timeout=5
        )
        hours = await ib.reqHistoricalDataAsync(
            stock, "", "1 D", "1 hour", "TRADES", False, timeout=5
        )
        days = await ib.reqHistoricalDataAsync(
            stock, "", "1 Y", "1 day", "TRADES", False, timeout=10
        )
        assert len(minutes) == 1440 and len(hours) == 24 and len(days) == 365
        assert all(consistent(b) for b in [*minutes, *hours, *days])
        # an hour bar is its sixty minutes: same open, close, extremes and volume
        last_full = hours[-2]
        inside = [m for m in minutes if last_full.date <= m.date < hours[-1].date]
        assert len(inside) == 60
        assert inside[0].open == last_full.open and inside[-1].close == last_full.close
        assert max(m.high for m in inside) == last_full.high
        assert min(m.low for m in inside) == last_full.low
        assert sum(m.volume for m in inside) == last_full.volume
        # the same request later gives the same history (one process, not a fresh walk)
        again = await ib.reqHistoricalDataAsync(
            stock, "", "1 D", "1 hour", "TRADES", False, timeout=5
        )
        assert [b.close for b in again[:-2]] == [
            b.close for b in hours[len(hours) - len(again) : -2]
        ]
        # joins the live quote with no gap: the last bar closes at a price the stream showed
        assert minutes[-1].close in lasts and hours[-1].close in lasts
        # midpoint / bid / ask: no volume, bid below ask by two ticks
        bid = await ib.reqHistoricalDataAsync(
            stock, "", "3600 S", "5 mins", "BID", False, timeout=5
        )
        ask = await ib.reqHistoricalDataAsync(
            stock, "", "3600 S", "5 mins", "ASK", False, timeout=5
        )
        assert bid[0].volume == -1 and round(ask[0].close - bid[0].close, 2) == 0.02


@pytest.mark.slow
@async_test
async def test_keep_up_to_date_streams_the_last_bar(fast_gateway: SimGateway) -> None:
    async with connected(fast_gateway) as ib:
        [stock] = await qualified(ib, aapl())
        ticker = ib.reqMktData(stock)
        lasts: set[float] = set()
        ticker.updateEvent += lambda t: lasts.add(t.last)
        bars = await ib.reqHistoricalDataAsync(
            stock, "", "3600 S", "1 min", "TRADES", False, keepUpToDate=True, timeout=5
        )
        count = len(bars)
        updates: list[Any] = []
        bars.updateEvent += lambda b, has_new_bar: updates.append(has_new_bar)
        await until(lambda: True in updates, timeout=10, what="a new bar (60 simulated seconds)")
        assert len(bars) > count and consistent(bars[-1])
        assert bars[-1].close in lasts  # the live bar closes at a price the quote stream showed
        ib.cancelHistoricalData(bars)
        errors = Errors(ib)
        await ib.reqHistoricalDataAsync(
            stock,
            "20261130 09:00:00 US/Eastern",
            "3600 S",
            "1 min",
            "TRADES",
            False,
            keepUpToDate=True,
            timeout=5,
        )
        await until(lambda: 162 in errors.codes(), what="162 for an end date with live updates")


@pytest.mark.slow
@async_test
async def test_head_timestamp_real_time_bars_and_fx_has_no_trades(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock, pair] = await qualified(ib, aapl(), Forex("EURUSD"))
        head = await ib.reqHeadTimeStampAsync(stock, "TRADES", False, 1)
        assert 365 <= (TRADING_CLOCK - head.timestamp()) / 86400 <= 367
        bars = ib.reqRealTimeBars(stock, 5, "TRADES", False)
        await until(lambda: len(bars) >= 3, timeout=10, what="three 5 s bars")
        assert [int(b.time.timestamp()) % 5 for b in bars] == [0] * len(bars)
        assert all(consistent(b) and b.volume > 0 for b in bars)
        assert bars[1].time.timestamp() - bars[0].time.timestamp() == 5
        ib.cancelRealTimeBars(bars)
        trades = await ib.reqHistoricalDataAsync(
            pair, "", "1 D", "1 hour", "TRADES", False, timeout=5
        )
        assert list(trades) == [] and "No historical market data" in errors.text(162)
        mid = await ib.reqHistoricalDataAsync(
            pair, "", "1 D", "1 hour", "MIDPOINT", False, timeout=5
        )
        assert len(mid) == 24 and 0.5 < mid[-1].close < 2


@pytest.mark.slow
@async_test
async def test_pnl_and_portfolio_move_with_the_market(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        trade = ib.placeOrder(stock, MarketOrder("BUY", 100, tif="DAY"))
        await until(lambda: trade.orderStatus.status == "Filled", what="fill")
        pnl = ib.reqPnL(ACCOUNT)
        single = ib.reqPnLSingle(ACCOUNT, "", stock.conId)
        seen: set[float] = set()
        prices: set[float] = set()

        def record() -> None:
            seen.add(single.unrealizedPnL)
            prices.update(item.marketPrice for item in ib.portfolio())

        ib.pnlSingleEvent += lambda _: record()
        await until(
            lambda: len(seen) >= 2 and len(prices) >= 2,
            timeout=10,
            what="marks pushed again without a fill",
        )
        await asyncio.sleep(0)
        # the account figure is the sum of its rows (one position here)
        await until(lambda: pnl.unrealizedPnL == single.unrealizedPnL, timeout=5)
        item = next(i for i in ib.portfolio() if i.contract.conId == stock.conId)
        assert single.value == pytest.approx(item.marketValue, abs=100 * 0.05)


@async_test
async def test_matching_symbols_stocks_and_fx(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        found = [d.contract for d in await ib.reqMatchingSymbolsAsync("EUR") or [] if d.contract]
        assert found and {c.secType for c in found} == {"CASH"}
        assert "EUR" in {c.symbol for c in found}
        apple = await ib.reqMatchingSymbolsAsync("aap")
        assert apple and apple[0].contract is not None and apple[0].contract.symbol == "AAPL"
        assert apple[0].contract.conId == 265598 and "OPT" in apple[0].derivativeSecTypes
        assert await ib.reqMatchingSymbolsAsync("ZZZZQ") == []


@async_test
async def test_market_data_lines_limit_gives_101(start_gateway: Callable[..., SimGateway]) -> None:
    gw = start_gateway(market_data_lines=2)
    async with connected(gw) as ib:
        errors = Errors(ib)
        contracts = await qualified(
            ib, aapl(), Stock("MSFT", "SMART", "USD"), Stock("NVDA", "SMART", "USD")
        )
        for contract in contracts:
            ib.reqMktData(contract)
        await until(lambda: 101 in errors.codes(), what="101 for the third line")
        assert "Max number of tickers" in errors.text(101)
        ib.cancelMktData(contracts[0])
        await until(lambda: gw.market_data_lines() == 1, what="line released")
        ib.reqMktData(contracts[2])
        await until(lambda: gw.market_data_lines() == 2, what="the freed line reused")


@async_test
async def test_a_bar_request_reports_its_own_error_not_the_quote_lines(
    start_gateway: Callable[..., SimGateway],
) -> None:
    """No market data subscription: the chart's bars are refused with 162 while the quote line
    of the same contract, asked right after, gets 10168. The chart says 162 (its request's)."""
    from history import BarsKey, HistoryRefused, fetch_bars

    gw = start_gateway(market_data="none")
    async with connected(gw) as ib:
        errors = Errors(ib)
        [contract] = await qualified(ib, aapl())
        ib.reqMarketDataType(3)  # delayed when not subscribed, as the app asks
        key = BarsKey("AAPL", "STK", "1 D", "5 mins", "TRADES")
        gw.stall(0.3)  # the answers are held, then sent in one burst (as a busy gateway does)
        bars = asyncio.ensure_future(fetch_bars(ib, contract, key, timeout=5))
        await asyncio.sleep(0)  # the bar request goes out first ...
        for _ in range(3):  # ... then quote lines: their 10168 arrive after the bars' 162
            ib.reqMktData(contract)
        with pytest.raises(HistoryRefused) as refused:
            await bars
        assert "IB error 162" in str(refused.value), refused.value
        assert "No market data permissions" in str(refused.value)
        await until(lambda: 10168 in errors.codes(), what="10168 for the quote line")


@async_test
async def test_historical_bars_need_a_live_subscription(
    start_gateway: Callable[..., SimGateway],
) -> None:
    """IB serves historical data only with Level 1 real-time data: an account with delayed
    data only gets 162 for a stock's bars (it got them, so the app's charts on a delayed paper
    account were never refused in tests); its free live FX quotes give an FX pair's bars."""
    gw = start_gateway(market_data="delayed")
    gw.set_market_data_subscriptions("delayed", fx="live")
    async with connected(gw) as ib:
        errors = Errors(ib)
        [stock, pair] = await qualified(ib, aapl(), Forex("EURUSD"))
        ib.reqMarketDataType(3)
        bars = await ib.reqHistoricalDataAsync(stock, "", "1800 S", "1 min", "TRADES", False)
        assert not bars
        await until(lambda: 162 in errors.codes(), what="162 for the stock's bars")
        assert "No market data permissions" in errors.text(162)
        fx = await ib.reqHistoricalDataAsync(pair, "", "1800 S", "1 min", "MIDPOINT", False)
        assert len(fx) == 30


# ----------------------------------------------------------------------------- ibapi 9.81
@pytest.mark.slow
def test_ibapi_historical_keep_up_to_date_real_time_bars_pnl_and_symbols(app: App) -> None:
    def historical(req_id: int, bar: BarData) -> None:
        app._record("historicalData", reqId=req_id, bar=bar)

    def update(req_id: int, bar: BarData) -> None:
        app._record("historicalDataUpdate", reqId=req_id, bar=bar)

    app.historicalData = historical
    app.historicalDataEnd = lambda req_id, start, end: app._record(
        "historicalDataEnd", reqId=req_id
    )
    app.historicalDataUpdate = update
    app.realtimeBar = lambda req_id, t, o, h, lo, c, v, wap, n: app._record(
        "realtimeBar", reqId=req_id, time=t, high=h, low=lo, volume=v
    )
    app.headTimestamp = lambda req_id, stamp: app._record(
        "headTimestamp", reqId=req_id, stamp=stamp
    )
    app.pnl = lambda req_id, daily, unrealized, realized: app._record(
        "pnl", reqId=req_id, unrealized=unrealized
    )
    app.pnlSingle = lambda req_id, pos, daily, unrealized, realized, value: app._record(
        "pnlSingle", reqId=req_id, pos=pos, unrealized=unrealized
    )
    app.symbolSamples = lambda req_id, rows: app._record("symbolSamples", reqId=req_id, rows=rows)

    app.reqHistoricalData(1, ibapi_aapl(), "", "1 D", "5 mins", "TRADES", 0, 1, True, [])
    app.wait_call("historicalDataEnd", reqId=1)
    assert len(app.find("historicalData", reqId=1)) == 288
    app.wait_call("historicalDataUpdate", reqId=1, timeout=10)
    app.cancelHistoricalData(1)

    app.reqHeadTimeStamp(2, ibapi_aapl(), "TRADES", 0, 1)
    assert app.wait_call("headTimestamp", reqId=2)["stamp"].startswith("2025")

    app.reqRealTimeBars(3, ibapi_aapl(), 5, "TRADES", False, [])
    app.wait_for(lambda calls: len(app.find("realtimeBar", calls, reqId=3)) >= 2, timeout=15)
    app.cancelRealTimeBars(3)

    app.reqMatchingSymbols(4, "EUR")
    rows = app.wait_call("symbolSamples", reqId=4)["rows"]
    assert rows and rows[0].contract.secType == "CASH"

    buy_filled(app, 10)
    app.reqPnL(5, ACCOUNT, "")
    app.reqPnLSingle(6, ACCOUNT, "", 265598)
    app.wait_for(
        lambda calls: len({c["unrealized"] for c in app.find("pnlSingle", calls, reqId=6)}) >= 3,
        timeout=10,
    )
    assert app.find("pnl", reqId=5)
    assert_healthy(app)
