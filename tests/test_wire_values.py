"""Odd values from the gateway (Infinity, NaN, IB's UNSET_DOUBLE) sent as raw frames by the
simulator: they are never shown or used as numbers, and every answer stays valid JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from conftest import wait_for
from sim_gateway import protocol

READER = 999  # the reader's clientId (IB_CLIENT_ID)
IBM = 8314
UNSET_DOUBLE = "1.7976931348623157E308"


def strict_json(response: Any) -> Any:
    """The answer's JSON, refusing NaN and Infinity (which no browser's JSON.parse reads)."""
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True), parse_constant=_refuse)


def _refuse(constant: str) -> None:
    raise AssertionError(f"{constant} in a JSON answer")


def tick_price(req_id: int, tick_type: int, price: str) -> tuple[object, ...]:
    """A raw tickPrice frame (what Java's Double.toString writes: Infinity, NaN)."""
    return (1, 6, req_id, tick_type, price, 100, 0)


def test_an_infinite_bid_neither_shows_nor_opens_the_price_collar(gateway, client) -> None:
    def with_infinite_bid(server: Any) -> None:
        send_ticks = server._send_ticks

        def send(session: Any, req_id: int, quote: Any, full: bool, delivered: int = 1) -> None:
            send_ticks(session, req_id, quote, full, delivered)
            if quote.con_id == IBM:
                server._send(session, [str(f) for f in tick_price(req_id, 1, "Infinity")])

        server._send_ticks = send

    gateway._run(with_infinite_bid)
    quote = strict_json(client.get("/api/v1/quote?symbol=IBM"))
    assert quote["bid"] is None and quote["ask"] is not None
    far = {"symbol": "IBM", "action": "BUY", "quantity": 1, "order_type": "LMT"}
    preview = client.post("/api/v1/orders/preview", json={**far, "limit_price": quote["ask"] * 20})
    assert preview.status_code == 422, preview.get_json()
    assert preview.get_json()["error"]["details"][0]["rule"] == "price_collar"


def test_ticks_that_are_no_price_fire_no_alert_and_show_no_number(gateway, client) -> None:
    row = wait_for(
        lambda: [
            q for q in client.get("/api/v1/quotes?watch=IBM").get_json()["quotes"] if q["last"]
        ]
    )[0]
    for condition, level in (("above", row["last"] * 3), ("below", row["last"] / 3)):
        made = client.post(
            "/api/v1/alerts", json={"symbol": "IBM", "condition": condition, "level": level}
        ).get_json()
        assert made["primed_at"] is not None, made
    req_id = wait_for(lambda: list(gateway._run(lambda s: s._session_of(READER).streams)))[0]
    for price in ("Infinity", "-Infinity", UNSET_DOUBLE, "NaN"):
        gateway.send_raw(READER, *tick_price(req_id, 4, price))  # last
        strict_json(client.get("/api/v1/quotes?watch=IBM"))
    # a close no tick of the simulator sends: once it shows, every frame before it was read
    gateway.send_raw(READER, *tick_price(req_id, 9, "12.34"))
    wait_for(
        lambda: [
            q
            for q in strict_json(client.get("/api/v1/quotes?watch=IBM"))["quotes"]
            if q["close"] == 12.34
        ]
    )
    alerts = strict_json(client.get("/api/v1/alerts"))["alerts"]
    assert [a["triggered_at"] for a in alerts] == [None, None], alerts


def position_frame(account: str, quantity: str, avg_cost: str) -> tuple[object, ...]:
    """A raw position (reqPositions) of IBM."""
    contract = (IBM, "IBM", "STK", "", "0.0", "", "", "NYSE", "USD", "IBM", "IBM")
    return (61, 3, account, *contract, quantity, avg_cost)


def portfolio_frame(account: str, *figures: str) -> tuple[object, ...]:
    """A raw portfolio row (reqAccountUpdates) of IBM: position, market price, market value,
    average cost, unrealized and realized P&L."""
    contract = (IBM, "IBM", "STK", "", "0.0", "", "", "NYSE", "USD", "IBM", "IBM")
    return (7, 8, *contract, *figures, account)


def test_account_and_position_figures_that_are_no_number_are_null(gateway, client) -> None:
    account = wait_for(lambda: client.get("/api/v1/account").get_json().get("account"))
    for tag, value in (
        ("NetLiquidation", "Infinity"),
        ("TotalCashValue", "NaN"),
        ("BuyingPower", UNSET_DOUBLE),
        ("AvailableFunds", "n/a"),
    ):
        gateway.send_raw(READER, 6, 2, tag, value, "USD", account)
    gateway.send_raw(READER, *position_frame(account, "10", "NaN"))
    gateway.send_raw(
        READER, *portfolio_frame(account, "10", "Infinity", "NaN", "100", "-Infinity", UNSET_DOUBLE)
    )
    # an account value no gateway sends: once it shows, every frame before it was read
    gateway.send_raw(READER, 6, 2, "WireTestDone", "1", "USD", account)
    wait_for(lambda: "WireTestDone" in strict_json(client.get("/api/v1/account"))["values"])
    figures = strict_json(client.get("/api/v1/account"))["figures"]
    assert {
        k: figures[k] for k in ("net_liquidation", "cash", "buying_power", "available_funds")
    } == dict.fromkeys(("net_liquidation", "cash", "buying_power", "available_funds"))
    row = wait_for(lambda: strict_json(client.get("/api/v1/positions"))["positions"])[0]
    assert row["quantity"] == 10 and row["avg_cost"] is None, row
    for name in ("market_price", "market_value", "unrealized_pnl", "realized_pnl"):
        assert row[name] is None or abs(row[name]) < 1e300, (name, row)
    for path in ("/api/v1/state", "/api/v1/pnl", "/api/v1/positions"):
        strict_json(client.get(path))


HANDLER = 1000  # the OrderHandler's clientId (IB_ORDER_CLIENT_ID)


def exec_frame(order_id: int, perm_id: int, order_ref: str, account: str) -> tuple[object, ...]:
    """A raw live execDetails (reqId -1) of 5 IBM at 150 for ``order_id``."""
    contract = (IBM, "IBM", "STK", "", "0.0", "", "", "NYSE", "USD", "IBM", "IBM")
    head = ("E-OTHER.01", "20261130 10:00:01 US/Eastern", account, "NYSE", "BOT", "5", "150.0")
    return (11, -1, order_id, *contract, *head, perm_id, HANDLER, 0, "5", "150.0", order_ref)


@pytest.mark.slow
def test_reports_of_another_order_with_our_order_id_leave_our_order_alone(gateway, client) -> None:
    bid = wait_for(lambda: client.get("/api/v1/quote?symbol=IBM").get_json()["bid"])
    body = {"symbol": "IBM", "action": "BUY", "quantity": 10, "order_type": "LMT"}
    ours = client.post("/api/v1/orders?wait=1", json={**body, "limit_price": round(bid * 0.9, 2)})
    ours = ours.get_json()["id"]
    placed = next(o for o in gateway.open_orders() if o.order_ref == ours)
    other = placed.perm_id + 1000  # an orderId the gateway issued again, after a restart
    gateway.send_raw(
        HANDLER,
        3,
        placed.order_id,
        "Filled",
        "10",
        "0",
        "150.0",
        other,
        0,
        "150.0",
        HANDLER,
        "",
        "0",
    )
    frame = exec_frame(placed.order_id, other, "o-another-run-000001", placed.account)
    gateway.send_raw(HANDLER, *frame, "", "", "", 1, 0)
    # a warning about our order: once it is in the record, every frame before it was read
    gateway.send_raw(HANDLER, 4, 2, placed.order_id, 2109, "wire test done", "")
    record = wait_for(
        lambda: (
            (r := client.get(f"/api/v1/orders/{ours}").get_json())["lifecycle"]["messages"] and r
        )
    )
    assert (record["status"], record["verdict"], record["open"]) == ("Submitted", "working", True)
    assert (record["filled"], record["avg_fill_price"], record["perm_id"]) == (
        0,
        None,
        placed.perm_id,
    )
    assert record["lifecycle"]["fills"] == []
    assert gateway.open_orders()[0].status == "Submitted"


@pytest.mark.slow
def test_an_open_order_of_another_order_with_our_order_id_changes_nothing_we_send(
    gateway, client
) -> None:
    bid = wait_for(lambda: client.get("/api/v1/quote?symbol=IBM").get_json()["bid"])
    limit = round(bid * 0.9, 2)
    body = {"symbol": "IBM", "action": "BUY", "quantity": 10, "order_type": "LMT"}
    ours = client.post("/api/v1/orders?wait=1", json={**body, "limit_price": limit}).get_json()[
        "id"
    ]
    placed = next(o for o in gateway.open_orders() if o.order_ref == ours)
    other = replace(
        placed,
        order_ref="o-another-run-000009",
        perm_id=placed.perm_id + 1000,
        total_quantity=500.0,
        lmt_price=1.0,
    )

    def send_open_order(server: Any) -> None:
        session = server._session_of(HANDLER)
        server._send(session, protocol.open_order(other, session.version))

    gateway._run(send_open_order)
    gateway.send_raw(HANDLER, 4, 2, placed.order_id, 2109, "wire test done", "")
    wait_for(lambda: client.get(f"/api/v1/orders/{ours}").get_json()["lifecycle"]["messages"])
    changed = client.post(f"/api/v1/orders/{ours}/modify", json={"limit_price": limit - 0.05})
    assert changed.status_code == 202, changed.get_json()
    wait_for(
        lambda: (
            "broker confirmed the change"
            in client.get(f"/api/v1/orders/{ours}").get_json()["lifecycle"]["steps"][-1]["text"]
        )
    )
    (at_broker,) = gateway.open_orders()
    assert (at_broker.order_ref, at_broker.total_quantity, at_broker.perm_id) == (
        ours,
        10,
        placed.perm_id,
    )
    assert at_broker.lmt_price == round(limit - 0.05, 2)
    record = client.get(f"/api/v1/orders/{ours}").get_json()
    assert (record["quantity"], record["perm_id"]) == (10, placed.perm_id)


def test_a_commission_report_without_a_number_keeps_the_commission_we_had(gateway, client) -> None:
    body = {"symbol": "IBM", "action": "BUY", "quantity": 10, "order_type": "MKT"}
    ours = client.post("/api/v1/orders?wait=1", json=body).get_json()["id"]

    def fills() -> list[dict]:
        return client.get(f"/api/v1/orders/{ours}").get_json()["lifecycle"]["fills"]

    (fill,) = wait_for(lambda: [f for f in fills() if f["commission"] is not None])
    report = (59, 1, fill["exec_id"], UNSET_DOUBLE, "USD", UNSET_DOUBLE, UNSET_DOUBLE, "")
    gateway.send_raw(HANDLER, *report)
    placed = next(o for o in gateway.all_orders() if o.order_ref == ours)
    gateway.send_raw(HANDLER, 4, 2, placed.order_id, 2109, "wire test done", "")
    wait_for(lambda: client.get(f"/api/v1/orders/{ours}").get_json()["lifecycle"]["messages"])
    assert [f["commission"] for f in fills()] == [fill["commission"]]
