"""The order handler's intake against the simulated gateway: what is refused (and so never
queued), what each accepted order becomes at the gateway (brackets, TRAIL), the risk gate's
reservation around the journal insert, and the reads Flask threads make. Refusals are checked
on the handler's own state at once (nothing queued, nothing tracked), and then by a barrier
order that fills: the queue runs in order, so a refused order queued after all would have reached
the gateway before it."""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import replace

import pytest
from test_order_handler import (  # noqa: F401 - shared fixtures
    handler,
    journal,
    make_handler,
)

import ib_connection
from conftest import broker_order, later, wait_for
from ib_connection import NotConnectedError
from journal import JournalError
from order_handler import (
    IdempotencyConflict,
    OrderHandler,
    OrderIntent,
    OrderStateError,
    Reconciling,
    TradingHaltedError,
    UnknownOrderError,
    _orders_at_ib,
)
from order_records import Lifecycle, Step
from risk import RiskGate, RiskRejected

MKT = OrderIntent(symbol="AAPL", action="BUY", quantity=1, order_type="MKT")
FAR = OrderIntent(symbol="AAPL", action="BUY", quantity=1, order_type="LMT", limit_price=1.0)


def refs(gateway) -> collections.Counter[str]:
    return collections.Counter(o.order_ref for o in gateway.all_orders() if o.order_ref)


def barrier(handler, gateway) -> None:
    """An order that fills: everything queued before it has reached the gateway by then."""
    record, _ = handler.submit(MKT)
    assert handler.wait(record.id, 5).verdict == "filled"
    assert refs(gateway)[record.id] == 1


def make_gate(handler, **limits) -> RiskGate:
    from config import load_settings

    settings = load_settings(
        env={}, dotenv_path=None, overrides={"risk_price_collar_pct": 99.5, **limits}
    )
    return RiskGate(
        settings,
        lambda symbol, sec_type, con_id, currency: (99.0, 101.0, 100.0),
        handler.working_count,
        lambda: ("DU1234567",),
    )


# ------------------------------------------------------------------------- refusals


def finished_long_ago() -> Lifecycle:
    """An order only the journal remembers (cancelled before this start)."""
    return Lifecycle(
        id="o-old",
        intent=MKT,
        source="api",
        created_at=1.0,
        phase="done",
        verdict="cancelled",
        updated_at=1.0,
        steps=(Step(1.0, "queued"),),
    )


def test_nothing_is_accepted_cancelled_or_modified_while_reconciling(handler, gateway):
    working, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(working.id).status == "Submitted")
    handler._reconciled = False  # connected, journal not yet matched with the gateway
    try:
        with pytest.raises(
            Reconciling, match="^reconciling the order journal with the gateway; retry shortly$"
        ):
            handler.submit(MKT)
        with pytest.raises(Reconciling):
            handler.cancel(working.id)
        with pytest.raises(Reconciling):
            handler.modify(working.id, limit_price=1.5)
        assert handler.queue_depth() == 0 and len(handler.records()) == 1
    finally:
        handler._reconciled = True
    barrier(handler, gateway)
    assert [o.lmt_price for o in gateway.open_orders()] == [1.0]  # neither cancelled nor changed
    assert len(refs(gateway)) == 2


def test_halted_and_closing_handlers_take_no_orders(handler, gateway):
    handler.kill_switch.engage("drill")
    assert handler.halted and handler.halt_reason == "drill"
    with pytest.raises(TradingHaltedError, match="^trading is halted by the kill switch$"):
        handler.submit(MKT)
    handler.release_kill_switch()
    assert not handler.halted and handler.halt_reason is None
    handler.close_intake()
    with pytest.raises(NotConnectedError, match="^the app is shutting down; no new orders$"):
        handler.submit(MKT)
    assert handler.records() == [] and handler.queue_depth() == 0
    assert refs(gateway) == {}


def test_a_stopped_handler_queues_nothing_and_cancels_on_connect(gateway, journal, caplog):
    handler = OrderHandler("127.0.0.1", gateway.port, journal=journal)  # never started
    assert (
        handler.client_id,
        handler.settle,
        handler.monitor_timeout,
        handler.reconcile_grace,
    ) == (1000, (1.0, 2.0, 1.0), 15.0, 5.0)
    told = []
    handler.state_listener = lambda: told.append(handler.halted)
    not_connected = "^order-handler is not connected to the gateway$"  # the API's 503 text
    with pytest.raises(NotConnectedError, match=not_connected):
        handler.submit(MKT)
    with pytest.raises(NotConnectedError, match=not_connected):
        handler.cancel_all()
    with pytest.raises(NotConnectedError, match=not_connected):
        handler.preview(MKT)
    assert handler.engage_kill_switch("offline") == -1  # halted, the cancel goes on connect
    assert handler.halted and handler.halt_reason == "offline"
    assert "kill switch: order connection down, global cancel not sent yet" in [
        r.getMessage() for r in caplog.records
    ]
    assert told == [True] and handler.records() == []
    handler.start()
    try:
        wait_for(lambda: handler._reconciled, timeout=5)
        wait_for(lambda: gateway.stats().requests_by_client[1000, "ReqGlobalCancel"] == 1)
        handler.release_kill_switch()
        assert told[-1] is False
    finally:
        handler.stop()


def test_a_handler_without_a_journal_keeps_one_in_memory(gateway):
    changed: list[str] = []  # the listener given at construction, as the app's services do
    handler = make_handler(gateway, None, on_change=lambda: changed.append("changed"))
    try:
        assert handler.journal.path == ":memory:"
        record, _ = handler.submit(MKT)
        assert handler.journal.get(record.id) is not None
        assert handler.wait(record.id, 5).verdict == "filled"
        assert changed  # told of the verdict
    finally:
        handler.stop()


def test_finished_orders_leave_memory_ours_and_ib_asyncs(handler, journal):
    """Beyond the kept number (KEEP_FINISHED), the oldest finished orders are dropped from
    memory, ib_async's tables included (memory stays flat); the journal still answers."""
    ids = [handler.submit(MKT)[0].id for _ in range(3)]
    assert [handler.wait(i, 5).verdict for i in ids] == ["filled"] * 3
    wait_for(lambda: all(f.commission is not None for i in ids for f in handler.get(i).fills))
    # the latest to finish is kept (the three fill in any order)
    *dropped, kept = sorted(ids, key=lambda i: handler.book.get(i).finished_at)

    async def prune_to_one() -> set[str]:  # on the loop, as a verdict prunes
        handler.book.prune(keep=1, min_age=0)
        return {t.order.orderRef for t in handler.ib.trades()}

    at_ib_async = handler.thread.call(prune_to_one(), 5)
    assert [r.id for r in handler.records()] == [kept]
    assert kept in at_ib_async and not at_ib_async & set(dropped)
    assert journal.flush(5) and handler.get(dropped[0]).verdict == "filled"  # from the journal


def test_a_bracket_entry_whose_legs_were_not_linked_yet_keeps_its_quantity():
    """The entry's list of legs is journaled after the legs themselves: restored from a crash
    in between, it named none, and its quantity could be changed without them."""
    from order_records import OrderIntent
    from orders.change_checks import modifiable
    from orders.lifecycle import Tracker

    intent = OrderIntent(
        symbol="AAPL", action="BUY", quantity=3, order_type="LMT", limit_price=1.0, take_profit=2.0
    )
    record = Lifecycle(
        id="o-x-000001",
        intent=intent,
        source="api",
        created_at=1.0,
        phase="tracking",
        updated_at=1.0,
    )
    tracker = Tracker.restored_from(record, lambda _record: None)
    tracker.trade = object()  # matched at the gateway on this connection
    with pytest.raises(OrderStateError, match="quantity of a bracket order cannot be modified"):
        modifiable(tracker, 4)
    modifiable(tracker, None)  # its prices may still change


def test_cancel_and_modify_name_what_is_wrong(handler, gateway, journal):
    with pytest.raises(UnknownOrderError, match="^o-nope$"):
        handler.cancel("o-nope")
    with pytest.raises(UnknownOrderError):
        handler.modify("o-nope", quantity=2)
    filled, _ = handler.submit(MKT)
    handler.wait(filled.id, 5)
    with pytest.raises(OrderStateError, match=f"^order {filled.id} is already filled$"):
        handler.cancel(filled.id)
    with pytest.raises(OrderStateError, match=f"^order {filled.id} is already filled$"):
        handler.modify(filled.id, limit_price=2.0)
    # an order only the journal remembers (finished before this start)
    old = finished_long_ago()
    journal.insert(old)
    with pytest.raises(OrderStateError, match="^order o-old is already cancelled$"):
        handler.cancel("o-old")
    assert handler.get("o-old") == old and handler.get("o-nope") is None
    assert handler.wait("o-old", 5) == old
    with pytest.raises(UnknownOrderError, match="^o-nope$"):
        handler.wait("o-nope", 0.1)


def test_modify_is_gated_and_refused_when_halted(handler, gateway):
    working, _ = handler.submit(FAR)
    wait_for(lambda: handler.get(working.id).status == "Submitted")
    gate = make_gate(handler, risk_max_quantity=5)
    with pytest.raises(RiskRejected, match="max_quantity"):
        handler.modify(working.id, quantity=6, gate=gate)
    handler.kill_switch.engage("drill")
    with pytest.raises(TradingHaltedError, match="^trading is halted by the kill switch$"):
        handler.modify(working.id, quantity=2)
    handler.release_kill_switch()
    handler.modify(working.id, quantity=5, gate=gate)
    wait_for(lambda: handler.get(working.id).intent.quantity == 5)
    assert [o.total_quantity for o in gateway.open_orders()] == [5]
    handler.modify(working.id, limit_price=1.5)
    wait_for(lambda: handler.get(working.id).intent.limit_price == 1.5)
    assert [(o.total_quantity, o.lmt_price) for o in gateway.open_orders()] == [(5, 1.5)]
    assert handler.cancel(working.id).id == working.id
    wait_for(lambda: handler.get(working.id).verdict == "cancelled")
    stop = OrderIntent(symbol="AAPL", action="SELL", quantity=1, order_type="STP", stop_price=1.0)
    resting, _ = handler.submit(stop)
    wait_for(lambda: handler.get(resting.id).status == "PreSubmitted")  # IB's untriggered stop
    handler.modify(resting.id, stop_price=1.25)
    wait_for(lambda: [o.aux_price for o in gateway.open_orders()] == [1.25])
    # the broker's echo (openOrder; the status stays PreSubmitted) updates the record too
    wait_for(lambda: handler.get(resting.id).intent.stop_price == 1.25, timeout=5)


def test_a_change_for_an_order_not_at_the_broker_yet_is_refused_not_dropped(
    handler, gateway, monkeypatch
):
    """It was accepted, then dropped on the loop ('change not sent'), and the order went out
    at its first price."""
    monkeypatch.setattr(ib_connection, "HEARTBEAT_TIMEOUT", 30.0)  # no reconnect in the stall
    first = OrderIntent(symbol="MSFT", action="BUY", quantity=1, order_type="LMT", limit_price=2.0)
    gateway.stall(60)  # the order's contract look-up waits: it is not sent yet ...
    record, _ = handler.submit(first)
    with pytest.raises(OrderStateError, match="is not at the broker yet"):
        handler.modify(record.id, limit_price=2.5)
    gateway.end_stall()  # ... until the change has been refused, however slow the machine
    wait_for(lambda: handler.get(record.id).status == "Submitted")
    handler.modify(record.id, limit_price=2.5)
    wait_for(lambda: [o.lmt_price for o in gateway.open_orders()] == [2.5])


# ------------------------------------------------------------- journal and risk gate
def test_an_accepted_order_is_journaled_with_its_key_hash_and_risk(handler, journal):
    gate = make_gate(handler)
    record, created = handler.submit(
        MKT, source="webhook", idem_key="k-1", request_hash="h-1", remote="10.0.0.9", gate=gate
    )
    assert created and record.source == "webhook" and record.phase == "queued"
    assert record.steps == (Step(record.created_at, "queued"),)
    assert record.created_at == record.updated_at
    entry = journal.get(record.id)
    assert (entry.idem_key, entry.request_hash) == ("k-1", "h-1")
    assert entry.risk["accepted"] is True and entry.risk["notional"] == 101.0
    assert journal._query("SELECT remote FROM orders WHERE id=?", (record.id,)) == [("10.0.0.9",)]
    second, _ = handler.submit(MKT, request_hash="h-2", remote="10.0.0.10")  # no key
    assert second.source == "api" and journal.get(second.id).request_hash == "h-2"
    assert journal._query("SELECT remote FROM orders WHERE id=?", (second.id,)) == [("10.0.0.10",)]
    prefix, number = record.id.rsplit("-", 1)
    assert second.id == f"{prefix}-{int(number) + 1:06d}" and number == "000001"
    assert len(prefix) == len("o-") + 6
    assert [r.id for r in handler.records()] == [second.id, record.id]  # newest first
    handler.wait(second.id, 5)


def test_idempotent_replays_and_conflicts(handler, gateway, journal):
    first, created = handler.submit(MKT, idem_key="k", request_hash="h")
    again, created_again = handler.submit(MKT, idem_key="k", request_hash="h")
    assert created and not created_again and again.id == first.id
    with pytest.raises(
        IdempotencyConflict,
        match=f"^this Idempotency-Key was already used for a different order \\({first.id}\\)$",
    ):
        handler.submit(MKT, idem_key="k", request_hash="other")
    handler.wait(first.id, 5)
    wait_for(lambda: handler.get(first.id).fills and handler.get(first.id).fills[0].commission)
    assert handler.submit(MKT, idem_key="k", request_hash="h")[0] == handler.get(first.id)
    assert refs(gateway)[first.id] == 1 and len(refs(gateway)) == 1


def test_an_order_being_created_holds_up_only_its_own_key(handler, gateway, journal):
    """Creating an order takes broker round trips (a derivative's contract, the risk gate's
    quote: seconds on a slow day) under its key's lock. One lock for every key queued each
    dashboard order and webhook alert behind the slowest, holding their server threads (the
    kill switch waited seconds behind a burst of alerts); now only a retry of the same key
    waits, and is then answered with the first order."""
    slow_started, release = threading.Event(), threading.Event()

    def slow(intent: OrderIntent) -> OrderIntent:
        slow_started.set()
        assert release.wait(10), "never released"
        return intent

    answers: list[tuple[str, str, bool]] = []  # (key, order id, created) as answered

    def send(key: str, prepare=None) -> None:
        record, created = handler.submit(MKT, idem_key=key, request_hash="h", prepare=prepare)
        answers.append((key, record.id, created))

    first = threading.Thread(target=send, args=("slow", slow))
    first.start()
    assert slow_started.wait(5)
    retry = threading.Thread(target=send, args=("slow",))
    retry.start()
    other = threading.Thread(target=send, args=("other",))
    other.start()
    other.join(5)
    assert [(key, created) for key, _, created in answers] == [("other", True)]
    assert retry.is_alive()  # the retry waits for its first
    release.set()
    first.join(10)
    retry.join(10)
    (_, other_id, _), *slow_answers = answers
    (replayed, retried_id), (created, slow_id) = sorted((c, i) for _, i, c in slow_answers)
    assert created and not replayed and retried_id == slow_id
    for record_id in (other_id, slow_id):
        assert handler.wait(record_id, 5).verdict == "filled"
    assert sorted(refs(gateway).values()) == [1, 1]  # two orders: the retry placed none
    assert len(handler._key_locks) == 0  # no lock kept once nobody holds or waits


def test_the_prepared_intent_is_checked_journaled_and_sent_and_a_replay_prepares_nothing(
    handler, gateway, journal
):
    """``prepare`` completes a new order (a derivative's contract from the broker) before the
    risk gate, with or without an idempotency key; a replay does not call it again."""
    gate = make_gate(handler)
    prepared: list[OrderIntent] = []

    def prepare(intent: OrderIntent) -> OrderIntent:
        prepared.append(intent)
        return replace(intent, quantity=2)

    keyed, _ = handler.submit(MKT, idem_key="p", request_hash="h", gate=gate, prepare=prepare)
    plain, _ = handler.submit(MKT, gate=gate, prepare=prepare)
    again, created = handler.submit(MKT, idem_key="p", request_hash="h", prepare=prepare)
    assert prepared == [MKT, MKT] and not created and again.id == keyed.id
    for record in (keyed, plain):
        assert record.intent.quantity == 2 and journal.get(record.id).risk["notional"] == 202.0
        assert handler.wait(record.id, 5).verdict == "filled"
    assert [o.total_quantity for o in gateway.all_orders()] == [2, 2]


def test_a_replay_answers_the_live_record_or_the_journals(handler, gateway, journal):
    # the fill waits for the test: the order thread could otherwise journal the fill before
    # this thread makes the journal read-only
    gateway.set_fill_delay(60)
    first, _ = handler.submit(MKT, idem_key="live", request_hash="h")
    journal.make_read_only()  # the journal keeps the order as it is now (no verdict yet)
    try:
        order_id = wait_for(lambda: handler.get(first.id).order_id)
        wait_for(lambda: broker_order(gateway, order_id) is not None)  # its fill is due
        later(gateway, 60)
        assert handler.wait(first.id, 5).verdict == "filled"
        assert journal.find_by_key("live").record.verdict is None
        assert handler.get(first.id).verdict == "filled"  # the live record, not the journal's
        assert handler.submit(MKT, idem_key="live", request_hash="h")[0].verdict == "filled"
    finally:
        journal._query("PRAGMA query_only=OFF", ())
    old = finished_long_ago()
    journal.insert(old, "old-key", "h")  # finished before this start: only the journal has it
    assert handler.submit(MKT, idem_key="old-key", request_hash="h") == (old, False)
    assert len(refs(gateway)) == 1


def test_a_journal_refusal_gives_the_risk_reservation_back(handler, gateway, journal):
    gate = make_gate(handler, risk_max_open_orders=1, risk_daily_notional_cap=150)
    journal.make_read_only()
    for _ in range(3):  # each refusal gives back its slot and its notional
        with pytest.raises(JournalError):
            handler.submit(MKT, gate=gate)
    assert gate.limits()["notional_today"] == 0.0
    assert handler.records() == [] and handler.queue_depth() == 0
    journal._query("PRAGMA query_only=OFF", ())
    record, _ = handler.submit(MKT, gate=gate)  # the one slot is free
    handler.wait(record.id, 5)
    assert gate.limits()["notional_today"] == 101.0 and refs(gateway)[record.id] == 1


def test_an_accepted_order_moves_from_unregistered_to_working(handler):
    gate = make_gate(handler, risk_max_open_orders=2)
    handler.submit(FAR, gate=gate)
    # counted once: by working_count() now, no longer as unregistered
    assert handler.working_count() == 1 and gate._unregistered == 0
    handler.submit(FAR, gate=gate)
    with pytest.raises(RiskRejected, match="2 orders are working; the limit is 2"):
        handler.submit(FAR, gate=gate)
    handler.cancel_all()
    wait_for(lambda: handler.working_count() == 0)


def test_an_order_being_journaled_as_the_kill_switch_engages_is_cancelled_with_the_rest(
    handler, gateway, monkeypatch
):
    """The switch is checked under its lock, which the intake holds from that check to the
    queue (the journal insert included: an order the switch refuses is not journaled, so its
    idempotency key stays free). An engage that comes meanwhile halts at once (the orders
    queued already see it), waits for the order to be queued, and its global cancel then takes
    it with the rest: it never works at IB."""
    original = handler.journal.insert
    engaging: list[threading.Thread] = []

    def engaged_during_insert(*args, **kwargs):
        engage = threading.Thread(target=handler.engage_kill_switch, args=("during the insert",))
        engage.start()
        engaging.append(engage)
        engage.join(0.3)
        assert engage.is_alive(), "the engage did not wait for the intake's lock"
        assert handler.halted  # at once all the same: the orders queued already see it
        return original(*args, **kwargs)

    monkeypatch.setattr(handler.journal, "insert", engaged_during_insert)
    record, created = handler.submit(FAR)
    monkeypatch.undo()
    assert created
    engaging[0].join(5)
    assert handler.halted
    wait_for(lambda: handler.get(record.id).verdict in ("cancelled", "not_sent"), timeout=8)
    handler.release_kill_switch()
    barrier(handler, gateway)
    assert not [o for o in gateway.open_orders() if o.order_ref == record.id]


# ----------------------------------------------------------- at the gateway, end to end
def test_a_bracket_counts_as_the_orders_ib_gets_against_the_order_limits(handler, gateway):
    """A bracket is three orders at IB: it took one slot of RISK_MAX_OPEN_ORDERS and of the
    per-minute limit, so a limit of 2 let 4 orders work. Its exits count from its acceptance,
    before the order thread makes them, and after."""
    gate = make_gate(handler, risk_max_open_orders=3, risk_max_orders_per_minute=5)
    resting = replace(FAR, quantity=1)
    handler.submit(resting, gate=gate)
    bracket = replace(FAR, take_profit=2.0, stop_loss=0.5)
    with pytest.raises(RiskRejected) as refused:
        handler.submit(bracket, gate=gate)
    assert refused.value.decision.rule == "max_open_orders"
    assert refused.value.decision.message.endswith(
        "1 orders are working; this one adds 3; the limit is 3"
    )
    gate = make_gate(handler, risk_max_open_orders=4, risk_max_orders_per_minute=5)
    record, _ = handler.submit(bracket, gate=gate)
    assert handler.working_count() == 4  # its exits counted before they are made
    wait_for(lambda: len(gateway.open_orders()) == 4)
    assert handler.working_count() == 4 and handler.get(record.id).children
    with pytest.raises(RiskRejected) as refused:  # 4 working and 3 in the last minute
        handler.submit(resting, gate=gate)
    assert refused.value.decision.rule == "max_open_orders"
    per_minute = make_gate(handler, risk_max_open_orders=50, risk_max_orders_per_minute=2)
    with pytest.raises(RiskRejected) as refused:
        per_minute.reserve(bracket)
    assert refused.value.decision.message.endswith(
        "0 orders in the last 60 s; this one adds 3; the limit is 2"
    )


def test_a_bracket_being_linked_counts_three_not_more():
    """The order thread adds a bracket's exits to the book before it links them to the entry:
    meanwhile the entry counted its three orders and each exit one more (4 or 5)."""
    bracket = replace(FAR, take_profit=2.0, stop_loss=0.5)
    entry = Lifecycle(id="o-1", intent=bracket, source="api", created_at=0, phase="sending")
    leg = Lifecycle(
        id="o-1-tp", intent=replace(FAR, action="SELL"), source="api", created_at=0,
        phase="sending", parent="o-1",
    )  # fmt: skip
    assert _orders_at_ib([entry]) == _orders_at_ib([entry, leg]) == 3
    linked = replace(entry, children=("o-1-tp", "o-1-sl"))
    assert _orders_at_ib([linked, leg, replace(leg, id="o-1-sl")]) == 3


def test_a_bracket_reaches_the_gateway_whole(handler, gateway):
    bracket = OrderIntent(
        symbol="AAPL",
        action="BUY",
        quantity=3,
        order_type="LMT",
        limit_price=1.0,
        take_profit=2.0,
        stop_loss=0.5,
    )
    record, _ = handler.submit(bracket)
    wait_for(lambda: len(gateway.open_orders()) == 3)
    parent = handler.get(record.id)
    assert parent.children == (f"{record.id}-tp", f"{record.id}-sl")
    orders = {o.order_ref: o for o in gateway.open_orders()}
    top, tp, sl = orders[record.id], orders[f"{record.id}-tp"], orders[f"{record.id}-sl"]
    assert (top.order_type, top.lmt_price, top.total_quantity, top.parent_id) == ("LMT", 1.0, 3, 0)
    assert (tp.action, tp.order_type, tp.lmt_price, tp.tif) == ("SELL", "LMT", 2.0, "GTC")
    assert (sl.action, sl.order_type, sl.aux_price, sl.tif) == ("SELL", "STP", 0.5, "GTC")
    assert tp.parent_id == sl.parent_id == top.order_id
    assert tp.oca_group == sl.oca_group == str(top.perm_id)  # IB's own group of the bracket
    assert tp.oca_type == sl.oca_type == 3  # reduce the other leg by a fill, no block
    for leg in parent.children:
        assert handler.get(leg).parent == record.id
    with pytest.raises(
        OrderStateError,
        match="^the quantity of a bracket order cannot be modified; cancel it and place a new one$",
    ):
        handler.modify(record.id, quantity=4)
    with pytest.raises(OrderStateError, match="bracket order cannot be modified"):
        handler.modify(f"{record.id}-tp", quantity=4)
    assert handler.working_count() == 3
    handler.cancel(record.id)
    wait_for(lambda: not gateway.open_orders())
    wait_for(
        lambda: all(handler.get(i).verdict == "cancelled" for i in (record.id, *parent.children))
    )


@pytest.mark.parametrize(
    "trail", [{"trailing_amount": 1.0}, {"trailing_percent": 2.0}], ids=["amount", "percent"]
)
def test_a_trailing_entrys_exits_go_out_at_their_own_prices(handler, gateway, trail):
    """A TRAIL entry's exits took its trailing amount and percent: the stop loss of a short
    went out as BUY STP at the trailing amount (1.0), which triggers at once and buys back at
    the market, and the one of a long had no stop worth the name."""
    bracket = OrderIntent(
        symbol="AAPL",
        action="SELL",
        quantity=2,
        order_type="TRAIL",
        take_profit=100.0,
        stop_loss=400.0,
        **trail,
    )
    record, _ = handler.submit(bracket)
    wait_for(lambda: len(gateway.open_orders()) == 3)
    orders = {o.order_ref: o for o in gateway.open_orders()}
    top, tp, sl = orders[record.id], orders[f"{record.id}-tp"], orders[f"{record.id}-sl"]
    assert top.order_type == "TRAIL"
    assert (tp.action, tp.order_type, tp.lmt_price) == ("BUY", "LMT", 100.0)
    assert (sl.action, sl.order_type, sl.aux_price) == ("BUY", "STP", 400.0)
    assert not tp.trailing_percent and not sl.trailing_percent
    for leg in (f"{record.id}-tp", f"{record.id}-sl"):
        intent = handler.get(leg).intent
        assert intent.trailing_amount is None and intent.trailing_percent is None


def test_a_bracket_whose_second_leg_cannot_be_journaled_leaves_no_open_leg(
    handler, gateway, journal, monkeypatch
):
    """The disk fills between the two legs' inserts: nothing is sent, and every record of the
    bracket is not_sent (the take-profit leg stayed queued and open for good: counted as
    working by the risk gate, listed open, its cancel a no-op)."""
    insert = journal.insert

    def disk_full_at_the_stop_loss(record, *args, **kwargs):
        if record.id.endswith("-sl"):
            journal.make_read_only()
        return insert(record, *args, **kwargs)

    monkeypatch.setattr(journal, "insert", disk_full_at_the_stop_loss)
    try:
        record, _ = handler.submit(replace(FAR, take_profit=2.0, stop_loss=0.5))
        wait_for(lambda: handler.get(record.id).verdict == "not_sent")
        take_profit = handler.get(f"{record.id}-tp")
        assert take_profit is not None and take_profit.verdict == "not_sent", take_profit
        assert "order journal unavailable" in (take_profit.verdict_reason or "")
        assert handler.working_count() == 0 and handler.queue_depth() == 0
    finally:
        journal._query("PRAGMA query_only=OFF", ())  # the disk has room again
    barrier(handler, gateway)
    assert not [ref for ref in refs(gateway) if ref.startswith(record.id)]


def test_a_trailing_stop_reaches_the_gateway_with_its_trail(handler, gateway):
    trail = OrderIntent(
        symbol="AAPL",
        action="SELL",
        quantity=2,
        order_type="TRAIL",
        trailing_percent=5.0,
        tif="GTC",
    )
    record, _ = handler.submit(trail)
    wait_for(lambda: gateway.open_orders())
    [order] = gateway.open_orders()
    assert (
        order.order_ref,
        order.order_type,
        order.trailing_percent,
        order.total_quantity,
        order.tif,
    ) == (record.id, "TRAIL", 5.0, 2, "GTC")
    assert order.trail_stop_price is not None and order.trail_stop_price > 0
    by_amount = OrderIntent(
        symbol="AAPL", action="SELL", quantity=1, order_type="TRAIL", trailing_amount=3.0
    )
    second, _ = handler.submit(by_amount)
    wait_for(lambda: len(gateway.open_orders()) == 2)
    amount = {o.order_ref: o for o in gateway.open_orders()}[second.id]
    assert (amount.order_type, amount.aux_price) == ("TRAIL", 3.0)


def test_a_broker_rejection_is_the_verdict_with_ibs_message(handler, gateway, journal):
    """IB reports the order Inactive before the 201 that says why: the verdict, given on the
    Inactive, takes IB's reason when it comes (it stayed 'Inactive')."""
    gateway.reject_next_order("no margin today")
    record, _ = handler.submit(MKT)
    final = handler.wait(record.id, 5)
    assert final.verdict == "rejected" and handler.working_count() == 0
    final = wait_for(lambda: (r := handler.get(record.id)).verdict_reason != "Inactive" and r)
    assert any(m.code == 201 and "no margin today" in m.text for m in final.messages)
    assert final.verdict_reason == "Error 201: Order rejected - reason:no margin today"
    assert journal.flush(5)
    assert journal.get(record.id).record.verdict_reason == final.verdict_reason


def test_preview_places_nothing(handler, gateway):
    preview = handler.preview(MKT)
    assert preview.commission is not None and preview.commission > 0
    assert refs(gateway) == {} and handler.records() == []


def test_an_unknown_symbol_gets_a_verdict_and_stops_counting(handler, gateway):
    unknown = OrderIntent(symbol="ZZZZQ", action="BUY", quantity=1, order_type="MKT")
    record, _ = handler.submit(unknown)
    final = handler.wait(record.id, 5)
    assert final.verdict == "rejected" and "unknown symbol 'ZZZZQ'" in final.verdict_reason
    assert handler.working_count() == 0 and handler.queue_depth() == 0
    assert record.id not in refs(gateway)


# ------------------------------------------------------------------- reads and listeners
def test_every_record_change_is_counted_and_told(handler, caplog):
    caplog.set_level(logging.ERROR, logger="order_handler")
    quiet, _ = handler.submit(MKT)  # no listeners set: nothing to tell and nothing logged
    assert handler.wait(quiet.id, 5).verdict == "filled"
    assert [r.getMessage() for r in caplog.records if r.name == "order_handler"] == []
    told, changed = [], []
    handler.on_record = lambda: told.append(handler.version)
    handler.on_change = lambda: changed.append(1)
    before = handler.version
    record, _ = handler.submit(MKT)
    assert handler.queue_depth() in (0, 1)  # read while queued or being sent ...
    handler.wait(record.id, 5)
    assert handler.queue_depth() == 0  # ... and not left over once it is done
    wait_for(lambda: not handler._tasks)  # each order's task is let go once it ends
    assert handler.version > before and told and told[-1] == handler.version
    assert told == sorted(told) and len(told) == handler.version - before
    assert handler.queue_depth() == 0 and handler.in_flight() == 0

    def broken() -> None:
        raise RuntimeError("listener bug")

    assert changed  # the order book's changes were told too
    handler.on_record = broken
    handler.on_change = broken
    caplog.set_level(logging.ERROR, logger="order_handler")
    caplog.clear()
    record, _ = handler.submit(MKT)
    assert handler.wait(record.id, 5).verdict == "filled"  # the listeners' bugs stop nothing
    messages = {r.getMessage() for r in caplog.records if r.name == "order_handler"}
    assert {
        "on_record callback failed; carrying on",
        "on_change callback failed; carrying on",
    } <= messages


def test_restart_restores_unfinished_orders_for_tracking(gateway, journal):
    first = make_handler(gateway, journal)
    try:
        record, _ = first.submit(FAR)
        wait_for(lambda: first.get(record.id).status == "Submitted")
        assert first.wait(record.id, 0.1).verdict is None  # returns at its time-out
        assert first.working_count() == 1 and first.in_flight() == 1
    finally:
        first.stop()
    again = make_handler(gateway, journal)
    try:
        restored = again.get(record.id)
        assert restored.phase == "tracking" and again.working_count() == 1
        assert again.cancel_all() == 1
        wait_for(lambda: again.get(record.id).verdict == "cancelled")
        assert again.working_count() == 0 and again.in_flight() == 0
    finally:
        again.stop()


# ------------------------------------------------------------------- IB's servers back
def test_after_1102_the_handler_reconciles_and_sends_a_pending_global_cancel(
    handler, gateway, caplog
):
    """What the link monitor calls once IB's servers are back (1102: nothing lost)."""
    caplog.set_level(logging.INFO, logger="orders.loop_side")
    record, _ = handler.submit(FAR)
    wait_for(lambda: gateway.open_orders())
    handler.kill_switch.engage("engaged during the outage")  # its global cancel could not go
    executions = gateway.stats().requests_by_client[1000, "ReqExecutions"]
    handler.thread.call(handler.on_link_restored(handler.ib, False), 10)
    assert gateway.stats().requests_by_client[1000, "ReqExecutions"] == executions + 1
    assert "🔎 Reconciled after IB's servers came back" in [r.getMessage() for r in caplog.records]
    wait_for(lambda: handler.get(record.id).verdict == "cancelled")
    assert gateway.stats().requests_by_client[1000, "ReqGlobalCancel"] == 1


def test_after_1101_the_handler_connects_again(handler, gateway):
    """1101: data was lost, so the order connection starts afresh and reconciles."""
    connections = gateway.stats().connections
    handler.thread.call(handler.on_link_restored(handler.ib, True), 10)
    wait_for(lambda: gateway.stats().connections > connections and handler._reconciled)
    assert gateway.stats().requests_by_client[1000, "ReqExecutions"] >= 1
    barrier(handler, gateway)
