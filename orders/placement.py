"""Placing orders on the loop: qualify, build, place, settle, monitor; preview (cancel and modify
are in its base ``orders.amend.Amend``).

Each command from the handler's queue runs as its own task, so a slow order never holds up the
next. Every change of a record goes through its tracker (``orders.lifecycle``) and the book's
verdicts (``orders.tracking``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, Protocol

from ib_async import IB, Contract, Order
from ib_async.order import Trade

from ib_compat import DONE_STATES, make_contract, number
from ib_connection import NotConnectedError
from journal import Journal, JournalError
from loop_thread import wait_event
from order_records import Lifecycle, OrderIntent, Preview, Step
from orders.amend import Amend
from orders.commands import Cancel, CancelAll, Modify, Place
from orders.echo import waiting_reason
from orders.lifecycle import Event, Phase, Tracker, Verdict, is_final
from orders.tracking import OrderBook

log = logging.getLogger(__name__)

CALL_TIMEOUT = 5.0


class Host(Protocol):
    """What placement needs of the order handler."""

    client_id: int
    settle: tuple[float, float, float]
    monitor_timeout: float

    @property
    def halted(self) -> bool:
        """The kill switch is engaged."""

    @property
    def ib(self) -> IB | None:
        """The current connection's IB object, if any."""

    @property
    def connected(self) -> bool:
        """Whether the order connection is up."""

    def global_cancel_written(self) -> None:
        """A global cancel was handed to the socket (read once a later heartbeat answers)."""

    def sink(self, record: Lifecycle) -> None:
        """Journal a record change and tell the listeners."""


class Placement(Amend):
    """Sends orders and follows each through its settle and monitoring windows."""

    def __init__(self, host: Host, book: OrderBook, journal: Journal) -> None:
        self.host = host
        self.book = book
        self.journal = journal
        self._contracts: dict[tuple[str, str, str, int], Contract] = {}
        self._qualifying: dict[tuple[str, str, str, int], asyncio.Future[Contract]] = {}
        self.runners: dict[type, Callable[[Any], Coroutine[Any, Any, None]]] = {
            Place: self.place,
            Cancel: self.cancel,
            Modify: self.modify,
            CancelAll: self.cancel_all,
        }  # the coroutine that carries out each command

    def new_connection(self) -> None:
        """Contracts are asked again on a new connection."""
        self._contracts.clear()

    # ------------------------------------------------------------------ place
    async def place(self, command: Place) -> None:
        """Run one order to its verdict (or to the end of its monitoring window)."""
        tracker = command.tracker
        try:
            await self._place_steps(tracker)
        except Exception as exc:  # log and carry on: the record must still get a verdict
            log.exception("placing %s failed", tracker.id)
            sent = tracker.record.order_id is not None
            self.book.verdict(
                tracker,
                Verdict.UNKNOWN if sent else Verdict.NOT_SENT,
                f"internal error: {type(exc).__name__}: {exc}",
            )

    async def _place_steps(self, tracker: Tracker) -> None:
        tracker.terminal = asyncio.Event()
        intent = tracker.record.intent
        try:
            contract = await self.qualify(intent)
        except (TimeoutError, LookupError, ConnectionError) as exc:
            verdict = Verdict.REJECTED if isinstance(exc, LookupError) else Verdict.NOT_SENT
            self.book.verdict(tracker, verdict, str(exc) or type(exc).__name__)
            return
        if tracker.cancel_requested:
            self.book.verdict(tracker, Verdict.CANCELLED, "cancelled before it was sent")
            return
        if self.host.halted:
            self.book.verdict(tracker, Verdict.NOT_SENT, "kill switch engaged before it was sent")
            return
        if self._send(tracker, contract) is None:
            return
        await self._settle(tracker)
        await self._monitor(tracker)

    async def qualify(self, intent: OrderIntent) -> Contract:
        """The qualified contract, asked of the broker once per symbol even when a burst
        of orders for a new symbol arrives together."""
        key = (intent.symbol, intent.sec_type, intent.currency, intent.con_id)
        if key in self._contracts:
            return self._contracts[key]
        pending = self._qualifying.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(intent))
            self._qualifying[key] = pending
            pending.add_done_callback(lambda _: self._qualifying.pop(key, None))
        contract = await asyncio.shield(pending)
        self._contracts[key] = contract
        return contract

    async def _lookup(self, intent: OrderIntent) -> Contract:
        ib = self.host.ib
        if ib is None or not ib.isConnected():
            raise ConnectionError("order connection is down")
        contract = make_contract(
            intent.symbol, intent.sec_type, intent.currency, intent.con_id, intent.exchange
        )
        found = await asyncio.wait_for(ib.qualifyContractsAsync(contract), CALL_TIMEOUT)
        if not found or not isinstance(found[0], Contract):  # None: unknown or ambiguous
            kind = "contract" if intent.con_id else "symbol"
            raise LookupError(f"unknown {kind} {intent.description!r}: no security definition")
        return found[0]

    def _send(self, tracker: Tracker, contract: Contract) -> Trade | None:
        ib = self.host.ib
        intent = tracker.record.intent
        order = build_order(intent, tracker.id)
        try:
            legs = self._bracket_legs(tracker, order) if intent.is_bracket else []
        except JournalError as exc:
            self.book.verdict(tracker, Verdict.NOT_SENT, str(exc))
            return None
        tracker.advance(Event.SEND)
        try:
            if ib is None:
                raise ConnectionError("Not connected")
            if legs:
                order.orderId = ib.client.getReqId()
                order.transmit = False
            trade = self._place_one(ib, tracker, contract, order)
            for leg, leg_order in legs:
                leg_order.parentId = order.orderId
                leg.advance(Event.SEND)
                self._place_one(ib, leg, contract, leg_order)
                if leg.record.phase == Phase.SENDING:  # not acknowledged yet
                    leg.advance(Event.MONITOR)
        except ConnectionError as exc:  # definitely not sent
            for t in [tracker] + [leg for leg, _ in legs]:
                self.book.verdict(t, Verdict.NOT_SENT, f"order connection down: {exc}")
            return None
        log.info(
            "🚀 Submitting %s: %s %g %s %s (orderId %d, timeout: %.0fs)",
            tracker.id,
            intent.action,
            intent.quantity,
            intent.symbol,
            intent.order_type,
            trade.order.orderId,
            self.host.monitor_timeout,
        )
        return trade

    def _place_one(self, ib: IB, tracker: Tracker, contract: Contract, order: Order) -> Trade:
        trade = ib.placeOrder(contract, order)
        tracker.placed += 1
        tracker.sent(trade.order.orderId, self.host.client_id, trade.orderStatus.status)
        self.book.bind(tracker, trade)
        return trade

    def _bracket_legs(self, parent: Tracker, parent_order: Order) -> list[tuple[Tracker, Order]]:
        """Trackers and orders of a bracket's take-profit and stop-loss legs."""
        intent = parent.record.intent
        # the exits share only the contract and the quantity with the entry: a TRAIL entry's
        # trailing amount on its stop loss went out as that leg's stop price
        exit_base = replace(
            intent,
            action="SELL" if intent.action == "BUY" else "BUY",
            trailing_amount=None,
            trailing_percent=None,
            take_profit=None,
            stop_loss=None,
            tif="GTC",
        )
        specs: list[tuple[str, OrderIntent]] = []
        if intent.take_profit is not None:
            specs.append(
                (
                    "tp",
                    replace(
                        exit_base,
                        order_type="LMT",
                        limit_price=intent.take_profit,
                        stop_price=None,
                    ),
                )
            )
        if intent.stop_loss is not None:
            specs.append(
                (
                    "sl",
                    replace(
                        exit_base,
                        order_type="STP",
                        stop_price=intent.stop_loss,
                        limit_price=None,
                    ),
                )
            )
        legs: list[tuple[Tracker, Order]] = []
        try:
            self._journal_legs(parent, specs, legs)
        except JournalError as exc:  # the legs journaled so far are never sent either
            for leg, _ in legs:
                self.book.verdict(leg, Verdict.NOT_SENT, str(exc))
            raise
        parent.linked(tuple(leg.id for leg, _ in legs))
        return legs

    def _journal_legs(
        self,
        parent: Tracker,
        specs: list[tuple[str, OrderIntent]],
        legs: list[tuple[Tracker, Order]],
    ) -> None:
        """Journal and track each leg, appending it to ``legs`` (JournalError stops it)."""
        for n, (suffix, leg_intent) in enumerate(specs, 1):
            leg_id = f"{parent.id}-{suffix}"
            now = time.time()
            record = Lifecycle(
                id=leg_id,
                intent=leg_intent,
                source="bracket",
                created_at=now,
                phase=Phase.QUEUED,
                updated_at=now,
                parent=parent.id,
                steps=(Step(now, "queued"),),
            )
            self.journal.insert(record)  # JournalError aborts the whole bracket unsent
            leg = Tracker(record, self.host.sink)
            leg.terminal = asyncio.Event()
            self.book.add(leg)
            order = build_order(leg_intent, leg_id)  # no OCA group: IB links a bracket's legs
            order.transmit = n == len(specs)
            legs.append((leg, order))

    async def _settle(self, tracker: Tracker) -> None:
        if is_final(tracker.record.verdict):
            return  # already answered (filled, rejected...) before the first wait
        tracker.advance(Event.SETTLE)
        tracker.step("waiting for the broker to accept the order")
        settle = self.host.settle
        log.info("⏱️ Applying sleep workaround (%s)...", " + ".join(f"{s:g}s" for s in settle))
        for seconds in settle:
            if tracker.record.status in DONE_STATES or is_final(tracker.record.verdict):
                break
            await asyncio.sleep(seconds)
        if is_final(tracker.record.verdict):
            return  # concluded meanwhile (e.g. withdrawn from the pacing queue): nothing to watch
        tracker.step("broker's first answers in; watching the order")
        log.info("✅ Sleep completed for %s", tracker.id)

    async def _monitor(self, tracker: Tracker) -> None:
        if is_final(tracker.record.verdict) or tracker.record.phase != Phase.SETTLING:
            return  # concluded, or re-adopted (not_placed, then a late ack) while it settled
        tracker.advance(Event.MONITOR)
        assert tracker.terminal is not None
        timeout = self.host.monitor_timeout
        if not await wait_event(tracker.terminal, timeout):
            status = tracker.record.status
            if not self.host.connected:
                heard = f"after the broker had it {status}" if tracker.acknowledged else None
                self.book.verdict(
                    tracker,
                    Verdict.UNKNOWN,
                    f"connection lost {heard or 'before the broker answered'}; "
                    "resolved by reconciliation",
                )
            elif status == "PendingSubmit":
                self.book.verdict(
                    tracker,
                    Verdict.STUCK_PENDING_SUBMIT,
                    f"still PendingSubmit after {timeout:g}s monitoring",
                )
            else:
                waits = waiting_reason(tracker)  # held until the open (399), for a locate (404)
                self.book.verdict(
                    tracker,
                    Verdict.WORKING,
                    f"{status} after {timeout:g}s monitoring; still tracked"
                    + (f" ({waits})" if waits else ""),
                )
        if not is_final(tracker.record.verdict):
            tracker.advance(Event.WINDOW_END)  # out of its window; events still update it

    async def preview(self, intent: OrderIntent) -> Preview:
        """What-if the order (margin and commission), placing nothing."""
        ib = self.host.ib
        if ib is None:
            raise NotConnectedError("order connection is down")
        contract = await self.qualify(intent)
        order = build_order(replace(intent, take_profit=None, stop_loss=None), "what-if")
        state = await asyncio.wait_for(ib.whatIfOrderAsync(contract, order), CALL_TIMEOUT)
        if state is None or not hasattr(state, "initMarginChange"):
            raise LookupError("the broker gave no what-if answer")
        return Preview(
            init_margin_change=number(state.initMarginChange),
            maint_margin_change=number(state.maintMarginChange),
            equity_with_loan_change=number(state.equityWithLoanChange),
            init_margin_after=number(state.initMarginAfter),
            maint_margin_after=number(state.maintMarginAfter),
            commission=number(state.commission),
            min_commission=number(state.minCommission),
            max_commission=number(state.maxCommission),
            commission_currency=state.commissionCurrency or "",
            warning_text=state.warningText or "",
        )


def build_order(intent: OrderIntent, order_ref: str) -> Order:
    """The ib_async Order for an intent: TIF always explicit, our id in orderRef."""
    order = Order(
        action=intent.action,
        totalQuantity=intent.quantity,
        orderType=intent.order_type,
        tif=intent.tif or "DAY",
        outsideRth=intent.outside_rth,
        orderRef=order_ref,
        account=intent.account,
        transmit=True,
    )
    if intent.limit_price is not None:
        order.lmtPrice = intent.limit_price
    if intent.stop_price is not None:
        order.auxPrice = intent.stop_price
    if intent.trailing_amount is not None:
        order.auxPrice = intent.trailing_amount
    if intent.trailing_percent is not None:
        order.trailingPercent = intent.trailing_percent
    assert order.tif and math.isfinite(order.totalQuantity)
    return order
