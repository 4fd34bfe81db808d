"""After a crash and a restart: the restored records take the broker's truth.

"SIGKILL of the app" is the in-process handler stopped after its journal was copied with
SQLite's backup API (``test_order_truth.crash_copy``): what a SIGKILL leaves on disk at that
instant. The gateway is the embedded simulator, which keeps everything it was told.
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_order_truth import FAR, GRACE, crash_copy, make_handler

from conftest import later, wait_for
from gateway_process import ROOT, ZYGOTE
from journal import Journal
from order_handler import OrderHandler


def at_broker(gateway, ref: str):
    return next((o for o in gateway.all_orders() if o.order_ref == ref), None)


@pytest.mark.slow
def test_a_modify_in_flight_at_the_crash_is_shown_as_the_broker_holds_it(gateway, tmp_path):
    """The change reaches the broker after the app died (the gateway reads it late): the
    restarted app must show the broker's limit price, not the journaled one (it kept showing
    the old price, and a later modify was risk-checked against it)."""
    journal = Journal(str(tmp_path / "orders.db"))
    first = make_handler(gateway.port, journal)
    try:
        record, _ = first.submit(FAR)
        wait_for(lambda: first.get(record.id).status == "Submitted")
        gateway.stall(3.0)  # the change waits at the gateway, unread, until after the "kill"
        first.modify(record.id, limit_price=2.0)
        wait_for(lambda: any("change sent" in s.text for s in first.get(record.id).steps))
        journal.flush(5)
        crashed = crash_copy(journal, tmp_path / "crashed.db")
    finally:
        first.stop()
        journal.close()
    wait_for(
        lambda: at_broker(gateway, record.id).lmt_price == 2.0, timeout=15
    )  # a loaded machine reads it late
    second = make_handler(gateway.port, crashed)
    try:
        wait_for(lambda: second.get(record.id).verdict == "working", timeout=GRACE + 5)
        after = second.get(record.id)
        assert (after.status, after.intent.limit_price) == ("Submitted", 2.0), after
        assert any(s.text == "broker confirmed the change: limit price 2" for s in after.steps)
        crashed.flush(5)
        assert crashed.get(record.id).record.intent.limit_price == 2.0  # journaled too
    finally:
        second.stop()
        crashed.close()


async def _slow_pace(handler: OrderHandler, rate: float = 2.0) -> None:
    """The order connection's pace bucket empty and refilling slowly (as right after the
    burst of a connect): the next request waits 1 / ``rate`` s in the pacing queue."""
    bucket = handler.ib.client.sendMsg.__self__.bucket  # type: ignore[union-attr]  # our SmoothPacer
    bucket.tokens, bucket.rate = 0.0, rate


def test_a_change_waiting_for_the_pace_at_a_stop_still_reaches_the_broker(gateway, tmp_path):
    """A change recorded "change sent" can still wait in the pacing queue; a graceful stop
    disconnected at once and ib_async's disconnect emptied that queue: the broker never got
    the change its record said was sent (what made the test above fail now and then). The
    stop lets what waits for the pace go out first (2 s at most)."""
    journal = Journal(str(tmp_path / "orders.db"))
    handler = make_handler(gateway.port, journal)
    try:
        record, _ = handler.submit(FAR)
        wait_for(lambda: handler.get(record.id).status == "Submitted")
        handler.thread.call(_slow_pace(handler), 5)
        handler.modify(record.id, limit_price=2.0)
        wait_for(lambda: any("change sent" in s.text for s in handler.get(record.id).steps))
    finally:
        handler.stop()
        journal.close()
    wait_for(lambda: at_broker(gateway, record.id).lmt_price == 2.0, timeout=5)


def test_a_change_still_waiting_for_the_pace_when_the_stop_gives_up_says_not_sent(
    gateway, tmp_path, monkeypatch
):
    """When the stop's wait for the pace runs out, a change still queued dies with the
    socket: its record said "change sent" and now says it was not."""
    import orders.loop_side

    monkeypatch.setattr(orders.loop_side, "FLUSH_AT_STOP", 0.1)
    journal = Journal(str(tmp_path / "orders.db"))
    handler = make_handler(gateway.port, journal)
    try:
        record, _ = handler.submit(FAR)
        wait_for(lambda: handler.get(record.id).status == "Submitted")
        handler.thread.call(_slow_pace(handler, rate=0.1), 5)  # the next request in 10 s
        handler.modify(record.id, limit_price=2.0)
        wait_for(lambda: any("change sent" in s.text for s in handler.get(record.id).steps))
    finally:
        handler.stop()
    journal.flush(5)
    steps = [s.text for s in journal.get(record.id).record.steps]
    journal.close()
    assert steps[-1] == "change not sent: the app stopped before it left the queue"
    assert at_broker(gateway, record.id).lmt_price == FAR.limit_price


def test_a_cancelled_orders_remaining_is_the_same_after_a_restart(gateway, tmp_path):
    """A cancelled order read remaining 3 (the broker's Cancelled status) while the app ran,
    and 0 once a restart closed it from the completed orders (ib_async's completed order has
    no remaining): a finished order's remaining is what was left unfilled, either way."""
    journal = Journal(str(tmp_path / "orders.db"))
    first = make_handler(gateway.port, journal)
    try:
        record, _ = first.submit(replace(FAR, quantity=3))
        wait_for(lambda: first.get(record.id).status == "Submitted")
        journal.flush(5)
        crashed = crash_copy(journal, tmp_path / "crashed.db")  # still working on disk
        first.cancel(record.id)
        live = wait_for(lambda: (r := first.get(record.id)).verdict == "cancelled" and r)
        assert (live.filled, live.remaining) == (0, 3)
    finally:
        first.stop()
        journal.close()
    second = make_handler(gateway.port, crashed)
    try:
        after = wait_for(lambda: (r := second.get(record.id)).verdict == "cancelled" and r)
        assert (after.status, after.filled, after.remaining) == ("Cancelled", 0, 3)
    finally:
        second.stop()
        crashed.close()


def test_a_started_process_runs_this_checkouts_modules(tmp_path):
    """The zygote imports the app before it forks: from this checkout, not from a folder the
    virtualenv's path adds (a clone's process tests then ran another copy's code)."""
    script = tmp_path / "where.py"
    out = tmp_path / "where.txt"
    script.write_text(
        "import pathlib, orders.reconcile, services\n"
        f"pathlib.Path({str(out)!r}).write_text(services.__file__ + '\\n' + orders.reconcile.__file__)\n"
    )
    pidfd = ZYGOTE.spawn([str(script)], dict(os.environ), ROOT)
    try:
        assert select.select([pidfd], [], [], 30)[0], "the process did not end"
    finally:
        os.close(pidfd)
    paths = out.read_text().split("\n")
    assert all(Path(p).is_relative_to(ROOT) for p in paths), paths


@pytest.mark.slow
def test_a_cancel_waiting_for_the_order_at_the_crash_is_sent_after_the_restart(gateway, tmp_path):
    """A cancel accepted while the order was not matched since a reconnect waits for the
    broker to show it again; the app dies meanwhile. After the restart the broker shows the
    order live: the cancel is sent then (it was forgotten: the order worked on, 'working',
    though the trader's cancel had been accepted and its history said 'cancel waiting')."""
    journal = Journal(str(tmp_path / "orders.db"))
    first = OrderHandler(
        "127.0.0.1",
        gateway.port,
        connect_timeout=3,
        settle=(0.05, 0.05, 0.05),
        monitor_timeout=1,
        journal=journal,
        reconcile_grace=30,  # the order stays awaited while the app runs
    )
    first.start()
    try:
        wait_for(lambda: first._reconciled, timeout=10)
        gateway.set_validation_delay(8.0)  # not acknowledged, so not reported, for 8 s (a
        # loaded machine took over 4 s to reach the crash copy: the ack came, the cancel went)
        record, _ = first.submit(FAR)
        wait_for(lambda: first.get(record.id).order_id is not None)
        since = first.state().connected_since
        gateway.drop_connections()
        # reconnected and reconciled: the order not found (yet)
        wait_for(lambda: first.state().connected_since != since and first._reconciled, 10)
        first.cancel(record.id)
        wait_for(lambda: "cancel waiting" in first.get(record.id).steps[-1].text)
        journal.flush(5)
        crashed = crash_copy(journal, tmp_path / "crashed.db")
    finally:
        first.stop()
        journal.close()
    wait_for(lambda: getattr(at_broker(gateway, record.id), "status", "") == "Submitted", 15)
    second = make_handler(gateway.port, crashed)
    try:
        wait_for(lambda: second.get(record.id).verdict == "cancelled", timeout=GRACE + 5)
        assert at_broker(gateway, record.id).status == "Cancelled"
        assert any(s.text == "pending cancel sent" for s in second.get(record.id).steps)
    finally:
        second.stop()
        crashed.close()


def test_a_cancel_all_answered_before_a_crash_cancels_ours_after_the_restart(
    gateway, tmp_path, monkeypatch
):
    """Cancel all answered 202, then the app died before the global cancel left it (here: it
    waited for the pace). The order thread marked the orders a moment after the answer, so a
    crash in that moment left them working after the restart, the trader's cancel-all
    forgotten. They are journaled as cancel requested before the answer; the restart sends
    the cancel of those the broker still works."""
    import orders.loop_side

    monkeypatch.setattr(orders.loop_side, "FLUSH_AT_STOP", 0.1)
    journal = Journal(str(tmp_path / "orders.db"))
    first = make_handler(gateway.port, journal)
    try:
        records = [first.submit(FAR)[0] for _ in range(2)]
        wait_for(lambda: all(first.get(r.id).status == "Submitted" for r in records))
        first.thread.call(_slow_pace(first, rate=0.05), 5)  # the global cancel waits 20 s
        assert first.cancel_all() == 2
        crashed = crash_copy(journal, tmp_path / "crashed.db")  # the instant after the 202
    finally:
        first.stop()
        journal.close()
    assert [at_broker(gateway, r.id).status for r in records] == ["Submitted"] * 2
    second = make_handler(gateway.port, crashed)
    try:
        for r in records:
            wait_for(lambda r=r: second.get(r.id).verdict == "cancelled", timeout=GRACE + 5)
        assert [at_broker(gateway, r.id).status for r in records] == ["Cancelled"] * 2
    finally:
        second.stop()
        crashed.close()


def test_an_order_filled_while_the_app_was_down_is_filled_when_the_gateway_lists_only_its_fills(
    gateway, tmp_path
):
    """The app died with the order acknowledged; it filled meanwhile, and the gateway was
    restarted too: its completed orders are its session's, its executions the day's. The
    restored record took the fills and was concluded "not found at the gateway ... never
    resent": a filled order shown as never placed. Its executions fill it."""
    journal = Journal(str(tmp_path / "orders.db"))
    first = make_handler(gateway.port, journal)
    try:
        gateway.set_fill_delay(30)  # on the gateway's clock: due when the test jumps it
        record, _ = first.submit(replace(FAR, order_type="MKT", limit_price=None))
        wait_for(lambda: first.get(record.id).status in ("PreSubmitted", "Submitted"))
        journal.flush(5)
        crashed = crash_copy(journal, tmp_path / "crashed.db")
    finally:
        first.stop()
        journal.close()
    later(gateway, 30)  # it fills while the app is down
    wait_for(lambda: getattr(at_broker(gateway, record.id), "status", "") == "Filled")
    gateway.forget_completed_orders()
    second = make_handler(gateway.port, crashed)
    try:
        wait_for(lambda: second.get(record.id).verdict == "filled", timeout=GRACE + 5)
        restored = second.get(record.id)
        assert restored.filled == FAR.quantity and restored.fills
        assert "executions add up to its quantity" in (restored.verdict_reason or "")
    finally:
        second.stop()
        crashed.close()


def test_an_order_concluded_not_placed_long_ago_is_taken_back_when_the_broker_works_it(
    gateway, tmp_path
):
    """A record concluded not placed (a gateway that came back without its orders) whose
    order the broker works again later: after a busy day (500 orders finished since) the
    restart did not load it, so it stayed not placed, uncounted and not cancellable while it
    worked at IB. It is taken back from the journal."""
    from order_records import Lifecycle, Step

    journal = Journal(str(tmp_path / "orders.db"))
    first = make_handler(gateway.port, journal)
    try:
        record, _ = first.submit(FAR)
        wait_for(lambda: first.get(record.id).status == "Submitted")
    finally:
        first.stop()
    assert journal.flush(5)
    lost = replace(
        journal.get(record.id).record,
        verdict="not_placed",
        phase="done",
        updated_at=time.time(),
        verdict_reason="acknowledged by the broker (Submitted) but not found at the gateway",
    )
    journal.save(lost)
    journal.flush(5)
    now = time.time()
    for n in range(500):  # a busy day: 500 orders finished after it
        at = now + 1 + n / 1000
        journal.insert(
            Lifecycle(
                id=f"o-busy-{n:06d}",
                intent=FAR,
                source="api",
                created_at=at,
                phase="done",
                verdict="cancelled",
                status="Cancelled",
                updated_at=at,
                steps=(Step(at, "queued"),),
            )
        )
    second = make_handler(gateway.port, journal)
    try:
        wait_for(lambda: second.get(record.id).verdict == "working", timeout=5)
        second.cancel(record.id)
        wait_for(lambda: at_broker(gateway, record.id).status == "Cancelled", timeout=5)
    finally:
        second.stop()
        journal.close()


def test_a_change_accepted_but_not_taken_at_a_stop_says_it_was_not_sent(gateway, tmp_path):
    """A modify answered 202 and still in the queue when the app stopped was dropped without
    a word: its record said nothing of it, as if the trader's change had never been asked."""
    import threading

    from conftest import loop_paused

    journal = Journal(str(tmp_path / "orders.db"))
    handler = make_handler(gateway.port, journal)
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    with loop_paused(handler.thread):  # the order thread busy: the change waits in the queue
        handler.modify(record.id, limit_price=2.0)
        stopping = threading.Thread(target=handler.stop)
        stopping.start()
        time.sleep(0.3)
    stopping.join(20)
    journal.flush(5)
    steps = [s.text for s in journal.get(record.id).record.steps]
    journal.close()
    assert steps[-1] in (  # still queued, or taken and not begun when the stop came
        "change not sent: the app stopped before it was taken",
        "change not sent: the order connection closed first",
    )
    assert at_broker(gateway, record.id).lmt_price == FAR.limit_price
