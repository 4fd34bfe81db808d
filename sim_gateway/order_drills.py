"""The simulated gateway's drills of what IB does to orders on its own: a rejection, a cancel
from TWS, a short sale held for a locate, an execution corrected, a Filled status left untold,
reqExecutions left unanswered or answered empty, completed orders forgotten.
A mixin of ``SimGateway`` (its methods run on the gateway's loop through ``_run``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .server import GatewayServer

T = TypeVar("T")


class OrderDrills:
    """IB acting on orders by itself, on demand (each thread-safe)."""

    if TYPE_CHECKING:

        def _run(self, fn: Callable[[GatewayServer], T]) -> T: ...

        def _set_broker(self, name: str, value: Any) -> None: ...

    def set_filled_status(self, enabled: bool) -> None:
        """Send orderStatus Filled when a fill completes an order (on by default). IB does not
        promise an orderStatus for every change: an order that fills at once often gets none,
        only its execDetails (and openOrder)."""
        self._set_broker("filled_status", enabled)

    def set_executions_answer(self, answer: str) -> None:
        """How reqExecutions is answered: ``full`` (the fills, then execDetailsEnd), ``none``
        (the fills but never the end: TWS 10.30.1, ib_async #54, ib_insync #638) or ``empty``
        (the end at once, no fills: the TWS 10.31 beta of the same report)."""
        if answer not in ("full", "none", "empty"):
            raise ValueError(f"executions answer {answer!r}: full, none or empty")
        self._run(lambda s: setattr(s, "executions_answer", answer))

    def set_open_orders_answered(self, answered: bool) -> None:
        """reqAllOpenOrders answered (True, the default) or left without an answer: a gateway
        busy or half-hung answers the heartbeat and pushes, and lets this request wait."""
        self._run(lambda s: setattr(s, "open_orders_answered", answered))

    def set_portfolio_first(self, enabled: bool) -> None:
        """Send a fill's updatePortfolio before its position message (IB sends them on two
        streams and promises no order between them)."""
        self._set_broker("portfolio_first", enabled)

    def forget_completed_orders(self) -> None:
        """reqCompletedOrders lists none of the orders finished so far, while reqExecutions
        still lists their fills (IB Gateway restarted since: its completed orders are the
        session's, the executions the day's)."""
        self._run(lambda s: s.broker.forget_completed())

    def reject_next_order(self, reason: str = "Simulated rejection") -> None:
        """Reject the next order placed, or change of a working order (error 201)."""
        self._run(lambda s: s.broker.reject_next_order(reason))

    def cancel_at_broker(self, client_id: int, order_id: int) -> None:
        """Cancel an order as the trader would in TWS: its owner and the master client hear
        of it, and nothing of it comes from the owner's connection."""
        self._run(
            lambda s: s._dispatch(
                s.broker.cancel_order(client_id, order_id, s.clock.now(), by_api=False)
            )
        )

    def set_hard_to_borrow(self, *symbols: str) -> None:
        """Short sales of these stocks are held for a locate (404, Inactive whyHeld 'locate')."""
        self._set_broker("hard_to_borrow", set(symbols))

    def shares_located(self, symbol: str) -> None:
        """IB located the shares: ``symbol``'s held short sales work (and may fill) now."""
        self._run(lambda s: s._dispatch(s.broker.shares_located(symbol, s.clock.now())))

    def correct_execution(self, exec_id: str, price: float) -> None:
        """IB corrects an execution: a new execDetails at ``price`` under the next execId."""
        self._run(lambda s: s._dispatch(s.broker.correct_execution(exec_id, price, s.clock.now())))
