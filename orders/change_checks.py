"""The checks a change of one of our orders passes before it is queued (any Flask thread).

Whether the order can be changed at all (``modifiable``), the risk gate's rules on the order as
it will be when the change's turn comes (``check_change``), and the lock a change is checked and
queued under (``change_lock``).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from journal import Journal
from order_records import Lifecycle, OrderIntent
from orders.commands import Modify
from orders.lifecycle import Tracker, is_final
from orders.tracking import OrderBook
from risk import RiskGate
from wire import plain_number


class OrderStateError(RuntimeError):
    """The order cannot be cancelled or modified in its current state."""


def count_change(
    gate: RiskGate, journal: Journal, record: Lifecycle, before: OrderIntent, after: OrderIntent
) -> None:
    """The risk gate's checks of a change; what it adds to the order's notional counts
    towards the day's cap, journaled before the change is sent (as a new order's is). A
    bracket's exit leg was never counted: only the per-order rules look at its change."""
    if record.parent:
        gate.check(after)  # raises RiskRejected
        return
    added = gate.reserve_change(after, before)  # raises RiskRejected
    if added > 0:
        try:
            journal.add_notional(record.id, added)
        except BaseException:
            gate.give_back(added)
            raise


def check_change(
    gate: RiskGate,
    journal: Journal,
    tracker: Tracker,
    legs: dict[str, Any] | None,
    command: Modify,
) -> Modify:
    """``command`` checked on the order as it will be when its turn comes (``next_basis``:
    sent so far, or as the changes queued before it leave it), and marked to be sent only
    onto that order; counted as queued on the tracker."""
    record, basis = tracker.record, tracker.next_basis()
    before = replace(record.intent, **{**(legs or {}), **basis})
    # its type (a stop on an option: market once triggered) was acknowledged or not when it
    # was placed, and a change cannot alter it: a change is not refused for it
    before = replace(before, market_order_ack=before.sec_type == "OPT")
    after = replace(before, **command.changes())
    count_change(gate, journal, record, before, after)
    tracker.change_queued({name: getattr(after, name) for name in basis})
    return replace(command, basis=basis)


def change_lock(book: OrderBook, tracker: Tracker) -> threading.Lock:
    """What a change of ``tracker``'s order is checked and queued under: its bracket's lock
    (the entry's) for an entry and its exits, whose sides are checked on one another."""
    parent = book.get(tracker.record.parent) if tracker.record.parent else None
    return (parent or tracker).change_lock


def modifiable(tracker: Tracker, quantity: float | None) -> None:
    """OrderStateError unless a change can be sent for the order: unfinished, and at the
    broker on this connection (a change for an order still being sent, or not matched since a
    reconnect, was dropped on the loop while the order went out unchanged); a bracket's
    quantity cannot change (its children would not follow)."""
    record = tracker.record
    if is_final(record.verdict):
        raise OrderStateError(f"order {record.id} is already {record.verdict}")
    if tracker.cancel_requested:  # its change would not be sent (Amend._modify)
        raise OrderStateError(f"order {record.id} is being cancelled: nothing was changed")
    if tracker.trade is None:
        raise OrderStateError(
            f"order {record.id} is not at the broker yet (being sent, or not matched since a "
            "reconnect): nothing was changed; send the change again once it is working"
        )
    if quantity is not None and quantity <= record.filled:  # IB refuses it (201)
        raise OrderStateError(
            f"order {record.id} has {plain_number(record.filled)} filled already: a quantity of "
            f"{plain_number(quantity)} leaves nothing to work; cancel it instead"
        )
    if quantity is not None and (record.children or record.parent or record.intent.is_bracket):
        raise OrderStateError(
            "the quantity of a bracket order cannot be modified; cancel it and place a new one"
        )
