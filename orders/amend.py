"""Changing orders already handed to the broker, on the loop: cancel one order, cancel every
working order of every client (reqGlobalCancel), modify one. A base of ``orders.placement.Placement``.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

import ib_pacing
from ib_compat import DONE_STATES, forget_trade
from orders.commands import Cancel, CancelAll, Modify
from orders.lifecycle import (
    CHANGE_NOT_SENT,
    CHANGE_SENT,
    Tracker,
    Verdict,
    change_words,
    is_final,
    same_terms,
)
from orders.tracking import OrderBook

if TYPE_CHECKING:
    from ib_async import IB, Order

    from orders.placement import Host

log = logging.getLogger(__name__)

BRACKET_OCA_TYPE = 3  # IB links a bracket's legs so: a fill of one shrinks the other, no block


class Amend:
    """Placement's cancel, global cancel and modify."""

    host: Host
    book: OrderBook

    async def cancel(self, command: Cancel) -> None:
        """Cancel one order now, or when it is matched at the gateway, or before it is sent."""
        tracker = command.tracker  # its cancel_requested journaled before it was queued
        trade, ib = tracker.trade, self.host.ib
        if trade is None or ib is None:
            if tracker.record.order_id is not None:  # sent, but not matched since a reconnect
                tracker.step("cancel waiting: sent as soon as the broker shows the order again")
            return  # not sent yet: placement sees cancel_requested before sending
        try:
            self.book.cancel(ib, tracker, trade)
            log.info("🛑 Cancel sent for %s (orderId %d)", tracker.id, trade.order.orderId)
        except ConnectionError as exc:
            tracker.step(f"cancel not sent: {exc}")

    async def cancel_all(self, command: CancelAll | None = None) -> None:
        """reqGlobalCancel: every working order of every client; our new orders still queued
        behind the pace first leave the queue unsent. ``command``: a cancel-all, whose orders
        are ours unfinished when it was asked; None: the kill switch's, all of ours."""
        ib = self.host.ib
        if ib is None:
            return
        halted = self.host.halted
        self._withdraw_unsent(
            ib,
            Verdict.NOT_SENT if halted else Verdict.CANCELLED,
            "kill switch engaged before it left the pacing queue"
            if halted
            else "cancelled before it left the pacing queue",
        )
        self.mark_cancel_all(None if command is None else command.ours)
        try:
            ib.reqGlobalCancel()
            log.warning("🛑 Global cancel sent: every working order of every client")
        except ConnectionError as exc:  # log and carry on: the kill switch's stays pending
            log.error("global cancel not sent: %s", exc)
        else:
            self.host.global_cancel_written()

    def mark_cancel_all(self, ours: frozenset[str] | None) -> None:
        """Mark our unfinished orders of a global cancel as cancel requested: those of
        ``ours`` (the cancel-all's: not one accepted after it) and their exits, or (None, the
        kill switch's) all of them."""
        for tracker in self.book.unfinished():
            if tracker.cancel_requested:
                continue
            if ours is None or {tracker.id, tracker.record.parent} & ours:
                tracker.request_cancel("global cancel requested")

    def withdraw_at_stop(self, ib: IB) -> None:
        """The app stops: the new orders still waiting for the pace would be dropped with the
        socket, their records left as sent; they are concluded not sent, and said so."""
        self._withdraw_unsent(ib, Verdict.NOT_SENT, "the app stopped before it left the queue")

    def _withdraw_unsent(self, ib: IB, verdict: Verdict, reason: str) -> None:
        """A global cancel goes out behind every message queued for the pace (45/s): the new
        orders among them would reach IB first, and a market order fills before the cancel
        arrives. They never leave: withdrawn from the queue, concluded ``verdict`` (not sent
        under the kill switch, cancelled by a cancel-all)."""
        queued = ib_pacing.queued_orders(ib.client)
        unsent = {
            order_id: tracker
            for order_id, tracker in self.book.by_order_id.items()
            if _nothing_sent(tracker, queued.get(order_id, 0))
        }
        for order_id, tracker in list(unsent.items()):
            if not all(
                m is not None and m.record.order_id in unsent for m in self._bracket(tracker)
            ):
                del unsent[order_id]  # a bracket goes whole or not at all (see _bracket)
        withdrawn = list(dict.fromkeys(ib_pacing.withdraw(ib.client, set(unsent))))
        for order_id in withdrawn:
            tracker = unsent[order_id]
            if tracker.trade is not None:
                forget_trade(ib, tracker.trade)  # ib_async would list it PendingSubmit for good
            self.book.verdict(tracker, verdict, reason)
        if withdrawn:
            log.warning("🛑 %d order(s) taken out of the pacing queue unsent", len(withdrawn))

    def _bracket(self, tracker: Tracker) -> list[Tracker | None]:
        """The orders of ``tracker``'s bracket (itself alone if it has none). A bracket's entry
        and first exit are sent with transmit off: IB holds them until the last leg arrives,
        so withdrawing the tail of one already partly sent would leave an entry without its
        stop in TWS."""
        root = self.book.get(tracker.record.parent) if tracker.record.parent else tracker
        if root is None:
            return [None]
        return [root] + [self.book.get(child) for child in root.record.children]

    async def modify(self, command: Modify) -> None:
        """Send the changed order; the record changes only when the broker confirms."""
        try:
            self._modify(command)
        finally:
            if command.basis is not None:  # after ``unconfirmed`` took it, if it was sent
                command.tracker.change_taken()

    def _modify(self, command: Modify) -> None:
        tracker = command.tracker
        trade, ib = tracker.trade, self.host.ib
        if trade is None or ib is None:  # the connection dropped since the change was accepted
            tracker.step(f"{CHANGE_NOT_SENT}: the order is not matched on this connection")
            return
        if tracker.record.status in DONE_STATES:
            tracker.step(f"{CHANGE_NOT_SENT}: the order is no longer working at the broker")
            return
        if is_final(tracker.record.verdict):  # e.g. withdrawn unsent by a global cancel
            tracker.step(f"{CHANGE_NOT_SENT}: the order is {tracker.record.verdict}")
            return
        if self.host.halted or tracker.cancel_requested:  # engaged after it was accepted
            why = "the kill switch is engaged" if self.host.halted else "its cancel was asked"
            tracker.step(f"{CHANGE_NOT_SENT}: {why}")
            return
        if command.basis is not None and not same_terms(command.basis, tracker.sent_terms()):
            self._refuse_moved(tracker, command)
            return
        order = copy.copy(trade.order)  # the trade keeps what the broker last confirmed
        self._as_ib_holds(tracker, order)
        fields = {"quantity": "totalQuantity", "limit_price": "lmtPrice", "stop_price": "auxPrice"}
        values = {**tracker.unconfirmed, **command.changes()}  # on top of changes not echoed yet
        for name, value in values.items():
            setattr(order, fields[name], value)
        order.transmit = True  # a bracket's entry and first exit were sent with False: a change
        # sent so would wait in TWS for its Transmit button and never reach the exchange
        changes = change_words(command.changes())
        try:
            ib.placeOrder(trade.contract, order)
        except ConnectionError as exc:
            tracker.step(f"{CHANGE_NOT_SENT}: {exc}")
            return
        except AssertionError:  # ib_async sends first, then asserts the trade is live
            changes += "; the broker decides whether it applies"
        tracker.placed += 1
        tracker.unconfirmed = values  # the next change goes on top of these until echoed
        tracker.step(f"{CHANGE_SENT}: {changes}")
        log.info("✏️ Modify sent for %s: %s", tracker.id, changes)

    def _refuse_moved(self, tracker: Tracker, command: Modify) -> None:
        """The order moved between the change's checks and its turn here: an earlier change
        was refused (or the broker changed it). Sent now, the change would land on an order
        the risk gate never saw with it (a quantity cut refused, a price raise checked on it
        goes out on the full quantity)."""
        now = change_words({k: v for k, v in tracker.sent_terms().items() if v is not None})
        tracker.step(
            f"{CHANGE_NOT_SENT}: {change_words(command.changes())} was checked on an order that "
            f"has changed since (now {now}); check it and send it again"
        )
        log.warning("✋ Modify of %s not sent: the order changed since it was checked", tracker.id)

    def _as_ib_holds(self, tracker: Tracker, order: Order) -> None:
        """A bracket leg goes out as IB holds it: in the OCA group IB made for the bracket
        (named by the entry's permId, type 3; 10326 / 10327 for another or none) and naming
        its entry only while that works (IB looks it up among working orders: 135)."""
        if tracker.record.parent is None:
            return
        parent = self.book.get(tracker.record.parent)
        # finished: IB's final status, or filled by its executions (IB may send no Filled)
        if (
            parent is None
            or parent.record.status in DONE_STATES
            or parent.record.verdict == Verdict.FILLED
        ):
            order.parentId = 0
        if parent is not None and parent.record.perm_id:
            order.ocaGroup, order.ocaType = str(parent.record.perm_id), BRACKET_OCA_TYPE


def _nothing_sent(tracker: Tracker, queued: int) -> bool:
    """Every placeOrder message of the order (its own, its changes') is still in the queue:
    IB has seen nothing of it. A change names the same orderId as its order, so a queued
    message alone does not say the order never left."""
    return (
        queued > 0
        and queued == tracker.placed
        and not tracker.acknowledged
        and not is_final(tracker.record.verdict)
    )
