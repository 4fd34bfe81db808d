"""What the broker's echoes and messages say about one of our orders.

An echo (openOrder) shows the quantity and prices the broker holds: a change sent is confirmed
when it shows there. A message (errorEvent) says why an order waits or was refused.
"""

from __future__ import annotations

from ib_async.order import Trade

from ib_compat import LOCATE_HOLD, is_warning, unset_price
from orders.lifecycle import Tracker


def _shown(trade: Trade) -> dict[str, float | None]:
    """The quantity and prices of the order as the broker last showed it."""
    order = trade.order
    return {
        "quantity": float(order.totalQuantity or 0) or None,
        "limit_price": unset_price(order.lmtPrice),
        "stop_price": unset_price(order.auxPrice),
    }


def echoed(tracker: Tracker, trade: Trade) -> None:
    """Forget the modified fields the broker's order now shows: sent and confirmed."""
    shown = _shown(trade)
    tracker.unconfirmed = {
        k: v
        for k, v in tracker.unconfirmed.items()
        if (now := shown[k]) is None or abs(now - v) > 1e-9
    }


def sync_intent(tracker: Tracker, trade: Trade) -> None:
    """Take quantity and prices from the broker's echo of the order (after a modify); a
    trailing stop's quantity only (its echo's prices are its trail's). Before ``echoed``: a
    reader of ``Tracker.sent_terms`` (the changes not echoed first) never misses a change."""
    intent, confirmed = tracker.record.intent, _shown(trade)
    if intent.order_type == "TRAIL":
        confirmed = {"quantity": confirmed["quantity"]}
    changes = {
        k: v
        for k, v in confirmed.items()
        if v is not None and getattr(intent, k) is not None and abs(v - getattr(intent, k)) > 1e-9
    }
    if changes:
        tracker.confirmed(**changes)


def waiting_reason(tracker: Tracker) -> str | None:
    """What IB said the order waits for: the open (399), a locate of shares to borrow (404)."""
    waits = [m for m in tracker.record.messages if m.code in (399, LOCATE_HOLD)]
    return f"Error {waits[-1].code}: {waits[-1].text}" if waits else None


def last_error_text(tracker: Tracker) -> str | None:
    """The last real error IB sent about the order (no warnings, no 10349; none that refused
    a change: a cancelled order's reason was an earlier refusal of its change)."""
    for message in reversed(tracker.record.messages):
        if message.about_change:
            continue
        if not is_warning(message.code) or message.code in (399, LOCATE_HOLD):  # why it waits
            return f"Error {message.code}: {message.text}"
    return None
