"""The broker's internal state records: orders, positions, fills, account metrics and margin."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .broker_types import EPS, LIVE_STATUSES
from .types import (
    CommissionReport,
    Contract,
    Execution,
    OrderRequest,
    OrderView,
)

# ----------------------------------------------------------------------------- internal state


@dataclass
class _Order:
    """A live or finished order (mutable; snapshots are ``view()``)."""

    client_id: int
    order_id: int
    perm_id: int
    contract: Contract
    action: str
    account: str
    total_quantity: float = 0.0
    order_type: str = "MKT"
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    order_ref: str = ""
    oca_group: str = ""
    oca_type: int = 0
    parent_id: int = 0
    parent_perm_id: int = 0
    transmit: bool = True
    outside_rth: bool = False
    trailing_percent: float | None = None
    trail_stop_price: float | None = None
    status: str = "PendingSubmit"  # internal until acknowledged: never sent
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    commission: float | None = None  # cumulative, USD
    held: bool = False  # transmit=False and not yet released
    triggered: bool = False
    fill_due: float | None = None
    cancel_due: float | None = None  # a cancel IB is working on (PendingCancel) until then
    warn_tif: bool = False
    warn_rth: bool = False  # outsideRth asked for and ignored (warning 2109 at the ack)
    opens_at: float | None = None  # held outside market hours until then (warning 399 sent)
    expires_at: float | None = None  # DAY: the close of the session it works in
    completed_time: str = ""
    completed_status: str = ""
    why_held: str = ""  # "locate": held (reported Inactive) until the shares are located

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def remaining(self) -> float:
        return self.total_quantity - self.filled

    @property
    def sign(self) -> float:
        return 1.0 if self.action == "BUY" else -1.0

    def view(self) -> OrderView:
        """Immutable snapshot."""
        return OrderView(
            order_id=self.order_id,
            client_id=self.client_id,
            perm_id=self.perm_id,
            contract=self.contract,
            action=self.action,
            total_quantity=self.total_quantity,
            order_type=self.order_type,
            lmt_price=self.lmt_price,
            aux_price=self.aux_price,
            tif=self.tif,
            account=self.account,
            status=self._shown_status(),
            filled=self.filled,
            remaining=self.remaining,
            avg_fill_price=self.avg_fill_price,
            last_fill_price=self.last_fill_price,
            order_ref=self.order_ref,
            oca_group=self.oca_group,
            oca_type=self.oca_type,
            parent_id=self.parent_id,
            outside_rth=self.outside_rth,
            trailing_percent=self.trailing_percent,
            trail_stop_price=self.trail_stop_price,
            commission=self.commission,
            commission_currency="USD" if self.commission is not None else "",
            completed_time=self.completed_time,
            completed_status=self.completed_status,
            parent_perm_id=self.parent_perm_id,
            why_held=self.why_held if self.live else "",
        )

    def _shown_status(self) -> str:
        if self.live and self.cancel_due is not None:
            return "PendingCancel"
        return "Inactive" if self.live and self.why_held else self.status


def _apply_request(order: _Order, req: OrderRequest) -> None:
    """Copy the modifiable fields of a placeOrder onto an order ("" tif keeps the current)."""
    order.total_quantity = req.total_quantity
    order.order_type = req.order_type.upper()
    order.lmt_price, order.aux_price = req.lmt_price, req.aux_price
    order.tif = req.tif.upper() or order.tif
    order.order_ref = req.order_ref
    order.oca_group = req.oca_group or order.oca_group  # a blank group keeps the one IB holds
    order.oca_type = req.oca_type or order.oca_type
    order.outside_rth = req.outside_rth and not rth_only(order.order_type, order.contract)
    order.transmit = req.transmit
    order.trailing_percent = req.trailing_percent


def rth_only(order_type: str, contract: Contract) -> bool:
    """IB ignores outsideRth for a stock market order: it works in regular hours only."""
    return order_type == "MKT" and contract.sec_type == "STK"


@dataclass
class _Position:
    contract: Contract
    qty: float = 0.0
    avg_cost: float = 0.0  # per unit, contract currency, commissions included
    realized: float = 0.0  # contract currency
    realized_base: float = 0.0  # USD at the fills' rates


def _apply_fill(pos: _Position, delta: float, price: float, commission: float) -> float | None:
    """Book a fill of signed ``delta`` units; realized P&L (contract ccy) if it closed any."""
    closing = min(abs(delta), abs(pos.qty)) if pos.qty * delta < 0 else 0.0
    opening = abs(delta) - closing
    sign = math.copysign(1.0, delta)
    realized = None
    if closing:
        realized = (price - pos.avg_cost) * closing * -sign - commission * closing / abs(delta)
        pos.qty += sign * closing
    if opening > EPS:
        held = abs(pos.qty)
        cost = pos.avg_cost * held + price * opening + sign * commission * opening / abs(delta)
        pos.avg_cost, pos.qty = cost / (held + opening), pos.qty + sign * opening
    if abs(pos.qty) < EPS:
        pos.qty, pos.avg_cost = 0.0, 0.0
    return realized


@dataclass(frozen=True)
class _Fill:
    execution: Execution
    report: CommissionReport
    at: float


@dataclass(frozen=True)
class _Metrics:
    """Account aggregates in USD."""

    cash: float
    securities: float  # signed value of non-CASH positions
    gross: float  # Σ|value| of non-CASH positions
    exposure: float  # Σ|value| of all positions: the margin base
    unrealized: float
    realized: float

    @property
    def net_liq(self) -> float:
        return self.cash + self.securities


@dataclass(frozen=True)
class _Margin:
    equity: float
    init: float
    maint: float


def _margin_text(before: _Margin, after: _Margin) -> str:
    """IB's rejection text when an exposure-increasing order exceeds the equity, else ""."""
    if after.init <= before.init + EPS or after.init <= after.equity:
        return ""
    return (
        "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY WITH LOAN VALUE "
        f"[{after.equity:.2f} USD] MUST EXCEED THE INITIAL MARGIN [{after.init:.2f} USD]"
    )
