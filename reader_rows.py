"""What the read path shows, as frozen rows (account, positions, orders, executions, quotes) and
the functions that build them from ib_async's objects. ``ib_connector`` keeps them fresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal

from ib_async import IB, Contract
from ib_async.objects import Fill
from ib_async.order import Trade

import ib_compat
import instruments
import market_data
from config import is_paper_account
from ib_connection import ConnectionState
from live_marks import LiveMarks, Mark

IB_SIDES = {"BOT": "BUY", "SLD": "SELL"}  # an execution's side in the words orders use
# the account's base currency as the reader takes it: its figures and IB's pnl / pnlSingle are in it
ACCOUNT_CURRENCY = "USD"
ACCOUNT_KEYS = {
    "NetLiquidation": "net_liquidation",
    "TotalCashValue": "cash",
    "BuyingPower": "buying_power",
    "AvailableFunds": "available_funds",
    "ExcessLiquidity": "excess_liquidity",
    "GrossPositionValue": "gross_position_value",
    "UnrealizedPnL": "unrealized_pnl",
    "RealizedPnL": "realized_pnl",
    "InitMarginReq": "init_margin",
    "MaintMarginReq": "maint_margin",
    "EquityWithLoanValue": "equity_with_loan",
}
OPEN_STATUSES = {"PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "PendingCancel"}


@dataclass(frozen=True)
class AccountSnapshot:
    """Headline figures of the account plus every raw key."""

    account: str
    paper: bool
    currency: str
    figures: dict[str, float | None]
    values: dict[str, str]


@dataclass(frozen=True)
class PositionRow:
    """One position with its market figures."""

    account: str
    con_id: int
    symbol: str
    sec_type: str
    currency: str  # the contract's: its prices, value and P&L are in it (not daily_pnl)
    quantity: float
    avg_cost: float
    market_price: float | None
    market_value: float | None  # IB's: price x quantity x multiplier
    unrealized_pnl: float | None
    realized_pnl: float | None
    description: str = ""  # IB's words: "AAPL 20261218 200 C", "ES 202612", the symbol
    multiplier: float = 1.0  # avg_cost, market_value and P&L have it applied (IB's figures)
    local_symbol: str = ""
    avg_price: float | None = None  # avg_cost / multiplier: comparable with market_price
    daily_pnl: float | None = None  # P&L today (IB's pnlSingle), in the account's currency
    # what market data the price and value are (live | delayed | ..., market_data.TYPE_NAMES);
    # None until a quote told (market_data.Entitlements)
    market_data: str | None = None


@dataclass(frozen=True)
class OrderRow:
    """One order of any client, as the gateway reports it."""

    perm_id: int
    order_id: int
    client_id: int
    order_ref: str
    account: str
    symbol: str
    sec_type: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    stop_price: float | None
    tif: str
    status: str
    filled: float
    remaining: float
    avg_fill_price: float | None
    open: bool
    description: str = ""  # the contract in IB's words
    currency: str = ""  # the contract's (a stock's listing: AAPL in EUR is not the US one)


@dataclass(frozen=True)
class ExecutionRow:
    """One fill with its commission."""

    exec_id: str
    perm_id: int
    order_id: int
    client_id: int
    order_ref: str
    time: str
    account: str
    symbol: str
    side: str  # BUY / SELL, as for orders
    shares: float
    price: float
    commission: float | None
    currency: str  # the contract's: price and value are in it (USD.JPY: yen)
    realized_pnl: float | None
    description: str = ""  # the contract in IB's words
    multiplier: float = 1.0
    value: float | None = None  # shares x price x multiplier
    ib_side: str = ""  # IB's own word for it: BOT / SLD
    commission_currency: str = ""  # the commission report's ("" until it came)


@dataclass(frozen=True)
class Snapshot:
    """Everything the read endpoints serve, as of ``updated_at``."""

    connection: ConnectionState
    account: AccountSnapshot | None
    positions: tuple[PositionRow, ...]
    orders: tuple[OrderRow, ...]
    executions: tuple[ExecutionRow, ...]
    updated_at: float | None  # epoch seconds of the last broker data
    orders_updated_at: float | None
    version: int = 0  # any part changed (the account and positions move with every price)
    orders_version: int = 0  # the orders changed
    executions_version: int = 0  # the executions changed
    positions_version: int = 0  # the positions changed (their prices and P&L too)
    # our clock when the reader asked for the executions it lists (None: not yet this session);
    # a fill reported to us before then is in this snapshot's positions (see ``ib_connector``)
    executions_asked_at: float | None = None


@dataclass(frozen=True)
class Quote:
    """A snapshot quote for one symbol."""

    symbol: str
    sec_type: str
    con_id: int
    currency: str  # what the prices are in (the qualified contract's; an FX pair's quote side)
    bid: float | None
    ask: float | None
    last: float | None
    close: float | None
    time: float
    market_data: str = "live"  # live | frozen | delayed | delayed-frozen (market_data.TYPE_NAMES)
    notice_code: int | None = None  # IB's reason when there is no price (354, 10168, 10197...)
    notice: str | None = None  # that reason and what to do, in words


def _num(value: float | None) -> float | None:
    """A price of a tick: ib_async uses nan / -1 for 'no value', and a value that is no price
    (±Infinity, IB's UNSET_DOUBLE) is none either; the API uses null. An infinite bid made the
    quote's midpoint infinite, and the risk gate's price collar let any limit price through."""
    number = ib_compat.number(value)
    return None if number is None or number == -1 else number


def _unset(value: float | Decimal | None) -> float | None:
    return None if value is None or value >= 1.7e308 or math.isnan(value) else float(value)


def _account_snapshot(
    ib: IB, wanted: str, marks: LiveMarks | None = None
) -> AccountSnapshot | None:
    accounts = ib.managedAccounts()
    account = wanted or (accounts[0] if accounts else "")
    if not account:
        return None
    values: dict[str, str] = {}
    figures: dict[str, float | None] = {name: None for name in ACCOUNT_KEYS.values()}
    figures["daily_pnl"] = None
    currency = ACCOUNT_CURRENCY
    for v in ib.accountValues(account):
        if v.currency in ("BASE",) or v.modelCode:
            continue
        values[v.tag if not v.currency or v.currency == currency else f"{v.tag}.{v.currency}"] = (
            v.value
        )
        if v.tag in ACCOUNT_KEYS and v.currency in ("USD", currency):
            figures[ACCOUNT_KEYS[v.tag]] = ib_compat.number(v.value)  # UNSET_DOUBLE: unknown
    if marks is not None:  # IB's pnl: pushed every second, the instant of the rows' pnlSingle
        figures.update({k: v for k, v in marks.figures().items() if v is not None})
    return AccountSnapshot(
        account=account,
        paper=is_paper_account(account),
        currency=currency,
        figures=figures,
        values=values,
    )


def _positions(
    ib: IB, entitled: market_data.Entitlements, marks: LiveMarks | None = None
) -> tuple[PositionRow, ...]:
    portfolio = {(item.account, item.contract.conId): item for item in ib.portfolio()}
    live = marks.row_marks() if marks is not None else {}
    rows = []
    for pos in ib.positions():
        if not pos.position:
            continue
        item = portfolio.get((pos.account, pos.contract.conId))
        multiplier = instruments.multiplier_of(pos.contract.multiplier)
        rows.append(
            PositionRow(
                account=pos.account,
                con_id=pos.contract.conId,
                symbol=_symbol(pos.contract),
                sec_type=pos.contract.secType,
                currency=pos.contract.currency,
                quantity=pos.position,
                avg_cost=pos.avgCost,
                market_price=ib_compat.number(item.marketPrice) if item else None,
                market_value=ib_compat.number(item.marketValue) if item else None,
                unrealized_pnl=ib_compat.number(item.unrealizedPNL) if item else None,
                realized_pnl=ib_compat.number(item.realizedPNL) if item else None,
                description=_description(pos.contract),
                multiplier=multiplier,
                local_symbol=pos.contract.localSymbol,
                avg_price=pos.avgCost / multiplier,
                market_data=entitled.of(pos.contract.conId),
            )
        )
        mark = (
            live.get(pos.contract.conId)
            if pos.account == (marks.account if marks else "")
            else None
        )
        if mark is not None and not _same_position(mark, pos.position):
            mark = None  # figures of the position before a fill: the next pnlSingle brings its own
        if mark is not None and rows[-1].currency == ACCOUNT_CURRENCY:
            rows[-1] = _marked(rows[-1], mark, pos.contract.multiplier)
        elif mark is not None:  # pnlSingle is in the account's currency, not in the row's (JPY)
            rows[-1] = replace(rows[-1], daily_pnl=mark.daily_pnl)
    return tuple(sorted(rows, key=lambda r: r.symbol))


def _description(contract: Contract) -> str:
    return instruments.describe(
        contract.symbol,
        contract.secType,
        contract.lastTradeDateOrContractMonth,
        contract.strike,
        contract.right,
        contract.localSymbol if contract.secType in ("FUT", "CONTFUT") else _symbol(contract),
    )


def _marked(row: PositionRow, mark: Mark, multiplier: str) -> PositionRow:
    """A position row with IB's pnlSingle figures (fresher than the portfolio's)."""
    value = mark.value if mark.value is not None else row.market_value
    try:
        size = row.quantity * (float(multiplier) if multiplier else 1.0)
    except ValueError:
        size = row.quantity
    price = value / size if value is not None and size else row.market_price
    return replace(
        row,
        market_price=price,
        market_value=value,
        unrealized_pnl=_pick(mark.unrealized_pnl, row.unrealized_pnl),
        realized_pnl=_pick(mark.realized_pnl, row.realized_pnl),
        daily_pnl=mark.daily_pnl,
    )


def _same_position(mark: Mark, quantity: float) -> bool:
    """IB's pnlSingle is of this position (it comes on its own, about a second after the
    position message of a fill: until then its value is of the old quantity)."""
    return mark.position is None or abs(mark.position - quantity) < 1e-9


def _pick(first: float | None, second: float | None) -> float | None:
    return first if first is not None else second


def _symbol(contract: Contract) -> str:
    if contract.secType == "CASH":
        return contract.localSymbol or f"{contract.symbol}.{contract.currency}"
    return contract.symbol


def _order_row(trade: Trade, is_open: bool) -> OrderRow:
    order, status, contract = trade.order, trade.orderStatus, trade.contract
    state = ib_compat.broker_state(status)
    filled = float(
        status.filled
        if is_open
        else (order.filledQuantity if _unset(order.filledQuantity) is not None else status.filled)
    )
    quantity = float(order.totalQuantity)
    if not is_open and state == "Filled" and not quantity:
        quantity = filled  # completed orders report totalQuantity 0 once filled
    return OrderRow(
        perm_id=order.permId,
        order_id=order.orderId,
        client_id=order.clientId,
        order_ref=order.orderRef or "",
        account=order.account,
        symbol=_symbol(contract),
        sec_type=contract.secType,
        action=order.action,
        quantity=quantity,
        order_type=order.orderType,
        limit_price=_unset(order.lmtPrice) or None,
        stop_price=_unset(order.auxPrice) or None,
        tif=order.tif,
        status=state,
        filled=filled or 0.0,
        # a completed order has no remaining (ib_async): what was left unfilled, as IB's status
        remaining=status.remaining if is_open else max(0.0, quantity - (filled or 0.0)),
        avg_fill_price=_num(status.avgFillPrice) or None,
        open=is_open and state in OPEN_STATUSES | {"ValidationError"},
        description=_description(contract),
        currency=contract.currency or "",
    )


def _execution_row(fill: Fill) -> ExecutionRow:
    ex, report = fill.execution, fill.commissionReport
    multiplier = instruments.multiplier_of(fill.contract.multiplier)
    return ExecutionRow(
        exec_id=ex.execId,
        perm_id=ex.permId,
        order_id=ex.orderId,
        client_id=ex.clientId,
        order_ref=ex.orderRef or "",
        time=ex.time.isoformat() if ex.time else "",
        account=ex.acctNumber,
        symbol=_symbol(fill.contract),
        side=IB_SIDES.get(ex.side, ex.side),
        ib_side=ex.side,
        shares=ex.shares,
        price=ex.price,
        commission=ib_compat.number(report.commission) if report.execId else None,
        currency=fill.contract.currency or "",
        commission_currency=(report.currency or "") if report.execId else "",
        realized_pnl=report.realizedPNL if report.execId else None,
        description=_description(fill.contract),
        multiplier=multiplier,
        value=ex.shares * ex.price * multiplier,
    )
