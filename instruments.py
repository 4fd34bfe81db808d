"""Options and futures: naming a contract, finding it at the broker, describing it.

An order for a derivative names its contract by fields (``ContractSpec``); the broker's contract
details decide what it is. No match is an unknown contract; several matches are an ambiguous one,
and ``missing_field`` names the field that would tell them apart (the API's 400 says which).
The resolved contract (``Resolved``) carries what the order needs from the broker: its conId,
multiplier and price increments (the market rule), and its name in IB's words
(``describe``: "AAPL 20261218 200 C", "ES 202612").

The async functions run on a connection's loop (the reader's); everything else is pure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ib_async import IB, Contract, ContractDetails

from wire import plain_number

log = logging.getLogger(__name__)

DERIVATIVES = frozenset({"OPT", "FUT"})
MONTH_CODES = "FGHJKMNQUVXZ"  # a futures month's letter, January to December
MONTH_CODE = re.compile(rf"([{MONTH_CODES}])([0-9]{{1,2}})$")
DEFAULT_EXCHANGE = {"OPT": "SMART", "FUT": ""}  # futures: IB searches every exchange
CALL_TIMEOUT = 5.0
Increments = tuple[tuple[float, float], ...]  # (low edge, increment) by ascending low edge
# the fields that tell contracts of one symbol apart, in the order a trader gives them
TELLING_FIELDS = {
    "OPT": ("expiry", "right", "strike", "exchange", "trading_class", "multiplier"),
    "FUT": ("expiry", "exchange", "trading_class", "multiplier"),
}


class ContractError(LookupError):
    """A contract the broker does not know, several, or a field that contradicts the broker's:
    ``field`` is the one to give or fix, ``code`` the API's error code."""

    def __init__(self, message: str, field: str, code: str = "unknown_contract") -> None:
        super().__init__(message)
        self.message, self.field, self.code = message, field, code


@dataclass(frozen=True)
class ContractSpec:
    """A derivative as an order names it (empty fields are not given)."""

    symbol: str
    sec_type: str
    currency: str = "USD"
    expiry: str = ""  # YYYYMMDD, or YYYYMM (a futures contract month)
    strike: float | None = None
    right: str = ""  # C / P
    exchange: str = ""
    multiplier: float | None = None
    trading_class: str = ""
    local_symbol: str = ""

    def query(self) -> Contract:
        """The ib_async contract to ask contract details for (multiplier left out: it is
        checked against the answer, so a wrong one is named instead of "unknown")."""
        return Contract(
            secType=self.sec_type,
            symbol=self.symbol,
            currency=self.currency,
            exchange=self.exchange or DEFAULT_EXCHANGE.get(self.sec_type, "SMART"),
            lastTradeDateOrContractMonth=self.expiry,
            strike=self.strike or 0.0,
            right=self.right,
            tradingClass=self.trading_class,
            localSymbol=self.local_symbol,
        )

    def given(self, name: str) -> bool:
        value = getattr(self, name)
        return value is not None and value != ""


@dataclass(frozen=True)
class Resolved:
    """The one contract the broker matched, and what an order for it must respect."""

    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    expiry: str  # the broker's lastTradeDateOrContractMonth
    strike: float
    right: str
    multiplier: float
    trading_class: str
    local_symbol: str
    increments: Increments

    @property
    def description(self) -> str:
        """The contract in IB's words."""
        return describe(
            self.symbol, self.sec_type, self.expiry, self.strike, self.right, self.local_symbol
        )

    def tick_at(self, price: float) -> float:
        """The price increment at ``price`` (the market rule's band)."""
        return increment_at(self.increments, price)


def describe(
    symbol: str,
    sec_type: str,
    expiry: str = "",
    strike: float = 0.0,
    right: str = "",
    local_symbol: str = "",
) -> str:
    """ "AAPL 20261218 200 C" for an option, "ES 202612" for a future (its contract month),
    the symbol otherwise."""
    if sec_type in ("OPT", "FOP") and expiry:
        return f"{symbol} {expiry} {plain_number(strike)} {right}".strip()
    if sec_type in ("FUT", "CONTFUT") and expiry:
        return f"{symbol} {contract_month(expiry, local_symbol)}"
    return local_symbol if sec_type == "CASH" and local_symbol else symbol


def contract_month(expiry: str, local_symbol: str = "") -> str:
    """A future's contract month (YYYYMM). IB gives a held or filled future's last trading
    day, and CL's January contract stops trading in December: the month its exchange-style
    local symbol names (ESZ6, CLF7: month letter, year digits) in the year nearest that day
    when it has one, else the month of ``expiry``."""
    code = MONTH_CODE.search(local_symbol)
    if code is None or len(expiry) < 6 or not expiry[:6].isdigit():
        return expiry[:6]
    last = int(expiry[:4]) * 12 + int(expiry[4:6]) - 1
    month, digits = MONTH_CODES.index(code[1]), code[2]
    years = [y for y in range(last // 12 - 1, last // 12 + 2) if str(y).endswith(digits)]
    if not years:
        return expiry[:6]
    year = min(years, key=lambda y: abs(y * 12 + month - last))
    return f"{year}{month + 1:02d}"


def multiplier_of(text: str | float | None) -> float:
    """A contract's multiplier as a number (1 when the broker gives none)."""
    try:
        value = float(text or 1)
    except (TypeError, ValueError):
        return 1.0
    return value if math.isfinite(value) and value > 0 else 1.0


def increment_at(increments: Increments, price: float) -> float:
    """The increment of the band ``price`` falls in (bands ascending by low edge)."""
    step = increments[0][1] if increments else 0.01
    for edge, increment in increments:
        if price >= edge - 1e-9:
            step = increment
    return step


def off_tick(price: float, tick: float) -> bool:
    """Whether ``price`` is not a whole number (1 or more) of ``tick``s: 1e-12 is no price."""
    ticks = round(price / tick)
    return ticks < 1 or abs(ticks * tick - price) > tick * 1e-6


def missing_field(spec: ContractSpec, matches: Sequence[Contract]) -> str:
    """The first field not given whose value differs among the matches."""
    values = {
        "expiry": lambda c: c.lastTradeDateOrContractMonth,
        "strike": lambda c: c.strike,
        "right": lambda c: c.right,
        "exchange": lambda c: c.exchange,
        "trading_class": lambda c: c.tradingClass,
        "multiplier": lambda c: c.multiplier,
    }
    for name in TELLING_FIELDS.get(spec.sec_type, ()):
        if name == "expiry" and spec.expiry and len({values[name](c) for c in matches}) > 1:
            return name  # a contract month with several expiries (weekly options)
        if not spec.given(name) and len({values[name](c) for c in matches}) > 1:
            return name
    return "local_symbol"


def _ambiguous(spec: ContractSpec, matches: Sequence[Contract]) -> ContractError:
    name = missing_field(spec, matches)
    shown = sorted({str(_field_value(c, name)) for c in matches})
    sample = ", ".join(shown[:6]) + (" ..." if len(shown) > 6 else "")
    what = f"{spec.symbol or spec.local_symbol} {spec.sec_type}"
    return ContractError(
        f"{len(matches)} contracts match {what}: give {name} (one of {sample})",
        name,
        "ambiguous_contract",
    )


def _field_value(contract: Contract, name: str) -> object:
    attribute = {
        "expiry": "lastTradeDateOrContractMonth",
        "trading_class": "tradingClass",
        "local_symbol": "localSymbol",
    }.get(name, name)
    value = getattr(contract, attribute, "")
    return plain_number(value) if isinstance(value, float) else value


async def resolve(ib: IB, spec: ContractSpec, rules: dict[int, Increments]) -> Resolved:
    """The one contract ``spec`` names at the broker; ContractError for none or several, or
    for a multiplier that is not the broker's. ``rules`` caches market rules by id."""
    details = await asyncio.wait_for(ib.reqContractDetailsAsync(spec.query()), CALL_TIMEOUT)
    found = [d for d in details if d.contract is not None]
    if not found:
        what = spec.local_symbol or describe(
            spec.symbol, spec.sec_type, spec.expiry, spec.strike or 0.0, spec.right
        )
        field = await _unknown_field(ib, spec)
        raise ContractError(
            f"unknown contract {what} ({spec.sec_type}): the broker has no "
            f"security definition for it (check {field})",
            field,
        )
    if len(found) > 1:
        raise _ambiguous(spec, [d.contract for d in found if d.contract is not None])
    [one] = found
    contract = one.contract
    assert contract is not None
    multiplier = multiplier_of(contract.multiplier)
    if spec.multiplier is not None and abs(spec.multiplier - multiplier) > 1e-9:
        raise ContractError(
            f"the multiplier of {contract.localSymbol} is {plain_number(multiplier)}, "
            f"not {plain_number(spec.multiplier)}",
            "multiplier",
            "validation_error",
        )
    increments = await _increments(ib, one, contract.exchange or spec.exchange, rules)
    return Resolved(
        con_id=contract.conId,
        symbol=contract.symbol,
        sec_type=contract.secType,
        exchange=spec.exchange or contract.exchange,
        currency=contract.currency,
        expiry=contract.lastTradeDateOrContractMonth,
        strike=contract.strike,
        right=contract.right,
        multiplier=multiplier,
        trading_class=contract.tradingClass,
        local_symbol=contract.localSymbol,
        increments=increments,
    )


async def _unknown_field(ib: IB, spec: ContractSpec) -> str:
    """The field an unknown contract most likely has wrong: with its strike, right and trading
    class left out, does the expiry list anything? (One more request, on this failure only.)"""
    if spec.local_symbol:
        return "local_symbol"
    finer = [name for name in ("strike", "right", "trading_class") if spec.given(name)]
    if not spec.expiry or not finer:
        return "expiry" if spec.expiry else "symbol"
    wider = ContractSpec(
        symbol=spec.symbol,
        sec_type=spec.sec_type,
        currency=spec.currency,
        expiry=spec.expiry,
        exchange=spec.exchange,
    )
    listed = await asyncio.wait_for(ib.reqContractDetailsAsync(wider.query()), CALL_TIMEOUT)
    return finer[0] if listed else "expiry"


async def _increments(
    ib: IB, details: ContractDetails, exchange: str, rules: dict[int, Increments]
) -> Increments:
    """The price bands of the market rule for ``exchange`` (the first rule otherwise); the
    contract's minTick when the broker lists no rule."""
    ids = [text for text in (details.marketRuleIds or "").split(",") if text.strip()]
    exchanges = (details.validExchanges or "").split(",")
    if not ids:
        return ((0.0, details.minTick or 0.01),)
    index = exchanges.index(exchange) if exchange in exchanges else 0
    rule_id = int(ids[index] if index < len(ids) else ids[0])
    if rule_id not in rules:
        answer = await asyncio.wait_for(ib.reqMarketRuleAsync(rule_id), CALL_TIMEOUT)
        bands = tuple(sorted((float(i.lowEdge), float(i.increment)) for i in answer or ()))
        if not bands:
            log.warning(
                "market rule %d came back empty; using minTick %g", rule_id, details.minTick
            )
            return ((0.0, details.minTick or 0.01),)
        rules[rule_id] = bands
    return rules[rule_id]


@dataclass(frozen=True)
class FutureMonth:
    """One listed futures contract (a contract month of the product)."""

    con_id: int
    symbol: str
    exchange: str
    contract_month: str  # YYYYMM: what an order's expiry names
    last_trade_date: str  # YYYYMMDD
    local_symbol: str
    multiplier: float
    description: str


async def future_months(ib: IB, symbol: str, exchange: str = "") -> tuple[FutureMonth, ...]:
    """The listed contract months of a futures product, nearest first; LookupError if none."""
    query = Contract(secType="FUT", symbol=symbol, exchange=exchange, currency="USD")
    details = await asyncio.wait_for(ib.reqContractDetailsAsync(query), CALL_TIMEOUT)
    rows = []
    for one in details:
        c = one.contract
        if c is None:
            continue
        month = one.contractMonth or c.lastTradeDateOrContractMonth[:6]
        rows.append(
            FutureMonth(
                con_id=c.conId,
                symbol=c.symbol,
                exchange=c.exchange,
                contract_month=month,
                last_trade_date=c.lastTradeDateOrContractMonth,
                local_symbol=c.localSymbol,
                multiplier=multiplier_of(c.multiplier),
                description=describe(c.symbol, "FUT", month),
            )
        )
    if not rows:
        raise LookupError(
            f"no futures listed for {symbol}" + (f" on {exchange}" if exchange else "")
        )
    return tuple(sorted(rows, key=lambda r: (r.last_trade_date, r.exchange)))
