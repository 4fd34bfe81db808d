"""Server messages of positions, portfolio, account values and P&L."""

from __future__ import annotations

from .codec import (
    fmt_price,
    fmt_qty,
)
from .market_messages import _wire
from .message_ids import Fields
from .types import (
    AccountValue,
    PnL,
    PnLSingle,
    PortfolioItem,
    Position,
)

# ---------------------------------------------------------------- portfolio and account


def position(p: Position) -> Fields:
    """Exactly 16 fields; exchange is the primary listing (empty for CASH)."""
    c = _wire(p.contract)
    return [
        "61", "3", p.account, str(c.con_id), c.symbol, c.sec_type, c.last_trade_date,
        fmt_price(c.strike, "0.0"), c.right, c.multiplier, c.primary_exchange, c.currency,
        c.local_symbol, c.trading_class, fmt_qty(p.position), fmt_price(p.avg_cost, "0.0"),
    ]  # fmt: skip


def position_end() -> Fields:
    return ["62", "1"]


def account_value(v: AccountValue) -> Fields:
    return ["6", "2", v.key, v.value, v.currency, v.account]


def portfolio_value(item: PortfolioItem) -> Fields:
    """Exactly 20 fields; primaryExchange, not exchange."""
    c = _wire(item.contract)
    return [
        "7", "8", str(c.con_id), c.symbol, c.sec_type, c.last_trade_date, fmt_price(c.strike, "0.0"),
        c.right, c.multiplier, c.primary_exchange, c.currency, c.local_symbol, c.trading_class,
        fmt_qty(item.position), fmt_price(item.market_price, "0.0"), fmt_price(item.market_value, "0.0"),
        fmt_price(item.avg_cost, "0.0"), fmt_price(item.unrealized_pnl, "0.0"),
        fmt_price(item.realized_pnl, "0.0"), item.account,
    ]  # fmt: skip


def account_update_time(hhmm: str) -> Fields:
    return ["8", "1", hhmm]


def account_download_end(account: str) -> Fields:
    return ["54", "1", account]


def account_summary(req_id: int, v: AccountValue) -> Fields:
    return ["63", "1", str(req_id), v.account, v.key, v.value, v.currency]


def account_summary_end(req_id: int) -> Fields:
    return ["64", "1", str(req_id)]


def account_update_multi(req_id: int, v: AccountValue, model_code: str = "") -> Fields:
    return ["73", "1", str(req_id), v.account, model_code, v.key, v.value, v.currency]


def account_update_multi_end(req_id: int) -> Fields:
    return ["74", "1", str(req_id)]


def pnl(req_id: int, p: PnL) -> Fields:
    return [
        "94", str(req_id), fmt_price(p.daily_pnl, "0.0"), fmt_price(p.unrealized_pnl, "0.0"),
        fmt_price(p.realized_pnl, "0.0"),
    ]  # fmt: skip


def pnl_single(req_id: int, p: PnLSingle) -> Fields:
    """The position must be integral for ibapi 9.81 (decoded as int)."""
    return [
        "95", str(req_id), fmt_qty(p.position), fmt_price(p.daily_pnl, "0.0"),
        fmt_price(p.unrealized_pnl, "0.0"), fmt_price(p.realized_pnl, "0.0"), fmt_price(p.value, "0.0"),
    ]  # fmt: skip
