"""Rules of the broker's order types (when an order may fill and at what price), commission
schedules and the formatting of executions the way IB shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .broker_state import _Fill, _Order
from .broker_types import (
    EASTERN,
    EPS,
    FUTURE_COMMISSION,
    OFF_TICK,
    OPTION_COMMISSION,
    REJECTED,
    SIDES,
    VENUES,
    BrokerConfig,
)
from .types import (
    Contract,
    ExecutionFilter,
    OrderRequest,
    Quote,
)

# ----------------------------------------------------------------------------- order-type rules


def _touch(action: str, quote: Quote) -> float:
    """The price a marketable order takes: ask to buy, bid to sell."""
    return quote.ask if action == "BUY" else quote.bid


def _market(order: _Order, quote: Quote) -> float | None:
    return _touch(order.action, quote)


def _limit(order: _Order, quote: Quote) -> float | None:
    """The touch if it is at or better than the limit (the better of the two), else None."""
    touch, limit = _touch(order.action, quote), order.lmt_price or 0.0
    marketable = touch <= limit + EPS if order.action == "BUY" else touch >= limit - EPS
    return touch if marketable else None


def _crossed(action: str, stop: float | None, last: float) -> bool:
    """Whether last has reached a buy (from below) or sell (from above) stop."""
    if stop is None:
        return False
    return last >= stop - EPS if action == "BUY" else last <= stop + EPS


def _positive(field: str, label: str) -> Callable[[OrderRequest], str | None]:
    def check(req: OrderRequest) -> str | None:
        value = getattr(req, field)
        return None if value is not None and value > 0 else f"{label} is missing or not positive"

    return check


def _trail_offset(req: OrderRequest) -> str | None:
    if (req.aux_price or 0) > 0 or (req.trailing_percent or 0) > 0:
        return None
    return "Trailing amount or trailing percent is missing"


@dataclass(frozen=True)
class _Rule:
    """How one order type is checked, valued, triggered, priced and shown while it waits."""

    checks: tuple[Callable[[OrderRequest], str | None], ...]
    estimate: Callable[[OrderRequest, Quote], float]  # price for margin checks and what-if
    fill: Callable[[_Order, Quote], float | None]  # once triggered; None = not marketable
    stop: Callable[[_Order], float | None] | None = None  # trigger level of stop-like types
    waits_as: str = "PreSubmitted"  # status while working and unfilled


def _at_touch(req: OrderRequest, quote: Quote) -> float:
    return _touch(req.action.upper(), quote)


def _at_limit(req: OrderRequest, quote: Quote) -> float:
    return req.lmt_price or 0.0


def _at_stop(req: OrderRequest, quote: Quote) -> float:
    return req.aux_price or 0.0


_LIMIT, _STOP = _positive("lmt_price", "Limit price"), _positive("aux_price", "Stop price")
_RULES: dict[str, _Rule] = {
    "MKT": _Rule((), _at_touch, _market),
    "LMT": _Rule((_LIMIT,), _at_limit, _limit, waits_as="Submitted"),
    "STP": _Rule((_STOP,), _at_stop, _market, stop=lambda o: o.aux_price),
    "STP LMT": _Rule(
        (_LIMIT, _STOP), _at_limit, _limit, stop=lambda o: o.aux_price, waits_as="Submitted"
    ),
    "TRAIL": _Rule((_trail_offset,), _at_touch, _market, stop=lambda o: o.trail_stop_price),
}
_TIGHTEN = {"BUY": min, "SELL": max}  # a trailing stop only ever moves this way


def _stock_commission(config: BrokerConfig, shares: float, value: float) -> float:
    """0.005/share, at least 1.00, at most 1 % of the trade value (the cap wins)."""
    per_share = max(shares * config.commission_per_share, config.min_commission)
    return min(per_share, value * config.max_commission_pct)


def _fx_commission(config: BrokerConfig, units: float, value: float) -> float:
    """0.2 bp of the trade value, at least 2.00."""
    return max(value * config.fx_commission_rate, config.fx_min_commission)


def _option_commission(config: BrokerConfig, contracts: float, value: float) -> float:
    return max(contracts * OPTION_COMMISSION, config.min_commission)


def _future_commission(config: BrokerConfig, contracts: float, value: float) -> float:
    return contracts * FUTURE_COMMISSION


def units_per_contract(contract: Contract) -> float:
    """Units per contract: 100 for an option, 50 for ES, 1 for stocks and FX."""
    try:
        return float(contract.multiplier or 1)
    except ValueError:
        return 1.0


_COMMISSIONS = {"CASH": _fx_commission, "OPT": _option_commission, "FUT": _future_commission}
# by secType; anything else pays the stock schedule


# ----------------------------------------------------------------------------- formatting


def _ib_time(now: float) -> str:
    """IB's "yyyymmdd hh:mm:ss US/Eastern"."""
    return datetime.fromtimestamp(now, EASTERN).strftime("%Y%m%d %H:%M:%S") + " US/Eastern"


def _parse_filter_time(text: str) -> float:
    """ "yyyymmdd-hh:mm:ss" (UTC) or "yyyymmdd hh:mm:ss [zone]" (default US/Eastern) → epoch."""
    text = text.strip()
    if text[8:9] == "-":
        return datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC).timestamp()
    day, clock, *zone = text.split()
    try:
        zone_info = ZoneInfo(zone[0]) if zone else EASTERN
    except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"unknown time zone {zone[0]!r}") from exc
    return (
        datetime.strptime(f"{day} {clock}", "%Y%m%d %H:%M:%S").replace(tzinfo=zone_info).timestamp()
    )


def _rejection(reason: str) -> tuple[int, str]:
    """(code, text) of a rejection: 110 for an off-tick price (IB's own code), else 201."""
    return (110, OFF_TICK) if reason == OFF_TICK else (201, REJECTED + reason)


def _listing(contract: Contract) -> str:
    """ "NASDAQ.NMS" / "NYSE" / "IDEALPRO" as in IB's order messages."""
    if contract.sec_type != "STK":
        return contract.exchange
    return (
        f"{contract.primary_exchange}.NMS"
        if contract.primary_exchange == "NASDAQ"
        else contract.primary_exchange
    )


def _qty_text(qty: float) -> str:
    return str(int(qty)) if float(qty).is_integer() else repr(qty)


def _amount(value: float) -> str:
    return f"{value:.2f}"


def _venue(contract: Contract) -> str:
    if contract.sec_type == "CASH":
        return contract.exchange
    if contract.sec_type == "OPT":
        return "CBOE"
    return VENUES.get(contract.primary_exchange, contract.primary_exchange or contract.exchange)


def _exec_matches(fill: _Fill, flt: ExecutionFilter, since: float | None) -> bool:
    execution, side = fill.execution, flt.side.upper()
    checks = (
        not flt.client_id or execution.client_id == flt.client_id,
        not flt.account or execution.account.upper() == flt.account.upper(),
        not flt.symbol or execution.contract.symbol.upper() == flt.symbol.upper(),
        not flt.sec_type or execution.contract.sec_type == flt.sec_type.upper(),
        not flt.exchange or execution.exchange.upper() == flt.exchange.upper(),
        not side or execution.side == SIDES.get(side, side),
        since is None or fill.at >= since - EPS,
    )
    return all(checks)
