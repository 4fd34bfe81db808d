"""Cancelling orders at the ``Broker`` (a mixin): one order (10147 unknown, 10148 done or
already being cancelled), every order (reqGlobalCancel), and IB's PendingCancel window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors
from .broker_state import _Order
from .broker_types import BY_TRADER, CANCELED, Event, OrderErrorEvent, OrderStatusEvent


class OrderCancels:
    """Cancels: at once, or after ``cancel_delay`` with PendingCancel reported meanwhile."""

    _clock: float
    _live: dict[int, _Order]
    cancel_delay: float

    if TYPE_CHECKING:

        def advance(self, now: float) -> list[Event]: ...

        def _lookup(self, client_id: int, order_id: int) -> _Order | None: ...

        def _schedule(self, order: _Order, at: float, kind: str) -> None: ...

        def _show(self, order: _Order) -> list[Event]: ...

        def _children(self, order: _Order) -> list[_Order]: ...

        def _finish(self, order: _Order, status: str, now: float, note: str) -> None: ...

    def cancel_order(
        self, client_id: int, order_id: int, now: float, by_api: bool = True
    ) -> list[Event]:
        """Cancel one of the client's own orders (10147 unknown, 10148 already done); not
        ``by_api``: in TWS, by the trader."""
        events = self.advance(now)
        order = self._lookup(client_id, order_id)
        if order is None:
            return events + [
                OrderErrorEvent(client_id, order_id, 10147, errors.text(10147, order_id=order_id))
            ]
        if not order.live or order.cancel_due is not None:  # done, or its cancel on its way
            text = errors.text(10148, order_id=order_id, state=order.view().status)
            return events + [OrderErrorEvent(client_id, order_id, 10148, text)]
        return events + self._request_cancel(order, self._clock, by_api)

    def global_cancel(self, now: float) -> list[Event]:
        """Cancel every live order of every client."""
        events = self.advance(now)
        for order in list(self._live.values()):
            if order.live and order.cancel_due is None:
                events += self._request_cancel(order, self._clock)
        return events

    def _request_cancel(self, order: _Order, now: float, by_api: bool = True) -> list[Event]:
        """With ``cancel_delay``, IB's reports say PendingCancel until the cancel is done (the
        order can still fill meanwhile; recorded paper sessions in ibx: PendingCancel, then
        Cancelled, then 202); a second cancel meanwhile answers 10148 'state: PendingCancel'."""
        if order.status == "PendingSubmit":  # not acknowledged yet: by the API, ApiCancelled
            return self._cancel(order, now, BY_TRADER, "ApiCancelled" if by_api else "Cancelled")
        if self.cancel_delay <= 0:  # however quick, IB reports PendingCancel first
            order.cancel_due = now
            pending = self._show(order)
            order.cancel_due = None
            return pending + self._cancel(order, now, BY_TRADER)
        self._schedule(order, now + self.cancel_delay, "cancel")
        return self._show(order)

    def _due_cancel(self, order: _Order, now: float) -> list[Event]:
        order.cancel_due = None
        return self._cancel(order, now, BY_TRADER)

    def _cancel(
        self, order: _Order, now: float, why: str, status: str = "Cancelled"
    ) -> list[Event]:
        """OrderStatus ``status`` + 202, then the same for the order's children."""
        self._finish(order, status, now, why)
        events: list[Event] = [
            OrderStatusEvent(order.view()),
            OrderErrorEvent(order.client_id, order.order_id, 202, CANCELED),
        ]
        for child in self._children(order):
            events += self._cancel(child, now, why, status)
        return events
