"""The few ib_async 2.1.0 details both the read path and the write path rely on.

Contracts from a validated symbol, ib_async's "unset" numbers, its order status sets, the one
place that reaches into its private tables (dropping a finished trade), and the guard that logs
what our event handlers raise (eventkit would hide it). Pinned to the
ib_async version the tests run (pyproject: ``ib_async==2.1.0``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import ParamSpec

from ib_async import IB, Contract, ExecutionFilter, Fill, Forex, Stock
from ib_async.order import OrderStatus, Trade
from ib_async.util import UNSET_DOUBLE

P = ParamSpec("P")

DONE_STATES = frozenset(OrderStatus.DoneStates)  # Filled Cancelled ApiCancelled Inactive
# the statuses of an order the broker holds live (PendingSubmit is ib_async's own, never sent)
WORKING_STATES = frozenset({"PreSubmitted", "Submitted", "ApiPending", "PendingCancel"})
CLIENT_SIDE_STATES = frozenset({"PendingSubmit", "PendingCancel", "ValidationError"})


def make_contract(
    symbol: str, sec_type: str = "STK", currency: str = "USD", con_id: int = 0, exchange: str = ""
) -> Contract:
    """An unqualified ib_async contract for a validated symbol, or for the conId the broker
    resolved a derivative to (``instruments.resolve``; qualifying fills in the rest)."""
    if con_id:
        return Contract(conId=con_id, secType=sec_type, currency=currency, exchange=exchange)
    if sec_type == "CASH":
        return Forex(symbol.replace(".", "").replace("/", ""))
    return Stock(symbol, "SMART", currency)


def unset_price(value: float | Decimal | None) -> float | None:
    """A price ib_async reports, or None when unset (UNSET_DOUBLE, nan, 0)."""
    if value is None or value >= UNSET_DOUBLE or not math.isfinite(value) or value == 0:
        return None
    return float(value)


def filled_quantity(trade: Trade) -> float:
    """completedOrder carries the filled quantity on the order, not in a status."""
    value = trade.order.filledQuantity
    return 0.0 if value is None or value >= UNSET_DOUBLE else float(value)


def number(value: object) -> float | None:
    """An OrderState figure as a float; None when unset or unparsable."""
    try:
        result = float(value)  # type: ignore[arg-type]  # str, Decimal or float from ib_async
    except (TypeError, ValueError):
        return None
    return None if not math.isfinite(result) or abs(result) >= UNSET_DOUBLE else result


def forget_trade(ib: IB, trade: Trade) -> None:
    """Drop a finished trade and its fills from ib_async's tables (memory stays flat)."""
    wrapper, order = ib.wrapper, trade.order
    wrapper.trades.pop(wrapper.orderKey(order.clientId, order.orderId, order.permId), None)
    wrapper.permId2Trade.pop(order.permId, None)
    for fill in trade.fills:
        wrapper.fills.pop(fill.execution.execId, None)


def logged(log: logging.Logger, what: str, handler: Callable[P, None]) -> Callable[P, None]:
    """``handler`` for an ib_async event, its exceptions logged. eventkit hands a listener's
    exception to the event's ``error_event``, which nobody listens to: it would vanish."""

    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:  # log and carry on: the event's other listeners and later events
            log.exception("💥 %s failed; carrying on", what)

    return run


FALSE_CANCEL_CODES = frozenset({10349})  # informational, but ib_async 2.1.0 cancels on them


def is_warning(code: int) -> bool:
    """IB's notices that leave an order and a change sent as they are: 2100-2199 (e.g. 2109
    outsideRth ignored), 399 (held until the open), 404 (a short sale held for a locate),
    10349 (TIF set by preset)."""
    return 2100 <= code < 2200 or code in (399, LOCATE_HOLD) or code in FALSE_CANCEL_CODES


LOCATE_HOLD = 404  # "Order held while securities are located."


def live_trades(ib: IB) -> list[Trade]:
    """ib_async's trades IB still works, a short sale held for a locate included (ib_async's
    ``openTrades`` counts its Inactive as done)."""
    return [t for t in ib.trades() if broker_state(t.orderStatus) not in DONE_STATES]


def broker_state(status: OrderStatus) -> str:
    """The order's status as it stands at IB: a short sale IB holds while it locates shares to
    borrow is reported Inactive with whyHeld "locate" (after 404), yet lives and may fill: it
    stands as PreSubmitted (accepted, not at the exchange yet), not as done."""
    if status.status == "Inactive" and "locate" in (status.whyHeld or "").lower():
        return "PreSubmitted"
    return status.status


# a cancel refused (161: not cancellable now; 10148: done already): the order is at the broker
CANCEL_REFUSALS = frozenset({161, 10148})
ORDER_CANCELLED = 202  # "Order Canceled - reason:": the order's end, IB's or ours


HUNG_EXECUTIONS = (
    "⚠️ The gateway did not end its executions answer within %.0f s (TWS 10.30.1 never does: "
    "ib_async #54); taking the executions it sent"
)


_CLOCK_ASKS: weakref.WeakKeyDictionary[IB, asyncio.Lock] = weakref.WeakKeyDictionary()


async def current_time(ib: IB, timeout: float) -> datetime:
    """reqCurrentTime, one at a time on a connection (``timeout`` s for the wait and the
    answer). ib_async files every reqCurrentTime under one key: a second asked before the
    first's answer takes that answer, and the first waits forever (a heartbeat that times out
    beside another asker: a needless reconnect)."""
    lock = _CLOCK_ASKS.get(ib)
    if lock is None:
        lock = _CLOCK_ASKS[ib] = asyncio.Lock()

    async def ask() -> datetime:
        async with lock:
            return await ib.reqCurrentTimeAsync()

    return await asyncio.wait_for(ask(), timeout)


async def executions(
    ib: IB, timeout: float, since: str = "", log: logging.Logger | None = None
) -> tuple[list[Fill], bool]:
    """reqExecutions (``since``: the filter's time), and whether its answer ended. TWS 10.30.1
    sends the executions but never the end of the answer (ib_async #54, ib_insync #638). When
    the end does not come within ``timeout``, a request sent after it (reqCurrentTime) tells a
    gateway that answers, so has sent every execution it will (they land in ``ib.fills()``),
    from a silent one (TimeoutError, as before: nothing is concluded from it). ``log``: where
    an answer that did not end is said (HUNG_EXECUTIONS)."""
    request = ib.reqExecutionsAsync(ExecutionFilter(time=since))
    try:
        return await asyncio.wait_for(request, timeout), True
    except TimeoutError:
        await current_time(ib, timeout)
        if log is not None:
            log.warning(HUNG_EXECUTIONS, timeout)
        return ib.fills(), False
