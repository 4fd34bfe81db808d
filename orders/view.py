"""One order as the API shows it: the one merge rule of our records and the reader's rows.

The rule (ARCHITECTURE.md, "One truth per order"): an order of ours (its orderRef is our id,
or its permId is our record's) is described by its lifecycle record; the reader's row only
fills the fields the record does not have yet (account, remaining, the ids before our
connection heard them). One exception: a verdict that is only our own conclusion
(``not_sent``, ``not_placed``) is no evidence against a row the broker reports, so there the
row gives the state until the record is re-adopted. Another client's order is the reader's
row. /orders, /orders/<id>,
/state and the stream all build their rows here.

A brief row (/orders, /state, the stream) leaves out the lifecycle (steps, transitions,
messages, fills: ~1.7 KB an order) but keeps the few fields of it the dashboard's tables show
(``_brief_fields``); /orders/<id> adds the whole record.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from order_records import Lifecycle
from orders.lifecycle import CHANGE_STEPS, OUR_FINAL, is_final


def _brief_fields(record: Lifecycle) -> dict[str, Any]:
    """What the tables need of the record beyond the row: the trail (the price column of a
    TRAIL order), the bracket links, why the verdict, where the order came from, and when
    the record last changed (the dashboard re-reads an open history when it moves)."""
    intent = record.intent
    optional = {
        "trailing_amount": intent.trailing_amount,
        "trailing_percent": intent.trailing_percent,
        "parent": record.parent,
        "legs": list(record.children),
        "verdict_reason": record.verdict_reason,
        "change_outcome": change_outcome(record),
    }
    # only those the order has (absent = null): every byte is sent 200 times per /state
    return {
        **{k: v for k, v in optional.items() if v not in (None, [])},
        "source": record.source,
        "updated_at": record.updated_at,
    }


def change_outcome(record: Lifecycle) -> dict[str, Any] | None:
    """The last word on the order's last change (sent, confirmed, refused by the broker, not
    sent), for the dashboard to tell the trader; None for an order never changed."""
    for step in reversed(record.steps):
        if step.text.startswith(CHANGE_STEPS):
            return {"at": step.at, "text": step.text}
    return None


def order_view(row: Any, record: Lifecycle | None, brief: bool = False) -> dict[str, Any]:
    """One order: ours from its record (gaps filled from the row), another client's row."""
    broker: dict[str, Any] = dataclasses.asdict(row) if row is not None else {}
    if record is None:
        return {**broker, "id": str(row.perm_id) if row is not None else None, "ours": False}
    intent = record.intent
    ours: dict[str, Any] = {
        "symbol": intent.symbol,
        "sec_type": intent.sec_type,
        "action": intent.action,
        "quantity": intent.quantity,
        "order_type": intent.order_type,
        "limit_price": intent.limit_price,
        "stop_price": intent.stop_price,
        "tif": intent.tif,
        "status": record.status,
        "perm_id": record.perm_id,
        "order_id": record.order_id,
        "client_id": record.client_id,
        "order_ref": record.id,
        "filled": record.filled,
        "remaining": record.remaining,
        "avg_fill_price": record.avg_fill_price,
        "account": intent.account or None,
        "open": not is_final(record.verdict),
        "description": intent.description,
        "currency": intent.currency,
    }
    if record.verdict in OUR_FINAL and broker:  # the broker's word beats our conclusion
        out = {**ours, **broker}
    else:
        out = {**broker, **{k: v for k, v in ours.items() if v is not None or k not in broker}}
    out.update(
        id=record.id, ours=True, verdict=record.verdict, phase=record.phase, **_brief_fields(record)
    )
    if not brief:
        out["lifecycle"] = dataclasses.asdict(record)
    return out
