"""An order's executions as IB reports them, and what they prove on their own.

* **Corrections.** IB reports a corrected execution as another execDetails identical but for
  its execId, which differs only after the last period (``…01.01`` corrected by ``…01.02``):
  the correction replaces the execution it corrects, never adds to it (a 100-share fill and
  its correction showed 200 filled at the average of both prices).
* **Filled without a status.** IB does not promise an orderStatus for every change (an order
  that fills at once often gets none): executions adding up to the quantity IB has fill the
  order, unless a change of that quantity is on its way.
"""

from __future__ import annotations

import logging
from typing import Any

from ib_async.order import Trade

from ib_compat import number
from order_records import FillRecord, Lifecycle

log = logging.getLogger(__name__)

EPS = 1e-9


def fill_record(fill: Any) -> FillRecord:
    """Our record of ib_async's Fill."""
    ex = fill.execution
    at = fill.time.timestamp() if fill.time else 0.0
    return FillRecord(exec_id=ex.execId, at=at, shares=ex.shares, price=ex.price)


def commission_of(order_id: str, report: Any) -> float | None:
    """A report's commission; None (logged) for one that is no number, such as IB's
    UNSET_DOUBLE: the fill keeps waiting for its commission rather than show 1.8e308."""
    commission = number(report.commission)
    if commission is None:
        log.warning("%s: no commission in %s's report (%s)", order_id, report.execId, report)
    return commission


def correction_of(exec_id: str) -> tuple[str, tuple[int, str]]:
    """(the execution it corrects or is, its correction number) of IB's ``X.Y.Z.N`` execId;
    any other id is its own execution, number 0."""
    base, dot, number = exec_id.rpartition(".")
    if not dot or base.count(".") < 2:
        return exec_id, (0, "")
    return base, (int(number), "") if number.isdigit() else (0, number)


def merged(
    old: tuple[FillRecord, ...], new: tuple[FillRecord, ...]
) -> tuple[tuple[FillRecord, ...], tuple[str, ...]]:
    """``old`` and ``new`` executions in the order first seen, each corrected one replaced by
    its latest correction (an older one arriving late is dropped), exact repeats dropped;
    and a note for each correction taken."""
    kept: dict[str, FillRecord] = {}
    notes: list[str] = []
    for fill in (*old, *new):
        base, number = correction_of(fill.exec_id)
        before = kept.get(base)
        if before is None:
            kept[base] = fill
        elif number > correction_of(before.exec_id)[1]:
            kept[base] = fill
            notes.append(
                f"IB corrected execution {before.exec_id} ({before.shares:g} @ "
                f"{before.price:g}) by {fill.exec_id} ({fill.shares:g} @ {fill.price:g})"
            )
    return tuple(kept.values()), tuple(notes)


def filled_by_executions(record: Lifecycle, trade: Trade | None, changing: bool) -> bool:
    """The record's executions fill it: followed on this connection (``trade``: else the
    reconciliation decides), they add up to its quantity and to the quantity IB has, and no
    change of its quantity is on its way (``changing``)."""
    if trade is None or changing:
        return False
    shares = sum(f.shares for f in record.fills)
    return shares > 0 and shares + EPS >= max(record.intent.quantity, trade.order.totalQuantity)
