"""Server messages of the session, contract details and market data, gated on the
negotiated ``version``.
"""

from __future__ import annotations

from dataclasses import replace

from . import market_rules
from .codec import (
    fmt_price,
    fmt_qty,
)
from .message_ids import Fields
from .sessions import ContractHours
from .types import (
    Contract,
)

# ================================================================ server messages


def next_valid_id(order_id: int) -> Fields:
    return ["9", "1", str(order_id)]


def managed_accounts(accounts: list[str] | tuple[str, ...]) -> Fields:
    return ["15", "1", ",".join(accounts)]


def error(req_id: int, code: int, text: str, version: int) -> Fields:
    """errorMsg; advancedOrderRejectJson only at v>=166 (ibapi 9.81 wants 5 fields)."""
    return ["4", "2", str(req_id), str(code), text] + ([""] if version >= 166 else [])


def current_time(unix_seconds: int) -> Fields:
    return ["49", "1", str(unix_seconds)]


# ---------------------------------------------------------------- contract details


def _wire(contract: Contract) -> Contract:
    """CASH contracts go out as IB shows them: IDEALPRO, no primary exchange, ``EUR.USD``."""
    if contract.sec_type != "CASH":
        return contract
    pair = f"{contract.symbol}.{contract.currency}"
    return replace(
        contract,
        exchange="IDEALPRO" if contract.exchange in ("", "SMART") else contract.exchange,
        primary_exchange="",
        local_symbol=contract.local_symbol or pair,
        trading_class=contract.trading_class or pair,
    )


_ORDER_TYPES = {
    "STK": "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AON,AVGCOST,COND,CONDORDER,DAY,GAT,GTC,GTD,HID,IOC,"
    "LIT,LMT,MIT,MKT,MOC,MOO,MTL,OCA,REL,SCALE,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF",
    "CASH": "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,COND,CONDORDER,DAY,GAT,GTC,GTD,IOC,LIT,LMT,"
    "MIT,MKT,OCA,REL,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF",
    "OPT": "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,COND,CONDORDER,DAY,GAT,GTC,GTD,IOC,LIT,LMT,MIT,MKT,"
    "MTL,OCA,REL,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,VOLAT,WHATIF",
    "FUT": "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,COND,CONDORDER,DAY,GAT,GTC,GTD,IOC,LIT,LMT,MIT,MKT,"
    "MTL,OCA,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF",
    "IND": "",
}


def _size_rules(contract: Contract) -> tuple[str, str, str]:
    """minSize, sizeIncrement, suggestedSizeIncrement."""
    return ("1", "1", "100") if contract.sec_type == "STK" else ("1", "1", "1")


def _valid_exchanges(contract: Contract) -> str:
    extra = contract.primary_exchange
    return (
        f"{contract.exchange},{extra}"
        if extra and extra != contract.exchange
        else contract.exchange
    )


def contract_data(
    req_id: int, contract: Contract, version: int, hours: ContractHours | None = None
) -> Fields:
    """contractDetails (§2.18): v>=164 unversioned + size rules; v<164 version 8 + mdSizeMultiplier.

    ``hours``: timeZoneId, tradingHours and liquidHours (``sessions.contract_hours``); None leaves
    the hours empty and the zone the contract's."""
    c = _wire(contract)
    under, expires = (
        str(c.under_con_id),
        c.last_trade_date if c.sec_type in ("OPT", "FUT", "CONTFUT") else "",
    )
    zone, trading, liquid = (
        (c.time_zone_id, "", "")
        if hours is None
        else (hours.time_zone_id, hours.trading_hours, hours.liquid_hours)
    )
    head = ["10"] + (["8"] if version < 164 else []) + [str(req_id)]
    body = [
        c.symbol, c.sec_type, c.last_trade_date, fmt_price(c.strike, "0.0"), c.right, c.exchange,
        c.currency, c.local_symbol, c.trading_class, c.trading_class, str(c.con_id), fmt_price(c.min_tick, "0.0"),
        *(["1"] if version < 164 else []),
        c.multiplier, _ORDER_TYPES.get(c.sec_type, "LMT,MKT"), _valid_exchanges(c), "1", under, c.long_name,
        c.primary_exchange, c.contract_month, c.industry, c.category, c.subcategory, zone, trading, liquid,
        "", "", "0", "1", c.under_symbol, c.under_sec_type, market_rules.rule_ids(c, _valid_exchanges(c)),
        expires, c.stock_type if c.sec_type == "STK" else "",
    ]  # fmt: skip
    rules = _size_rules(c)
    tail = list(rules) if version >= 164 else [rules[1]] if version == 163 else []
    return head + body + tail


def contract_data_end(req_id: int) -> Fields:
    return ["52", "1", str(req_id)]


# ---------------------------------------------------------------- market data


def tick_req_params(
    req_id: int, min_tick: float, bbo_exchange: str, snapshot_permissions: int
) -> Fields:
    return ["81", str(req_id), fmt_price(min_tick, "0.0"), bbo_exchange, str(snapshot_permissions)]


def market_data_type(req_id: int, market_data_type: int) -> Fields:
    return ["58", "1", str(req_id), str(market_data_type)]


def tick_price(
    req_id: int, tick_type: int, price: float, size: float, attr_mask: int = 0
) -> Fields:
    """Exactly 7 fields; the size must be integral for ibapi 9.81."""
    return [
        "1",
        "6",
        str(req_id),
        str(tick_type),
        fmt_price(price, "0.0"),
        fmt_qty(size),
        str(attr_mask),
    ]


def tick_size(req_id: int, tick_type: int, size: float) -> Fields:
    return ["2", "6", str(req_id), str(tick_type), fmt_qty(size)]


def tick_string(req_id: int, tick_type: int, value: str) -> Fields:
    return ["46", "6", str(req_id), str(tick_type), value]


def tick_generic(req_id: int, tick_type: int, value: float) -> Fields:
    return ["45", "6", str(req_id), str(tick_type), fmt_price(value, "0.0")]


def tick_snapshot_end(req_id: int) -> Fields:
    return ["57", "1", str(req_id)]
