"""IB's bad days in the simulated gateway, seen by unmodified ib_async 2.1.0 and ibapi 9.81:
server outages (1100 → 1102 / 1101), farm notices, market-data entitlements (354 / 10167 /
10168), competing live sessions (10197) and the CLI switches that schedule them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from ib_async import IB, Forex, LimitOrder, MarketOrder, Option
from test_sim_ibapi import App, app, ibapi_log  # noqa: F401 - fixtures for the ibapi tests
from test_sim_ibapi import aapl as ibapi_aapl
from test_sim_ibapi import order as ibapi_order
from test_sim_server import (
    CONNECT_TIMEOUT,
    Errors,
    aapl,
    async_test,
    connected,
    qualified,
    status,
    until,
)

from conftest import TRADING_CLOCK, later, wait_for
from sim_gateway import bad_days as bd
from sim_gateway.__main__ import parser
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings, bad_day_state


@pytest.fixture
def gateway(start_gateway: Callable[..., SimGateway]) -> SimGateway:
    return start_gateway()


# Clock seconds: an outage (or competing session) that lasts until the test moves the
# simulated clock past its end, and a fill due when the test moves the clock by FILL_DELAY.
OUTAGE = 120.0
FILL_DELAY = 30.0


# ----------------------------------------------------------------------------- outages
@async_test
async def test_outage_1100_farms_broken_orders_held_then_1102_delivers_the_fill(
    gateway: SimGateway,
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        resting = ib.placeOrder(stock, LimitOrder("BUY", 1, 1.0, tif="DAY"))
        await status(resting, "Submitted")
        gateway.outage(seconds=OUTAGE)  # until the test moves the clock past its end
        await until(lambda: 1100 in errors.codes(), what="1100")
        await until(lambda: {2103, 2105, 2157} <= set(errors.codes(-1)), what="farms broken")
        # an order placed now is held by the gateway: no answer while IB's servers are away
        held = ib.placeOrder(stock, MarketOrder("BUY", 2, tif="DAY"))
        await until(lambda: gateway.held()[0] == 1, what="the order held by the gateway")
        assert held.orderStatus.status == "PendingSubmit" and not held.fills
        assert gateway.outage_active()
        assert 1102 not in errors.codes()
        later(gateway, OUTAGE)  # the outage's end
        await until(lambda: 1102 in errors.codes(), timeout=6, what="1102")
        await until(lambda: {2104, 2106, 2158} <= set(errors.codes(-1)), what="farms OK")
        assert 1101 not in errors.codes()
        assert errors.text(1100) == "Connectivity between IB and Trader Workstation has been lost."
        await status(held, "Filled")  # processed after the outage, not lost
        assert ib.isConnected()


@async_test
async def test_a_broken_market_data_farm_stops_its_quotes_until_2104(gateway: SimGateway) -> None:
    """2103 with IB's servers reachable (no 1100): the usfarm's streams (AAPL) stop while the
    cashfarm's (EUR.USD) go on; 2104, and AAPL ticks again."""
    async with connected(gateway) as ib:
        errors = Errors(ib)
        stock, pair = await qualified(ib, aapl(), Forex("EURUSD"))
        ticks: dict[str, int] = {"AAPL": 0, "EUR": 0}

        def on_update(ticker: Any) -> None:
            ticks[ticker.contract.symbol] += 1

        for contract in (stock, pair):
            ib.reqMktData(contract).updateEvent += on_update
        await until(lambda: ticks["AAPL"] and ticks["EUR"], what="both streaming")
        gateway.farm_down()  # until farm_up
        await until(lambda: 2103 in errors.codes(-1), what="2103")
        assert errors.text(2103) == "Market data farm connection is broken:usfarm"
        # one socket: every tick sent before the notice came before it
        aapl_before, eur_before = ticks["AAPL"], ticks["EUR"]
        await until(lambda: ticks["EUR"] >= eur_before + 3, what="the cashfarm's stream going on")
        assert ticks["AAPL"] == aapl_before  # the usfarm's stream stopped
        assert 1100 not in errors.codes()
        late = IB()  # a client starting its session now is told so
        late_errors = Errors(late)
        await late.connectAsync(gateway.host, gateway.port, clientId=2, timeout=CONNECT_TIMEOUT)
        try:
            await until(lambda: 2104 in late_errors.codes(-1), what="the start notices")
            assert late_errors.text(2103) == "Market data farm connection is broken:usfarm"
            assert "usfarm" not in late_errors.text(2104)  # cashfarm's OK only
        finally:
            late.disconnect()
            await asyncio.sleep(0)  # let the transport finish closing on this loop
        gateway.farm_up()
        await until(lambda: 2104 in errors.codes(-1), what="2104")
        await until(lambda: ticks["AAPL"] > aapl_before, what="AAPL streaming again")


async def filling_soon(gateway: SimGateway, ib: Any) -> Any:
    """A market order of 3 AAPL acknowledged, its fill FILL_DELAY s of clock time away: due
    when the test moves the clock (``later``), however slow the machine."""
    [stock] = await qualified(ib, aapl())
    gateway.set_fill_delay(FILL_DELAY)
    trade = ib.placeOrder(stock, MarketOrder("BUY", 3, tif="DAY"))
    await status(trade, "PreSubmitted")
    return trade


async def filled_during_the_outage(gateway: SimGateway, errors: Errors) -> None:
    """Once the outage is told (1100), the order due to fill FILL_DELAY on fills at IB: its
    messages held by the gateway."""
    await until(lambda: 1100 in errors.codes(), what="1100")
    assert not gateway.executions()
    later(gateway, FILL_DELAY)
    await until(
        lambda: gateway.executions() and gateway.held()[1],
        timeout=4,
        what="the fill, its messages held",
    )


@async_test
async def test_fill_during_outage_is_delivered_after_1102(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        trade = await filling_soon(gateway, ib)
        gateway.outage(seconds=OUTAGE)
        await filled_during_the_outage(gateway, errors)
        assert [e.shares for e, _ in gateway.executions()] == [3]
        assert not trade.fills  # held by the gateway while IB's servers are unreachable
        assert gateway.outage_active() and 1102 not in errors.codes()
        later(gateway, OUTAGE)  # the outage's end
        await until(lambda: 1102 in errors.codes(), timeout=4, what="1102")
        await status(trade, "Filled")
        assert sum(f.execution.shares for f in trade.fills) == 3


@async_test
async def test_a_fill_can_arrive_during_1100_as_at_ib(gateway: SimGateway) -> None:
    """IB's gateway may pass fills on between its 1100s ("Fills can arrive during the
    window"): with ``through`` they reach the client before 1102, once."""
    async with connected(gateway) as ib:
        errors = Errors(ib)
        trade = await filling_soon(gateway, ib)
        gateway.outage(seconds=OUTAGE, through=True)
        await until(lambda: 1100 in errors.codes(), what="1100")
        assert not trade.fills
        later(gateway, FILL_DELAY)  # the fill happens at IB during the outage
        await status(trade, "Filled")
        assert 1102 not in errors.codes() and gateway.outage_active()
        later(gateway, OUTAGE)  # the outage's end
        await until(lambda: 1102 in errors.codes(), timeout=6, what="1102")
        assert sum(f.execution.shares for f in trade.fills) == 3  # not again at 1102


@async_test
async def test_outage_lost_1101_drops_messages_and_subscriptions_reconcile_finds_the_fill(
    gateway: SimGateway,
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        ticker = ib.reqMktData(stock)
        await until(lambda: ticker.last == ticker.last and ticker.last > 0, what="first ticks")
        gateway.set_fill_delay(FILL_DELAY)
        trade = ib.placeOrder(stock, MarketOrder("SELL", 4, tif="DAY"))
        await status(trade, "PreSubmitted")
        gateway.outage(seconds=OUTAGE, lost=True)
        await filled_during_the_outage(gateway, errors)
        later(gateway, OUTAGE)  # the outage's end
        await until(lambda: 1101 in errors.codes(), timeout=5, what="1101")
        assert 1102 not in errors.codes()
        # the fill happened at IB and nothing is held for later: its messages were dropped
        assert gateway.executions() and gateway.held() == (0, 0)
        assert (
            not trade.fills and trade.orderStatus.status == "PreSubmitted"
        )  # the message was lost
        assert gateway.live_streams() == 0  # the stream was dropped server-side: re-request it
        fills = await ib.reqExecutionsAsync()  # reconciliation finds the fill
        assert [
            f.execution.shares for f in fills if f.execution.orderId == trade.order.orderId
        ] == [4]
        ib.cancelMktData(stock)


@async_test
async def test_outage_repeats_1100_and_a_client_connecting_meanwhile_is_told(
    gateway: SimGateway,
) -> None:
    gateway.set_clock(speed=20)  # 1100 repeats every 10 s of clock time
    gateway.outage(seconds=30 * 20)  # 30 s of wall time at this speed; ended by stop()
    await until(lambda: gateway.outage_active(), what="outage")
    ib = IB()
    errors = Errors(ib)  # before connecting: the notices come with the connect
    await ib.connectAsync(gateway.host, gateway.port, clientId=3, timeout=5)
    try:
        assert errors.codes(-1)[:4] == [1100, 2103, 2105, 2157]
        await until(lambda: errors.codes().count(1100) >= 2, timeout=5, what="repeated 1100")
    finally:
        ib.disconnect()


def test_ibapi_sees_1100_and_1102(app: App, gateway: SimGateway) -> None:
    order_id = app.next_order_id()
    gateway.outage(seconds=600)  # until the test ends it
    app.wait_call("error", reqId=-1, errorCode=1100)
    app.wait_call("error", reqId=-1, errorCode=2103)
    app.placeOrder(order_id, ibapi_aapl(), ibapi_order("BUY", 1))
    wait_for(lambda: gateway.held()[0] == 1)  # the order waits for IB's servers
    assert not app.find("orderStatus", orderId=order_id)
    gateway.end_outage()
    assert not gateway.outage_active()  # over when the switch returns: 1102 sent
    with pytest.raises(RuntimeError, match="^no outage of ours is in progress$"):
        gateway.end_outage()  # once ended, there is none to end
    app.wait_call("error", reqId=-1, errorCode=1102, timeout=5)
    app.wait_call("orderStatus", orderId=order_id, status="Filled")
    app.wait_call("error", reqId=-1, errorCode=2104)


# ----------------------------------------------------------------------------- market data
async def _snapshot_answer(gw: SimGateway, data_type: int) -> tuple[Any, Errors]:
    async with connected(gw) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        ib.reqMarketDataType(data_type)
        [ticker] = await ib.reqTickersAsync(stock)
        return ticker, errors


@async_test
async def test_entitled_account_gets_live_data_even_when_asking_for_delayed(
    gateway: SimGateway,
) -> None:
    ticker, errors = await _snapshot_answer(gateway, 3)
    assert ticker.bid > 0 and ticker.marketDataType == 1
    assert not {354, 10167, 10168} & set(errors.codes())


@async_test
async def test_no_subscription_live_request_354_delayed_request_10167_delayed_ticks(
    start_gateway: Callable[..., SimGateway],
) -> None:
    gw = start_gateway(market_data="delayed")
    ticker, errors = await _snapshot_answer(gw, 1)
    assert 354 in errors.codes() and ticker.bid != ticker.bid  # nan: no price at all
    assert "Delayed market data is available.AAPL" in errors.text(354)
    ticker, errors = await _snapshot_answer(gw, 3)
    assert 10167 in errors.codes() and ticker.marketDataType == 3
    assert ticker.bid > 0 and ticker.ask > ticker.bid and ticker.last > 0
    ticker, errors = await _snapshot_answer(gw, 4)
    assert ticker.marketDataType == 4 and ticker.last > 0


@async_test
async def test_delayed_data_lags_the_market(start_gateway: Callable[..., SimGateway]) -> None:
    """IB's delayed data are 15-20 minutes old: the simulator sent the live price with delayed
    tick ids (the delayed ask was what a market order filled at that moment), so nothing in
    the tests ever met a stale quote. A delayed stream shows the price of 15 minutes ago: the
    start price while the session is younger."""
    gw = start_gateway(market_data="delayed", clock_speed=20.0)  # 20 s of market a second
    async with connected(gw) as ib:
        [stock] = await qualified(ib, aapl())
        ib.reqMarketDataType(3)
        ticker = ib.reqMktData(stock)
        await until(lambda: ticker.last == ticker.last and ticker.last > 0, what="delayed last")
        start = ticker.last

        def live_last() -> float:
            return gw.broker_call(lambda broker: broker.quote(stock.conId).last)

        await until(lambda: abs(live_last() - start) >= 0.05, timeout=10, what="the market moves")
        await asyncio.sleep(0.5)  # delayed ticks keep coming meanwhile
        assert ticker.last == start and ticker.marketDataType == 3
        delayed = gw.broker_call(lambda broker: broker.delayed_quote(stock.conId))
        assert delayed.last == start != live_last()
        ib.cancelMktData(stock)
        # an option's delayed computations are made on the delayed underlying too
        [call] = await qualified(ib, Option("AAPL", "20261218", 200, "C", "SMART"))
        rows = gw.broker_call(lambda broker: broker.option_greeks(call.conId, delayed=True))
        assert rows[13].und_price == pytest.approx(start)


def test_a_delayed_quote_is_the_quote_of_its_delay_ago() -> None:
    from sim_gateway.prices import PriceBook

    book = PriceBook(
        {1: (190.0, 0.01)}, seed=7, volatility=0.01, step_seconds=1.0, origin=0.0, delay_steps=3
    )
    lasts = [book.quote(1).last]
    for _ in range(8):
        book.step()
        lasts.append(book.quote(1).last)
    assert len(set(lasts)) > 3  # the market moved
    assert book.delayed_quote(1).last == lasts[-4]  # three steps ago
    assert book.delayed_quote(1).high == book.quote(1).high  # the day's, as now


@async_test
async def test_no_data_at_all_354_and_10168(start_gateway: Callable[..., SimGateway]) -> None:
    gw = start_gateway(market_data="none")
    ticker, errors = await _snapshot_answer(gw, 1)
    assert 354 in errors.codes() and errors.text(354) == "Requested market data is not subscribed."
    ticker, errors = await _snapshot_answer(gw, 3)
    assert errors.codes().count(10168) == 1
    assert ticker.last != ticker.last and ticker.bid != ticker.bid


@async_test
async def test_no_api_subscription_10089_no_ticks_live_delayed_ticks_follow_it(
    start_gateway: Callable[..., SimGateway],
) -> None:
    """IB's other wording of the same lack (a paper account's): 10089, with no ticks for a live
    request, and an advisory the delayed ticks follow for a delayed one."""
    gw = start_gateway(market_data="api-delayed")
    ticker, errors = await _snapshot_answer(gw, 1)
    assert errors.codes() == [10089] and ticker.bid != ticker.bid
    assert errors.text(10089).startswith("Requested market data requires additional subscription")
    assert errors.text(10089).endswith("Delayed market data is available.AAPL NASDAQ/TOP/ALL")
    ticker, errors = await _snapshot_answer(gw, 3)
    assert errors.codes() == [10089] and ticker.marketDataType == 3
    assert ticker.bid > 0 and ticker.ask > ticker.bid and ticker.last > 0


def test_ibapi_sees_354_then_10167_and_delayed_tick_ids(
    start_gateway: Callable[..., SimGateway], ibapi_log: list
) -> None:
    gw = start_gateway(market_data="delayed")
    client = App()
    client.connect("127.0.0.1", gw.port, 5)
    client.start_loop()
    try:
        client.wait_call("nextValidId")
        client.reqMktData(11, ibapi_aapl(), "", False, False, [])
        assert "not subscribed" in client.wait_call("error", reqId=11, errorCode=354)["errorString"]
        client.reqMarketDataType(3)
        client.reqMktData(12, ibapi_aapl(), "", False, False, [])
        client.wait_call("error", reqId=12, errorCode=10167)
        client.wait_call("tickPrice", reqId=12, tickType=68)
        assert not client.find("tickPrice", reqId=11) and not client.find(
            "tickPrice", reqId=12, tickType=4
        )
        client.reqMktData(13, ibapi_option(), "", False, False, [])  # delayed option computations
        for tick_type in (80, 81, 82, 83):  # bid, ask, last, model
            client.wait_call("tickOptionComputation", reqId=13, tickType=tick_type)
        assert not [
            c
            for c in client.find("tickOptionComputation", reqId=13)
            if c["tickType"] in (10, 11, 12, 13)
        ]
    finally:
        client.disconnect()


def ibapi_option() -> Any:
    """The AAPL 200 call of the simulator's 2026-12-18 expiry, as an ibapi contract."""
    contract = ibapi_aapl()
    contract.secType, contract.lastTradeDateOrContractMonth = "OPT", "20261218"
    contract.strike, contract.right, contract.multiplier = 200.0, "C", "100"
    return contract


@async_test
async def test_competing_session_10197_stops_live_ticks_and_refuses_new_requests(
    gateway: SimGateway,
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        ticker = ib.reqMktData(stock)
        await until(lambda: ticker.last > 0, what="first ticks")
        assert gateway.live_streams() == 1
        gateway.competing_session(seconds=OUTAGE)  # until the test moves the clock past it
        await until(lambda: 10197 in errors.codes(), what="10197")
        assert errors.text(10197) == "No market data during competing live session"
        stopped = ticker.time
        assert gateway.live_streams() == 0  # the stream stopped at the gateway with its 10197
        ib.cancelMktData(stock)
        await ib.reqTickersAsync(stock)
        assert errors.codes().count(10197) == 2  # a new request is refused too
        assert gateway.competing_active()
        later(gateway, OUTAGE)  # the other session logs out
        await until(
            lambda: not gateway.competing_active(), timeout=5, what="the other session logged out"
        )
        [snap] = await ib.reqTickersAsync(stock)
        assert snap.time is not None and stopped is not None and snap.time > stopped
        assert snap.bid > 0
        assert errors.codes().count(10197) == 2


# ----------------------------------------------------------------------------- switches
def test_window_and_nightly_parsing() -> None:
    origin = TRADING_CLOCK
    assert bd.parse_window("30:60", origin) == bd.Window(origin + 30, origin + 90, False)
    assert bd.parse_window("2026-11-30T23:50:00-05:00:600:lost", origin).lost
    through = bd.parse_window("30:60:through", origin)
    assert through.through and not through.lost and through.end == origin + 90
    assert (
        bd.parse_window("2026-11-30T23:50:00-05:00:600", origin).end
        - bd.parse_window("2026-11-30T23:50:00-05:00:600", origin).start
        == 600
    )
    for bad in ("60", "x:60", "30:-1", "30:0", "2026-11-30T23:50:00:60"):
        with pytest.raises(ValueError):
            bd.parse_window(bad, origin)
    with pytest.raises(ValueError):
        bd.parse_window("30:60:lost", origin, allow_lost=False)
    nightly = bd.parse_nightly("23:45/300")
    at = bd.parse_window("2026-11-30T23:46:00-05:00:1", 0).start
    window = nightly.window(at)
    assert window is not None and window.end - window.start == 300 and not window.lost
    assert nightly.window(at + 600) is None
    assert nightly.next_start(at + 600) - window.start == 86400
    past_midnight = bd.parse_nightly("23:58/300/lost").window(
        bd.parse_window("2026-12-01T00:01:00-05:00:1", 0).start
    )
    assert past_midnight is not None and past_midnight.lost
    for bad in ("23:45", "25:00/10", "23:45/0", "23:45/10/x"):
        with pytest.raises(ValueError):
            bd.parse_nightly(bad)


def test_cli_switches_reach_the_gateway_settings() -> None:
    assert parser().parse_args([]).nightly_reset == bd.DEFAULT_NIGHTLY  # on, as IB does it
    assert parser().parse_args(["--no-nightly-reset"]).nightly_reset is None
    assert parser().parse_args([]).outage == [] and parser().parse_args([]).competing_session == []
    args = parser().parse_args(
        [
            "--market-data-subscriptions",
            "none",
            "--outage",
            "30:60:lost",
            "--outage",
            "120:5",
            "--competing-session",
            "10:20",
        ]
    )
    assert args.market_data_subscriptions == "none" and args.nightly_reset == bd.DEFAULT_NIGHTLY
    state = bad_day_state(
        ServerSettings(
            market_data=args.market_data_subscriptions,
            outages=tuple(args.outage),
            nightly_reset=args.nightly_reset,
            competing_sessions=tuple(args.competing_session),
        ),
        0.0,
    )
    assert state.entitlement is bd.Entitlement.NONE
    assert [w.lost for w in state.outages.windows] == [True, False]
    assert state.outages.nightly == bd.Nightly(bd.parse_nightly("23:45/300").at, 300.0)
    with pytest.raises(SystemExit):
        parser().parse_args(["--market-data-subscriptions", "some"])


def test_nightly_reset_on_the_simulated_clock(start_gateway: Callable[..., SimGateway]) -> None:
    evening = bd.parse_window("2026-11-30T23:40:00-05:00:1", 0).start
    reset = bd.parse_window("2026-11-30T23:45:00-05:00:1", 0).start
    # the simulated clock at twice real time; the test moves it to 23:45 and past the reset
    gw = start_gateway(clock_start=evening, clock_speed=2.0, nightly_reset="23:45/60")

    async def run() -> None:
        ib = IB()
        errors = Errors(ib)  # before connecting: the notices come with the connect
        await ib.connectAsync(gw.host, gw.port, clientId=1, timeout=CONNECT_TIMEOUT)
        try:
            await ib.reqCurrentTimeAsync()
            assert 1100 not in errors.codes() and not gw.outage_active()  # not 23:45 yet
            gw.set_clock(when=reset)
            await until(lambda: 1100 in errors.codes(), timeout=4, what="1100 at 23:45")
            assert gw.outage_active() and 1102 not in errors.codes()
            gw.set_clock(when=reset + 60)
            await until(lambda: 1102 in errors.codes(), timeout=5, what="1102 at 23:46")
        finally:
            ib.disconnect()
            await asyncio.sleep(0)  # let the transport finish closing on this loop

    asyncio.run(asyncio.wait_for(run(), 20))


# ----------------------------------------------------------------------------- historical data
@async_test
async def test_historical_bars_end_at_the_current_price(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        bars = await ib.reqHistoricalDataAsync(
            stock, "", "1 D", "5 mins", "TRADES", True, timeout=5
        )
        assert len(bars) == 288
        assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
        assert bars[1].date - bars[0].date == (bars[-1].date - bars[-2].date)
        [ticker] = await ib.reqTickersAsync(stock)
        assert abs(bars[-1].close - ticker.last) / ticker.last < 0.01
        daily = await ib.reqHistoricalDataAsync(
            stock, "", "1 M", "1 day", "TRADES", True, timeout=5
        )
        assert len(daily) == 30 and not hasattr(daily[0].date, "hour")


@async_test
async def test_historical_pacing_162_identical_within_15s_and_six_within_2s(
    gateway: SimGateway,
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        first = await ib.reqHistoricalDataAsync(
            stock, "", "1800 S", "5 secs", "TRADES", True, timeout=5
        )
        assert len(first) == 360
        again = await ib.reqHistoricalDataAsync(
            stock, "", "1800 S", "5 secs", "TRADES", True, timeout=5
        )
        assert list(again) == [] and errors.codes().count(162) == 1
        assert "pacing violation" in errors.text(162)
        for minutes in range(2, 6):  # different requests: 5 for the contract within 2 s
            got = await ib.reqHistoricalDataAsync(
                stock, "", f"{minutes * 60} S", "5 secs", "TRADES", True, timeout=5
            )
            assert got
        sixth = await ib.reqHistoricalDataAsync(
            stock, "", "420 S", "5 secs", "TRADES", True, timeout=5
        )
        assert list(sixth) == [] and errors.codes().count(162) == 2
        minute_bars = await ib.reqHistoricalDataAsync(
            stock, "", "1800 S", "1 min", "TRADES", True, timeout=5
        )
        assert len(minute_bars) == 30  # bars above 30 s are not paced


def test_historical_pacer_sixty_in_ten_minutes_bid_ask_counts_twice() -> None:
    from sim_gateway.historical import HistoricalPacer, ReqHistoricalData
    from sim_gateway.types import ContractQuery

    def request(i: int, what: str = "TRADES") -> ReqHistoricalData:
        return ReqHistoricalData(
            1, ContractQuery(symbol="X"), "", "1 secs", f"{i} S", True, what, 1, False
        )

    pacer = HistoricalPacer()
    for i in range(60):  # spread over 9.5 minutes, different contracts
        assert pacer.admit(request(i + 1), con_id=i, now=i * 9.5) is None
    assert (
        pacer.admit(request(999), con_id=999, now=570.5)
        == "more than 60 requests within 10 minutes"
    )
    assert pacer.admit(request(999), con_id=999, now=600.5) is None  # the first one aged out
    pacer = HistoricalPacer()
    for i in range(30):
        assert pacer.admit(request(i + 1, "BID_ASK"), con_id=i, now=i * 10.0) is None
    assert pacer.admit(request(99), con_id=99, now=300.0) is not None


def test_ibapi_gets_historical_bars(app: App, gateway: SimGateway) -> None:
    app.historicalData = lambda reqId, bar: app._record("historicalData", reqId=reqId, bar=bar)
    app.historicalDataEnd = lambda reqId, start, end: app._record("historicalDataEnd", reqId=reqId)
    app.reqHistoricalData(21, ibapi_aapl(), "", "1 D", "1 hour", "TRADES", 1, 1, False, [])
    app.wait_call("historicalDataEnd", reqId=21)
    bars = app.find("historicalData", reqId=21)
    assert len(bars) == 24 and all(b["bar"].high >= b["bar"].low > 0 for b in bars)
    assert bars[0]["bar"].date.endswith("US/Eastern") and isinstance(bars[0]["bar"].volume, int)


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_a_delay_that_is_no_number_of_seconds_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="delayed_data_seconds"):
        BrokerConfig(delayed_data_seconds=seconds)
