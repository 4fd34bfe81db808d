"""Order requests of ``GatewayServer`` (a mixin): placeOrder, cancelOrder, reqGlobalCancel and
the order and execution queries (open, all open, auto open, completed, executions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import broker as b
from . import protocol as p
from .connections import _client_id
from .types import CommissionReport, OrderView

if TYPE_CHECKING:
    from .clock import SimClock
    from .connections import Session
    from .server import ServerSettings


class OrderHandlers:
    """Orders in (to the broker) and order lists out."""

    broker: b.Broker
    clock: SimClock
    settings: ServerSettings
    executions_answer: str  # full | none (no execDetailsEnd) | empty
    open_orders_answered: bool  # False: reqAllOpenOrders gets no answer at all

    if TYPE_CHECKING:

        def _send(self, session: Session, fields: list[str]) -> None: ...
        def _send_commission(self, session: Session, report: CommissionReport) -> None: ...

        def _send_open_order(self, session: Session, order: OrderView) -> None: ...

        def _dispatch(self, events: list[Any]) -> None: ...

    def _on_place_order(self, session: Session, request: p.PlaceOrder) -> None:
        self._dispatch(
            self.broker.place_order(_client_id(session), request.order, self.clock.now())
        )

    def _on_cancel_order(self, session: Session, request: p.CancelOrder) -> None:
        self._dispatch(
            self.broker.cancel_order(_client_id(session), request.order_id, self.clock.now())
        )

    def _on_global_cancel(self, session: Session, request: p.ReqGlobalCancel) -> None:
        self._dispatch(self.broker.global_cancel(self.clock.now()))

    def _send_order_list(self, session: Session, orders: list[OrderView]) -> None:
        for order in orders:
            self._send_open_order(session, order)
            self._send(session, p.order_status(order))
        self._send(session, p.open_order_end())

    def _on_open_orders(self, session: Session, request: p.ReqOpenOrders) -> None:
        self._send_order_list(session, self.broker.open_orders(session.client_id))

    def _on_all_open_orders(self, session: Session, request: p.ReqAllOpenOrders) -> None:
        if self.open_orders_answered:
            self._send_order_list(session, self.broker.open_orders(None))

    def _on_auto_open_orders(self, session: Session, request: p.ReqAutoOpenOrders) -> None:
        if session.client_id != 0:
            self._send(
                session,
                p.error(
                    -1,
                    327,
                    "Only API connections with clientId set to 0 can set the auto bind "
                    "TWS orders property.",
                    session.version,
                ),
            )

    def _on_completed_orders(self, session: Session, request: p.ReqCompletedOrders) -> None:
        for order in self.broker.completed_orders():
            self._send(session, p.completed_order(order, session.version))
        self._send(session, p.completed_orders_end())

    def _on_executions(self, session: Session, request: p.ReqExecutions) -> None:
        try:
            fills = self.broker.executions(request.filter)
        except ValueError as exc:  # a malformed filter time: refuse the request, keep the session
            self._send(
                session,
                p.error(
                    request.req_id,
                    321,
                    "Error validating request.-'sim' : "
                    f"cause - invalid execution filter time "
                    f"{request.filter.time!r}: {exc}",
                    session.version,
                ),
            )
            fills = []
        if self.executions_answer == "empty":
            fills = []
        master = session.client_id == self.settings.master_client_id
        for execution, report in fills:
            self._send(session, p.exec_details(request.req_id, execution, session.version))
            # IB: "to receive commissions reports for all clients it is necessary to connect
            # as the Master Client ID" (Executions and Commissions, TWS API docs)
            if master or execution.client_id == session.client_id:
                self._send_commission(session, report)
        if self.executions_answer != "none":
            self._send(session, p.exec_details_end(request.req_id))
