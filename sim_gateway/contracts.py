"""Contract table of the simulated gateway: common US stocks, FX majors, indices, extra contracts.

The broker adds the generated options and futures (``derivatives.py``) as extra contracts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from .types import Contract, ContractQuery

FALLBACK_START_PRICE = {"CASH": 1.0}  # start price of an extra contract by secType
DEFAULT_START_PRICE = 100.0


def _stock(
    con_id: int,
    symbol: str,
    long_name: str,
    primary: str,
    industry: tuple[str, str, str],
    trading_class: str = "NMS",
    stock_type: str = "COMMON",
) -> Contract:
    """An STK/SMART/USD contract."""
    return Contract(
        con_id=con_id,
        symbol=symbol,
        primary_exchange=primary,
        local_symbol=symbol,
        trading_class=trading_class,
        long_name=long_name,
        industry=industry[0],
        category=industry[1],
        subcategory=industry[2],
        stock_type=stock_type,
    )


def _fx(con_id: int, base: str, quote: str, long_name: str, min_tick: float = 0.00005) -> Contract:
    """A CASH/IDEALPRO pair; quantity is in the base currency, prices in the quote currency."""
    pair = f"{base}.{quote}"
    return Contract(
        con_id=con_id,
        symbol=base,
        sec_type="CASH",
        exchange="IDEALPRO",
        primary_exchange="",
        currency=quote,
        local_symbol=pair,
        trading_class=pair,
        long_name=long_name,
        min_tick=min_tick,
        stock_type="",
    )


def _index(con_id: int, symbol: str, exchange: str, long_name: str) -> Contract:
    """An IND contract (quoted, not tradable)."""
    return Contract(
        con_id=con_id,
        symbol=symbol,
        sec_type="IND",
        exchange=exchange,
        primary_exchange=exchange,
        local_symbol=symbol,
        trading_class=symbol,
        long_name=long_name,
        stock_type="",
    )


_TECH = ("Technology", "Computers", "Computers")
_SOFTWARE = ("Technology", "Software", "Applications Software")
_CHIPS = ("Technology", "Semiconductors", "Electronic Compo-Semicon")
_MEDIA = ("Communications", "Internet", "Internet Content-Entmnt")
_ETF = ("", "", "")

_RETAIL = ("Communications", "Internet", "E-Commerce/Products")
_SEARCH = ("Communications", "Internet", "Web Portals/ISP")
_AUTOS = ("Consumer, Cyclical", "Auto Manufacturers", "Auto-Cars/Light Trucks")
_SERVICES = ("Technology", "Computers", "Computer Services")
_BANKS = ("Financial", "Banks", "Money Center Banks")
_OIL = ("Energy", "Oil&Gas", "Oil Comp-Integrated")

DEFAULT_TABLE: tuple[tuple[Contract, float], ...] = (
    (_stock(265598, "AAPL", "APPLE INC", "NASDAQ", _TECH), 190.0),
    (_stock(272093, "MSFT", "MICROSOFT CORP", "NASDAQ", _SOFTWARE), 420.0),
    (_stock(3691937, "AMZN", "AMAZON.COM INC", "NASDAQ", _RETAIL), 185.0),
    (_stock(208813719, "GOOGL", "ALPHABET INC-CL A", "NASDAQ", _SEARCH), 170.0),
    (_stock(76792991, "TSLA", "TESLA INC", "NASDAQ", _AUTOS), 250.0),
    (_stock(4815747, "NVDA", "NVIDIA CORP", "NASDAQ", _CHIPS), 120.0),
    (_stock(107113386, "META", "META PLATFORMS INC-CLASS A", "NASDAQ", _MEDIA), 500.0),
    (_stock(4391, "AMD", "ADVANCED MICRO DEVICES", "NASDAQ", _CHIPS), 160.0),
    (_stock(15124833, "NFLX", "NETFLIX INC", "NASDAQ", _MEDIA), 650.0),
    (_stock(756733, "SPY", "SPDR S&P 500 ETF TRUST", "ARCA", _ETF, "SPY", "ETF"), 550.0),
    (_stock(320227571, "QQQ", "INVESCO QQQ TRUST SERIES 1", "NASDAQ", _ETF, "NMS", "ETF"), 470.0),
    (_stock(8314, "IBM", "INTL BUSINESS MACHINES CORP", "NYSE", _SERVICES, "IBM"), 180.0),
    (_stock(1520593, "JPM", "JPMORGAN CHASE & CO", "NYSE", _BANKS, "JPM"), 200.0),
    (_stock(13977, "XOM", "EXXON MOBIL CORP", "NYSE", _OIL, "XOM"), 115.0),
    (_fx(12087792, "EUR", "USD", "European Monetary Union Euro"), 1.08),
    (_fx(12087797, "GBP", "USD", "British pound"), 1.27),
    (_fx(15016059, "USD", "JPY", "US dollar", min_tick=0.005), 150.0),
    # crosses without USD, priced from the two dollar pairs: 1.08 x 150, 1.08 / 1.27
    (_fx(14321016, "EUR", "JPY", "European Monetary Union Euro", min_tick=0.005), 162.0),
    (_fx(12087807, "EUR", "GBP", "European Monetary Union Euro"), 0.8504),
    (_index(416904, "SPX", "CBOE", "S&P 500 Stock Index"), 5500.0),
    (_index(13455763, "VIX", "CBOE", "CBOE Volatility Index"), 15.0),
    (_index(416843, "NDX", "NASDAQ", "NASDAQ 100 Stock Index"), 19500.0),
)
DERIVATIVES = frozenset(
    {"OPT", "FUT", "FOP"}
)  # matched only when asked for (secType or localSymbol)
NO_SECDEF = "No security definition has been found for the request"

_START_PRICES = {contract.con_id: price for contract, price in DEFAULT_TABLE}


def start_price(contract: Contract) -> float:
    """Start (and previous close) price: the table's, else a per-secType fallback."""
    fallback = FALLBACK_START_PRICE.get(contract.sec_type, DEFAULT_START_PRICE)
    return _START_PRICES.get(contract.con_id, fallback)


def _right(text: str) -> str:
    right = text.upper()
    return {"CALL": "C", "PUT": "P", "?": ""}.get(right, right)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _expiry_matches(contract: Contract, asked: str) -> bool:
    """IB's lastTradeDateOrContractMonth: YYYYMM is the contract month (a CL future's month is
    the one after its last trading day), YYYYMMDD the last trading day."""
    if len(asked) == 6 and contract.contract_month:
        return contract.contract_month == asked
    return contract.last_trade_date.startswith(asked)


def _derivative_fields(contract: Contract, query: ContractQuery) -> bool:
    """Expiry (a contract month or a day), strike, right, multiplier, trading class."""
    checks = (
        _expiry_matches(contract, query.last_trade_date),
        not query.strike or abs(query.strike - contract.strike) < 1e-6,
        not _right(query.right) or _right(query.right) == contract.right,
        not query.multiplier or _number(query.multiplier) == _number(contract.multiplier or "1"),
        not query.trading_class or query.trading_class.upper() == contract.trading_class.upper(),
    )
    return all(checks)


def _matches(contract: Contract, query: ContractQuery) -> bool:
    """Symbol (or local symbol) match, case-insensitive, narrowed by the optional fields."""
    wanted = (query.symbol or query.local_symbol).upper()
    listings = {"SMART", contract.exchange, contract.primary_exchange}
    asked = bool(query.sec_type or query.local_symbol) or contract.sec_type not in DERIVATIVES
    checks = (
        asked,
        wanted in (contract.symbol.upper(), contract.local_symbol.upper()),
        not query.sec_type or query.sec_type.upper() == contract.sec_type,
        not query.currency or query.currency.upper() == contract.currency,
        not query.exchange or query.exchange.upper() in listings,
        not query.primary_exchange or query.primary_exchange.upper() == contract.primary_exchange,
        not query.local_symbol or query.local_symbol.upper() == contract.local_symbol.upper(),
    )
    return all(checks) and _derivative_fields(contract, query)


def unresolved_text(query: ContractQuery, matches: int) -> str:
    """Error 200's text for a contract that matched nothing or several contracts."""
    if matches > 1:
        return f"The contract description specified for {query.symbol or query.local_symbol} is ambiguous."
    return NO_SECDEF


class ContractTable:
    """The default contracts plus extras (an extra with a known conId replaces the default)."""

    def __init__(self, extra: Iterable[Contract] = ()) -> None:
        self._by_id = {contract.con_id: contract for contract, _ in DEFAULT_TABLE}
        self._by_id.update({contract.con_id: contract for contract in extra})

    def __iter__(self) -> Iterator[Contract]:
        return iter(self._by_id.values())

    def by_id(self, con_id: int) -> Contract | None:
        """The contract with this conId, or None."""
        return self._by_id.get(con_id)

    def find(self, query: ContractQuery) -> list[Contract]:
        """By conId if given, else by symbol (+secType, currency, exchange); [] if unknown."""
        if query.con_id:
            found = self._by_id.get(query.con_id)
            return [found] if found else []
        if not (query.symbol or query.local_symbol):
            return []
        if query.sec_type.upper() == "CONTFUT":
            return self._front_month(query)
        return [contract for contract in self._by_id.values() if _matches(contract, query)]

    def _front_month(self, query: ContractQuery) -> list[Contract]:
        """A continuous future: the front month, with secType CONTFUT and the front's conId."""
        futures = replace(query, sec_type="FUT", last_trade_date="", local_symbol="")
        rows = [contract for contract in self._by_id.values() if _matches(contract, futures)]
        if not rows:
            return []
        return [replace(min(rows, key=lambda c: c.last_trade_date), sec_type="CONTFUT")]

    def fx_source(self, currency: str) -> tuple[int, bool] | None:
        """(conId, inverted) of a CASH pair that converts ``currency`` into USD, or None."""
        for contract in self._by_id.values():
            if contract.sec_type != "CASH":
                continue
            if contract.symbol == currency and contract.currency == "USD":
                return contract.con_id, False
            if contract.symbol == "USD" and contract.currency == currency:
                return contract.con_id, True
        return None
