"""Routing of the broker's events to sessions, for ``GatewayServer`` (a mixin).

* order events (openOrder, orderStatus, execDetails, commissionReport, order errors) go to the
  owning clientId and to the Master API client id; what they report is logged ahead first;
* account, position and P&L events go to every session subscribed to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import broker as b
from . import protocol as p
from .account_service import _summary_rows
from .types import AccountValue, CommissionReport, OrderView

if TYPE_CHECKING:
    from .connections import Session
    from .server import ServerSettings
    from .state_store import StateStore


class EventRouting:
    """The broker's events to the sessions that should see them."""

    settings: ServerSettings
    broker: b.Broker
    store: StateStore | None
    sessions: list[Session]
    _dirty: bool
    pnl_delay: float

    if TYPE_CHECKING:

        def _send(self, session: Session, fields: list[str]) -> None: ...
        def _send_commission(self, session: Session, report: CommissionReport) -> None: ...
        def _pnl_single_later(self, con_id: int) -> None: ...

        def _session_of(self, client_id: int) -> Session | None: ...

        def _hold_events(self, events: list[Any]) -> bool: ...

        def _route_events(self, events: list[Any]) -> None: ...

        def _hhmm(self) -> str: ...

        def _push_account_values(
            self, session: Session, values: Iterable[AccountValue], multi: int | None = None
        ) -> bool: ...

        def poke(self) -> None: ...

    def _write_ahead(self, events: list[Any]) -> None:
        """Log what order events report before they leave, like a real gateway's own store:
        an acknowledged order or a reported fill survives a SIGKILL of the simulator."""
        if self.store is None:
            return
        perm_ids = {p for p in map(self._perm_id, events) if p is not None}
        if perm_ids:
            self.store.append(self.broker.changes(perm_ids, self.store.marks), self.broker.marks())

    def _perm_id(self, event: Any) -> int | None:
        """The permId of the order an event concerns (None: not an order event)."""
        if isinstance(event, (b.OpenOrderEvent, b.OrderStatusEvent)):
            return int(event.order.perm_id)
        if isinstance(event, b.ExecutionEvent):
            return int(event.execution.perm_id)
        if isinstance(event, (b.CommissionEvent, b.OrderErrorEvent)):
            return self.broker.perm_id_of(event.client_id, event.order_id) or 0
        return None

    def _order_audience(self, owner: int) -> list[Session]:
        sessions = []
        own = self._session_of(owner)
        if own is not None:
            sessions.append(own)
        master = self.settings.master_client_id
        if master is not None and master != owner:
            m = self._session_of(master)
            if m is not None:
                sessions.append(m)
        return sessions

    def _dispatch(self, events: list[Any]) -> None:
        self._write_ahead(events)
        if not self._hold_events(events):
            self._route_events(events)
        if events:
            self._dirty = True
        self.poke()

    # -------------------------------------------------------- event routing
    def _send_open_order(self, session: Session, order: OrderView) -> None:
        session.seen_orders.add((order.client_id, order.order_id))
        self._send(session, p.open_order(order, session.version))

    def _route_open_order(self, event: b.OpenOrderEvent) -> None:
        for session in self._order_audience(event.order.client_id):
            self._send_open_order(session, event.order)

    def _route_order_status(self, event: b.OrderStatusEvent) -> None:
        order = event.order
        for session in self._order_audience(order.client_id):
            if (order.client_id, order.order_id) not in session.seen_orders:
                self._send_open_order(session, order)
            self._send(session, p.order_status(order))

    def _route_execution(self, event: b.ExecutionEvent) -> None:
        for session in self._order_audience(event.execution.client_id):
            self._send(session, p.exec_details(-1, event.execution, session.version))

    def _route_commission(self, event: b.CommissionEvent) -> None:
        for session in self._order_audience(event.client_id):
            self._send_commission(session, event.report)

    def _route_order_error(self, event: b.OrderErrorEvent) -> None:
        # Only the owner: an error carrying another client's orderId would hit an
        # unrelated local order with the same id in the master's client library.
        session = self._session_of(event.client_id)
        if session is not None:
            self._send(session, p.error(event.order_id, event.code, event.text, session.version))

    def _route_what_if(self, event: b.WhatIfEvent) -> None:
        session = self._session_of(event.client_id)
        if session is not None:
            self._send(session, p.open_order(event.order, session.version))

    def _route_position(self, event: b.PositionEvent) -> None:
        for session in self.sessions:
            if session.started and session.positions:
                self._send(session, p.position(event.position))

    def _route_portfolio(self, event: b.PortfolioEvent) -> None:
        for session in self.sessions:
            if session.started and session.account_updates:
                self._send(session, p.portfolio_value(event.item))

    def _route_account_values(self, event: b.AccountValuesEvent) -> None:
        hhmm = self._hhmm()
        for session in self.sessions:
            if not session.started:
                continue
            if session.account_updates and self._push_account_values(session, event.values):
                self._send(session, p.account_update_time(hhmm))
            for req_id in session.multi:
                self._push_account_values(session, event.values, req_id)
            for req_id, tags in session.summaries.items():
                for value in _summary_rows(event.values, tags):
                    self._send(session, p.account_summary(req_id, value))

    def _route_pnl(self, event: b.PnLEvent) -> None:
        for session in self.sessions:
            for req_id in session.pnl:
                self._send(session, p.pnl(req_id, event.pnl))

    def _route_pnl_single(self, event: b.PnLSingleEvent) -> None:
        if self.pnl_delay > 0:
            self._pnl_single_later(event.con_id)
            return
        for session in self.sessions:
            for req_id, con_id in session.pnl_single.items():
                if con_id == event.con_id:
                    self._send(session, p.pnl_single(req_id, event.pnl_single))

    def _dispatch_quiet(self, events: list[Any]) -> None:
        self._write_ahead(events)
        if not self._hold_events(events):
            self._route_events(events)
        if events:
            self._dirty = True
