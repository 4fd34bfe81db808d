"""The broker's word against ib_async's own statuses and our earlier conclusions.

ib_async changes a trade's status on its own (an error it takes for a cancel, a cancel it sends)
and passes a broker's orderStatus on only when it differs from the trade's. Every test drives
the simulated gateway with real ib_async and compares the record with what the broker holds.
"""

from __future__ import annotations

import pytest
from test_order_handler import FAR, handler, journal  # noqa: F401 - fixtures

from conftest import wait_for


def at_broker(gateway, ref: str):
    """The broker's order of ours with orderRef ``ref`` (None if it never arrived)."""
    return next((o for o in gateway.all_orders() if o.order_ref == ref), None)


def refuse_a_modify(handler, gateway, record) -> int:
    handler.modify(record.id, quantity=9_000_000)  # refused with 201: the order works on
    return 201


def say_tif_preset(handler, gateway, record) -> int:
    text = "Order TIF was set to DAY based on order preset."
    assert gateway.send_error(1000, record.order_id, 10349, text)  # informational
    return 10349


@pytest.mark.parametrize("error", [refuse_a_modify, say_tif_preset])
def test_a_cancel_after_an_error_ib_async_took_for_a_cancel_is_heard(handler, gateway, error):
    """ib_async marks the working order Cancelled on its own after the error; the broker's
    Cancelled for our cancel afterwards must still reach the record."""
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    code = error(handler, gateway, handler.get(record.id))
    wait_for(lambda: any(m.code == code for m in handler.get(record.id).messages))
    assert handler.get(record.id).verdict in (None, "working")  # in its window, or out
    handler.cancel(record.id)
    wait_for(lambda: at_broker(gateway, record.id).status == "Cancelled")
    wait_for(lambda: handler.get(record.id).verdict == "cancelled", timeout=5)
    assert handler.get(record.id).status == "Cancelled"
