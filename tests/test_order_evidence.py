"""The broker's word against ib_async's own statuses and our earlier conclusions.

ib_async changes a trade's status on its own (an error it takes for a cancel, a cancel it sends)
and passes a broker's orderStatus on only when it differs from the trade's. Every test drives
the simulated gateway with real ib_async and compares the record with what the broker holds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import pytest
from ib_async import Contract, Order
from ib_async.order import OrderStatus, Trade
from test_order_handler import (  # noqa: F401 - fixtures
    FAR,
    MKT,
    handler,
    journal,
    make_handler,
    quick_heartbeat,
)

from conftest import broker_order, later, wait_for
from order_handler import OrderIntent
from order_records import FillRecord, Lifecycle
from orders import tracking
from orders.lifecycle import VERDICTS, Tracker, Verdict, may_become
from orders.reconcile import Action, Candidate, Decision, decide
from orders.tracking import OrderBook

VERDICT_OF = {"Filled": "filled", "Cancelled": "cancelled", "Inactive": "rejected"}


def at_broker(gateway, ref: str):
    """The broker's order of ours with orderRef ``ref`` (None if it never arrived)."""
    return next((o for o in gateway.all_orders() if o.order_ref == ref), None)


def pending_at_broker(gateway, order_id: int) -> bool:
    """Whether our order ``order_id`` has reached the broker and waits for its ack: waited
    for before the clock jumps to the ack (an order that arrived later would wait on)."""

    return wait_for(
        lambda: getattr(broker_order(gateway, order_id), "status", None) == "PendingSubmit",
        timeout=5,
    )


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


def test_cancelling_a_bracket_parent_before_its_ack_waits_for_the_broker(handler, gateway):
    """ib_async calls an unacknowledged bracket parent (sent with transmit=False) Cancelled
    inside our own cancelOrder call; the broker had the bracket and decides: the record ends
    with the broker's status and the verdict it implies, never cancelled-but-filled."""
    first, _ = handler.submit(MKT)
    price = handler.wait(first.id, 5).avg_fill_price
    bracket = OrderIntent(
        symbol="AAPL",
        action="BUY",
        quantity=1,
        order_type="MKT",
        take_profit=round(price * 1.5, 2),
        stop_loss=round(price * 0.5, 2),
    )
    gateway.stall(1.0)  # the bracket and the cancel wait at the gateway, unread
    record, _ = handler.submit(bracket)
    wait_for(lambda: handler.get(record.id).order_id is not None, timeout=3)
    handler.cancel(record.id)
    wait_for(lambda: getattr(at_broker(gateway, record.id), "status", None) in VERDICT_OF, 5)
    broker = at_broker(gateway, record.id)
    wait_for(lambda: handler.get(record.id).status == broker.status, timeout=5)
    parent = handler.get(record.id)
    assert parent.verdict == VERDICT_OF[broker.status], parent
    assert parent.filled == broker.filled and len(parent.fills) == (broker.filled > 0)


def test_messages_about_a_working_order_are_kept_after_ib_is_back(handler, gateway, caplog):
    """After 1102 (IB's servers back, data kept) reconciliation rebuilds the orderId index; an
    order followed all along must be in it again, or the broker's messages about it are lost."""
    caplog.set_level(logging.INFO, logger="orders.loop_side")
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    gateway.outage(0.5, lost=False)
    wait_for(lambda: any("Reconciled after IB" in r.getMessage() for r in caplog.records), 5)
    handler.modify(record.id, quantity=9_000_000)  # refused: 201
    wait_for(lambda: any(m.code == 201 for m in handler.get(record.id).messages), timeout=5)


def test_a_commission_lost_with_the_connection_is_recovered(handler, gateway, monkeypatch):
    """The connection drops between an execution and its commission report: reconciliation on
    the new connection takes the commission from the gateway's executions."""
    lost: list[str] = []
    heard = OrderBook.on_commission

    def lose_the_first(book, tracker, report):
        if lost:
            heard(book, tracker, report)
        else:
            lost.append(report.execId)

    monkeypatch.setattr(OrderBook, "on_commission", lose_the_first)
    record, _ = handler.submit(MKT)
    assert handler.wait(record.id, 5).verdict == "filled"
    wait_for(lambda: lost)
    assert [f.commission for f in handler.get(record.id).fills] == [None]
    gateway.drop_connections()
    wait_for(lambda: not handler.connected, timeout=5)
    wait_for(lambda: handler.connected and handler._reconciled, timeout=15)
    charged = {e.exec_id: c.commission for e, c in gateway.executions()}
    wait_for(lambda: handler.get(record.id).fills[0].commission is not None, timeout=5)
    assert [(f.exec_id, f.commission) for f in handler.get(record.id).fills] == [
        (lost[0], charged[lost[0]])
    ]


def working(*fills: FillRecord, quantity: float = 10) -> Lifecycle:
    """A working order o-1 (orderId 5) of ``quantity`` with ``fills``."""
    return Lifecycle(
        id="o-1",
        intent=replace(FAR, quantity=quantity),
        source="api",
        created_at=0,
        phase="tracking",
        order_id=5,
        verdict="working",
        fills=fills,
    )


def test_reconcile_takes_the_commission_of_a_fill_it_has_without_one():
    record = working(FillRecord("X", 0, 1, 1.0), FillRecord("Y", 0, 1, 1.0, 0.5))
    reported = {"o-1": [FillRecord("X", 0, 1, 1.0, 1.0), FillRecord("Y", 0, 1, 1.0, 0.5)]}
    decisions = decide([Candidate(record, False)], {}, reported, False)
    assert [(d.action, d.fills) for d in decisions] == [
        (Action.COMMISSIONS, (FillRecord("X", 0, 1, 1.0, 1.0),)),
        (Action.AWAIT, ()),  # (no report of the order itself in this example)
    ]
    assert decide([Candidate(record, False)], {}, {"o-1": [FillRecord("X", 0, 1, 1.0)]}, False) == [
        Decision(Action.AWAIT, "o-1")
    ]  # no commission at the gateway either: nothing to take


def test_reconcile_takes_a_correction_once_and_never_the_execution_it_replaced():
    """The gateway lists an execution and IB's correction of it side by side: a record holding
    the correction takes neither again (the original was a "recovered fill" on every
    reconnect), one holding the original takes the correction."""
    original = FillRecord("0000e0d5.65000001.01.01", 0, 1, 1.0, 0.5)
    corrected = FillRecord("0000e0d5.65000001.01.02", 0, 1, 1.1, 0.5)
    reported = {"o-1": [original, corrected]}
    assert decide([Candidate(working(corrected), False)], {}, reported, False) == [
        Decision(Action.AWAIT, "o-1")
    ]
    decisions = decide([Candidate(working(original), False)], {}, reported, False)
    assert [(d.action, d.fills) for d in decisions][0] == (Action.FILLS, (corrected,))


def test_executions_of_an_order_the_gateway_no_longer_lists_are_its_evidence():
    """A gateway restarted since lists the day's executions but not the finished order: the
    record took the fills and was still concluded "not found ... never resent", a filled
    order shown as never placed (placed again by a trader who believed it)."""
    fills = {"o-1": [FillRecord("A", 0, 4, 1.0), FillRecord("B", 0, 6, 1.0)]}
    assert [d.action for d in decide([Candidate(working(), True)], {}, fills, False)] == [
        Action.FILLS,
        Action.FILLED,
    ]
    part = {"o-1": [FillRecord("A", 0, 4, 1.0)]}
    assert [d.action for d in decide([Candidate(working(), True)], {}, part, False)] == [
        Action.FILLS,
        Action.AWAIT,  # the rest may still be working: looked for again after the grace
    ]
    assert [d.action for d in decide([Candidate(working(), True)], {}, part, True)] == [
        Action.FILLS,
        Action.PART_EXECUTED,
    ]
    assert [d.action for d in decide([Candidate(working(), True)], {}, {}, True)] == [
        Action.NOT_PLACED
    ]
    # concluded not placed (or cancelled) before its executions were seen: they fill it
    for verdict in ("not_placed", "cancelled"):
        record = replace(working(), verdict=verdict)
        assert [d.action for d in decide([Candidate(record, True)], {}, fills, True)] == [
            Action.FILLS,
            Action.FILLED,
        ]
    cancelled = replace(working(), verdict="cancelled")  # partly filled, then cancelled
    assert [d.action for d in decide([Candidate(cancelled, True)], {}, part, True)] == [
        Action.FILLS
    ]


def test_a_late_fill_of_an_old_order_keeps_its_commission(handler, gateway, monkeypatch):
    """An old GTC-like order fills after newer orders finished: pruning (here down to two
    finished records) must not forget it inside its own Filled handler, before its commission."""
    prune = OrderBook.prune
    monkeypatch.setattr(OrderBook, "prune", lambda book, keep=2, **kw: prune(book, keep, **kw))
    old, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(old.id).status == "Submitted")
    for _ in range(3):
        newer, _ = handler.submit(MKT)
        assert handler.wait(newer.id, 5).verdict == "filled"
    handler.modify(old.id, limit_price=1000.0)  # marketable now: it fills
    wait_for(lambda: at_broker(gateway, old.id).status == "Filled")
    charged = [c.commission for e, c in gateway.executions() if e.order_ref == old.id]
    wait_for(lambda: [f.commission for f in handler.get(old.id).fills] == charged, timeout=5)
    assert handler.get(old.id).verdict == "filled"


def finished(id_: str, at: float, commission: float | None = 1.0) -> Tracker:
    fills = (FillRecord(f"{id_}-x", at, 1, 1.0, commission),)
    record = Lifecycle(id_, FAR, "api", 0.0, "done", verdict="filled", fills=fills, updated_at=at)
    return Tracker(record, lambda r: None)


def test_pruning_keeps_the_latest_finished_the_recent_and_those_awaiting_a_commission():
    book = OrderBook(lambda: None, lambda: None)
    now = time.time()
    # seconds since each finished; c and f still lack a commission
    ages = {"a": 10, "b": 100, "c": 200, "d": 300, "e": 5, "f": 3600}
    for id_, age in ages.items():  # created in this order, finished in another
        book.add(finished(id_, now - age, commission=None if id_ in "cf" else 1.0))
    book.prune(keep=1, min_age=60)
    # e: the latest finished; a: finished 10 s ago; c: its commission may still come (not f's,
    # an hour on: a fill whose report never comes must not keep its order in memory for good)
    assert sorted(t.id for t in book.all()) == ["a", "c", "e"]


def test_a_record_taken_back_from_the_journal_is_not_pruned_before_its_adoption(tmp_path):
    """A not_placed record the broker works again is taken back from the journal only when
    memory is full of finished records; with its old time it was the oldest of them, and the
    next final verdict (another order's, in the same pass) pruned it before its adoption."""
    from types import SimpleNamespace

    from journal import Journal
    from orders.reconcile import Reconciler

    journal = Journal(str(tmp_path / "orders.db"))
    lost = Lifecycle("o-lost", FAR, "api", 0.0, "done", verdict="not_placed", updated_at=1.0)
    journal.insert(lost)
    book = OrderBook(lambda: None, lambda: None)
    for n in range(3):
        book.add(finished(f"o-{n}", time.time() - 100))
    records = SimpleNamespace(journal=journal, sink=lambda record: None)
    reconciler = Reconciler(book, 1.0, lambda coro: None, records)
    taken = reconciler._recall("o-lost")
    assert taken is not None and book.get("o-lost") is taken
    book.prune(keep=3, min_age=60)  # (500 in the app)
    assert book.get("o-lost") is taken
    journal.close()


ROUTED = "This order will be directly routed to NASDAQ."  # 10311: informational


def say_routed_before_the_ack(handler, gateway, intent: OrderIntent) -> str:
    """Place ``intent`` with the ack 1 s late and IB's 10311 before it (ib_async takes any
    error it does not know for a cancel of the order)."""
    gateway.set_validation_delay(60)  # the ack comes in a later read than the error
    record, _ = handler.submit(intent)
    order_id = wait_for(lambda: handler.get(record.id).order_id)
    wait_for(lambda: broker_order(gateway, order_id) is not None)  # read by the gateway
    assert gateway.send_error(1000, order_id, 10311, ROUTED)
    later(gateway, 60)  # then the ack
    return record.id


@pytest.mark.parametrize(
    ("intent", "status", "verdict"), [(MKT, "Filled", "filled"), (FAR, "Submitted", "working")]
)
@pytest.mark.slow
def test_an_informational_error_before_the_ack_is_no_rejection(
    handler, gateway, intent, status, verdict
):
    """The broker's status decides, not ib_async's reading of the message: the order fills,
    or rests and is shown working (a "rejected" order live at the broker would be lost)."""
    order_id = say_routed_before_the_ack(handler, gateway, intent)
    wait_for(lambda: handler.get(order_id).verdict == verdict, timeout=8)
    final = handler.get(order_id)
    assert final.status == status
    assert not any("rejected" in step.text for step in final.steps), final.steps
    assert any(m.code == 10311 for m in final.messages)


@pytest.mark.parametrize(
    ("code", "concluded"),
    [(10311, "not_placed"), (110, "rejected")],
)
def test_a_fill_after_a_conclusion_drawn_from_an_error_ends_filled(
    handler, gateway, monkeypatch, code, concluded
):
    """No status within the grace after an error: a 10000s note makes it not_placed (ours), a
    lower code rejected; the broker then fills it: the fill wins, and the record is whole
    (status, fills, verdict)."""
    monkeypatch.setattr(tracking, "REJECT_GRACE", 0.2)
    # the ack waits on the gateway's clock until the conclusion has been seen, however slow
    # the machine: then the clock jumps to it (and the fill that comes with it)
    gateway.set_validation_delay(60.0)
    record, _ = handler.submit(MKT)
    wait_for(lambda: handler.get(record.id).order_id is not None, timeout=3)
    assert gateway.send_error(1000, handler.get(record.id).order_id, code, "a note from IB")
    wait_for(lambda: handler.get(record.id).verdict == concluded, timeout=5)
    assert pending_at_broker(gateway, handler.get(record.id).order_id)  # not acknowledged yet
    later(gateway, 60)  # the ack is due: it comes, the fill with it
    wait_for(lambda: getattr(at_broker(gateway, record.id), "status", None) == "Filled", 5)
    wait_for(lambda: handler.get(record.id).status == "Filled", timeout=5)
    final = handler.get(record.id)
    assert (final.verdict, final.filled, len(final.fills)) == ("filled", 1, 1)


def test_a_fill_beats_our_cancelled_or_rejected_and_nothing_beats_a_fill():
    assert may_become("rejected", Verdict.FILLED) and may_become("cancelled", Verdict.FILLED)
    assert not may_become("cancelled", Verdict.REJECTED)
    assert not may_become("rejected", Verdict.WORKING)
    assert VERDICTS[Verdict.FILLED] == frozenset()


def test_a_status_the_verdict_may_not_take_changes_nothing_but_the_history():
    """Decided before anything is written: no record is left half-updated."""
    record = replace(finished("o-1", time.time()).record, status="Filled", filled=1.0)
    tracker = Tracker(record, lambda r: None)
    book = OrderBook(lambda: None, lambda: None)
    book.apply_status(tracker, Trade(Contract(), Order(), OrderStatus(status="Cancelled")))
    after = tracker.record
    assert (after.status, after.verdict, after.transitions) == ("Filled", "filled", ())
    assert after.steps[-1].text == "the broker reported Cancelled; the verdict filled stands"


def test_a_failing_event_handler_is_logged_not_swallowed(handler, monkeypatch, caplog):
    def boom(book, tracker, fill):
        raise RuntimeError("boom in on_fill")

    monkeypatch.setattr(OrderBook, "on_fill", boom)
    record, _ = handler.submit(MKT)
    assert handler.wait(record.id, 5).verdict == "filled"
    wait_for(lambda: any("boom in on_fill" in r.exc_text for r in errors(caplog)), timeout=3)
    assert record.id in errors(caplog)[0].getMessage()


def errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_text]


@pytest.mark.slow
def test_a_note_then_an_ack_later_than_the_grace_leaves_the_order_working(gateway, journal):
    """not_placed after a 10000s note and 2 s of silence gives way to the late ack: the order
    is working, counted and cancellable (a final "rejected" here hid a live order)."""
    # the monitoring window outlasts the grace however slow the machine; the ack waits on the
    # gateway's clock until the test has seen not_placed, then the clock jumps to it
    handler = make_handler(gateway, journal, monitor=30)
    try:
        gateway.set_validation_delay(60)
        record, _ = handler.submit(FAR)
        wait_for(lambda: handler.get(record.id).order_id is not None, timeout=3)
        assert gateway.send_error(1000, handler.get(record.id).order_id, 10311, ROUTED)
        wait_for(lambda: handler.get(record.id).verdict == "not_placed", timeout=6)
        assert pending_at_broker(gateway, handler.get(record.id).order_id)
        later(gateway, 60)  # the ack is due: it comes
        wait_for(lambda: handler.get(record.id).verdict == "working", timeout=6)
        assert handler.working_count() == 1
        handler.cancel(record.id)
        wait_for(lambda: handler.get(record.id).verdict == "cancelled", timeout=5)
    finally:
        handler.stop()


@pytest.mark.slow
def test_a_change_refused_before_a_slow_ack_leaves_the_order_working(gateway, journal):
    """A change sent before IB acknowledged the order and refused (201: no margin for nine
    million shares) drew no status; 2 s later the order was concluded rejected for good, and
    stayed so once the ack came: live at IB, shown rejected, not cancellable, not counted."""
    handler = make_handler(gateway, journal, monitor=6)
    try:
        gateway.set_validation_delay(3.0)  # the gateway acknowledges after 3 s
        record, _ = handler.submit(FAR)
        wait_for(lambda: handler.get(record.id).order_id is not None)
        handler.modify(record.id, quantity=9_000_000)
        wait_for(lambda: handler.get(record.id).status == "Submitted", timeout=8)
        wait_for(lambda: handler.get(record.id).verdict == "working", timeout=5)
        assert [o.total_quantity for o in gateway.open_orders()] == [FAR.quantity]
        assert handler.working_count() == 1
        handler.cancel(record.id)
        wait_for(lambda: handler.get(record.id).verdict == "cancelled", timeout=5)
    finally:
        handler.stop()


def test_a_rejection_the_broker_follows_with_cancelled_stays_a_rejection(gateway, journal):
    """IB's 201 before any ack, then the broker's Cancelled (not Inactive): rejected, with
    IB's reason, not cancelled as if someone had cancelled it."""
    # no ack comes (due a minute later on the gateway's clock), and the monitoring window
    # does not end before the broker's Cancelled, however slow the machine
    handler = make_handler(gateway, journal, monitor=30)
    try:
        gateway.set_validation_delay(60)
        record, _ = handler.submit(FAR)
        wait_for(lambda: handler.get(record.id).order_id is not None, timeout=3)
        order_id = handler.get(record.id).order_id
        assert pending_at_broker(gateway, order_id)
        assert gateway.send_error(1000, order_id, 201, "Order rejected - reason: test")
        gateway.cancel_at_broker(1000, order_id)
        wait_for(lambda: handler.get(record.id).status == "Cancelled", timeout=5)
        final = handler.get(record.id)
        assert final.verdict == "rejected" and "201" in (final.verdict_reason or ""), final
    finally:
        handler.stop()


NOT_CANCELLABLE = "Cancel attempted when order is not in a cancellable state.  Order permId =0"


@pytest.mark.slow
def test_a_refused_cancel_before_the_ack_is_no_rejection(handler, gateway, monkeypatch):
    """IB's 161 (a cancel refused: the order is not cancellable yet) before the ack, and no
    status within the grace: the message is about the cancel, not the order, which the broker
    then acknowledges: working, counted and cancellable (it was "rejected": a live order hidden,
    no longer counted by the risk gate and refused a cancel)."""
    monkeypatch.setattr(tracking, "REJECT_GRACE", 0.2)
    gateway.set_validation_delay(1.0)  # the ack comes well after the grace
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).order_id is not None, timeout=3)
    assert gateway.send_error(1000, handler.get(record.id).order_id, 161, NOT_CANCELLABLE)
    wait_for(lambda: getattr(at_broker(gateway, record.id), "status", None) == "Submitted", 5)
    wait_for(lambda: handler.get(record.id).verdict == "working", timeout=6)
    assert any(m.code == 161 for m in handler.get(record.id).messages)
    assert handler.working_count() == 1
    handler.cancel(record.id)
    wait_for(lambda: handler.get(record.id).verdict == "cancelled", timeout=5)


@pytest.mark.slow
def test_a_change_the_broker_made_while_we_were_away_is_taken_at_reconnect(
    quick_heartbeat, handler, gateway
):
    """A modify the broker applies after our connection died (its echo lost with it): the
    record matched on the new connection takes the broker's quantity and price (it kept the
    old ones for good, so the dashboard, the risk gate and a next modify went by them)."""
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    with gateway.stalled():  # the change waits unread while the heartbeat gives up on the gateway
        handler.modify(record.id, quantity=2, limit_price=1.5)
        wait_for(lambda: not handler.connected)
    wait_for(lambda: gateway.open_orders()[0].lmt_price == 1.5, timeout=5)  # read after all
    wait_for(lambda: handler.connected and handler._reconciled, timeout=10)
    wait_for(lambda: handler.get(record.id).verdict == "working", timeout=5)
    wait_for(lambda: handler.get(record.id).intent.limit_price == 1.5, timeout=3)
    assert handler.get(record.id).intent.quantity == 2
    assert gateway.open_orders()[0].total_quantity == 2


@pytest.mark.slow
def test_an_order_acknowledged_before_the_connection_was_lost_says_so(gateway, journal):
    """Its monitoring window ends while the gateway is down: unknown until reconciled, and the
    reason tells that the broker had it working, not that it never answered (the trader reads
    'lost before the broker answered' as never placed)."""
    # the window (4 s) is to end after the gateway went down, which follows the ack at once;
    # the gateway stays down until the window's end has been seen
    handler = make_handler(gateway, journal, monitor=4)
    try:
        record, _ = handler.submit(FAR)
        wait_for(lambda: handler.get(record.id).status == "Submitted")
        with gateway.down():
            wait_for(lambda: handler.get(record.id).verdict == "unknown", timeout=8)
            reason = handler.get(record.id).verdict_reason
            assert reason == (
                "connection lost after the broker had it Submitted; resolved by reconciliation"
            )
        wait_for(lambda: handler.get(record.id).verdict == "working", timeout=10)
    finally:
        handler.stop()
