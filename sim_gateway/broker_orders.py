"""Order entry of the ``Broker`` (a mixin): placing, modifying, what-if previews, validation
and rejection (cancelling: ``broker_cancels``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from . import errors
from .broker_rules import (
    _RULES,
    _ib_time,
    _rejection,
    units_per_contract,
)
from .broker_state import (
    _apply_request,
    _Margin,
    _margin_text,
    _Order,
    rth_only,
)
from .broker_types import (
    EPS,
    OFF_TICK,
    PERM_ID_BASE,
    SIDES,
    TIFS,
    WHOLE_UNITS,
    BrokerConfig,
    Event,
    OpenOrderEvent,
    OrderErrorEvent,
    OrderStatusEvent,
    WhatIfEvent,
)
from .contracts import ContractTable, unresolved_text
from .market_rules import increment_at
from .prices import on_tick
from .types import (
    Contract,
    ContractQuery,
    OrderRequest,
)


def _off_tick(client_id: int, req: OrderRequest, contract: Contract) -> OrderErrorEvent | None:
    """110 alone for a new order priced off the tick: IB makes no order of it (no permId, no
    openOrder, no status; ib_insync 0108307 cancels such a trade itself, #502)."""
    prices = [p for p in (req.lmt_price, req.aux_price) if p]
    if all(on_tick(p, increment_at(contract, p)) for p in prices):
        return None
    return OrderErrorEvent(client_id, req.order_id, 110, OFF_TICK)


def _parent_gone(order: _Order, req: OrderRequest, parent: _Order | None) -> OrderErrorEvent | None:
    """135 for a modify naming a parent IB no longer works (filled, cancelled): IB looks the
    parent up among working orders (ib_insync #647: a bracket's stop moved after its entry
    filled, 'Error 135, reqId 22: Can't find order with id = 20'); the order is unchanged."""
    if not req.parent_id or (parent is not None and parent.live):
        return None
    text = errors.text(135, order_id=req.parent_id)
    return OrderErrorEvent(order.client_id, order.order_id, 135, text)


def _oca_revised(order: _Order, req: OrderRequest) -> OrderErrorEvent | None:
    """10326 for a modify naming another OCA group than the one IB holds (a bracket leg's is
    its parent's permId, whatever group it was placed with); 10327 for a bracket leg's modify
    naming its parent without its group (users' paper sessions: the leg re-sent with its
    parentId and no OCA fields got 10327; with IB's group, or without the parentId, it
    applied). A blank group otherwise keeps IB's."""
    if req.oca_group and req.oca_group != order.oca_group:
        code = 10326
    elif not req.oca_group and order.oca_group and req.parent_id:
        code = 10327
    else:
        return None
    return OrderErrorEvent(order.client_id, order.order_id, code, errors.text(code))


def _modify_reason(order: _Order, req: OrderRequest) -> str | None:
    if req.action.upper() != order.action:
        return "The order action cannot be modified"
    if req.total_quantity <= order.filled + EPS:
        return "The order quantity cannot be reduced to or below the filled quantity"
    return None


class OrderEntry:
    """Orders in: checks, acknowledgements scheduled, modifications."""

    config: BrokerConfig
    _contracts: ContractTable
    _clock: float
    _orders: dict[int, _Order]
    _live: dict[int, _Order]
    _index: dict[tuple[int, int], int]
    _max_ids: dict[int, int]
    _completed: list[int]
    _counters: dict[str, int]
    validation_delay: float
    tif_preset_warning: bool
    _reject_reason: str | None

    if TYPE_CHECKING:

        def advance(self, now: float) -> list[Event]: ...

        def _schedule(self, order: _Order, at: float, kind: str) -> None: ...

        def _rate(self, currency: str) -> float: ...

        def _margin_effect(
            self, contract: Contract, delta: float, price: float, commission: float
        ) -> tuple[_Margin, _Margin]: ...

        def _estimate(self, req: OrderRequest, contract: Contract) -> float: ...

        def _margin_reason(
            self, contract: Contract, req: OrderRequest, qty: float
        ) -> str | None: ...

        def _show(self, order: _Order) -> list[Event]: ...

        def _ack(self, order: _Order, now: float) -> list[Event]: ...

        def _children(self, order: _Order) -> list[_Order]: ...

        def _release(self, order: _Order, now: float) -> list[Event]: ...

        def _work(self, order: _Order, now: float, due: bool = False) -> list[Event]: ...

        def _commission(self, contract: Contract, qty: float, value: float) -> float: ...

    def next_valid_id(self, client_id: int) -> int:
        return self._max_ids.get(client_id, 0) + 1

    def place_order(self, client_id: int, request: OrderRequest, now: float) -> list[Event]:
        """New order, modification of a live order id of this client, or a what-if.

        Order of checks: 321 (no exchange), 103/104 (id), 200 (contract), 10268/10269, 110 (off-tick price; an
        error only, like the others before it), then 201 + Inactive for reject_next_order, bad
        fields, unknown parent, insufficient margin. A modification refused gets 201 (or 110,
        135, 10326/10327) alone: the order stays working as it was.
        """
        events = self.advance(now)
        return events + self._place(client_id, request, self._clock)

    def _place(self, client_id: int, req: OrderRequest, now: float) -> list[Event]:
        if not req.contract.exchange.strip():  # IB validates the request before anything else
            text = errors.text(321, detail="Missing order exchange")
            return [OrderErrorEvent(client_id, req.order_id, 321, text)]
        if req.what_if:
            return self._what_if(client_id, req)
        existing = self._lookup(client_id, req.order_id)
        if existing is not None and existing.live:
            return self._modify(existing, req, now)
        if existing is not None and existing.status == "Filled":
            return [OrderErrorEvent(client_id, req.order_id, 104, errors.text(104))]
        if existing is not None or req.order_id <= self._max_ids.get(client_id, 0):
            return [OrderErrorEvent(client_id, req.order_id, 103, errors.text(103))]
        self._max_ids[client_id] = req.order_id
        contract = self._resolve(req.contract)
        if contract is None:
            return [self._unresolved(client_id, req)]
        refused = self._unsupported(client_id, req) or _off_tick(client_id, req, contract)
        if refused is not None:
            return [refused]
        order = self._new_order(client_id, req, contract, self._next_perm_id())
        self._register(order)
        reason = (
            self._take_rejection()
            or self._request_reason(req, contract)
            or self._parent_reason(client_id, req)
            or self._margin_reason(contract, req, req.total_quantity)
        )
        if reason:
            return self._reject(order, reason, now)
        if self.validation_delay > 0:
            self._schedule(order, now + self.validation_delay, "ack")
            return []
        return self._ack(order, now)

    def _lookup(self, client_id: int, order_id: int) -> _Order | None:
        perm_id = self._index.get((client_id, order_id))
        return None if perm_id is None else self._orders[perm_id]

    def _resolve(self, query: ContractQuery) -> Contract | None:
        """The one contract the query names (a continuous future: its front month), else None."""
        rows = self._contracts.find(query)
        return self._contracts.by_id(rows[0].con_id) if len(rows) == 1 else None

    def _unresolved(self, client_id: int, req: OrderRequest) -> OrderErrorEvent:
        text = unresolved_text(req.contract, len(self._contracts.find(req.contract)))
        return OrderErrorEvent(client_id, req.order_id, 200, text)

    def _unsupported(self, client_id: int, req: OrderRequest) -> OrderErrorEvent | None:
        flags = (
            (req.e_trade_only, 10268, errors.text(10268)),
            (req.firm_quote_only, 10269, errors.text(10269)),
        )
        return next(
            (
                OrderErrorEvent(client_id, req.order_id, code, text)
                for on, code, text in flags
                if on
            ),
            None,
        )

    def _take_rejection(self) -> str | None:
        reason, self._reject_reason = self._reject_reason, None
        return reason

    def _request_reason(self, req: OrderRequest, contract: Contract) -> str | None:
        """Why the order's own fields are unacceptable, or None."""
        rule = _RULES.get(req.order_type.upper())
        if req.action.upper() not in SIDES:
            return f"Invalid action {req.action!r}"
        if rule is None:
            return f"Unsupported order type {req.order_type!r}"
        if req.total_quantity <= 0:
            return "Order quantity must be positive"
        if contract.sec_type == "IND":
            return "Index contracts are not tradable"
        if contract.sec_type in WHOLE_UNITS and not float(req.total_quantity).is_integer():
            return "Fractional-sized order is not supported for this contract"
        if req.tif.upper() not in ("", *TIFS):
            return f"Unsupported time in force {req.tif!r}"
        if req.account and req.account != self.config.account:
            return f"Account {req.account} is not managed by this gateway"
        why = next(filter(None, (check(req) for check in rule.checks)), None)
        if why:
            return why
        prices = [p for p in (req.lmt_price, req.aux_price) if p]
        if not all(on_tick(p, increment_at(contract, p)) for p in prices):
            return OFF_TICK
        return None

    def _parent_reason(self, client_id: int, req: OrderRequest) -> str | None:
        parent = self._lookup(client_id, req.parent_id) if req.parent_id else None
        if req.parent_id and (
            parent is None or parent.status in ("Cancelled", "ApiCancelled", "Inactive")
        ):
            return f"Parent order {req.parent_id} is not active"
        return None

    def _next_perm_id(self) -> int:
        self._counters["perm"] += 1
        return PERM_ID_BASE + self._counters["perm"]

    def _new_order(
        self, client_id: int, req: OrderRequest, contract: Contract, perm_id: int
    ) -> _Order:
        parent = self._lookup(client_id, req.parent_id) if req.parent_id else None
        order = _Order(
            client_id=client_id,
            order_id=req.order_id,
            perm_id=perm_id,
            contract=contract,
            action=req.action.upper(),
            account=self.config.account,
            parent_id=req.parent_id,
            parent_perm_id=parent.perm_id if parent else 0,
            trail_stop_price=req.trail_stop_price,
            held=not req.transmit,
            warn_tif=not req.tif and self.tif_preset_warning,
            warn_rth=req.outside_rth and rth_only(req.order_type.upper(), contract),
        )
        _apply_request(order, req)
        if parent is not None:  # IB links a bracket's children itself, in a group of its own
            order.oca_group, order.oca_type = str(parent.perm_id), order.oca_type or 3
        return order

    def _register(self, order: _Order) -> None:
        self._orders[order.perm_id] = order
        self._live[order.perm_id] = order
        self._index[(order.client_id, order.order_id)] = order.perm_id

    def _reject(self, order: _Order, reason: str, now: float) -> list[Event]:
        """Inactive, then 201, then Inactive again: the order IB sends them in (ib_insync #554's
        wire log: ``5,...,Inactive`` / ``3,...,Inactive`` around ``4,2,15,201,...``)."""
        self._finish(order, "Inactive", now, f"Rejected: {reason}")
        view = order.view()
        error = OrderErrorEvent(order.client_id, order.order_id, *_rejection(reason))
        shown: list[Event] = [OpenOrderEvent(view), OrderStatusEvent(view)]
        return [*shown, error, *shown]

    def _modify(self, order: _Order, req: OrderRequest, now: float) -> list[Event]:
        """Re-placing a live order id: new price/quantity/type, re-acknowledged, may then fill.

        A change with transmit=False to an order already transmitted waits in TWS for its
        Transmit button (IB: "the modification will not take effect until the order is
        resubmitted"; IB Gateway has no such button): nothing changes, nothing is reported."""
        if not req.transmit and not order.held and order.status != "PendingSubmit":
            return []
        refused = _parent_gone(
            order, req, self._lookup(order.client_id, req.parent_id)
        ) or _oca_revised(order, req)
        if refused is not None:
            return [refused]
        reason = (
            self._take_rejection()
            or self._request_reason(req, order.contract)
            or _modify_reason(order, req)
            or self._margin_reason(order.contract, req, req.total_quantity - order.filled)
        )
        if reason:
            return [OrderErrorEvent(order.client_id, order.order_id, *_rejection(reason))]
        retrigger = (req.order_type.upper(), req.aux_price, req.trailing_percent) != (
            order.order_type,
            order.aux_price,
            order.trailing_percent,
        )
        _apply_request(order, req)
        if retrigger:
            order.triggered, order.trail_stop_price = False, req.trail_stop_price
        if order.status == "PendingSubmit" or (order.held and not order.transmit):
            return []  # not acknowledged yet, or still untransmitted: nothing to report
        if order.held:
            return self._release(order, now)  # transmitted now: its group is shown and works
        if order.status == "Submitted":  # IB re-validates it: PreSubmitted, then Submitted
            order.status = "PreSubmitted"
        return self._show(order) + (
            self._release(order, now) if order.transmit else self._work(order, now)
        )

    def _what_if(self, client_id: int, req: OrderRequest) -> list[Event]:
        """Margin and commission preview; nothing is created, consumed or stored."""
        contract = self._resolve(req.contract)
        if contract is None:
            return [self._unresolved(client_id, req)]
        unsupported = self._unsupported(client_id, req)
        reason = None if unsupported else self._request_reason(req, contract)
        if unsupported or reason:
            return [
                unsupported or OrderErrorEvent(client_id, req.order_id, *_rejection(str(reason)))
            ]
        order = self._new_order(client_id, req, contract, perm_id=0)
        order.status = "PreSubmitted"
        price = self._estimate(req, contract)
        value = (
            req.total_quantity
            * price
            * units_per_contract(contract)
            * self._rate(contract.currency)
        )
        commission = round(self._commission(contract, req.total_quantity, value), 6)
        before, after = self._margin_effect(
            contract, order.sign * req.total_quantity, price, commission
        )
        view = replace(
            order.view(),
            what_if=True,
            commission=commission,
            min_commission=commission,
            max_commission=commission,
            commission_currency="USD",
            init_margin_before=round(before.init, 2),
            maint_margin_before=round(before.maint, 2),
            equity_with_loan_before=round(before.equity, 2),
            init_margin_change=round(after.init - before.init, 2),
            maint_margin_change=round(after.maint - before.maint, 2),
            equity_with_loan_change=round(after.equity - before.equity, 2),
            init_margin_after=round(after.init, 2),
            maint_margin_after=round(after.maint, 2),
            equity_with_loan_after=round(after.equity, 2),
            warning_text=_margin_text(before, after),
        )
        return [WhatIfEvent(client_id, view)]

    def _finish(self, order: _Order, status: str, now: float, note: str) -> None:
        order.status, order.fill_due, order.cancel_due = status, None, None
        order.completed_time, order.completed_status = _ib_time(now), note
        self._live.pop(order.perm_id, None)
        self._completed.append(order.perm_id)
