"""A modification checked as a new order would be: the fields of ``schemas.OrderIn`` for a
record with the change applied, a bracket's with the prices its legs hold now.

A bracket's legs are orders of their own (``<id>-tp``, ``<id>-sl``) and can be moved one at a
time, so the parent's ``take_profit`` / ``stop_loss`` are only what they were when it was placed.
Its sides are checked against the legs as they are, and a leg moved while its entry has no fill
must stay on its side of the entry, as a new bracket's would. A change is checked under the
bracket's change lock on the bracket both as planned (``OrderHandler.planned``: with the changes
queued before this one) and as the broker has it now (those changes may yet be refused):
``checked_change``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from order_handler import FINAL_VERDICTS, Lifecycle
from schemas import CONTRACT_FIELDS, DERIVATIVE_FIELDS, ModifyIn, OrderIn
from web.common import ApiError, _validate, _whole

Lookup = Callable[[str], Lifecycle | None]
# a leg's suffix -> (the parent's field for it, the leg's own price field)
LEG_PRICES = {"tp": ("take_profit", "limit_price"), "sl": ("stop_loss", "stop_price")}
PRICE_CHANGES = ("quantity", "limit_price", "stop_price")


def modified_fields(record: Lifecycle, change: ModifyIn | None, lookup: Lookup) -> dict[str, Any]:
    """The fields of a new order equal to ``record``'s with ``change`` applied (a bracket's
    take profit and stop loss where its working legs are now)."""
    intent = dataclasses.asdict(record.intent)
    takes = CONTRACT_FIELDS.get(intent["sec_type"], ())
    fields = {
        name: intent[name]
        for name in OrderIn.model_fields
        if intent.get(name) not in (None, "")
        and (name not in DERIVATIVE_FIELDS or name in takes or name == "market_order_ack")
    }
    fields["quantity"] = _whole(intent["quantity"])
    for name, price in leg_prices(record, lookup).items():
        fields.pop(name, None)
        if price is not None:
            fields[name] = price
    for name in PRICE_CHANGES if change is not None else ():
        value = getattr(change, name)
        if value is not None:
            fields[name] = value
    return fields


def checked_change(record: Lifecycle, change: ModifyIn, planned: Lookup, now: Lookup) -> OrderIn:
    """``record`` (as planned) with ``change`` applied, checked as a new order where the
    changes on their way leave its bracket and where the bracket is ``now`` (the broker may
    yet refuse them); the order itself only as planned (a change is sent only onto the order
    it was checked on)."""

    def confirmed(other: str) -> Lifecycle | None:
        return record if other == record.id else now(other)

    for lookup in (confirmed, planned):
        changed: OrderIn = _validate(OrderIn, modified_fields(record, change, lookup))
        check_leg(record, change, lookup)
    return changed


def check_leg(record: Lifecycle, change: ModifyIn, lookup: Lookup) -> None:
    """400 when a leg would leave its side of an entry that has no fill yet (a stop loss of a
    BUY above its limit, a take profit below it...), as a new bracket would be refused."""
    parent = lookup(record.parent) if record.parent else None
    if parent is None or parent.verdict in FINAL_VERDICTS or parent.filled > 0:
        return  # an entry (partly) filled: its exits may go anywhere the market allows
    bracket_field, own = LEG_PRICES.get(record.id.removeprefix(f"{parent.id}-"), ("", ""))
    price = getattr(change, own) if own else None
    if price is None:
        return
    entry = modified_fields(parent, None, lookup)
    try:
        _validate(OrderIn, {**entry, bracket_field: price})
    except ApiError as exc:
        if exc.field != bracket_field:
            return  # the entry's own fields: not this change's concern
        rule = exc.message.partition(": ")[2]
        raise ApiError(
            400,
            "validation_error",
            f"{own}: the bracket's {bracket_field} {rule} (entry {parent.id} is not filled yet)",
            own,
        ) from None


def leg_prices(record: Lifecycle, lookup: Lookup) -> dict[str, float | None]:
    """A bracket parent's take profit and stop loss as its legs hold them (None for a leg
    that is finished); nothing for an order without legs."""
    prices: dict[str, float | None] = {}
    for leg_id in record.children:
        leg = lookup(leg_id)
        bracket_field, own = LEG_PRICES.get(leg_id.removeprefix(f"{record.id}-"), ("", ""))
        if leg is None or not own:
            continue  # not found: the price it was placed with stays
        prices[bracket_field] = None if leg.verdict in FINAL_VERDICTS else getattr(leg.intent, own)
    return prices
