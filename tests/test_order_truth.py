"""One order, one truth: the lifecycle table, and the defects of issue 13 (one test each).

"SIGKILL of the app" is the in-process handler stopped after its journal was copied with
SQLite's backup API: a SIGKILL leaves on disk exactly what the journal had committed
(WAL, synchronous=FULL), and the backup is that committed state at one instant; the gateway
sees the socket close as it would after a kill. It keeps each run to seconds, so the state
machine can kill the app many times. SIGKILL of the gateway is the real thing: the simulator
as a subprocess, killed with SIGKILL and started again on the same state file.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
from pathlib import Path

import pytest
from ib_async import Contract, Order
from ib_async.order import OrderStatus, Trade

from conftest import wait_for
from gateway_process import GatewayProcess
from journal import Journal
from order_handler import FINAL_VERDICTS, OrderHandler, OrderIntent
from order_records import Lifecycle
from orders.lifecycle import (
    TRANSITIONS,
    VERDICTS,
    Event,
    IllegalTransition,
    Phase,
    Tracker,
    Verdict,
    next_phase,
)
from orders.reconcile import Action, Candidate, OrderReport, decide
from orders.view import order_view
from sim_gateway.state_store import StateStore

MKT = OrderIntent(symbol="AAPL", action="BUY", quantity=1, order_type="MKT")
FAR = OrderIntent(symbol="IBM", action="BUY", quantity=1, order_type="LMT", limit_price=1.0)
GRACE = 1.0


def make_handler(port: int, journal: Journal, monitor: float = 3.0) -> OrderHandler:
    handler = OrderHandler(
        "127.0.0.1",
        port,
        client_id=1000,
        connect_timeout=3,
        settle=(0.05, 0.05, 0.05),
        monitor_timeout=monitor,
        journal=journal,
        reconcile_grace=GRACE,
    )
    handler.start()
    wait_for(lambda: handler._reconciled, timeout=10)
    return handler


def crash_copy(journal: Journal, path: Path) -> Journal:
    """The journal a SIGKILL would leave right now: its committed state, opened afresh."""
    source = sqlite3.connect(journal.path)
    target = sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return Journal(str(path))


def refs_at(gateway) -> collections.Counter[str]:
    return collections.Counter(o.order_ref for o in gateway.all_orders() if o.order_ref)


# ------------------------------------------------------------------ the table itself


def test_every_phase_move_is_in_the_table_and_nothing_else():
    assert next_phase(Phase.QUEUED, Event.SEND) is Phase.SENDING
    assert next_phase(Phase.DONE, Event.READOPT) is Phase.TRACKING
    for event, moves in TRANSITIONS.items():
        for phase in Phase:
            if phase not in moves:
                with pytest.raises(IllegalTransition):
                    next_phase(phase, event)


def test_broker_verdicts_are_final_ours_give_way_to_evidence():
    assert VERDICTS[Verdict.FILLED] == frozenset()
    assert Verdict.WORKING in VERDICTS[Verdict.NOT_PLACED]
    assert Verdict.NOT_SENT not in VERDICTS[Verdict.NOT_PLACED]
    record = Lifecycle(id="o-1", intent=FAR, source="api", created_at=0, phase=Phase.QUEUED)
    tracker = Tracker(record, lambda r: None)
    tracker.conclude(Verdict.FILLED, "Filled")
    with pytest.raises(IllegalTransition):
        tracker.conclude(Verdict.CANCELLED, "late")
    assert tracker.record.phase == Phase.DONE


def test_reconcile_decisions_from_reports():
    """Reports in, decisions out, without a gateway."""
    sent = Lifecycle(
        id="o-sent", intent=FAR, source="api", created_at=0, phase="tracking", order_id=5
    )
    lost = Lifecycle(
        id="o-lost", intent=FAR, source="api", created_at=0, phase="done", verdict="not_placed"
    )
    done = Lifecycle(
        id="o-done", intent=FAR, source="api", created_at=0, phase="done", verdict="filled"
    )
    candidates = [Candidate(sent, False), Candidate(lost, False), Candidate(done, False)]
    reports = {"o-lost": OrderReport("o-lost", True, None)}
    assert [(d.action, d.ref) for d in decide(candidates, reports, {}, final=False)] == [
        (Action.AWAIT, "o-sent"),
        (Action.ADOPT, "o-lost"),
    ]
    assert [(d.action, d.ref) for d in decide(candidates, {}, {}, final=True)] == [
        (Action.NOT_PLACED, "o-sent")
    ]
    # closed by us as cancelled, filled at the broker meanwhile (heard after a reconnect)
    crossed = Lifecycle(
        id="o-crossed", intent=FAR, source="api", created_at=0, phase="done", verdict="cancelled"
    )
    filled = Trade(Contract(), Order(), OrderStatus(status="Filled"))
    reports = {"o-crossed": OrderReport("o-crossed", False, filled)}
    assert [(d.action, d.ref) for d in decide([Candidate(crossed, False)], reports, {}, True)] == [
        (Action.ADOPT, "o-crossed")
    ]
    cancelled = Trade(Contract(), Order(), OrderStatus(status="Cancelled"))
    reports = {"o-crossed": OrderReport("o-crossed", False, cancelled)}
    assert decide([Candidate(crossed, False)], reports, {}, final=True) == []


# ------------------------------------------------------------------ points 1 to 5


def test_1_every_restored_order_reaches_a_verdict(gateway, tmp_path):
    """SIGKILL of the app mid-batch; the restart restores 20 orders, Submitted at the broker
    or not, and every one gets a verdict (working ones: ``working``); none is resent."""
    journal = Journal(str(tmp_path / "orders.db"))
    first = make_handler(gateway.port, journal)
    try:
        ids = [first.submit(FAR)[0].id for _ in range(20)]
        wait_for(lambda: len(gateway.open_orders()) >= 10, timeout=10)
        journal.flush(5)
        crashed = crash_copy(journal, tmp_path / "crashed.db")
    finally:
        first.stop()
        journal.close()
    second = make_handler(gateway.port, crashed)
    try:
        wait_for(lambda: all(second.get(i).verdict is not None for i in ids), timeout=GRACE + 10)
        open_refs = {o.order_ref for o in gateway.open_orders()}
        for order_id in ids:
            record = second.wait(order_id, 0)  # a verdict: ?wait=1 answers at once
            expected = "working" if order_id in open_refs else "not_placed"
            assert record.verdict == expected, record
        assert all(n == 1 for n in refs_at(gateway).values())
        assert second.working_count() == len(open_refs)
    finally:
        second.stop()
        crashed.close()


@pytest.mark.slow
def test_2_a_not_placed_order_the_broker_reports_later_is_readopted(tmp_path):
    """A gateway that comes back empty, then with its orders: the order marked not_placed in
    between is tracked again, open, counted, and can be cancelled."""
    gw = GatewayProcess(tmp_path / "gateway.json").start()
    journal = Journal(str(tmp_path / "orders.db"))
    handler = make_handler(gw.port, journal)
    try:
        record, _ = handler.submit(FAR)
        wait_for(lambda: handler.get(record.id).status == "Submitted")
        gw.kill()
        gw.start(state_file=tmp_path / "empty.json")  # the same port, none of its orders
        wait_for(lambda: handler.get(record.id).verdict == "not_placed", timeout=GRACE + 15)
        assert handler.working_count() == 0
        assert handler.get(record.id).verdict_reason.startswith(  # not "never acknowledged"
            "acknowledged by the broker (Submitted) but not found at the gateway"
        )
        gw.kill()
        gw.start()  # with its orders again
        wait_for(lambda: handler.get(record.id).verdict == "working", timeout=GRACE + 15)
        again = handler.get(record.id)
        assert again.status == "Submitted" and again.phase == "tracking"
        assert any("re-adopted" in s.text for s in again.steps)
        assert order_view(None, again)["open"] is True
        assert handler.working_count() == 1
        handler.cancel(record.id)
        wait_for(lambda: handler.get(record.id).verdict == "cancelled", timeout=10)
    finally:
        handler.stop()
        journal.close()
        gw.stop()


def test_3_bracket_legs_stop_counting_in_flight_once_acknowledged(gateway, journal_path):
    journal = Journal(journal_path)
    handler = make_handler(gateway.port, journal, monitor=60)
    try:
        bracket = OrderIntent(
            symbol="IBM",
            action="BUY",
            quantity=1,
            order_type="LMT",
            limit_price=1.0,
            take_profit=2.0,
            stop_loss=0.5,
        )
        record, _ = handler.submit(bracket)
        wait_for(lambda: len(handler.get(record.id).children) == 2)
        legs = handler.get(record.id).children
        wait_for(lambda: all(handler.get(leg).phase == "tracking" for leg in legs))
        for leg in legs:
            assert handler.get(leg).verdict == "working"
            assert handler.wait(leg, 0).verdict == "working"
        assert handler.get(record.id).phase in ("settling", "monitoring")  # its own window
        assert handler.in_flight() == 1
        handler.cancel(record.id)
        wait_for(lambda: all(handler.get(i).verdict == "cancelled" for i in (record.id, *legs)))
        assert handler.in_flight() == 0 and handler.working_count() == 0
    finally:
        handler.stop()
        journal.close()


def test_4_our_record_wins_over_a_stale_reader_row():
    """The reader's row is a refresh behind: the record's fill, price and state are shown."""
    from reader_rows import OrderRow

    row = OrderRow(
        perm_id=9,
        order_id=4,
        client_id=1000,
        order_ref="o-1",
        account="DU1",
        symbol="IBM",
        sec_type="STK",
        action="BUY",
        quantity=1,
        order_type="LMT",
        limit_price=1.0,
        stop_price=None,
        tif="DAY",
        status="Submitted",
        filled=0,
        remaining=1,
        avg_fill_price=None,
        open=True,
    )
    record = Lifecycle(
        id="o-1",
        intent=FAR.__class__(**{**FAR.__dict__, "limit_price": 200.0}),
        source="api",
        created_at=0,
        phase="done",
        perm_id=9,
        status="Filled",
        filled=1,
        remaining=0,
        avg_fill_price=180.5,
        verdict="filled",
    )
    out = order_view(row, record, brief=True)
    assert (out["status"], out["open"], out["filled"], out["remaining"]) == ("Filled", False, 1, 0)
    assert out["avg_fill_price"] == 180.5 and out["limit_price"] == 200.0
    assert out["account"] == "DU1"  # a gap the row fills
    unsent = order_view(
        None, Lifecycle(id="o-2", intent=FAR, source="api", created_at=0, phase="queued")
    )
    assert "avg_fill_price" in unsent and unsent["open"] is True


def test_4_rows_carry_the_average_fill_price_right_after_the_fill(client):
    answer = client.post(
        "/api/v1/orders?wait=1",
        json={"symbol": "AAPL", "action": "BUY", "quantity": 1, "order_type": "MKT"},
    )
    assert answer.status_code == 200, answer.get_json()
    order_id = answer.get_json()["id"]
    rows = client.get("/api/v1/orders").get_json()["orders"]
    assert all("avg_fill_price" in row for row in rows)
    [ours] = [row for row in rows if row["id"] == order_id]
    # filled: by IB's Filled status, or by its executions adding up to the quantity a moment
    # before that status comes (IB sends execDetails first)
    assert ours["verdict"] == "filled" and ours["open"] is False
    assert ours["avg_fill_price"] is not None
    one = client.get(f"/api/v1/orders/{order_id}").get_json()
    assert one["avg_fill_price"] == ours["avg_fill_price"]
    [in_state] = [
        row for row in client.get("/api/v1/state").get_json()["orders"] if row["id"] == order_id
    ]  # the stream sends this same payload
    assert (in_state["verdict"], in_state["avg_fill_price"]) == ("filled", ours["avg_fill_price"])
    wait_for(lambda: client.get(f"/api/v1/orders/{order_id}").get_json()["status"] == "Filled")


@pytest.mark.slow
def test_5_sigkilled_gateway_keeps_what_it_acknowledged_and_filled(tmp_path):
    """Write-ahead state file: every order the app heard acknowledged and every fill it heard
    survive a SIGKILL of the simulator."""
    state = tmp_path / "gateway.json"
    gw = GatewayProcess(state).start()
    journal = Journal(str(tmp_path / "orders.db"))
    handler = make_handler(gw.port, journal)
    try:
        ids = [handler.submit(MKT)[0].id for _ in range(20)]
        wait_for(lambda: all(handler.get(i).verdict == "filled" for i in ids), timeout=30)
        gw.kill()
        saved = StateStore(str(state)).load()
        assert saved is not None
        orders = {o["order_ref"]: o for o in saved["orders"]}
        fills = collections.Counter(f["execution"]["order_ref"] for f in saved["fills"])
        for order_id in ids:
            assert orders[order_id]["status"] == "Filled"
            assert fills[order_id] == len(handler.get(order_id).fills) == 1
        gw.start()
        wait_for(lambda: handler.connected and handler._reconciled, timeout=15)
        assert all(handler.get(i).verdict == "filled" for i in ids)
    finally:
        handler.stop()
        journal.close()
        gw.stop()


def test_5_write_ahead_log_replays_over_the_snapshot(tmp_path):
    """The log's entries are applied in order over the snapshot; a torn last line (a kill
    mid-write, before the answer left) is ignored; entries a later snapshot holds are not
    applied twice (a kill between writing the snapshot and emptying the log)."""
    path = str(tmp_path / "state.json")
    empty = {"orders": [], "index": [], "completed": [], "fills": [], "dues": [], "cash": 0}
    store = StateStore(path)
    store.snapshot(empty, (0, 0))
    store.append(
        {
            "orders": [{"perm_id": 7, "status": "Submitted"}],
            "index": [[1000, 1, 7]],
            "completed": [],
            "fills": [],
            "dues": [[9.0, 1, "fill", 7]],
            "cash": 1,
        },
        (0, 0),
    )
    fill = {"execution": {"exec_id": "e1"}}
    store.append(
        {
            "orders": [{"perm_id": 7, "status": "Filled"}],
            "index": [[1000, 1, 7]],
            "completed": [7],
            "fills": [fill],
            "dues": [],
            "cash": 2,
        },
        (1, 1),
    )
    early_log = Path(f"{path}.log").read_bytes()
    with open(f"{path}.log", "ab") as log:
        log.write(b'{"orders": [{"perm_id": 8')  # torn
    loaded = StateStore(path).load()
    assert loaded == {
        "orders": [{"perm_id": 7, "status": "Filled"}],
        "index": [[1000, 1, 7]],
        "completed": [7],
        "fills": [fill],
        "dues": [],
        "cash": 2,
    }
    store.snapshot(loaded, (1, 1))
    Path(f"{path}.log").write_bytes(early_log)  # as if the kill came before the truncation
    assert StateStore(path).load() == loaded
    store.close()


@pytest.fixture
def journal_path(tmp_path) -> str:
    return str(tmp_path / "orders.db")


def test_final_verdicts_stay_the_public_set():
    assert FINAL_VERDICTS == {"filled", "cancelled", "rejected", "not_sent", "not_placed"}


@pytest.fixture
def eager_completed(monkeypatch):
    """The reader asks for completed orders every second (production: every 30 s unless
    something unexplained calls for them) and up to half the time (production: a tenth), so
    an order cancelled at the broker reaches it within seconds on a loaded machine too."""
    import ib_connector
    import reader_orders

    monkeypatch.setattr(reader_orders, "COMPLETED_SWEEP", 1.0)
    monkeypatch.setattr(ib_connector, "COMPLETED_DUTY", 0.5)


@pytest.mark.parametrize("url", ["/api/v1/state", "/api/v1/orders", "/api/v1/orders/{id}"])
def test_4_a_change_while_an_answer_is_built_never_sticks_to_the_new_etag(
    eager_completed, gateway, client, url
):
    """The reader hears of a change first (it often does); our record takes it after an
    answer read the records but before the answer was tagged. The old row must not stay
    cached (or tagged) as the new version: the next answer, and a poller holding that
    answer's ETag, show the change."""
    services = client.application.extensions["trading"]
    handler = services.handler
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    placed = client.post(
        "/api/v1/orders",
        json={
            "symbol": "AAPL",
            "action": "BUY",
            "quantity": 1,
            "order_type": "LMT",
            "limit_price": round(quote["bid"] * 0.9, 2),
        },
    )
    assert placed.status_code == 202, placed.get_json()
    order_id = placed.get_json()["order"]["id"]
    wait_for(lambda: handler.get(order_id).status == "Submitted")
    url = url.format(id=order_id)
    plain = handler.records, handler.get
    held = threading.Event()  # the order thread waits on it: its record stays behind

    def change_after(read):  # a reading of the records, then the record changes
        def reading(*args):
            found = read(*args)
            handler.records, handler.get = plain
            held.set()
            wait_for(lambda: handler.get(order_id).status == "Cancelled")
            return found

        return reading

    def reader_has_it() -> bool:
        rows = services.connector.snapshot().orders
        return any(r.order_ref == order_id and r.status == "Cancelled" for r in rows)

    def shown(answer) -> str:
        body = answer.get_json()
        rows = [body] if "id" in body else body["orders"]
        return next(row["status"] for row in rows if row["id"] == order_id)

    handler.thread.call_soon(held.wait, 60)
    try:
        gateway.cancel_at_broker(handler.client_id, handler.get(order_id).order_id)
        # from the completed orders (eager_completed)
        wait_for(reader_has_it, timeout=30)
        assert handler.get(order_id).status == "Submitted"
        handler.records, handler.get = change_after(handler.records), change_after(handler.get)
        during = client.get(url)
    finally:
        held.set()
        handler.records, handler.get = plain
    assert handler.get(order_id).status == "Cancelled"
    assert shown(client.get(url)) == "Cancelled"
    again = client.get(url, headers={"If-None-Match": during.headers["ETag"]})
    assert again.status_code == 200 and shown(again) == "Cancelled"
