"""OrderHandler against the simulated gateway's faults: drops, restarts, stalls, crashes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import sqlite3
import time
from dataclasses import replace

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from ib_async import Stock, StopOrder
from test_ib_connector import scripts  # noqa: F401 - the trader's TWS client

import ib_connection
from conftest import TRADING_CLOCK, broker_order, later, loop_paused, wait_for
from ib_connection import NotConnectedError
from journal import Journal, JournalError
from order_handler import (
    FINAL_VERDICTS,
    OrderHandler,
    OrderIntent,
    OrderStateError,
    TradingHaltedError,
)
from orders.kill_switch import KillSwitch

MKT = OrderIntent(symbol="AAPL", action="BUY", quantity=1, order_type="MKT")


def make_handler(gateway, journal, **kw):
    handler = OrderHandler(
        "127.0.0.1",
        gateway.port,
        client_id=1000,
        connect_timeout=3,
        settle=(0.05, 0.05, 0.05),
        monitor_timeout=kw.pop("monitor", 3),
        journal=journal,
        reconcile_grace=kw.pop("grace", 1.0),
        **kw,
    )
    handler.start()
    wait_for(lambda: handler._reconciled, timeout=5)
    return handler


@pytest.fixture
def journal(tmp_path):
    j = Journal(str(tmp_path / "orders.db"))
    yield j
    j.close()


@pytest.fixture
def handler(gateway, journal):
    h = make_handler(gateway, journal)
    yield h
    h.stop()


def gateway_orders_by_ref(gateway):
    """How often each orderRef exists at the gateway (one atomic look at the broker)."""
    orders = gateway.all_orders()
    return collections.Counter(o.order_ref for o in orders if o.order_ref)


def assert_matches_gateway(handler, gateway):
    """Every record agrees with the gateway; no order reached the gateway twice."""
    counts = gateway_orders_by_ref(gateway)
    assert all(n == 1 for n in counts.values()), counts
    open_refs = {o.order_ref for o in gateway.open_orders()}
    done = {o.order_ref: o for o in gateway.completed_orders()}
    executions = collections.Counter(e.order_ref for e, _ in gateway.executions())
    for record in handler.records():
        ref = record.id
        if ref in open_refs:
            assert record.verdict not in FINAL_VERDICTS, record
        elif ref in done:
            expected = {"Filled": "filled", "Cancelled": "cancelled", "Inactive": "rejected"}
            assert record.verdict == expected[done[ref].status], (record.verdict, done[ref])
            assert len(record.fills) == executions[ref], record
        else:
            assert record.verdict in ("not_sent", "not_placed", "rejected"), record


def test_orders_are_journaled_before_sending(handler, gateway, journal):
    record, created = handler.submit(MKT)
    assert created and journal.get(record.id) is not None
    final = handler.wait(record.id, 5)
    assert final.verdict == "filled"
    assert journal.flush(5)
    assert journal.get(record.id).record.verdict == "filled"


def test_logs_are_named_after_their_module(gateway, journal, caplog):
    """The connection logs as ib_connection, the order lifecycle as the orders modules."""
    caplog.set_level(logging.INFO)
    handler = make_handler(gateway, journal)
    try:
        record, _ = handler.submit(MKT)
        handler.wait(record.id, 5)
    finally:
        handler.stop()
    names = {r.name for r in caplog.records if not r.name.startswith("ib_async")}
    connected = [
        r for r in caplog.records if f"connected to 127.0.0.1:{gateway.port}" in r.getMessage()
    ]
    assert connected and {r.name for r in connected} == {"ib_connection"}
    assert any(
        record.id in r.getMessage()
        for r in caplog.records
        if r.name == "orders.placement" and "Submitting" in r.getMessage()
    )
    assert any(
        record.id in r.getMessage()
        for r in caplog.records
        if r.name == "orders.tracking" and "Status" in r.getMessage()
    )
    assert names <= {
        "ib_connection",
        "order_handler",
        "orders.loop_side",
        "orders.placement",
        "orders.tracking",
        "orders.reconcile",
        "orders.kill_switch",
        "journal",
        "loop_thread",
        "sim_gateway.server",
    }


def test_unwritable_journal_refuses_the_order(handler, gateway, journal):
    before = len(gateway.completed_orders())
    journal.make_read_only()
    with pytest.raises(JournalError):
        handler.submit(MKT)
    # nothing is tracked or queued, so nothing can be sent later; and nothing was sent
    assert handler.records() == [] and handler.queue_depth() == 0
    assert len(gateway.completed_orders()) == before and not gateway.open_orders()


def test_idempotency_key_returns_the_original(handler, gateway):
    first, created = handler.submit(MKT, idem_key="k1", request_hash="h")
    again, created_again = handler.submit(MKT, idem_key="k1", request_hash="h")
    assert created and not created_again and again.id == first.id
    handler.wait(first.id, 5)
    assert gateway_orders_by_ref(gateway)[first.id] == 1


@pytest.mark.slow
def test_hard_drop_and_restart_mid_batch(handler, gateway):
    gateway.set_fill_delay(60)  # simulated seconds: nothing fills until the test moves the clock
    acked = [handler.submit(MKT)[0].id for _ in range(20)]
    wait_for(lambda: all(_at_gateway(gateway, handler, ref) for ref in acked))
    refused = 0
    with contextlib.ExitStack() as outage:
        with loop_paused(handler.thread):  # a batch still in the order thread as the line drops
            batch = [handler.submit(MKT)[0].id for _ in range(10)]
            outage.enter_context(gateway.down())
        later(gateway, 60)  # the acknowledged orders fill while the gateway is cut off from us
        for _ in range(20):  # the rest of the batch: refused once the handler knows
            try:
                batch.append(handler.submit(MKT)[0].id)
            except NotConnectedError:
                refused += 1
            time.sleep(0.02)
    returned = time.monotonic()
    record, _ = wait_for(lambda: _try_submit(handler), timeout=10)
    serving_after = time.monotonic() - returned
    ids = [*acked, *batch, record.id]
    wait_for(lambda: _at_gateway(gateway, handler, record.id))
    later(gateway, 60)
    wait_for(lambda: all(handler.get(i).verdict in FINAL_VERDICTS for i in ids), timeout=20)
    assert_matches_gateway(handler, gateway)
    assert all(handler.get(i).verdict == "filled" for i in (*acked, record.id))
    assert all(
        any("matched at the gateway after reconnect" in s.text for s in handler.get(i).steps)
        for i in acked
    )
    print(f"refused while down: {refused}, serving again {serving_after:.2f}s after return")


def _executed_at_gateway(gateway, ref):
    """True once the gateway holds an execution of the order with orderRef ``ref``."""
    return any(e.order_ref == ref for e, _ in gateway.executions())


def _at_gateway(gateway, handler, ref):
    """True once the order has reached the gateway (acknowledged or not)."""
    order_id = handler.get(ref).order_id
    return order_id is not None and broker_order(gateway, order_id) is not None


def _try_submit(handler):
    try:
        return handler.submit(MKT)
    except NotConnectedError:
        return None


@pytest.mark.slow
def test_fills_while_disconnected_are_recovered(handler, gateway):
    gateway.set_fill_delay(30)  # on the gateway's clock: due when the test jumps it
    record, _ = handler.submit(MKT)
    wait_for(lambda: handler.get(record.id).status == "PreSubmitted")
    with gateway.down():  # the fill happens while the listener is down
        wait_for(lambda: not handler.connected, timeout=5)
        later(gateway, 30)
        wait_for(lambda: _executed_at_gateway(gateway, record.id), timeout=5)
    wait_for(lambda: handler.get(record.id).verdict == "filled", timeout=10)
    final = handler.get(record.id)
    assert len(final.fills) == 1 and final.fills[0].commission == pytest.approx(1.0)
    assert any("matched at the gateway" in s.text or "recovered" in s.text for s in final.steps)
    assert_matches_gateway(handler, gateway)


def test_a_commission_that_comes_after_the_executions_of_a_fill_while_away_is_kept(
    handler, gateway
):
    """IB works commissions out after the fill: after a reconnect the report of a fill made
    while away may come after the executions' answer. It went to ib_async's trade of the
    finished order, which nothing followed: the fill kept no commission for good."""
    gateway.set_fill_delay(30)  # on the gateway's clock: due when the test jumps it
    gateway.set_commission_delay(0.3)
    record, _ = handler.submit(MKT)
    wait_for(lambda: handler.get(record.id).status == "PreSubmitted")
    with gateway.down():  # the fill happens while the listener is down
        wait_for(lambda: not handler.connected, timeout=5)
        later(gateway, 30)
        wait_for(lambda: _executed_at_gateway(gateway, record.id), timeout=5)
    wait_for(lambda: handler.get(record.id).verdict == "filled", timeout=10)
    steps = [step.text for step in handler.get(record.id).steps]
    assert "matched at the gateway after reconnect (done)" in steps  # filled while away
    wait_for(lambda: handler.get(record.id).fills[0].commission is not None, timeout=5)
    assert handler.get(record.id).fills[0].commission == pytest.approx(1.0)
    assert_matches_gateway(handler, gateway)


def test_a_commission_still_owed_when_the_connection_drops_is_kept(handler, gateway):
    """A fill heard before a drop whose commission report had not come yet: the report sent
    after the reconnect went to ib_async's trade of the finished order, which nothing followed."""
    gateway.set_commission_delay(30)  # long past the assertion below, however slow the machine
    record, _ = handler.submit(MKT)
    wait_for(lambda: handler.get(record.id).verdict == "filled")
    assert handler.get(record.id).fills[0].commission is None  # still owed
    # after the reconnect the report comes a second after the executions' answer (not in it):
    # for a record already finished, which only following it (Action.FOLLOW) picks up
    gateway.set_commission_delay(1.0)
    gateway.drop_connections()  # the report on its way dies with the connection
    wait_for(lambda: handler.get(record.id).fills[0].commission is not None, timeout=10)
    assert handler.get(record.id).fills[0].commission == pytest.approx(1.0)


def test_a_setup_that_fails_after_matching_orders_lets_their_trades_go(
    handler, gateway, monkeypatch
):
    """A reconnect whose setup failed after matching orders to the new connection's trades
    (then closed) left them matched: a cancel would have gone through a dead connection."""
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    reconcile, calls = handler.reconciler.reconcile, []

    def failing(ib):
        reconcile(ib)  # the order matched to this connection's trade ...
        calls.append(handler.book.get(record.id).trade)
        raise RuntimeError("drill: setup failed")  # ... then the setup fails

    monkeypatch.setattr(handler.reconciler, "reconcile", failing)
    gateway.drop_connections()
    wait_for(lambda: calls and calls[0] is not None)
    wait_for(lambda: handler.book.get(record.id).trade is None)
    monkeypatch.setattr(handler.reconciler, "reconcile", reconcile)
    wait_for(lambda: handler.book.get(record.id).trade is not None, timeout=15)
    handler.cancel(record.id)
    wait_for(lambda: handler.get(record.id).verdict == "cancelled")


def test_lost_placement_is_resolved_never_resent(gateway, journal):
    """An order journaled but never answered (the app died) is found or marked not placed."""
    handler = make_handler(gateway, journal)
    record, _ = handler.submit(MKT)
    handler.wait(record.id, 5)
    handler.stop()
    # simulate a crash between journaling and sending: a record with no answer

    ghost = replace(
        record,
        id="o-ghost-000001",
        verdict=None,
        phase="sending",
        status=None,
        transitions=(),
        fills=(),
        perm_id=None,
    )
    journal.insert(ghost)
    before = sum(gateway_orders_by_ref(gateway).values())
    restarted = make_handler(gateway, journal, grace=0.5)
    try:
        wait_for(lambda: restarted.get("o-ghost-000001").verdict == "not_placed", timeout=5)
        assert restarted.get(record.id).verdict == "filled"
        assert sum(gateway_orders_by_ref(gateway).values()) == before
    finally:
        restarted.stop()


def test_order_id_rollback_cannot_merge_identities(handler, gateway):
    first, _ = handler.submit(MKT)
    assert handler.wait(first.id, 5).verdict == "filled"
    gateway.restart(down_seconds=0.3, roll_back_ids=True)
    second = wait_for(lambda: _try_submit(handler), timeout=10)[0]
    assert handler.wait(second.id, 5).verdict == "filled"
    a, b = handler.get(first.id), handler.get(second.id)
    assert a.perm_id != b.perm_id and len(a.fills) == 1 and len(b.fills) == 1
    assert_matches_gateway(handler, gateway)


@pytest.fixture
def quick_heartbeat(monkeypatch):
    """A heartbeat every 0.25 s giving up after 1 s (conftest's fast_heartbeat: 0.5 s and
    1.5 s; production 2 s and 4 s): a stall is noticed within 1.25 s."""
    import ib_connection

    monkeypatch.setattr(ib_connection, "HEARTBEAT_INTERVAL", 0.25)
    monkeypatch.setattr(ib_connection, "HEARTBEAT_TIMEOUT", 1.0)


@pytest.mark.slow
def test_stall_is_detected_and_recovered(quick_heartbeat, handler, gateway):
    gateway.stall(60)  # until the (test) heartbeat's 0.25 s + 1 s have noticed it
    wait_for(lambda: not handler.connected, timeout=10)
    state = handler.state()
    assert "stalled" in (state.last_error or "") or state.state != "connected"
    with pytest.raises(NotConnectedError):
        handler.submit(MKT)
    gateway.end_stall()
    wait_for(lambda: handler.connected and handler._reconciled, timeout=15)
    assert handler.wait(handler.submit(MKT)[0].id, 5).verdict == "filled"


def test_orders_while_disconnected_never_reach_the_gateway(handler, gateway):
    before = sum(gateway_orders_by_ref(gateway).values())
    refused = 0
    with gateway.down():  # down until every refused order has been tried
        wait_for(lambda: not handler.connected, timeout=5)
        for _ in range(10):
            with pytest.raises(NotConnectedError):
                handler.submit(MKT)
            refused += 1
    wait_for(lambda: handler.connected and handler._reconciled, timeout=10)
    # the queue is consumed in order: once an order submitted now has filled, a refused one
    # that had been queued after all would have been placed before it
    barrier, _ = handler.submit(MKT)
    assert handler.wait(barrier.id, 5).verdict == "filled"
    assert refused == 10 and gateway_orders_by_ref(gateway)[barrier.id] == 1
    assert sum(gateway_orders_by_ref(gateway).values()) == before + 1


def test_kill_switch_halts_and_persists(gateway, journal):
    handler = make_handler(gateway, journal)
    try:
        far = OrderIntent(
            symbol="AAPL", action="BUY", quantity=1, order_type="LMT", limit_price=1.0
        )
        ids = [handler.submit(far)[0].id for _ in range(3)]
        wait_for(lambda: len(gateway.open_orders()) == 3)
        handler.engage_kill_switch("test")
        with pytest.raises(TradingHaltedError):
            handler.submit(MKT)
        wait_for(lambda: not gateway.open_orders())
        wait_for(lambda: all(handler.get(i).verdict == "cancelled" for i in ids))
    finally:
        handler.stop()
    again = make_handler(gateway, journal)
    try:
        assert again.halted
        with pytest.raises(TradingHaltedError):
            again.submit(MKT)
        again.release_kill_switch()
        assert again.wait(again.submit(MKT)[0].id, 5).verdict == "filled"
    finally:
        again.stop()


def test_the_kill_switchs_global_cancel_is_sent_once_not_at_every_reconnect(
    gateway, journal, scripts
):
    """Engaged, the switch sent its global cancel again at every reconnect, 1102 and restart
    while it stayed on (days): the orders the trader placed in TWS meanwhile (a protective
    stop) were cancelled without a word. It is pending until the gateway has read it once."""
    handler = make_handler(gateway, journal)
    try:
        handler.submit(FAR)
        wait_for(lambda: len(gateway.open_orders()) == 1)
        handler.engage_kill_switch("test")
        wait_for(lambda: not gateway.open_orders())
        wait_for(lambda: not handler.kill_switch.cancel_pending)
        tws = scripts(7)  # the trader's own order in TWS, after the switch
        stop = tws.placeOrder(
            tws.qualifyContracts(Stock("IBM", "SMART", "USD"))[0],
            StopOrder("SELL", 1, 1.0, tif="GTC"),
        )
        tws.reqCurrentTime()
        gateway.drop_connections()
        wait_for(lambda: not handler.connected)
        wait_for(lambda: handler.connected and handler._reconciled, timeout=10)
    finally:
        handler.stop()
    again = make_handler(gateway, journal)
    try:
        assert again.halted and not again.kill_switch.cancel_pending
        wait_for(lambda: again._reconciled, timeout=10)
        again.thread.call(asyncio.sleep(0), 5)  # its connect hooks have run
        assert [o.order_id for o in gateway.open_orders()] == [stop.order.orderId]
        assert gateway.stats().requests_by_client[1000, "ReqGlobalCancel"] == 1
    finally:
        again.stop()


@pytest.mark.slow
def test_a_global_cancel_sent_while_ib_is_unreachable_stays_pending_until_1102(gateway, journal):
    """In an outage (1100) the gateway holds requests, and drops them if the outage ends in
    a 1101 or the socket closes: a global cancel it read then is not done. It stays pending
    (sent again at 1102 or the next connection); one read with IB reachable is done, and a
    read that followed another engagement's cancel does not count for the later one."""
    handler = make_handler(gateway, journal)
    try:
        handler.submit(FAR)
        wait_for(lambda: len(gateway.open_orders()) == 1)
    finally:
        handler.stop()
    KillSwitch(journal).engage("while the app was stopped")
    gateway.outage(seconds=600)  # until the test has looked, however slow the machine
    handler = make_handler(gateway, journal)  # connects in the outage: sends the cancel
    try:
        started = time.time()  # connected, the cancel written: the next heartbeat is after it
        wait_for(lambda: (handler._last_heartbeat or 0) > started + 0.5)
        assert not handler.link_state().reachable and gateway.open_orders()
        assert handler.kill_switch.cancel_pending  # read, IB unreachable: not done
        gateway.end_outage()  # 1102
        wait_for(lambda: handler.link_state().reachable, timeout=10)
        wait_for(lambda: not gateway.open_orders(), timeout=10)
        wait_for(lambda: not handler.kill_switch.cancel_pending, timeout=10)
    finally:
        handler.stop()
    switch = KillSwitch(journal)
    assert switch.engaged and not switch.cancel_pending
    switch.engage("again")
    switch.cancel_sent(switch.generation - 1)  # read: the cancel of an earlier engagement
    assert switch.cancel_pending
    switch.cancel_sent(switch.generation)
    assert not switch.cancel_pending and not KillSwitch(journal).cancel_pending


def test_a_change_of_an_order_being_cancelled_is_refused_not_dropped(handler, gateway):
    """A change asked after the order's cancel was accepted (202) and then never sent: now
    409, nothing changed."""
    gateway.set_cancel_delay(60)  # IB takes its time: PendingCancel until the clock moves
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    handler.cancel(record.id)
    wait_for(lambda: handler.get(record.id).cancel_requested)  # taken by the order thread
    with pytest.raises(OrderStateError, match="is being cancelled: nothing was changed"):
        handler.modify(record.id, limit_price=2.0)
    wait_for(lambda: gateway.stats().requests_by_client[1000, "CancelOrder"])  # at the gateway
    later(gateway, 60)
    wait_for(lambda: handler.get(record.id).verdict == "cancelled")
    assert gateway.all_orders()[0].lmt_price == 1.0


def test_a_cancel_is_in_the_journal_before_it_is_answered(handler, gateway, journal):
    """The order thread journaled a cancel just after the caller had its 202: a crash in those
    milliseconds lost it, and the order stayed working after the restart with nobody the
    wiser. The cancel is committed before cancel() returns, and its answer says so."""
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    answered = handler.cancel(record.id)
    assert answered.cancel_requested
    # what a restart would read: the file itself, through a connection of its own
    with contextlib.closing(sqlite3.connect(journal.path)) as db:
        [(text,)] = db.execute("SELECT record FROM orders WHERE id = ?", (record.id,))
    assert json.loads(text)["cancel_requested"] is True
    wait_for(lambda: handler.get(record.id).verdict == "cancelled")
    assert [o.status for o in gateway.all_orders()] == ["Cancelled"]


def test_an_order_accepted_after_a_cancel_all_is_not_cancelled_by_it(handler, gateway):
    """Cancel all, then place fresh orders (a script's reset): the cancel-all ran on the order
    loop a moment later and took every order in the book then, the fresh one too, which ended
    "cancelled before it was sent" though it was accepted after the cancel-all."""
    first, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(first.id).status == "Submitted")
    with loop_paused(handler.thread):  # the order loop busy a moment (a burst, a journal write)
        assert handler.cancel_all() == 1
        after, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(first.id).verdict == "cancelled")
    assert handler.wait(after.id, 5).verdict == "working"
    assert [o.order_ref for o in gateway.open_orders()] == [after.id]


def test_a_change_accepted_before_the_kill_switch_is_not_sent_after_it(handler, gateway):
    """A modify checked and queued just before the switch was engaged went out after its
    global cancel (the socket showed the cancel, then the changed order): a limit raised to
    marketable could fill. The switch engaged, it is not sent."""
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    with loop_paused(handler.thread):
        handler.modify(record.id, limit_price=2.0)
        handler.engage_kill_switch("test")
    wait_for(lambda: handler.get(record.id).verdict == "cancelled")
    assert "change not sent: the kill switch is engaged" in [
        step.text for step in handler.get(record.id).steps
    ]
    [order] = gateway.all_orders()
    assert (order.lmt_price, order.status) == (1.0, "Cancelled")


def test_orders_still_waiting_for_the_pace_at_a_stop_end_not_sent(gateway, journal):
    """A graceful stop closed the socket with the orders still queued for the pace (45
    messages/s) inside: none reached IB, and their records said "sent as orderId N" with no
    verdict until the next start. They are taken out of the queue and concluded not sent."""
    handler = make_handler(gateway, journal)
    try:
        with loop_paused(handler.thread):  # all queued at once, however slow the machine:
            ids = [handler.submit(MKT)[0].id for _ in range(120)]  # not sent as they come
        wait_for(lambda: len(gateway.all_orders()) >= 5)
        handler.close_intake()
    finally:
        handler.stop()
    assert journal.flush()  # the records' last states, as the app's stop flushes them
    records = [journal.get(i).record for i in ids]
    stopped = [r for r in records if r.verdict == "not_sent"]
    assert stopped, "every order left before the stop: nothing to show"
    assert {r.verdict_reason for r in stopped} == {"the app stopped before it left the queue"}
    gateway.stats()  # a round trip on the gateway's loop: what reached it is listed
    assert not {r.id for r in stopped} & {o.order_ref for o in gateway.all_orders()}


# ------------------------------------------------------------------ property-based


def consistent(handler, gateway) -> bool:
    """Journal records and gateway agree (eventually); duplicates fail at once."""
    counts = gateway_orders_by_ref(gateway)
    assert all(n == 1 for n in counts.values()), f"order sent twice: {counts}"
    open_refs = {o.order_ref for o in gateway.open_orders()}
    done = {o.order_ref: o for o in gateway.completed_orders()}
    executions = collections.Counter(e.order_ref for e, _ in gateway.executions())
    expected = {"Filled": "filled", "Cancelled": "cancelled", "Inactive": "rejected"}
    for record in handler.records():
        ref, verdict = record.id, record.verdict
        if ref in open_refs:
            ok = verdict not in FINAL_VERDICTS
        elif ref in done:
            ok = verdict == expected[done[ref].status] and len(record.fills) == executions[ref]
        else:
            ok = verdict in ("not_sent", "not_placed", "rejected")
        if not ok:
            return False
    journal = handler.journal
    journal.flush(5)
    return all(journal.get(r.id).record.verdict == r.verdict for r in handler.records())


class OrderIntegrity(RuleBasedStateMachine):
    """Submits, cancels, drops, gateway restarts and app restarts, in any order."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        from sim_gateway.broker import BrokerConfig
        from sim_gateway.controller import SimGateway
        from sim_gateway.server import ServerSettings

        self.tmp = tempfile.TemporaryDirectory()
        self.gateway = SimGateway(
            ServerSettings(clock_start=TRADING_CLOCK), BrokerConfig(seed=3)
        ).start()
        self.gateway.set_fill_delay(0.2)
        self.journal = Journal(f"{self.tmp.name}/orders.db")
        self.handler = make_handler(self.gateway, self.journal, monitor=1, grace=0.5)

    def teardown(self) -> None:
        self.handler.stop()
        self.journal.close()
        self.gateway.stop()
        self.tmp.cleanup()

    @rule(limit=st.booleans())
    def submit(self, limit: bool) -> None:
        intent = (
            OrderIntent(symbol="IBM", action="BUY", quantity=1, order_type="LMT", limit_price=1.0)
            if limit
            else MKT
        )
        try:
            self.handler.submit(intent)
        except NotConnectedError:
            pass

    @rule(pick=st.integers(0, 1000))
    def cancel(self, pick: int) -> None:
        working = [r.id for r in self.handler.records() if r.verdict not in FINAL_VERDICTS]
        if working:
            try:
                self.handler.cancel(working[pick % len(working)])
            except (NotConnectedError, Exception) as exc:  # state may have moved on
                assert type(exc).__name__ in (
                    "NotConnectedError",
                    "Reconciling",
                    "OrderStateError",
                ), exc

    @rule()
    def drop(self) -> None:
        self.gateway.drop_connections()

    @rule(roll_back=st.booleans())
    def restart_gateway(self, roll_back: bool) -> None:
        # down long enough that the first reconnect attempt is refused (back-off 0.05 s)
        self.gateway.restart(down_seconds=0.1, roll_back_ids=roll_back)

    @rule()
    def restart_app(self) -> None:
        self.handler.stop()
        self.handler = make_handler(self.gateway, self.journal, monitor=1, grace=0.5)

    @invariant()
    def journal_and_gateway_agree(self) -> None:
        wait_for(lambda: self.handler.connected and self.handler._reconciled, timeout=15)
        wait_for(lambda: consistent(self.handler, self.gateway), timeout=15)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_journal_and_gateway_always_agree():
    from hypothesis.stateful import run_state_machine_as_test

    # 6 examples in the suite's profile (500 for plain property tests), 62 in the deep one
    run_state_machine_as_test(
        OrderIntegrity,
        settings=hsettings(
            max_examples=max(6, hsettings().max_examples // 80),
            stateful_step_count=8,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


FAR = OrderIntent(symbol="IBM", action="BUY", quantity=1, order_type="LMT", limit_price=1.0)


@pytest.mark.slow
def test_lost_order_is_never_confused_with_a_reused_order_id(gateway, journal, monkeypatch):
    """A placement lost in a dead connection keeps its identity: after the reconnect the
    gateway may hand its orderId to a new order, and cancelling or modifying the lost one
    must neither touch any other order nor send the lost one again."""
    # the drop, not a heartbeat given up during the stall, ends the connection
    monkeypatch.setattr(ib_connection, "HEARTBEAT_TIMEOUT", 30.0)
    # the grace outlasts what the test does after the reconnect (milliseconds) many times over
    handler = make_handler(gateway, journal, grace=1.2)
    try:
        handler.preview(FAR)  # the contract is known: the placement goes out at once
        with gateway.stalled():  # outlasts the drop however slow the machine; ended after it
            lost, _ = handler.submit(FAR)
            wait_for(lambda: handler.get(lost.id).order_id is not None)
            gateway.drop_connections()  # the unread placement dies with the socket
            wait_for(lambda: not handler.connected, timeout=5)
        wait_for(lambda: handler.connected and handler._reconciled, timeout=15)
        fresh, _ = handler.submit(FAR)
        wait_for(lambda: handler.get(fresh.id).status == "Submitted")
        handler.cancel(lost.id)
        # nothing of this connection to change (or, once the order thread took the cancel,
        # an order being cancelled): refused either way, nothing changed
        with pytest.raises(OrderStateError, match="not at the broker yet|is being cancelled"):
            handler.modify(lost.id, limit_price=1.5)
        wait_for(lambda: handler.get(lost.id).verdict == "not_placed", timeout=10)
        refs = gateway_orders_by_ref(gateway)
        assert refs == {fresh.id: 1}
        assert [o.order_ref for o in gateway.open_orders()] == [fresh.id]
        assert gateway.open_orders()[0].lmt_price == 1.0
    finally:
        handler.stop()


@pytest.mark.slow
def test_kill_switch_engaged_while_disconnected_cancels_after_reconnect(handler, gateway):
    record, _ = handler.submit(FAR)
    wait_for(lambda: gateway.open_orders())
    with gateway.down():  # down until the kill switch has been engaged
        wait_for(lambda: not handler.connected, timeout=5)
        assert handler.engage_kill_switch("drill while down") == -1
    wait_for(lambda: not gateway.open_orders(), timeout=10)
    wait_for(lambda: handler.get(record.id).verdict == "cancelled")
    handler.release_kill_switch()


@pytest.mark.slow
def test_late_acknowledgement_upgrades_the_verdict(gateway, journal):
    gateway.set_validation_delay(60)  # simulated seconds: acknowledged when the test says
    handler = make_handler(gateway, journal, monitor=0.3)
    try:
        record, _ = handler.submit(FAR)
        assert handler.wait(record.id, 5).verdict == "stuck_pending_submit"
        wait_for(lambda: _at_gateway(gateway, handler, record.id))  # its ack is due
        later(gateway, 60)  # the acknowledgement comes after the monitor gave up
        wait_for(lambda: handler.get(record.id).verdict == "working")
        assert handler.get(record.id).status in ("PreSubmitted", "Submitted")
    finally:
        handler.stop()


def test_an_order_whose_executions_fill_it_is_filled_without_ibs_filled_status(handler, gateway):
    """IB may send no orderStatus Filled (an order that fills at once often gets none): the
    order stayed "working" with all of it filled until a reconnect. Its executions adding up
    to its quantity fill it; a partial fill does not."""
    gateway.set_filled_status(False)
    record, _ = handler.submit(replace(MKT, quantity=5))
    done = handler.wait(record.id, 5)
    assert done.verdict == "filled" and done.filled == 5
    assert gateway.all_orders()[0].status == "Filled"
    assert done.verdict_reason == "its executions add up to its quantity"
    resting, _ = handler.submit(FAR)  # acknowledged, nothing filled: still working
    assert handler.wait(resting.id, 5).verdict == "working"


def test_an_execution_ib_corrects_is_replaced_not_added(handler, gateway, journal):
    """IB sends a corrected execution as another execDetails whose execId differs after the
    last period: it was counted as a second fill (100 shares showed 200 filled at the mean
    of both prices). The correction replaces it."""
    record, _ = handler.submit(replace(MKT, quantity=100))
    done = handler.wait(record.id, 5)
    [(execution, _)] = gateway.executions()
    assert [f.exec_id for f in done.fills] == [execution.exec_id]
    corrected_price = round(execution.price + 0.1, 2)
    gateway.correct_execution(execution.exec_id, corrected_price)
    wait_for(lambda: handler.get(record.id).fills[0].exec_id != execution.exec_id)
    fixed = handler.get(record.id)
    assert (fixed.filled, len(fixed.fills)) == (100, 1)
    assert fixed.avg_fill_price == pytest.approx(corrected_price)
    assert any(step.text.startswith("IB corrected execution") for step in fixed.steps)
    wait_for(lambda: journal.get(record.id).record.fills == fixed.fills)  # kept as corrected


def test_a_short_sale_held_for_a_locate_is_working_not_rejected(gateway, journal):
    """IB holds a short sale while it locates shares to borrow: 404 and orderStatus Inactive
    with whyHeld "locate". It was taken for a rejection (Inactive): "rejected", no cancel or
    modify allowed (409), while IB kept it and could fill it; a trader re-sending it would be
    short twice. It is working (PreSubmitted), saying why it waits, also after a reconnect; its
    changes and cancel go through, and it fills when the shares are located."""
    gateway.set_hard_to_borrow("AAPL")
    handler = make_handler(gateway, journal, monitor=0.5)
    try:
        short = replace(MKT, action="SELL", quantity=5)
        record, _ = handler.submit(short)
        held = handler.wait(record.id, 5)
        assert (held.verdict, held.status) == ("working", "PreSubmitted"), held.verdict_reason
        assert held.verdict_reason.endswith(
            "(Error 404: Order held while securities are located.)"
        )  # why it waits
        other, _ = handler.submit(replace(short, order_type="LMT", limit_price=100.0))
        assert handler.wait(other.id, 5).verdict == "working"
        gateway.drop_connections()  # reconciled: still working and followed (ib_async's
        wait_for(lambda: handler.book.get(record.id).trade is None)  # openTrades leaves
        wait_for(lambda: handler.book.get(other.id).trade is not None, timeout=15)  # it out)
        handler.modify(other.id, limit_price=101.0)
        wait_for(lambda: handler.get(other.id).intent.limit_price == 101.0)
        handler.cancel(other.id)
        wait_for(lambda: handler.get(other.id).verdict == "cancelled")
        assert [o.status for o in gateway.all_orders() if o.lmt_price] == ["Cancelled"]
        gateway.shares_located("AAPL")
        wait_for(lambda: handler.get(record.id).verdict == "filled")
        assert handler.get(record.id).filled == 5
    finally:
        handler.stop()


def test_modify_is_confirmed_by_the_broker_not_assumed(handler, gateway):
    record, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    handler.modify(record.id, quantity=9_000_000)  # more than the account can buy: rejected
    wait_for(lambda: any(m.code == 201 for m in handler.get(record.id).messages))
    assert handler.get(record.id).intent.quantity == 1
    handler.modify(record.id, quantity=3)
    wait_for(lambda: handler.get(record.id).intent.quantity == 3)
    assert gateway.open_orders()[0].total_quantity == 3


def test_in_flight_counts_follow_the_orders(gateway, journal):
    """/status's in_flight and queue_depth come from counts cached per record change."""
    # the orders wait in their settle/monitor window (30 s) for acks due on the gateway's
    # clock only when the test jumps it, however slow the machine
    handler = make_handler(gateway, journal, monitor=30)
    try:
        gateway.set_validation_delay(60)
        records = [handler.submit(MKT)[0] for _ in range(5)]
        wait_for(lambda: handler.in_flight() == 5, timeout=5)
        assert handler.queue_depth() == 0 and handler.working_count() == 5
        wait_for(lambda: all(_at_gateway(gateway, handler, r.id) for r in records), timeout=5)
        later(gateway, 60)  # every ack due: they come, fills with them
        for record in records:
            assert handler.wait(record.id, 5).verdict == "filled"
        assert handler.in_flight() == 0 and handler.working_count() == 0
    finally:
        handler.stop()


def test_a_trailing_stops_quantity_change_is_taken_when_the_broker_confirms_it(handler, gateway):
    """A trailing stop's echo carries its trail, not the intent's prices, so its record took
    nothing from it: a quantity change the broker confirmed never showed, and the next change
    was checked on the old quantity."""
    trail = OrderIntent(
        symbol="AAPL", action="SELL", quantity=2, order_type="TRAIL", trailing_percent=5.0
    )
    record, _ = handler.submit(trail)
    wait_for(lambda: handler.get(record.id).status in ("PreSubmitted", "Submitted"))
    handler.modify(record.id, quantity=3)
    wait_for(lambda: gateway.open_orders()[0].total_quantity == 3)
    wait_for(lambda: handler.get(record.id).intent.quantity == 3)
    confirmed = handler.get(record.id).intent
    assert (confirmed.trailing_percent, confirmed.stop_price) == (5.0, None)
