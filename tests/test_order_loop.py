"""The order handler's side on its own loop, against the simulated gateway: the connection as a
trader sees it (its name and clientId in the logs and errors, the account it logs in with), no
request taken before the journal is reconciled (on every connect, and while the kill switch's
global cancel goes out), a later openOrder adopted, a silent gateway after 1102, the consumer
and its tasks (a failing task is logged and forgotten, the queue's depth, a clean stop) and the
bound on a call into the loop.

The loop is held up by a callback that waits on an event the test sets (never a fixed sleep):
whatever the test queues meanwhile is still waiting for the consumer."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from test_order_handler import handler, journal, make_handler  # noqa: F401 - shared fixtures

import order_handler as order_handler_module
from conftest import later, wait_for
from gateway_process import free_port
from ib_connection import NotConnectedError
from order_handler import OrderHandler, OrderIntent, Reconciling
from order_records import Lifecycle, Step
from orders.commands import CancelAll

MKT = OrderIntent(symbol="AAPL", action="BUY", quantity=1, order_type="MKT")
FAR = OrderIntent(symbol="AAPL", action="BUY", quantity=1, order_type="LMT", limit_price=1.0)


@contextmanager
def loop_held(handler: OrderHandler) -> Iterator[threading.Event]:
    """Hold the handler's loop (a callback waits on an event) until the block ends."""
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(10)

    handler.thread.call_soon(hold)
    assert holding.wait(5), "the loop never ran the holding callback"
    try:
        yield release
    finally:
        release.set()


def messages(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


# ------------------------------------------------------------------ the connection
def test_a_handler_that_never_reached_its_gateway_says_so_and_stops_cleanly(caplog):
    caplog.set_level(logging.WARNING)
    port = free_port()  # nobody listens there
    handler = OrderHandler("127.0.0.1", port, connect_timeout=1)
    handler.start()  # the first attempt fails; the supervisor keeps trying
    try:
        with pytest.raises(
            NotConnectedError, match=r"^order-handler is not connected to the gateway \(.+\)$"
        ):
            handler.submit(MKT)
        assert any(
            m.startswith(f"❌ order-handler: connect to 127.0.0.1:{port} as clientId 1000 failed")
            for m in messages(caplog, "ib_connection")
        )
    finally:
        handler.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_the_order_connection_asks_for_the_configured_account(gateway, caplog):
    """The account goes to the gateway with the login (ib_async's account subscription): one
    the gateway does not manage is refused with IB's 321 — and the default (none) is not."""
    caplog.set_level(logging.INFO, logger="ib_async.wrapper")  # IB's messages as ib_async logs them
    other = OrderHandler("127.0.0.1", gateway.port, connect_timeout=1, account="DU7654321")
    other.start(wait_connected=False)
    try:
        wait_for(
            lambda: any(
                m.endswith("321, reqId -1: Error validating request: unknown account 'DU7654321'")
                for m in messages(caplog, "ib_async.wrapper")
            ),
            timeout=5,
        )
    finally:
        other.stop()
    caplog.clear()
    caplog.set_level(logging.INFO, logger="orders.loop_side")
    default = OrderHandler("127.0.0.1", gateway.port, connect_timeout=3)
    default.start()
    try:
        wait_for(lambda: default._reconciled, timeout=5)
        assert default.connected and "321" not in " ".join(messages(caplog, "ib_async.wrapper"))
        assert messages(caplog, "orders.loop_side") == [
            "✅ Order handler connected to IB! (clientId 1000)"
        ]
    finally:
        default.stop()


def test_no_order_is_taken_between_connecting_and_reconciling(gateway, journal, monkeypatch):
    """A connection refuses orders until the journal has been matched with the gateway, the
    first one and every one after a drop: a submit at the moment the connection is set up is
    told to retry."""
    handler = OrderHandler(
        "127.0.0.1", gateway.port, connect_timeout=3, settle=(0.05, 0.05, 0.05), journal=journal
    )
    refused: list[str] = []
    set_up = handler.placement.new_connection

    def submit_while_setting_up() -> None:  # on the loop, connected, not yet reconciled
        try:
            handler.submit(MKT)
        except Reconciling as exc:
            refused.append(str(exc))
        set_up()

    monkeypatch.setattr(handler.placement, "new_connection", submit_while_setting_up)
    handler.start()
    try:
        wait_for(lambda: handler._reconciled, timeout=5)
        assert refused == ["reconciling the order journal with the gateway; retry shortly"]
        gateway.drop_connections()
        wait_for(lambda: len(refused) == 2, timeout=5)  # the new connection, being set up
        wait_for(lambda: handler.connected and handler._reconciled, timeout=5)
        assert refused[1] == refused[0]
        assert handler.records() == [] and handler.queue_depth() == 0
    finally:
        handler.stop()


def test_the_kill_switchs_cancel_on_connect_comes_before_taking_requests(
    gateway, journal, monkeypatch
):
    """A kill switch engaged while disconnected sends its global cancel on connect; until that
    is done the handler is still reconciling, so a cancel asked meanwhile is told to retry."""
    waiting = Lifecycle(  # journaled by an earlier run, not finished: restored on start
        id="o-earlier-000001",
        intent=FAR,
        source="api",
        created_at=1.0,
        phase="tracking",
        updated_at=1.0,
        steps=(Step(1.0, "queued"),),
    )
    journal.insert(waiting)
    handler = OrderHandler("127.0.0.1", gateway.port, connect_timeout=3, journal=journal)
    handler.kill_switch.engage("engaged while disconnected")
    refused: list[str] = []
    global_cancel = handler.placement.cancel_all

    async def cancel_asked_meanwhile() -> None:
        try:
            handler.cancel(waiting.id)
        except Reconciling as exc:
            refused.append(str(exc))
        await global_cancel()

    monkeypatch.setattr(handler.placement, "cancel_all", cancel_asked_meanwhile)
    handler.start()
    try:
        wait_for(lambda: handler._reconciled, timeout=5)
        assert refused == ["reconciling the order journal with the gateway; retry shortly"]
        wait_for(lambda: gateway.stats().requests_by_client[1000, "ReqGlobalCancel"] == 1)
        assert handler.queue_depth() == 0
    finally:
        handler.stop()


def test_a_later_open_order_of_an_unfollowed_order_is_adopted(handler, gateway):
    """An openOrder for one of our orders whose ib_async objects the handler dropped (as it
    does when a connection dies) attaches the record to it again: here the order's fill, whose
    openOrder comes first, is matched and gives the verdict."""
    gateway.set_fill_delay(30)  # on the gateway's clock: due when the test jumps it
    record, _ = handler.submit(MKT)
    wait_for(lambda: handler.get(record.id).status == "PreSubmitted")  # acknowledged

    async def forget() -> None:
        handler.book.forget_connection()

    handler.thread.call(forget(), 5)
    later(gateway, 30)  # the fill, once the order is unfollowed
    assert handler.wait(record.id, 5).verdict == "filled"
    assert "matched at the gateway after reconnect" in [
        s.text for s in handler.get(record.id).steps
    ]


def test_a_global_cancel_as_the_connection_comes_up_is_refused_clearly(gateway, journal):
    """Between the login and the start of the consumer, a global cancel cannot be queued: the
    caller is told (the API's 503 text), and nothing is left half-queued."""
    refused: list[str] = []

    class Racing(OrderHandler):
        async def on_connected(self, ib) -> None:
            if not refused:  # the first connection, logged in, its consumer not started
                try:
                    self.cancel_all()
                except NotConnectedError as exc:
                    refused.append(str(exc))
            await super().on_connected(ib)

    handler = Racing("127.0.0.1", gateway.port, connect_timeout=3, journal=journal)
    handler.start()
    try:
        wait_for(lambda: handler._reconciled, timeout=5)
        assert refused == ["order handler is not running"] and handler.queue_depth() == 0
        handler.cancel_all()  # a barrier: the connection's requests reach the gateway in order
        wait_for(lambda: gateway.stats().requests_by_client[1000, "ReqGlobalCancel"] >= 1)
        assert gateway.stats().requests_by_client[1000, "ReqGlobalCancel"] == 1  # only it
    finally:
        handler.stop()


# ------------------------------------------------------------ the consumer and tasks
def test_queue_depth_counts_requests_waiting_for_the_loop(handler, gateway):
    """/status's queue depth: requests put on the queue and not yet taken by the consumer."""
    for sent in (2, 4):  # twice: the count follows the queue and does not drift
        with loop_held(handler):
            handler.cancel_all()
            handler.cancel_all()
            assert handler.queue_depth() == 2
        wait_for(lambda n=sent: gateway.stats().requests_by_client[1000, "ReqGlobalCancel"] == n)
        assert handler.queue_depth() == 0


def test_a_failing_order_task_is_logged_and_forgotten(handler, gateway, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="orders.loop_side")

    async def broken(command: CancelAll | None = None) -> None:
        raise RuntimeError("a bug in the global cancel")

    monkeypatch.setitem(handler.placement.runners, CancelAll, broken)
    handler.cancel_all()
    wait_for(lambda: "order task failed" in messages(caplog, "orders.loop_side"))
    [failed] = [r for r in caplog.records if r.getMessage() == "order task failed"]
    assert failed.levelno == logging.ERROR and failed.name == "orders.loop_side"
    assert failed.exc_info is not None and str(failed.exc_info[1]) == "a bug in the global cancel"
    wait_for(lambda: not handler._tasks)  # the failed task is let go
    monkeypatch.undo()
    handler.cancel_all()  # the consumer carries on
    wait_for(lambda: gateway.stats().requests_by_client[1000, "ReqGlobalCancel"] == 1)
    wait_for(lambda: not handler._tasks)
    assert messages(caplog, "orders.loop_side").count("order task failed") == 1


STOPPED = "the app stopped before it left the queue"


def test_stopping_with_orders_in_flight_cancels_their_tasks_cleanly(gateway, journal, caplog):
    gateway.set_validation_delay(5)  # the orders wait in their settle window
    handler = make_handler(gateway, journal)
    records = [handler.submit(MKT)[0] for _ in range(3)]
    wait_for(lambda: handler.in_flight() == 3, timeout=5)
    tasks = list(handler._tasks)
    assert len(tasks) == 3
    caplog.set_level(logging.WARNING)
    handler.stop()
    assert all(t.done() for t in tasks) and handler._consumer.done()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert journal.flush(5)  # the records' last states, as the app's stop flushes them
    for record in records:  # sent: found again on start; still queued for the pace: not sent
        saved = journal.get(record.id).record
        assert (saved.verdict, saved.verdict_reason) in ((None, None), ("not_sent", STOPPED))


def test_a_gateway_silent_after_1102_fails_the_restore_in_bounded_time(
    handler, gateway, caplog, monkeypatch
):
    """After IB's servers come back (1102) the handler asks for the executions; a gateway that
    does not answer fails that step after CALL_TIMEOUT (shortened here) with the log line a
    trader reads, instead of leaving the restore (and a pending global cancel) hanging."""
    import orders.loop_side

    monkeypatch.setattr(orders.loop_side, "CALL_TIMEOUT", 0.2)
    caplog.set_level(logging.ERROR, logger="ib_servers")
    with gateway.stalled():  # until the step has given up, however slow the machine
        handler.thread.call(handler._after_restore(handler.ib, False), 10)
    assert messages(caplog, "ib_servers") == [
        "order-handler: reconciling after IB's servers came back failed"
    ]
    [failed] = caplog.records
    assert failed.exc_info is not None and isinstance(failed.exc_info[1], TimeoutError)


# ------------------------------------------------------------------- calls into the loop
def test_a_preview_is_bounded_when_the_loop_is_stuck(handler, monkeypatch):
    """A web thread never hangs on a stuck order loop: the preview gives up after its bound
    (2 broker calls + 1 s; shortened here) with TimeoutError, the API's 504."""
    assert handler.preview(MKT).commission is not None  # answered when all is well
    monkeypatch.setattr(order_handler_module, "CALL_TIMEOUT", 0.2)  # bound 1.4 s
    with loop_held(handler):  # the loop answers after 10 s at the earliest
        with pytest.raises(TimeoutError):
            handler.preview(MKT)


def test_a_cancel_before_the_send_sends_nothing(handler, gateway):
    """A cancel that reaches the order thread while the placement still waits for its contract
    (the gateway slow to answer) ends the order ``cancelled`` without anything reaching the
    broker: no placeOrder, and no order at the gateway."""
    with gateway.stalled():  # the contract's qualification waits: AAPL was never asked for here
        record, _ = handler.submit(FAR)
        handler.cancel(record.id)
        wait_for(lambda: handler.get(record.id).cancel_requested)
    wait_for(lambda: handler.get(record.id).verdict == "cancelled")
    done = handler.get(record.id)
    assert (done.verdict_reason, done.order_id) == ("cancelled before it was sent", None)
    assert gateway.stats().requests_by_client.get((1000, "PlaceOrder"), 0) == 0
    assert gateway.open_orders() == []


def test_a_change_sent_before_the_last_one_was_echoed_keeps_it(handler, gateway):
    """Two changes of one order sent before the broker's echo of the first (the loop held:
    two quick API calls, a slow gateway): the second goes on top of the first, which it put
    back before (a halved quantity restored by a price change). A refused change is not
    carried into the next one."""
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    with loop_held(handler):
        handler.modify(record.id, quantity=3)
        handler.modify(record.id, limit_price=1.5)
    wait_for(lambda: handler.get(record.id).intent.limit_price == 1.5)
    assert [(o.total_quantity, o.lmt_price) for o in gateway.open_orders()] == [(3, 1.5)]
    assert handler.get(record.id).intent.quantity == 3
    handler.modify(record.id, quantity=9_000_000)  # more than the account can buy: 201
    wait_for(lambda: any(m.code == 201 for m in handler.get(record.id).messages))
    handler.modify(record.id, limit_price=1.25)
    wait_for(lambda: handler.get(record.id).intent.limit_price == 1.25)
    assert [(o.total_quantity, o.lmt_price) for o in gateway.open_orders()] == [(3, 1.25)]


def test_a_change_refused_with_an_error_of_10000_or_more_is_not_carried_into_the_next(
    handler, gateway
):
    """IB refuses some changes with codes of 10000 and more (10326 'OCA group revision is not
    allowed', 10327): the refused price was kept as 'sent, not yet echoed' and went out again
    with the next change of the order. Only warnings (2100-2199, 399, 10349) keep it."""
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    order_id = handler.get(record.id).order_id
    tracker = handler.book.get(record.id)
    tracker.unconfirmed = {"limit_price": 1.5}  # a change sent, its echo not here yet

    def heard(code: int) -> bool:
        return any(m.code == code for m in handler.get(record.id).messages)

    gateway.send_error(handler.client_id, order_id, 2109, "Outside Regular Trading Hours")
    wait_for(lambda: heard(2109))
    assert tracker.unconfirmed == {"limit_price": 1.5}  # a warning refuses nothing
    gateway.send_error(handler.client_id, order_id, 10326, "OCA group revision is not allowed")
    wait_for(lambda: heard(10326))
    handler.modify(record.id, quantity=3)
    wait_for(lambda: [o.total_quantity for o in gateway.open_orders()] == [3])
    assert [o.lmt_price for o in gateway.open_orders()] == [FAR.limit_price]
