"""Changes of an order that meet its fills: sent while it fills, after it filled, below what
filled. Every test drives the simulated gateway through the app's HTTP API with real ib_async
and compares the record with what the broker holds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from test_order_handler import handler, journal  # noqa: F401 - fixtures

from conftest import TRADING_CLOCK, api_client, app_settings, later, loop_paused, wait_for
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings


def at_broker(gateway, ref: str):
    return next(o for o in gateway.all_orders() if o.order_ref == ref)


def place(client, **fields) -> str:
    res = client.post("/api/v1/orders", json={"symbol": "AAPL", "action": "BUY", **fields})
    assert res.status_code == 202, res.get_json()
    return res.get_json()["id"]


def order(client, order_id: str) -> dict:
    return client.get(f"/api/v1/orders/{order_id}").get_json()


def life(client, order_id: str) -> dict:
    """The order's lifecycle record: steps, IB's messages, verdict and its reason."""
    return order(client, order_id)["lifecycle"]


def ask(client) -> float:
    return client.get("/api/v1/quote", query_string={"symbol": "AAPL"}).get_json()["ask"]


@pytest.fixture
def chunked() -> Iterator[SimGateway]:
    """A gateway that fills orders above 100 shares 100 at a time, one chunk per 1.5 s."""
    config = BrokerConfig(
        seed=7, partial_fill_above=100, partial_fill_chunk=100, price_step_seconds=1.5
    )
    gw = SimGateway(ServerSettings(port=0, clock_start=TRADING_CLOCK), config).start()
    yield gw
    gw.stop()


@pytest.fixture
def chunked_client(chunked):
    from app_simple import create_app

    app = create_app({"SETTINGS": app_settings(chunked), "TESTING": True})
    yield api_client(app)
    app.extensions["trading"].stop()


def test_a_price_change_that_reaches_ib_after_the_fill_leaves_the_order_filled(client, gateway):
    """IB filled the order while its price change was on the way, refused the change (104)
    and sent no Filled status (it often sends none): the record stayed "working" and open for
    good, counted against the open-order limit and blocking the symbol's alerts (409). Its
    executions fill it once the change is refused; a price change cannot unfill it."""
    gateway.set_filled_status(False)
    gateway.set_fill_delay(60)  # acknowledged at once, filled when the test moves the clock
    limit = round(ask(client) + 0.5, 2)
    order_id = place(client, quantity=10, order_type="LMT", limit_price=limit)
    wait_for(lambda: order(client, order_id)["status"] in ("PreSubmitted", "Submitted"))
    handler = client.application.extensions["trading"].handler
    with loop_paused(handler.thread):  # checked (the gateway answers the quote), not yet sent
        changed = client.post(
            f"/api/v1/orders/{order_id}/modify", json={"limit_price": round(limit + 0.01, 2)}
        )
        assert changed.status_code == 202, changed.get_json()
        gateway.stall(60)  # the gateway reads nothing until the fill has come first
    try:
        wait_for(lambda: any("change sent" in s["text"] for s in life(client, order_id)["steps"]))
        later(gateway, 60)
        wait_for(lambda: at_broker(gateway, order_id).status == "Filled")
    finally:
        gateway.end_stall()  # the change is read now, after the fill
    wait_for(lambda: any(m["code"] == 104 for m in life(client, order_id)["messages"]))
    done = wait_for(lambda: (o := order(client, order_id))["verdict"] == "filled" and o, 5)
    assert done["filled"] == 10 and done["open"] is False


def test_a_bracket_exit_moved_after_its_entry_filled_untold_reaches_ib(client, gateway):
    """The entry filled (its executions said so) but IB sent no Filled status: the exit's
    change went out naming the entry as its parent, IB looked for it among working orders and
    refused the change (135), and the take profit stayed where it was."""
    gateway.set_filled_status(False)
    price = ask(client)
    entry = place(
        client, quantity=5, take_profit=round(price + 10, 2), stop_loss=round(price - 10, 2)
    )
    wait_for(lambda: order(client, entry)["verdict"] == "filled")
    exit_id = f"{entry}-tp"
    wait_for(lambda: at_broker(gateway, exit_id).status in ("PreSubmitted", "Submitted"))
    moved = round(price + 12, 2)
    res = client.post(f"/api/v1/orders/{exit_id}/modify", json={"limit_price": moved})
    assert res.status_code == 202, res.get_json()
    wait_for(lambda: order(client, exit_id)["limit_price"] == moved)
    assert at_broker(gateway, exit_id).lmt_price == moved
    assert not any(m["code"] == 135 for m in life(client, exit_id)["messages"])


def test_a_quantity_change_to_what_filled_is_refused_at_once(chunked_client, chunked):
    """500 ordered, 100 filled: a change to 100 was answered 202, IB refused it (201) and the
    order worked on at 500. It is refused at once, saying what filled."""
    client = chunked_client
    order_id = place(client, quantity=500, order_type="LMT", limit_price=round(ask(client) + 1, 2))
    wait_for(lambda: order(client, order_id)["filled"] >= 100)
    filled = order(client, order_id)["filled"]
    res = client.post(f"/api/v1/orders/{order_id}/modify", json={"quantity": filled})
    assert res.status_code == 409, res.get_json()
    error = res.get_json()["error"]
    assert error["code"] == "order_state" and "filled already" in error["message"]
    assert at_broker(chunked, order_id).total_quantity == 500
    assert not any("change sent" in s["text"] for s in life(client, order_id)["steps"])


def test_a_cancelled_orders_reason_is_not_an_earlier_refusal_of_its_change(client, gateway):
    """A change refused (201) and later the trader's cancel: the verdict read "cancelled
    (Error 201: Order rejected ...)", blaming the order's end on the refused change."""
    limit = round(ask(client) * 0.8, 2)  # rests, inside the price collar
    order_id = place(client, quantity=1, order_type="LMT", limit_price=limit)
    wait_for(lambda: order(client, order_id)["status"] == "Submitted")
    gateway.reject_next_order()  # IB refuses the change: 201, the order works on
    res = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": limit - 0.01})
    assert res.status_code == 202, res.get_json()
    wait_for(lambda: any(m["code"] == 201 for m in life(client, order_id)["messages"]))
    assert at_broker(gateway, order_id).status == "Submitted"
    assert client.post(f"/api/v1/orders/{order_id}/cancel").status_code == 202
    done = wait_for(lambda: (o := life(client, order_id))["verdict"] == "cancelled" and o)
    assert "201" not in (done["verdict_reason"] or ""), done["verdict_reason"]
    assert at_broker(gateway, order_id).status == "Cancelled"


def test_ibs_own_cancel_while_a_change_is_on_its_way_is_no_refusal_of_it(client, gateway):
    """The order was cancelled in TWS while a change of it was on its way: IB's 202 was filed
    as the change's refusal, the page said "Change refused" for an order simply cancelled,
    and the 202 was no reason of its verdict."""
    limit = round(ask(client) * 0.8, 2)
    order_id = place(client, quantity=1, order_type="LMT", limit_price=limit)
    shown = wait_for(lambda: (o := order(client, order_id))["status"] == "Submitted" and o)
    gateway.stall(1.5)  # the change waits at the gateway ...
    res = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": limit - 0.01})
    assert res.status_code == 202, res.get_json()
    time.sleep(0.2)
    gateway.cancel_at_broker(shown["client_id"], shown["order_id"])  # ... the trader cancels
    done = wait_for(lambda: (o := order(client, order_id))["verdict"] == "cancelled" and o, 15)
    steps = [s["text"] for s in done["lifecycle"]["steps"]]
    assert not any(s.startswith("change refused") for s in steps), steps
    assert not (done.get("change_outcome") or {}).get("text", "").startswith("change refused")


def test_a_refused_change_is_no_verdict_reason_after_a_restart_either(gateway, tmp_path):
    """Which messages refused a change was kept in memory only: after a restart a cancel's
    verdict read "Error 201: ..." again."""
    from test_order_handler import FAR, make_handler

    from journal import Journal

    path = str(tmp_path / "orders.db")
    journal = Journal(path)
    handler = make_handler(gateway, journal)
    try:
        record, _ = handler.submit(FAR)
        wait_for(lambda: handler.get(record.id).status == "Submitted")
        gateway.reject_next_order()
        handler.modify(record.id, limit_price=round(FAR.limit_price - 0.01, 2))
        wait_for(lambda: any(m.code == 201 for m in handler.get(record.id).messages))
    finally:
        handler.stop()
        journal.close()
    journal = Journal(path)
    handler = make_handler(gateway, journal)
    try:
        wait_for(lambda: handler.get(record.id).verdict == "working")
        handler.cancel(record.id)
        done = wait_for(lambda: (r := handler.get(record.id)).verdict == "cancelled" and r)
        assert "201" not in (done.verdict_reason or ""), done.verdict_reason
    finally:
        handler.stop()
        journal.close()


def test_an_order_the_kill_switch_stops_on_its_way_in_leaves_its_key_free(handler, gateway):
    """The kill switch was engaged while a new order waited in the risk gate for its quote:
    the order was answered 423 but journaled under its idempotency key (not_sent), so the same
    request sent again after the release was answered as a replay (200) and never placed."""
    from test_order_handler import MKT

    from order_handler import TradingHaltedError

    def engaged_meanwhile(intent):
        handler.engage_kill_switch("drill")  # while the gate waits for the quote
        return intent

    with pytest.raises(TradingHaltedError):
        handler.submit(MKT, idem_key="race-1", request_hash="h", prepare=engaged_meanwhile)
    assert handler.journal.find_by_key("race-1") is None
    handler.release_kill_switch()
    record, created = handler.submit(MKT, idem_key="race-1", request_hash="h")
    assert created
    assert handler.wait(record.id, 5).verdict == "filled"
    assert [o.order_ref for o in gateway.all_orders()] == [record.id]
