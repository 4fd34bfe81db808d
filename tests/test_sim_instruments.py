"""Options, futures, indices, ambiguous symbols, market rules and depth, with unmodified ib_async.

Every test runs against a gateway negotiating version 157 and one negotiating 178; each creates,
uses and disconnects its ``IB`` on one ``asyncio.run`` loop and waits on conditions only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from ib_async import (
    IB,
    ContFuture,
    Contract,
    Future,
    Index,
    LimitOrder,
    MarketOrder,
    Option,
    Stock,
    Trade,
)

from conftest import TRADING_CLOCK
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

VERSIONS = (157, 178)
AAPL_ID, SPX_ID = 265598, 416904
TEST_TIMEOUT = 30.0


@pytest.fixture(params=VERSIONS, ids=[f"v{v}" for v in VERSIONS])
def gateway(request: pytest.FixtureRequest) -> Any:
    settings = ServerSettings(
        max_version=request.param, clock_start=TRADING_CLOCK
    )  # inside a session
    gw = SimGateway(settings, BrokerConfig(seed=7)).start()
    yield gw
    gw.stop()


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), TEST_TIMEOUT))

    return run


async def until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or predicate}")
        await asyncio.sleep(0.01)
    return value


@contextlib.asynccontextmanager
async def connected(gw: SimGateway) -> AsyncIterator[IB]:
    ib = IB()
    await ib.connectAsync(gw.host, gw.port, clientId=1, timeout=3.0)
    try:
        yield ib
    finally:
        ib.disconnect()
        await asyncio.sleep(0)


class Errors:
    def __init__(self, ib: IB) -> None:
        self.items: list[tuple[int, int, str]] = []
        ib.errorEvent += lambda req_id, code, text, contract: self.items.append(
            (req_id, code, text)
        )

    def of(self, code: int) -> list[str]:
        return [text for _, c, text in self.items if c == code]


async def filled(ib: IB, contract: Contract, action: str, qty: float) -> Trade:
    trade = ib.placeOrder(contract, MarketOrder(action, qty, tif="DAY"))
    await until(lambda: trade.orderStatus.status == "Filled", what="fill")
    await until(
        lambda: trade.fills and all(f.commissionReport.execId for f in trade.fills),
        what="commission",
    )
    return trade


async def qualified(ib: IB, contract: Contract) -> Contract:
    [result] = await ib.qualifyContractsAsync(contract)
    assert result is contract, result
    return contract


# ----------------------------------------------------------------------------- options


async def atm_call(ib: IB) -> Option:
    """The AAPL call of the second expiry at the strike nearest 190 (AAPL's start price)."""
    chains = await ib.reqSecDefOptParamsAsync("AAPL", "", "STK", AAPL_ID)
    [smart] = [chain for chain in chains if chain.exchange == "SMART"]
    assert {chain.exchange for chain in chains} >= {"SMART", "CBOE"}
    assert (smart.tradingClass, smart.multiplier, int(smart.underlyingConId)) == (
        "AAPL",
        "100",
        AAPL_ID,
    )
    assert len(smart.expirations) >= 3 and len(smart.strikes) == 13
    strike = min(smart.strikes, key=lambda k: abs(k - 190))
    return Option("AAPL", sorted(smart.expirations)[1], strike, "C", "SMART")


@async_test
async def test_option_chain_qualify_quote_with_greeks_and_fill(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        option = await qualified(ib, await atm_call(ib))
        assert (
            option.conId > 0
            and option.multiplier == "100"
            and option.localSymbol.startswith("AAPL  ")
        )
        [details] = await ib.reqContractDetailsAsync(option)
        assert (details.underConId, details.underSymbol, details.marketRuleIds) == (
            AAPL_ID,
            "AAPL",
            "32",
        )

        ticker = ib.reqMktData(option)
        await until(
            lambda: ticker.modelGreeks and ticker.bidGreeks and ticker.askGreeks and ticker.bid > 0,
            what="option quote with greeks",
        )
        model, bid_greeks, ask_greeks = ticker.modelGreeks, ticker.bidGreeks, ticker.askGreeks
        assert model is not None and bid_greeks is not None and ask_greeks is not None
        assert (
            model.delta is not None and model.impliedVol is not None and model.optPrice is not None
        )
        assert (
            model.undPrice is not None
            and model.gamma is not None
            and bid_greeks.impliedVol is not None
        )
        assert (
            ask_greeks.impliedVol is not None and model.vega is not None and model.theta is not None
        )
        assert 0 < ticker.bid < ticker.ask and ticker.ask - ticker.bid < 0.1 * ticker.ask
        assert 0.3 < model.delta < 0.7 and model.gamma > 0 and model.vega > 0 and model.theta < 0
        assert 0.1 < model.impliedVol < 0.5 and abs(model.undPrice - 190) < 10
        assert ticker.bid <= model.optPrice <= ticker.ask
        assert bid_greeks.impliedVol < ask_greeks.impliedVol

        ask = ticker.ask
        trade = await filled(ib, option, "BUY", 2)
        [fill] = trade.fills
        assert fill.execution.price >= ticker.bid and abs(fill.execution.price - ask) < 0.1 * ask
        assert fill.commissionReport.commission == pytest.approx(1.30)  # 2 × 0.65
        await until(
            lambda: [p for p in ib.positions() if p.contract.conId == option.conId], what="position"
        )
        [position] = [p for p in ib.positions() if p.contract.conId == option.conId]
        assert position.avgCost == pytest.approx(fill.execution.price * 100 + 0.65)
        ib.cancelMktData(option)


def working_or_filled(trade: Trade) -> bool:
    return trade.orderStatus.status in ("Submitted", "Filled")


@async_test
async def test_an_option_priced_off_its_market_rule_gets_110(gateway: SimGateway) -> None:
    """Options trade in pennies below 3.00 and nickels from 3.00 (market rule 32): a limit of
    6.03 is refused with 110 like any off-tick price; 6.05 and 2.03 work."""
    async with connected(gateway) as ib:
        errors = Errors(ib)
        option = await qualified(ib, await atm_call(ib))
        off = ib.placeOrder(option, LimitOrder("BUY", 1, 6.03, tif="DAY"))
        await until(lambda: errors.of(110), what="error 110")
        assert [req for req, code, _ in errors.items if code == 110] == [off.order.orderId]
        for price in (6.05, 2.03):
            trade = ib.placeOrder(option, LimitOrder("BUY", 1, price, tif="DAY"))
            await until(functools.partial(working_or_filled, trade), what="ack")
        assert len(errors.of(110)) == 1


# ----------------------------------------------------------------------------- futures


@async_test
async def test_future_and_continuous_future_with_multiplier(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        front = await qualified(ib, ContFuture("ES", "CME"))
        assert (
            front.secType == "CONTFUT"
            and front.multiplier == "50"
            and front.localSymbol.startswith("ES")
        )
        future = await qualified(ib, Future("ES", front.lastTradeDateOrContractMonth[:6], "CME"))
        assert future.secType == "FUT" and future.conId == front.conId and future.multiplier == "50"
        [spx] = await ib.reqTickersAsync(await qualified(ib, Index("SPX", "CBOE")))
        [quote] = await ib.reqTickersAsync(future)
        assert (
            quote.bid < quote.ask and abs(quote.last / spx.last - 1) < 0.02
        )  # SPX carried to expiry

        await ib.reqAccountUpdatesAsync("DU1234567")
        trade = await filled(ib, future, "BUY", 1)
        price = trade.fills[0].execution.price
        assert trade.fills[0].commissionReport.commission == pytest.approx(0.85)
        await until(
            lambda: [p for p in ib.positions() if p.contract.conId == future.conId], what="position"
        )
        [position] = [p for p in ib.positions() if p.contract.conId == future.conId]
        assert (position.position, position.contract.multiplier) == (1, "50")
        assert position.avgCost == pytest.approx(price * 50 + 0.85)
        await until(
            lambda: [i for i in ib.portfolio() if i.contract.conId == future.conId],
            what="portfolio",
        )
        [item] = [i for i in ib.portfolio() if i.contract.conId == future.conId]
        assert item.marketValue == pytest.approx(item.marketPrice * 50, abs=0.01)
        assert item.unrealizedPNL == pytest.approx(item.marketValue - item.averageCost, abs=0.02)


@async_test
async def test_a_contract_month_names_the_future_not_its_last_trading_day(
    gateway: SimGateway,
) -> None:
    """CL's February contract stops trading in January: "YYYYMM" asks for the contract month
    (contractDetails.contractMonth), "YYYYMMDD" for the last trading day, as at IB."""
    async with connected(gateway) as ib:
        rows = await ib.reqContractDetailsAsync(Future("CL", exchange="NYMEX"))
        assert len(rows) == 3
        for details in rows:
            contract = details.contract
            assert contract is not None and len(details.contractMonth) == 6
            assert (
                contract.lastTradeDateOrContractMonth[:6] < details.contractMonth
            )  # a month before
            by_month = await qualified(ib, Future("CL", details.contractMonth, "NYMEX"))
            assert by_month.conId == contract.conId
            by_day = await qualified(
                ib, Future("CL", contract.lastTradeDateOrContractMonth, "NYMEX")
            )
            assert by_day.conId == contract.conId
        [es] = await ib.reqContractDetailsAsync(ContFuture("ES", "CME"))
        assert es.contractMonth == es.contract.lastTradeDateOrContractMonth[:6]  # type: ignore[union-attr]
        [option] = await ib.reqContractDetailsAsync(await atm_call(ib))
        assert option.contractMonth == option.contract.lastTradeDateOrContractMonth[:6]  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- indices, ambiguity


@async_test
async def test_index_quotes_have_no_bid_ask_and_cannot_be_traded(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        spx, vix = (
            await qualified(ib, Index("SPX", "CBOE")),
            await qualified(ib, Index("VIX", "CBOE")),
        )
        assert (spx.conId, spx.secType) == (SPX_ID, "IND")
        tickers = await ib.reqTickersAsync(spx, vix)
        assert abs(tickers[0].last - 5500) < 100 and abs(tickers[1].last - 15) < 2
        assert all(math.isnan(t.bid) and math.isnan(t.ask) and t.close > 0 for t in tickers)
        trade = ib.placeOrder(spx, MarketOrder("BUY", 1, tif="DAY"))
        await until(lambda: trade.orderStatus.status in ("Inactive", "Cancelled"), what="rejection")
        assert any("not tradable" in text for text in errors.of(201))


@async_test
async def test_ambiguous_symbol_lists_every_match_and_is_refused_for_data_and_orders(
    gateway: SimGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        vague = Future("ES", exchange="CME")
        details = await ib.reqContractDetailsAsync(vague)
        assert len(details) == 3 and len({d.contract.conId for d in details if d.contract}) == 3
        with caplog.at_level(logging.WARNING, logger="ib_async"):
            assert await ib.qualifyContractsAsync(vague) == [None]
        assert any("Ambiguous contract" in record.getMessage() for record in caplog.records)
        spy_options = await ib.reqContractDetailsAsync(Option("SPY", exchange="SMART", right="P"))
        assert len(spy_options) > 13
        # ib_async refuses to key a ticker or a trade by an unqualified contract: use its Client
        ib.client.reqMktData(ib.client.getReqId(), vague, "", False, False, [])
        ib.client.placeOrder(ib.client.getReqId(), vague, MarketOrder("BUY", 1, tif="DAY"))
        await until(lambda: len(errors.of(200)) == 2, what="error 200 twice")
        assert set(errors.of(200)) == {"The contract description specified for ES is ambiguous."}
        stock = await qualified(
            ib, Stock("AAPL", "SMART", "USD")
        )  # stocks are not confused with options
        assert stock.conId == AAPL_ID


# ----------------------------------------------------------------------------- market rules, depth


@async_test
async def test_market_rules_of_contract_details(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        [stock] = await ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD"))
        [future] = await ib.reqContractDetailsAsync(ContFuture("ES", "CME"))
        rules: dict[int, Any] = {}
        for details in (stock, future):
            for rule_id in {int(text) for text in details.marketRuleIds.split(",")}:
                rules[rule_id] = await ib.reqMarketRuleAsync(rule_id)
        assert [(i.lowEdge, i.increment) for i in rules[26]] == [(0.0, 0.01)]
        assert [(i.lowEdge, i.increment) for i in rules[67]] == [(0.0, 0.25)]
        option_rule: Any = await ib.reqMarketRuleAsync(32)
        assert [(i.lowEdge, i.increment) for i in option_rule] == [(0.0, 0.01), (3.0, 0.05)]


@async_test
async def test_market_depth_ten_levels_follow_the_quote(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        stock = await qualified(ib, Stock("AAPL", "SMART", "USD"))
        exchanges = await ib.reqMktDepthExchangesAsync()
        assert ("ISLAND", "STK") in {(e.exchange, e.secType) for e in exchanges}
        book = ib.reqMktDepth(stock, numRows=10)
        await until(
            lambda: len(book.domBids) == 10 and len(book.domAsks) == 10, what="ten levels a side"
        )
        bids, asks = (
            [level.price for level in book.domBids],
            [level.price for level in book.domAsks],
        )
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
        assert all(level.size > 0 for level in book.domBids + book.domAsks)
        [quote] = await ib.reqTickersAsync(Stock(conId=AAPL_ID, exchange="SMART"))
        first_bid = book.domBids[0].price
        assert abs(first_bid - quote.bid) < 1.0
        await until(
            lambda: book.domBids[0].price != first_bid,
            timeout=10,
            what="the book moving with the price",
        )
        assert len(book.domBids) == 10
        ib.cancelMktDepth(stock)

        smart = ib.reqMktDepth(
            await qualified(ib, ContFuture("ES", "CME")), numRows=5, isSmartDepth=True
        )
        await until(lambda: len(smart.domAsks) == 5, what="smart depth")
        assert (
            smart.domAsks[1].price - smart.domAsks[0].price == 0.25 and smart.domAsks[0].marketMaker
        )
        ib.reqMktDepth(await qualified(ib, Index("SPX", "CBOE")))
        await until(lambda: errors.of(10092), what="no depth for an index")
