"""Working orders of the ``Broker`` (a mixin): acknowledgement, market hours, triggers,
trailing stops, matching against the quote, fills, commissions and OCA groups.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from . import errors, sessions
from .broker_rules import (
    _COMMISSIONS,
    _RULES,
    _TIGHTEN,
    _crossed,
    _ib_time,
    _listing,
    _qty_text,
    _stock_commission,
    _venue,
    units_per_contract,
)
from .broker_state import (
    _apply_fill,
    _Fill,
    _Order,
    _Position,
)
from .broker_types import (
    BY_SYSTEM,
    EPS,
    EXEC_ID_BASE,
    RTH_IGNORED,
    SIDES,
    TIF_PRESET,
    BrokerConfig,
    CommissionEvent,
    Event,
    ExecutionEvent,
    OpenOrderEvent,
    OrderErrorEvent,
    OrderStatusEvent,
)
from .prices import round_to_tick
from .types import (
    CommissionReport,
    Contract,
    Execution,
    Quote,
)


class OrderMatching:
    """Orders at work until they fill, expire or are cancelled by a linked fill."""

    config: BrokerConfig
    _clock: float
    _cash: dict[str, float]
    _positions: dict[int, _Position]
    _orders: dict[int, _Order]
    _live: dict[int, _Order]
    _fills: list[_Fill]
    _counters: dict[str, int]
    fill_delay: float
    filled_status: bool
    hard_to_borrow: set[str]

    if TYPE_CHECKING:

        def quote(self, con_id: int) -> Quote: ...

        def _last(self, con_id: int) -> float: ...

        def _schedule(self, order: _Order, at: float, kind: str) -> None: ...

        def _rate(self, currency: str) -> float: ...

        def _cancel(self, order: _Order, now: float, why: str) -> list[Event]: ...

        def _finish(self, order: _Order, status: str, now: float, note: str) -> None: ...

        def _account_events(self, con_id: int) -> list[Event]: ...

    def _show(self, order: _Order) -> list[Event]:
        view = order.view()
        return [OpenOrderEvent(view), OrderStatusEvent(view)]

    def _set_status(self, order: _Order, status: str) -> list[Event]:
        if order.status == status:
            return []
        order.status = status
        return self._show(order)

    def _ack(self, order: _Order, now: float) -> list[Event]:
        """Acknowledge (PreSubmitted), then release the bracket group or start working."""
        order.status = "PreSubmitted"
        if order.order_type == "TRAIL" and self._can_work(order):  # so the ack shows the stop
            self._trail(order, self._last(order.contract.con_id))
        events: list[Event] = []
        if order.warn_rth:
            events.append(OrderErrorEvent(order.client_id, order.order_id, 2109, RTH_IGNORED))
            order.warn_rth = False
        if order.warn_tif:
            events.append(OrderErrorEvent(order.client_id, order.order_id, 10349, TIF_PRESET))
            order.warn_tif = False
        events += self._hold_until_open(order, now)
        events += self._hold_for_locate(order)
        events += [] if order.held else self._show(order)  # untransmitted: TWS reports nothing
        return events + (self._release(order, now) if order.transmit else self._work(order, now))

    def _hold_until_open(self, order: _Order, now: float) -> list[Event]:
        """Outside the order's hours: hold it until the open (warning 399); DAY: expire at close."""
        if not self.config.market_hours:
            return []
        contract, rth = order.contract, order.outside_rth
        opens = sessions.opens_at(contract, now, rth)
        if order.tif == "DAY":
            closes = sessions.closes_at(contract, now, rth)
            if closes is not None:
                order.expires_at = closes
                self._schedule(order, closes, "expire")
        if opens is None or opens <= now:
            return []
        order.opens_at = opens
        self._schedule(order, opens, "open")
        text = errors.text(
            399,
            action=order.action,
            quantity=_qty_text(order.total_quantity),
            symbol=contract.symbol,
            listing=_listing(contract),
            until=sessions.held_until_text(contract, opens),
        )
        return [OrderErrorEvent(order.client_id, order.order_id, 399, text)]

    def _hold_for_locate(self, order: _Order) -> list[Event]:
        """A short sale of a stock IB cannot borrow now (``hard_to_borrow``): 404, reported
        Inactive with whyHeld "locate", and held (live: it may be cancelled) until the shares
        are located (``shares_located``)."""
        contract, was = order.contract, order.why_held
        position = self._positions.get(contract.con_id)
        short = (position.qty if position else 0.0) - order.total_quantity < -EPS
        needs = order.action == "SELL" and short and contract.symbol in self.hard_to_borrow
        needs = needs and not order.parent_perm_id  # a bracket's exits close what it opened
        order.why_held = "locate" if needs and contract.sec_type == "STK" else ""
        if not order.why_held or was:
            return []
        return [OrderErrorEvent(order.client_id, order.order_id, 404, errors.text(404))]

    def shares_located(self, symbol: str, now: float) -> list[Event]:
        """The shares of ``symbol`` can be borrowed now: its held short sales work."""
        self.hard_to_borrow.discard(symbol)
        events: list[Event] = []
        for order in list(self._live.values()):
            if order.why_held and order.contract.symbol == symbol:
                order.why_held = ""
                events += self._show(order) + self._work(order, now)
        return events

    def _open(self, order: _Order, now: float) -> list[Event]:
        """The market opened for a held order: it works from now on."""
        order.opens_at = None
        return self._work(order, now)

    def _expire(self, order: _Order, now: float) -> list[Event]:
        """A DAY order at the close of its session: cancelled by the system."""
        order.expires_at = None
        return self._cancel(order, now, BY_SYSTEM)

    def _due_fill(self, order: _Order, now: float) -> list[Event]:
        order.fill_due = None
        return self._work(order, now, due=True)

    def _children(self, order: _Order) -> list[_Order]:
        return [child for child in self._live.values() if child.parent_perm_id == order.perm_id]

    def _release(self, order: _Order, now: float) -> list[Event]:
        """Transmit the order's group: its parent (or itself) and every child of that."""
        root = self._orders[order.parent_perm_id] if order.parent_perm_id else order
        group = [root, *self._children(root)]
        shown = [e for m in group if m.held and m.status != "PendingSubmit" for e in self._show(m)]
        for member in group:
            member.held = False  # acknowledged untransmitted members are shown only now
        return shown + [event for member in group for event in self._work(member, now)]

    def _can_work(self, order: _Order) -> bool:
        parent_ready = (
            not order.parent_perm_id or self._orders[order.parent_perm_id].status == "Filled"
        )
        ready = order.live and order.status != "PendingSubmit" and not order.held and parent_ready
        ready = ready and not order.why_held
        return ready and order.opens_at is None and self._in_hours(order)

    def _in_hours(self, order: _Order) -> bool:
        """Whether the order's market is open now (GTC orders rest while it is closed)."""
        return not self.config.market_hours or sessions.is_open(
            order.contract, self._clock, order.outside_rth
        )

    def _work(self, order: _Order, now: float, due: bool = False) -> list[Event]:
        """Trigger, fill (now, after fill_delay, or a chunk) or let the order wait."""
        if not self._can_work(order) or (order.fill_due is not None and not due):
            return []
        rule = _RULES[order.order_type]
        quote = self.quote(order.contract.con_id)
        if rule.stop is not None and not order.triggered:
            if order.order_type == "TRAIL":
                self._trail(order, quote.last)
            order.triggered = _crossed(order.action, rule.stop(order), quote.last)
            if not order.triggered:
                return self._wait(order, "PreSubmitted", now)
        price = rule.fill(order, quote)
        if price is None:
            return self._wait(order, rule.waits_as, now)
        if self.fill_delay > 0 and not due:
            self._schedule(order, now + self.fill_delay, "fill")
            return self._set_status(order, "Submitted" if order.filled else rule.waits_as)
        events = self._fill(order, self._chunk(order), price, now)
        if order.live and order.tif == "IOC":
            events += self._cancel(order, now, BY_SYSTEM)
        elif order.live:
            self._schedule(order, now + self.config.price_step_seconds, "fill")
        return events

    def _wait(self, order: _Order, status: str, now: float) -> list[Event]:
        """Not fillable now: IOC cancels, anything else rests."""
        if order.tif == "IOC":
            return self._cancel(order, now, BY_SYSTEM)
        return self._set_status(order, "Submitted" if order.filled else status)

    def _trail(self, order: _Order, last: float) -> None:
        offset = order.aux_price or last * (order.trailing_percent or 0.0) / 100.0
        level = round_to_tick(last + order.sign * offset, order.contract.min_tick)
        current = order.trail_stop_price
        order.trail_stop_price = (
            level if current is None else _TIGHTEN[order.action](current, level)
        )

    def _chunk(self, order: _Order) -> float:
        above, chunk = self.config.partial_fill_above, self.config.partial_fill_chunk
        return min(chunk, order.remaining) if 0 < above < order.total_quantity else order.remaining

    def _commission(self, contract: Contract, qty: float, value: float) -> float:
        return _COMMISSIONS.get(contract.sec_type, _stock_commission)(self.config, qty, value)

    def _fill(self, order: _Order, qty: float, price: float, now: float) -> list[Event]:
        """One execution: order, position, cash, then the owner's and the account's events."""
        rate = self._rate(order.contract.currency)
        cum = order.filled + qty
        avg = (order.avg_fill_price * order.filled + price * qty) / cum
        notional = cum * avg * units_per_contract(order.contract) * rate
        total = round(self._commission(order.contract, cum, notional), 6)  # per-order min/max
        commission = round(total - (order.commission or 0.0), 6)
        order.filled, order.avg_fill_price, order.last_fill_price, order.commission = (
            cum,
            avg,
            price,
            total,
        )
        if order.remaining <= EPS:
            self._finish(order, "Filled", now, f"Filled Size: {_qty_text(cum)}")
        else:
            order.status = "Submitted"
        realized = self._book_fill(order.contract, order.sign * qty, price, commission, rate)
        execution = self._execution(order, qty, price, now)
        report = CommissionReport(execution.exec_id, commission, "USD", realized)
        self._fills.append(_Fill(execution, report, now))
        bare = replace(order.view(), commission=None, commission_currency="")
        told = self.filled_status or order.status != "Filled"  # IB may leave Filled untold
        events: list[Event] = [
            ExecutionEvent(execution),
            OpenOrderEvent(bare),
            *([OrderStatusEvent(bare)] if told else []),
            OpenOrderEvent(order.view()),
            CommissionEvent(order.client_id, order.order_id, report),
        ]
        events += self._account_events(order.contract.con_id)
        events += self._oca_effects(order, qty, now)
        if order.status == "Filled":
            events += [event for child in self._children(order) for event in self._work(child, now)]
        return events

    def _execution(self, order: _Order, qty: float, price: float, now: float) -> Execution:
        self._counters["exec"] += 1
        venue = _venue(order.contract)
        return Execution(
            exec_id=f"0000e0d5.{EXEC_ID_BASE + self._counters['exec']:08x}.01.01",
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            contract=replace(order.contract, exchange=venue),
            time=_ib_time(now),
            account=order.account,
            exchange=venue,
            side=SIDES[order.action],
            shares=qty,
            price=price,
            cum_qty=order.filled,
            avg_price=order.avg_fill_price,
            order_ref=order.order_ref,
        )

    def _book_fill(
        self, contract: Contract, delta: float, price: float, commission: float, rate: float
    ) -> float | None:
        """Update position and cash balances; the realized P&L in USD of a closing fill."""
        position = self._positions.setdefault(contract.con_id, _Position(contract))
        unit = price * units_per_contract(
            contract
        )  # positions keep IB's avgCost: per contract, multiplier applied
        realized = _apply_fill(position, delta, unit, commission / rate)
        self._credit(contract.currency, -delta * unit)
        if contract.sec_type == "CASH":
            self._credit(contract.symbol, delta)
        self._credit("USD", -commission)
        if realized is None:
            return None
        position.realized += realized
        position.realized_base += realized * rate
        return round(realized * rate, 6)

    def _credit(self, currency: str, amount: float) -> None:
        self._cash[currency] = self._cash.get(currency, 0.0) + amount

    def _oca_linked(self, order: _Order, other: _Order) -> bool:
        siblings = bool(order.parent_perm_id) and other.parent_perm_id == order.parent_perm_id
        group = (order.oca_group, order.client_id)
        same_group = bool(order.oca_group) and (other.oca_group, other.client_id) == group
        return other is not order and (siblings or same_group)

    def _oca_effects(self, order: _Order, qty: float, now: float) -> list[Event]:
        """Bracket siblings and OCA types 2/3 shrink by the fill; OCA type 1 (and 0) cancels."""
        events: list[Event] = []
        for other in [o for o in self._live.values() if self._oca_linked(order, o)]:
            shrink = other.parent_perm_id == order.parent_perm_id != 0 or order.oca_type in (2, 3)
            events += (
                self._reduce(other, qty, now) if shrink else self._cancel(other, now, BY_SYSTEM)
            )
        return events

    def _reduce(self, order: _Order, qty: float, now: float) -> list[Event]:
        if not order.live:
            return []
        if qty >= order.remaining - EPS:
            return self._cancel(order, now, BY_SYSTEM)
        order.total_quantity -= qty
        return [] if order.status == "PendingSubmit" else self._show(order)
