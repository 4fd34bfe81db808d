"""Options and futures of the simulated gateway, priced off their underlyings.

The contracts are generated from the broker's start time (``now``): AAPL and SPY option chains
(the next two weekly and two monthly expiries, 13 strikes around the start price), ES and NQ
quarterly futures on the SPX and NDX indices and monthly CL futures on a hidden crude "spot"
path. None has a random walk of its own: an option is valued with Black-Scholes from its
underlying's current price (so bid/ask, greeks and fills move with the stock), a future is its
driver carried to expiry. Quotes are therefore consistent with the seeded price paths, and the
derived contracts add nothing to the saved price state.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from . import options_model as bs
from .prices import round_to_tick
from .types import Contract, Quote

EASTERN = ZoneInfo("America/New_York")
YEAR_SECONDS = 365.0 * 86400
RATE = 0.04
MONTH_CODES = "FGHJKMNQUVXZ"
OPTION_EXCHANGES = ("SMART", "AMEX", "CBOE")  # one reqSecDefOptParams row each
STRIKES_EACH_SIDE = 6
CL_SPOT_CON_ID = 17_000_001  # hidden path driving the CL futures (not a contract)
FAR_TICK = 0.05  # option prices from 3.00 up trade in nickels, below in pennies
FAR_FROM = 3.0


@dataclass(frozen=True)
class OptionClass:
    """An underlying with listed options."""

    symbol: str
    under_con_id: int
    long_name: str
    vol: float  # at-the-money volatility
    strike_step: float


@dataclass(frozen=True)
class FutureClass:
    """A futures product and the path that drives it."""

    symbol: str
    exchange: str
    multiplier: str
    tick: float
    long_name: str
    driver: int  # conId of the index (or hidden spot path) the future tracks
    driver_symbol: str
    carry: float  # annual cost of carry: F = S · exp(carry · T)
    months: str  # contract months as letters of MONTH_CODES
    count: int


OPTION_CLASSES = (
    OptionClass("AAPL", 265598, "APPLE INC", 0.25, 5.0),
    OptionClass("SPY", 756733, "SPDR S&P 500 ETF TRUST", 0.15, 5.0),
)
FUTURE_CLASSES = (
    FutureClass("ES", "CME", "50", 0.25, "E-mini S&P 500", 416904, "ES", 0.027, "HMUZ", 3),
    FutureClass("NQ", "CME", "20", 0.25, "E-mini NASDAQ 100", 416843, "NQ", 0.03, "HMUZ", 3),
    FutureClass(
        "CL",
        "NYMEX",
        "1000",
        0.01,
        "Light Sweet Crude Oil",
        CL_SPOT_CON_ID,
        "CL",
        0.02,
        MONTH_CODES,
        3,
    ),
)
HIDDEN_DRIVERS = {CL_SPOT_CON_ID: (75.0, 0.01)}  # conId → (start price, tick)


@dataclass(frozen=True)
class Chain:
    """One reqSecDefOptParams row."""

    exchange: str
    under_con_id: int
    trading_class: str
    multiplier: str
    expirations: tuple[str, ...]
    strikes: tuple[float, ...]


# ----------------------------------------------------------------------------- calendar


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _months_ahead(today: date, count: int) -> list[tuple[int, int]]:
    return [
        ((today.month - 1 + k) // 12 + today.year, (today.month - 1 + k) % 12 + 1)
        for k in range(count)
    ]


def _option_expiries(today: date) -> list[date]:
    """The next two Fridays and the next two monthly (third-Friday) expiries."""
    friday = today + timedelta(days=(4 - today.weekday()) % 7 or 7)
    weeklies = {friday, friday + timedelta(days=7)}
    monthlies = [d for d in (_third_friday(y, m) for y, m in _months_ahead(today, 3)) if d > today][
        :2
    ]
    return sorted(weeklies | set(monthlies))


def _business_days_back(day: date, count: int) -> date:
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    for _ in range(count):
        day -= timedelta(days=1)
        while day.weekday() >= 5:
            day -= timedelta(days=1)
    return day


def _last_trade(product: FutureClass, year: int, month: int) -> date:
    """Equity index futures: third Friday; CL: three business days before the 25th of the prior month."""
    if product.symbol != "CL":
        return _third_friday(year, month)
    prior = date(year, month, 1) - timedelta(days=1)
    return _business_days_back(prior.replace(day=25), 3)


def _future_months(product: FutureClass, today: date) -> list[tuple[int, int, date]]:
    rows = []
    for year, month in _months_ahead(today, 16):
        if MONTH_CODES[month - 1] in product.months:
            last = _last_trade(product, year, month)
            if last >= today:
                rows.append((year, month, last))
    return rows[: product.count]


def _expiry_time(day: date) -> float:
    return datetime.combine(day, time(16, 0), EASTERN).timestamp()


def _con_id(base: int, local_symbol: str) -> int:
    return base + zlib.crc32(local_symbol.encode()) % 90_000_000


# ----------------------------------------------------------------------------- contracts


def _strikes(spot: float, step: float) -> tuple[float, ...]:
    center = round(spot / step) * step
    return tuple(center + step * k for k in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1))


def _option(product: OptionClass, expiry: date, strike: float, right: str) -> Contract:
    local = f"{product.symbol:<6}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"
    return Contract(
        con_id=_con_id(800_000_000, local),
        symbol=product.symbol,
        sec_type="OPT",
        exchange="SMART",
        primary_exchange="",
        local_symbol=local,
        trading_class=product.symbol,
        long_name=product.long_name,
        multiplier="100",
        last_trade_date=f"{expiry:%Y%m%d}",
        contract_month=f"{expiry:%Y%m}",
        strike=strike,
        right=right,
        under_con_id=product.under_con_id,
        under_symbol=product.symbol,
        under_sec_type="STK",
        stock_type="",
    )


def _future(product: FutureClass, year: int, month: int, last: date) -> Contract:
    local = f"{product.symbol}{MONTH_CODES[month - 1]}{year % 10}"
    return Contract(
        con_id=_con_id(600_000_000, local),
        symbol=product.symbol,
        sec_type="FUT",
        exchange=product.exchange,
        primary_exchange=product.exchange,
        local_symbol=local,
        trading_class=product.symbol,
        long_name=product.long_name,
        min_tick=product.tick,
        multiplier=product.multiplier,
        last_trade_date=f"{last:%Y%m%d}",
        contract_month=f"{year}{month:02d}",
        under_con_id=product.driver if product.driver != CL_SPOT_CON_ID else 0,
        under_symbol=product.driver_symbol,
        under_sec_type="IND",
        time_zone_id="US/Central",
        stock_type="",
    )


# ----------------------------------------------------------------------------- pricing


@dataclass(frozen=True)
class _OptionSpec:
    contract: Contract
    vol: float
    expires: float  # epoch seconds


@dataclass(frozen=True)
class _FutureSpec:
    contract: Contract
    driver: int
    carry: float
    expires: float


def _option_tick(value: float) -> float:
    return FAR_TICK if value >= FAR_FROM else 0.01


def _smile(atm: float, strike: float, spot: float) -> float:
    """Volatility with a put skew: higher for low strikes."""
    moneyness = math.log(strike / spot)
    return min(3.0, max(0.05, atm * (1.0 - 0.8 * moneyness + 3.0 * moneyness * moneyness)))


def _years(expires: float, now: float) -> float:
    return max(expires - now, 0.0) / YEAR_SECONDS


class Derivatives:
    """The generated option and futures contracts and their derived quotes."""

    def __init__(self, now: float, spots: dict[int, float]) -> None:
        """``spots``: start prices of the underlyings (centre of each strike grid)."""
        today = datetime.fromtimestamp(now, EASTERN).date()
        self._options: dict[int, _OptionSpec] = {}
        self._futures: dict[int, _FutureSpec] = {}
        self._chains: dict[str, Chain] = {}
        for product in OPTION_CLASSES:
            if product.under_con_id in spots:
                self._add_chain(product, spots[product.under_con_id], _option_expiries(today))
        for future in FUTURE_CLASSES:
            if future.driver in spots or future.driver in HIDDEN_DRIVERS:
                for year, month, last in _future_months(future, today):
                    contract = _future(future, year, month, last)
                    self._futures[contract.con_id] = _FutureSpec(
                        contract, future.driver, future.carry, _expiry_time(last)
                    )

    def _add_chain(self, product: OptionClass, spot: float, expiries: list[date]) -> None:
        strikes = _strikes(spot, product.strike_step)
        for expiry in expiries:
            for strike in strikes:
                for right in "CP":
                    contract = _option(product, expiry, strike, right)
                    self._options[contract.con_id] = _OptionSpec(
                        contract, product.vol, _expiry_time(expiry)
                    )
        self._chains[product.symbol] = Chain(
            "SMART",
            product.under_con_id,
            product.symbol,
            "100",
            tuple(f"{expiry:%Y%m%d}" for expiry in expiries),
            strikes,
        )

    @property
    def contracts(self) -> tuple[Contract, ...]:
        return tuple(s.contract for s in self._options.values()) + tuple(
            s.contract for s in self._futures.values()
        )

    @property
    def drivers(self) -> dict[int, tuple[float, float]]:
        """Price paths the futures need that are no contract (conId → start price, tick)."""
        return dict(HIDDEN_DRIVERS)

    def derived(self, con_id: int) -> bool:
        """Whether the conId's quote is derived (no price path of its own)."""
        return con_id in self._options or con_id in self._futures

    def chains(self, symbol: str, con_id: int = 0) -> list[Chain]:
        """reqSecDefOptParams rows of an underlying (one per exchange), [] if it has no options."""
        chain = self._chains.get(symbol.upper())
        if chain is None or (con_id and con_id != chain.under_con_id):
            return []
        return [replace(chain, exchange=exchange) for exchange in OPTION_EXCHANGES]

    def quote(self, con_id: int, underlying: Callable[[int], Quote], now: float) -> Quote:
        """The derived quote of an option or future; KeyError for another conId."""
        if con_id in self._futures:
            return self._future_quote(self._futures[con_id], underlying, now)
        return self._option_quote(self._options[con_id], underlying, now)

    def _future_quote(
        self, spec: _FutureSpec, underlying: Callable[[int], Quote], now: float
    ) -> Quote:
        driver, tick = underlying(spec.driver), spec.contract.min_tick
        factor = math.exp(spec.carry * _years(spec.expires, now))

        def carried(value: float) -> float:
            return round_to_tick(value * factor, tick)

        last = carried(driver.last)
        return Quote(
            con_id=spec.contract.con_id, bid=round_to_tick(last - tick, tick), ask=round_to_tick(last + tick, tick),
            last=last, close=carried(driver.close), open=carried(driver.open), high=carried(driver.high),
            low=carried(driver.low), bid_size=12.0, ask_size=15.0, last_size=1.0,
            volume=float(int(driver.volume / 100)),
        )  # fmt: skip

    def _value(self, spec: _OptionSpec, spot: float, now: float) -> float:
        c = spec.contract
        vol = _smile(spec.vol, c.strike, spot)
        return bs.price(c.right, spot, c.strike, _years(spec.expires, now), RATE, vol)

    def _option_quote(
        self, spec: _OptionSpec, underlying: Callable[[int], Quote], now: float
    ) -> Quote:
        under = underlying(spec.contract.under_con_id)
        theo = self._value(spec, under.last, now)
        half = max(0.01, 0.015 * theo)
        bid_tick, ask_tick = _option_tick(theo - half), _option_tick(theo + half)
        bid = max(0.01, round(math.floor((theo - half) / bid_tick + 1e-9) * bid_tick, 2))
        ask = max(bid + 0.01, round(math.ceil((theo + half) / ask_tick - 1e-9) * ask_tick, 2))
        session = [self._value(spec, spot, now) for spot in (under.high, under.low)]
        return Quote(
            con_id=spec.contract.con_id, bid=bid, ask=round(ask, 2), last=_round_option(theo),
            close=_round_option(self._value(spec, under.close, now)),
            open=_round_option(self._value(spec, under.open, now)),
            high=_round_option(max(session + [theo])), low=_round_option(min(session + [theo])),
            bid_size=20.0, ask_size=25.0, last_size=1.0, volume=float(int(under.volume / 1000)),
        )  # fmt: skip

    def greeks(
        self, con_id: int, underlying: Callable[[int], Quote], now: float
    ) -> dict[int, bs.Greeks]:
        """tickOptionComputation rows by tick type (10 bid, 11 ask, 12 last, 13 model); {} if no option."""
        spec = self._options.get(con_id)
        if spec is None:
            return {}
        c = spec.contract
        spot = underlying(c.under_con_id).last
        years = _years(spec.expires, now)
        quote = self._option_quote(spec, underlying, now)
        model = bs.greeks(c.right, spot, c.strike, years, RATE, _smile(spec.vol, c.strike, spot))
        at = {10: quote.bid, 11: quote.ask, 12: quote.last}
        rows = {
            tick: bs.greeks_at_price(c.right, value, spot, c.strike, years, RATE)
            for tick, value in at.items()
        }
        return {**rows, 13: model}


def _round_option(value: float) -> float:
    tick = _option_tick(value)
    return max(0.01, round_to_tick(value, tick))
