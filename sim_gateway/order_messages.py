"""Server messages of orders and executions (openOrder, orderStatus, completedOrder,
execDetails, commissionReport), gated on the negotiated ``version``.
"""

from __future__ import annotations

from dataclasses import replace

from .codec import (
    UNSET_INT_TEXT,
    UNSET_LONG,
    fmt_bool,
    fmt_price,
    fmt_qty,
    fmt_unset_price,
)
from .market_messages import _wire
from .message_ids import Fields
from .types import (
    CommissionReport,
    Contract,
    Execution,
    OrderView,
)

# ---------------------------------------------------------------- orders


def _order_contract(contract: Contract) -> Fields:
    """Contract block of openOrder/completedOrder (stocks carry right "?")."""
    c = _wire(contract)
    return [
        str(c.con_id), c.symbol, c.sec_type, c.last_trade_date, fmt_price(c.strike, "0.0"), c.right or "?",
        c.multiplier, c.exchange, c.currency, c.local_symbol, c.trading_class,
    ]  # fmt: skip


def _order_head(o: OrderView) -> Fields:
    """action … account (shared by openOrder and completedOrder)."""
    return [
        o.action, fmt_qty(o.total_quantity), o.order_type, fmt_price(o.lmt_price, "0.0"),
        fmt_price(o.aux_price, "0.0"), o.tif, o.oca_group, o.account,
    ]  # fmt: skip


def _oca_type(o: OrderView) -> str:
    return str(o.oca_type or 3)


def _margins(o: OrderView) -> Fields:
    """The nine orderState margin figures, UNSET unless known (whatIf)."""
    values = (
        o.init_margin_before, o.maint_margin_before, o.equity_with_loan_before,
        o.init_margin_change, o.maint_margin_change, o.equity_with_loan_change,
        o.init_margin_after, o.maint_margin_after, o.equity_with_loan_after,
    )  # fmt: skip
    return [fmt_unset_price(value) for value in values]


def _v170_tail(version: int) -> Fields:
    """minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsetAtWhole/Half."""
    return [""] * 5 if version >= 170 else []


def open_order(o: OrderView, version: int) -> Fields:
    """openOrder (§2.12), 128 fields at v157 and 135 at v178 for a plain order."""
    return [
        "5", str(o.order_id), *_order_contract(o.contract), *_order_head(o),
        "", "0", o.order_ref, str(o.client_id), str(o.perm_id), fmt_bool(o.outside_rth), "0", "0", "",
        f"{o.perm_id}.0/{o.account}/{fmt_qty(o.total_quantity)}", "", "", "", *([""] if version < 177 else []),
        "", "", "", "", "", "0", "", "-1", "0", "", "", "", "", "",
        UNSET_INT_TEXT, "0", "0", "0", "", _oca_type(o), "0", "0", "", str(o.parent_id), "0", "", "0",
        "None", "", "0", "", "", "", "?", "0", "0", "",
        "0", "0", fmt_price(o.trail_stop_price), fmt_price(o.trailing_percent), "", "", "", "0", "0", "0",
        UNSET_INT_TEXT, UNSET_INT_TEXT, "", "", "0", "", "IB", "0", "0", "", "0",
        fmt_bool(o.what_if), o.status, *_margins(o),
        fmt_price(o.commission), fmt_price(o.min_commission), fmt_price(o.max_commission),
        o.commission_currency, o.warning_text, "0", "0", "0",
        "None", fmt_unset_price(None), fmt_unset_price(o.trail_stop_price),
        *[fmt_unset_price(None)] * 4, "0", "", "", "", "0", "1", "0", "0", "0",
        *[value for gate, value in ((158, ""), (160, ""), (162, "0")) if version >= gate], *_v170_tail(version),
    ]  # fmt: skip


def open_order_end() -> Fields:
    return ["53", "1"]


def order_status(o: OrderView) -> Fields:
    """orderStatus (§2.14): no version field."""
    return [
        "3", str(o.order_id), o.status, fmt_qty(o.filled), fmt_qty(o.remaining),
        fmt_price(o.avg_fill_price, "0.0"), str(o.perm_id), str(o.parent_id),
        fmt_price(o.last_fill_price, "0.0"), str(o.client_id), o.why_held, "0",
    ]  # fmt: skip


def completed_order(o: OrderView, version: int) -> Fields:
    """completedOrder (§2.17), 96 fields at v157 and 100 at v178 for a plain order.

    A filled order's totalQuantity is 0 (its size is filledQuantity), as in IB's captures.
    """
    head = _order_head(replace(o, total_quantity=0.0) if o.status == "Filled" else o)
    return [
        "101", *_order_contract(o.contract), *head,
        "", "0", o.order_ref, str(o.perm_id), fmt_bool(o.outside_rth), "0", "0", "",
        "", "", "", *([""] if version < 177 else []),
        "", "", "", "", "", "0", "", "-1", "", "", "", "", "",
        UNSET_INT_TEXT, "0", "0", "", _oca_type(o), "0", "", "0",
        "None", "", "0", "0", "0", "",
        "0", "0", fmt_price(o.trail_stop_price), fmt_price(o.trailing_percent), "", "0", "0", "0",
        UNSET_INT_TEXT, UNSET_INT_TEXT, "", "", "", "IB", "0", "0", "", "0",
        o.status, "0", "0", "0",
        fmt_unset_price(o.trail_stop_price), fmt_unset_price(None), "0", "1", "0", "",
        fmt_qty(o.filled), UNSET_INT_TEXT, "0", "Not an insider or substantial shareholder", "0", "0",
        str(o.parent_perm_id or UNSET_LONG), o.completed_time, o.completed_status, *_v170_tail(version),
    ]  # fmt: skip


def completed_orders_end() -> Fields:
    return ["102"]


# ---------------------------------------------------------------- executions


def exec_details(req_id: int, e: Execution, version: int) -> Fields:
    """execDetails (§2.15): the contract's exchange is the execution venue."""
    c = _wire(e.contract)
    return [
        "11", str(req_id), str(e.order_id), str(c.con_id), c.symbol, c.sec_type, c.last_trade_date,
        fmt_price(c.strike, "0.0"), c.right, c.multiplier, e.exchange, c.currency, c.local_symbol,
        c.trading_class, e.exec_id, e.time, e.account, e.exchange, e.side, fmt_qty(e.shares),
        fmt_price(e.price, "0.0"), str(e.perm_id), str(e.client_id), "0", fmt_qty(e.cum_qty),
        fmt_price(e.avg_price, "0.0"), e.order_ref, "", "", "", str(e.last_liquidity),
        *(["0"] if version >= 178 else []),
    ]  # fmt: skip


def exec_details_end(req_id: int) -> Fields:
    return ["55", "1", str(req_id)]


def commission_report(report: CommissionReport) -> Fields:
    """Exactly 8 fields; realizedPNL and yield UNSET when unknown."""
    return [
        "59", "1", report.exec_id, fmt_price(report.commission, "0.0"), report.currency,
        fmt_unset_price(report.realized_pnl), fmt_unset_price(None), "",
    ]  # fmt: skip
