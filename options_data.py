"""Option chains and option quote boards, asked of the broker on the reader's loop.

``chain``: the expiries and strikes of an underlying's options (reqSecDefOptParams, one row per
exchange and trading class; merged here per trading class). ``board``: one expiry's calls and
puts around the money, each with bid/ask/last and the model's implied volatility and greeks
(snapshot quotes: IB sends tickOptionComputation with an option's prices).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from ib_async import IB, Contract, Option, Stock, Ticker

import market_data
from instruments import describe, multiplier_of

log = logging.getLogger(__name__)

CALL_TIMEOUT = 5.0
BOARD_TIMEOUT = 15.0
PREFERRED_EXCHANGE = "SMART"


@dataclass(frozen=True)
class TradingClass:
    """The options of one trading class: every exchange's expiries and strikes, merged."""

    trading_class: str
    multiplier: float
    exchanges: tuple[str, ...]
    expirations: tuple[str, ...]  # YYYYMMDD, ascending
    strikes: tuple[float, ...]  # ascending


@dataclass(frozen=True)
class Chain:
    """An underlying and its listed options."""

    symbol: str
    under_con_id: int
    classes: tuple[TradingClass, ...]
    time: float


@dataclass(frozen=True)
class Leg:
    """One option of the board: prices and the model's figures (None: the broker sent none)."""

    con_id: int
    local_symbol: str
    description: str
    bid: float | None
    ask: float | None
    last: float | None
    implied_vol: float | None
    delta: float | None
    gamma: float | None
    vega: float | None
    theta: float | None


@dataclass(frozen=True)
class BoardRow:
    """One strike: its call and its put (None where the broker lists no such contract)."""

    strike: float
    call: Leg | None
    put: Leg | None


@dataclass(frozen=True)
class Board:
    """Calls | strike | puts of one expiry, strikes around the underlying's price."""

    symbol: str
    expiry: str
    trading_class: str
    multiplier: float
    under_price: float | None
    market_data: str
    rows: tuple[BoardRow, ...]
    time: float


class BadExpiry(ValueError):
    """The expiry is not one the broker lists for the underlying."""


async def _underlying(ib: IB, symbol: str) -> Contract:
    stock = Stock(symbol, "SMART", "USD")
    found = await asyncio.wait_for(ib.qualifyContractsAsync(stock), CALL_TIMEOUT)
    if not found or not isinstance(found[0], Contract):
        raise LookupError(f"unknown symbol {symbol!r} (STK)")
    return found[0]


async def chain(ib: IB, symbol: str) -> Chain:
    """The listed options of ``symbol``; LookupError when it is unknown or has none."""
    return await _chain(ib, await _underlying(ib, symbol))


async def _chain(ib: IB, under: Contract) -> Chain:
    symbol = under.symbol
    rows = await asyncio.wait_for(
        ib.reqSecDefOptParamsAsync(under.symbol, "", under.secType, under.conId), CALL_TIMEOUT
    )
    by_class: dict[str, list] = {}
    for row in rows:
        by_class.setdefault(row.tradingClass, []).append(row)
    if not by_class:
        raise LookupError(f"{symbol} has no listed options")
    classes = tuple(
        TradingClass(
            trading_class=name,
            multiplier=multiplier_of(group[0].multiplier),
            exchanges=tuple(sorted({r.exchange for r in group})),
            expirations=tuple(sorted({e for r in group for e in r.expirations})),
            strikes=tuple(sorted({float(s) for r in group for s in r.strikes})),
        )
        for name, group in sorted(by_class.items(), key=lambda item: item[0] != symbol)
    )
    return Chain(symbol=under.symbol, under_con_id=under.conId, classes=classes, time=time.time())


async def board(ib: IB, symbol: str, expiry: str, around: int) -> Board:
    """One expiry's options, ``around`` strikes each side of the money; BadExpiry when the
    expiry is not listed, LookupError when the symbol is unknown or has no options."""
    under = await _underlying(ib, symbol)
    listed = await _chain(ib, under)
    classes = [c for c in listed.classes if expiry in c.expirations]
    if not classes:
        shown = sorted({e for c in listed.classes for e in c.expirations})
        raise BadExpiry(
            f"{symbol} has no options expiring {expiry}; listed: {', '.join(shown[:12])}"
        )
    options = classes[0]
    [under_ticker] = await asyncio.wait_for(ib.reqTickersAsync(under), CALL_TIMEOUT)
    price = _price(under_ticker)
    strikes = _around(options.strikes, price, around)
    exchange = (
        PREFERRED_EXCHANGE if PREFERRED_EXCHANGE in options.exchanges else options.exchanges[0]
    )
    wanted = [
        Option(
            listed.symbol,
            expiry,
            strike,
            right,
            exchange,
            currency="USD",
            tradingClass=options.trading_class,
        )
        for strike in strikes
        for right in "CP"
    ]
    found = await asyncio.wait_for(ib.qualifyContractsAsync(*wanted), CALL_TIMEOUT)
    contracts = [c for c in found if isinstance(c, Contract) and c.conId]
    # no market_data.reset_ticker here: ib_async shares one Ticker per contract, and clearing
    # it would wipe the prices a risk-gate quote of the same option is reading (ib_connector)
    tickers = await asyncio.wait_for(ib.reqTickersAsync(*contracts), BOARD_TIMEOUT - 2)
    legs = {(t.contract.strike, t.contract.right): _leg(t) for t in tickers if t.contract}
    rows = tuple(
        BoardRow(strike, legs.get((strike, "C")), legs.get((strike, "P"))) for strike in strikes
    )
    return Board(
        symbol=listed.symbol,
        expiry=expiry,
        trading_class=options.trading_class,
        multiplier=options.multiplier,
        under_price=price,
        market_data=market_data.type_name(under_ticker.marketDataType),
        rows=rows,
        time=time.time(),
    )


def _around(strikes: tuple[float, ...], price: float | None, around: int) -> list[float]:
    """``around`` strikes each side of the one nearest ``price`` (the middle ones if none)."""
    if not strikes:
        return []
    if price is None:
        centre = len(strikes) // 2
    else:
        centre = min(range(len(strikes)), key=lambda i: abs(strikes[i] - price))
    return list(strikes[max(0, centre - around) : centre + around + 1])


def _price(ticker: Ticker) -> float | None:
    for value in (ticker.last, ticker.close):
        number = _num(value)
        if number is not None:
            return number
    bid, ask = _num(ticker.bid), _num(ticker.ask)
    return (bid + ask) / 2 if bid is not None and ask is not None else None


def _num(value: float | None) -> float | None:
    """A price as a number; ib_async's "no price" (nan, -1, None) as None."""
    if value is None or not math.isfinite(value) or value == -1.0:
        return None
    return float(value)


def _figure(value: float | None) -> float | None:
    """A model figure (ib_async already turned IB's -1/-2 "not computed" into None)."""
    return None if value is None or not math.isfinite(value) or value == -2.0 else float(value)


def _leg(ticker: Ticker) -> Leg:
    contract = ticker.contract
    assert contract is not None
    model = ticker.modelGreeks
    return Leg(
        con_id=contract.conId,
        local_symbol=contract.localSymbol,
        description=describe(
            contract.symbol,
            contract.secType,
            contract.lastTradeDateOrContractMonth,
            contract.strike,
            contract.right,
        ),
        bid=_num(ticker.bid),
        ask=_num(ticker.ask),
        last=_num(ticker.last),
        implied_vol=_figure(model.impliedVol) if model else None,
        delta=_figure(model.delta) if model else None,
        gamma=_figure(model.gamma) if model else None,
        vega=_figure(model.vega) if model else None,
        theta=_figure(model.theta) if model else None,
    )
