"""Shared value types of the simulated gateway.

The broker model (``broker.py``) produces these; the protocol layer
(``protocol.py``) encodes them into TWS API fields and decodes client requests
into them. Neither layer knows about the other beyond these dataclasses.

Conventions: quantities are floats (the codec writes integral ones as "100"),
an optional price or margin figure is ``None`` when unset (the codec writes
IB's UNSET double or an empty field, as the layout requires).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Contract:
    """A tradable instrument as the gateway knows it (one row of contract details)."""

    con_id: int
    symbol: str
    sec_type: str = "STK"  # STK, CASH, IND, OPT, FUT (CONTFUT only as an answer)
    exchange: str = "SMART"  # SMART for stocks, IDEALPRO for FX
    primary_exchange: str = "NASDAQ"  # "" for CASH
    currency: str = "USD"
    local_symbol: str = ""  # "AAPL", "EUR.USD"
    trading_class: str = ""  # "NMS", "EUR.USD"
    long_name: str = ""
    min_tick: float = 0.01
    multiplier: str = ""
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    contract_month: str = ""  # YYYYMM (derivatives): a CL future's month is not its expiry's
    under_con_id: int = 0  # options: the underlying; futures: the index
    under_symbol: str = ""
    under_sec_type: str = ""
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    time_zone_id: str = "US/Eastern"
    stock_type: str = "COMMON"


@dataclass(frozen=True)
class ContractQuery:
    """The contract block a client sends (reqContractDetails, reqMktData, placeOrder)."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""


@dataclass(frozen=True)
class OrderRequest:
    """The parts of a placeOrder message the simulator acts on."""

    order_id: int
    contract: ContractQuery
    action: str  # BUY / SELL
    total_quantity: float
    order_type: str  # MKT LMT STP "STP LMT" TRAIL
    lmt_price: float | None = None
    aux_price: float | None = None  # stop price, or trailing amount for TRAIL
    tif: str = ""  # "" means the client did not set it
    oca_group: str = ""
    oca_type: int = 0
    account: str = ""
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    outside_rth: bool = False
    trailing_percent: float | None = None
    trail_stop_price: float | None = None
    what_if: bool = False
    e_trade_only: bool = False
    firm_quote_only: bool = False


@dataclass(frozen=True)
class OrderView:
    """One order as the gateway reports it (openOrder, orderStatus, completedOrder)."""

    order_id: int
    client_id: int
    perm_id: int
    contract: Contract
    action: str
    total_quantity: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    account: str
    status: str  # PreSubmitted Submitted Filled Cancelled Inactive
    filled: float = 0.0
    remaining: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    order_ref: str = ""
    oca_group: str = ""
    oca_type: int = 0
    parent_id: int = 0
    outside_rth: bool = False
    trailing_percent: float | None = None
    trail_stop_price: float | None = None
    what_if: bool = False
    commission: float | None = None  # known once the fill's commission is
    min_commission: float | None = None
    max_commission: float | None = None
    commission_currency: str = ""
    init_margin_before: float | None = None
    maint_margin_before: float | None = None
    equity_with_loan_before: float | None = None
    init_margin_change: float | None = None
    maint_margin_change: float | None = None
    equity_with_loan_change: float | None = None
    init_margin_after: float | None = None
    maint_margin_after: float | None = None
    equity_with_loan_after: float | None = None
    warning_text: str = ""
    completed_time: str = ""  # "20261127 10:43:07 US/Eastern" once done
    completed_status: str = ""  # "Filled Size: 100" / "Cancelled by Trader"
    parent_perm_id: int = 0
    why_held: str = ""  # "locate": a short sale held while IB locates shares to borrow


@dataclass(frozen=True)
class Execution:
    """One fill (execDetails)."""

    exec_id: str  # "0000e0d5.6571a1b2.01.01"
    order_id: int
    client_id: int
    perm_id: int
    contract: Contract
    time: str  # "20261127 10:43:07 US/Eastern"
    account: str
    exchange: str  # execution venue, e.g. ISLAND
    side: str  # BOT / SLD
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    order_ref: str = ""
    last_liquidity: int = 2


@dataclass(frozen=True)
class CommissionReport:
    """The commission of one execution (commissionReport)."""

    exec_id: str
    commission: float
    currency: str
    realized_pnl: float | None = None  # None (UNSET) for an opening fill


@dataclass(frozen=True)
class Position:
    """A position row (position message)."""

    account: str
    contract: Contract
    position: float
    avg_cost: float


@dataclass(frozen=True)
class PortfolioItem:
    """A portfolio row (updatePortfolio message)."""

    account: str
    contract: Contract
    position: float
    market_price: float
    market_value: float
    avg_cost: float
    unrealized_pnl: float
    realized_pnl: float


@dataclass(frozen=True)
class AccountValue:
    """One account key (updateAccountValue / accountSummary / accountUpdateMulti)."""

    account: str
    key: str
    value: str
    currency: str  # "" for non-monetary keys


@dataclass(frozen=True)
class Quote:
    """Top of book and session figures of one contract."""

    con_id: int
    bid: float
    ask: float
    last: float
    close: float
    open: float
    high: float
    low: float
    bid_size: float = 100.0
    ask_size: float = 100.0
    last_size: float = 100.0
    volume: float = 0.0


@dataclass(frozen=True)
class PnL:
    """Account P&L (pnl message)."""

    daily_pnl: float
    unrealized_pnl: float
    realized_pnl: float


@dataclass(frozen=True)
class PnLSingle:
    """P&L of one position (pnlSingle message)."""

    position: float
    daily_pnl: float
    unrealized_pnl: float
    realized_pnl: float
    value: float


@dataclass(frozen=True)
class ExecutionFilter:
    """reqExecutions filter; empty / zero fields match everything."""

    client_id: int = 0
    account: str = ""
    time: str = ""  # "yyyymmdd-hh:mm:ss" (UTC) or "yyyymmdd hh:mm:ss"
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""


__all__ = [name for name in dir() if name[0].isupper()]
_ = field  # kept for subclasses that need default factories
