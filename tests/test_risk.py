"""The pre-trade risk gate: each rule rejects with its reason and nothing reaches the gateway."""

from __future__ import annotations

import socket

import pytest

from conftest import TRADING_CLOCK, api_client, app_settings, loop_paused, wait_for
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings


@pytest.fixture
def make_client(gateway):
    apps = []

    def make(gw=None, **limits):
        from app_simple import create_app

        app = create_app({"SETTINGS": app_settings(gw or gateway, **limits)})
        apps.append(app)
        return api_client(app)

    yield make
    for app in apps:
        app.extensions["trading"].stop()


AAPL_CON_ID = 265598


def gateway_orders(gateway):
    return len(gateway.all_orders())


def order(client, **fields):
    body = {"symbol": "AAPL", "action": "BUY", "quantity": 1, **fields}
    return client.post("/api/v1/orders", json=body)


def rejected(res, rule):
    body = res.get_json()
    assert res.status_code == 422, body
    error = body["error"]
    assert error["code"] == "risk_rejected" and error["message"].startswith(rule), error
    assert error["details"][0]["rule"] == rule
    return error


@pytest.mark.parametrize(
    ("limits", "fields", "rule", "field", "words"),
    [
        (
            {"risk_max_quantity": 100},
            {"quantity": 101},
            "max_quantity",
            "quantity",
            "quantity 101 exceeds the limit of 100",
        ),
        (
            {"risk_max_notional": 1000},
            {"quantity": 50},
            "max_notional",
            "quantity",
            "exceeds the limit of 1,000.00",
        ),
        (
            {"risk_price_collar_pct": 5},
            {"order_type": "LMT", "limit_price": 1.0},
            "price_collar",
            "limit_price",
            "(collar 5%)",
        ),
        (
            {"risk_symbol_denylist": "AAPL,TSLA"},
            {},
            "symbol_not_allowed",
            "symbol",
            "AAPL is on the deny list",
        ),
        (
            {"risk_symbol_allowlist": "MSFT"},
            {},
            "symbol_not_allowed",
            "symbol",
            "AAPL is not on the allow list (MSFT)",
        ),
        (
            {"risk_daily_notional_cap": 500},
            {"quantity": 10},
            "daily_notional_cap",
            None,
            "over the cap of 500.00",
        ),
    ],
)
def test_each_rule_rejects_with_its_reason(
    make_client, gateway, limits, fields, rule, field, words
):
    client = make_client(**limits)
    before = gateway_orders(gateway)
    error = rejected(order(client, **fields), rule)
    assert words in error["message"]
    assert error.get("field") == field
    assert gateway_orders(gateway) == before


def test_max_open_orders_and_orders_per_minute(make_client, gateway):
    client = make_client(risk_max_open_orders=2, risk_max_orders_per_minute=3)
    bid = client.get("/api/v1/quote?symbol=AAPL").get_json()["bid"]
    far = {"order_type": "LMT", "limit_price": round(bid * 0.7, 2)}
    assert order(client, **far).status_code == 202
    assert order(client, **far).status_code == 202
    error = rejected(order(client, **far), "max_open_orders")
    assert "2 orders are working; the limit is 2" in error["message"]
    wait_for(lambda: len(gateway.open_orders()) == 2)
    client.post("/api/v1/orders/cancel-all")
    wait_for(lambda: not gateway.open_orders())
    wait_for(
        lambda: all(
            o["verdict"] == "cancelled"
            for o in client.get("/api/v1/orders").get_json()["orders"]
            if o["ours"]
        )
    )
    assert order(client).status_code == 202  # the third order of this minute
    error = rejected(order(client), "max_orders_per_minute")
    assert "3 orders in the last 60 s; the limit is 3" in error["message"]


def test_live_account_is_refused_by_default():
    gw = SimGateway(
        ServerSettings(clock_start=TRADING_CLOCK),  # same at any hour of the day
        BrokerConfig(account="U7654321", live_account_drill=True),
    ).start()
    from app_simple import create_app

    try:
        app = create_app({"SETTINGS": app_settings(gw)})
        try:
            client = api_client(app)
            status = client.get("/api/v1/status").get_json()
            assert status["mode"] == "live" and status["paper"] is False
            error = rejected(order(client), "live_trading_disabled")
            assert "U7654321 is a live account" in error["message"]
            assert not gw.open_orders() and not gw.completed_orders()
        finally:
            app.extensions["trading"].stop()
        app = create_app({"SETTINGS": app_settings(gw, allow_live_trading=True)})
        try:
            assert order(api_client(app)).status_code == 202
        finally:
            app.extensions["trading"].stop()
    finally:
        gw.stop()


def test_read_only_mode_places_nothing(make_client, gateway):
    client = make_client(read_only=True)
    res = order(client)
    assert res.status_code == 403 and res.get_json()["error"]["code"] == "read_only"
    status = client.get("/api/v1/status").get_json()
    assert status["read_only"] is True and status["connections"]["orders"]["state"] == "disabled"
    assert 1000 not in gateway.connected_client_ids()
    assert client.get("/api/v1/positions").status_code == 200


def test_rejections_are_audited(make_client, gateway):
    client = make_client(risk_max_quantity=5)
    rejected(order(client, quantity=6), "max_quantity")
    assert order(client, quantity=5).status_code == 202
    assert order(client, quantity=0).status_code == 400
    app = client.application
    rows = app.extensions["trading"].journal.audit_rows()
    outcomes = [r["outcome"] for r in rows]
    assert outcomes[0].startswith("invalid") and outcomes[1] == "queued"
    assert outcomes[2] == "risk_rejected: max_quantity"
    assert all(r["source"] == "api" and r["remote"] == "127.0.0.1" for r in rows[:3])
    assert '"rule": "max_quantity"' in rows[2]["decision"]


def test_modify_passes_the_risk_gate_and_the_kill_switch(make_client, gateway):
    client = make_client(risk_max_quantity=10, risk_max_notional=5_000)
    bid = client.get("/api/v1/quote?symbol=AAPL").get_json()["bid"]
    res = order(client, order_type="LMT", limit_price=round(bid * 0.95, 2), quantity=1)
    order_id = res.get_json()["id"]
    wait_for(lambda: gateway.open_orders())
    res = client.post(f"/api/v1/orders/{order_id}/modify", json={"quantity": 5000})
    assert res.status_code == 422 and res.get_json()["error"]["field"] == "quantity"
    res = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": 1.0})
    assert res.status_code == 422 and "price_collar" in res.get_json()["error"]["message"]
    client.post("/api/v1/kill-switch", json={"engaged": True})
    assert client.post(f"/api/v1/orders/{order_id}/modify", json={"quantity": 2}).status_code == 423
    assert all(o.total_quantity == 1 for o in gateway.all_orders())


def test_max_open_orders_holds_under_concurrency(make_client, gateway):
    from concurrent.futures import ThreadPoolExecutor

    client = make_client(risk_max_open_orders=2)
    bid = client.get("/api/v1/quote?symbol=AAPL").get_json()["bid"]
    with ThreadPoolExecutor(12) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    order(client, order_type="LMT", limit_price=round(bid * 0.95, 2)).status_code
                ),
                range(12),
            )
        )
    assert sorted(codes) == [202, 202] + [422] * 10
    wait_for(lambda: len(gateway.open_orders()) == 2)


def test_limit_orders_need_a_quote_for_the_collar(gateway):
    from config import load_settings
    from order_records import OrderIntent
    from risk import RiskGate, RiskRejected

    settings = load_settings(env={}, dotenv_path=None)
    gate = RiskGate(
        settings,
        lambda symbol, sec_type, con_id, currency: (None, None, None),
        lambda: 0,
        lambda: ("DU1234567",),
    )
    limit = OrderIntent(
        symbol="AAPL", action="BUY", quantity=1, order_type="LMT", limit_price=100.0
    )
    with pytest.raises(RiskRejected, match="no quote for AAPL to check the 10% price collar"):
        gate.reserve(limit)
    market = OrderIntent(symbol="AAPL", action="BUY", quantity=1, order_type="MKT")
    with pytest.raises(RiskRejected, match="no_reference_price"):
        gate.reserve(market)
    unknown = RiskGate(settings, lambda s, t, c, cur: (99.0, 101.0, 100.0), lambda: 0, lambda: ())
    with pytest.raises(RiskRejected, match="no account is known"):
        unknown.reserve(limit)


def test_an_fx_pair_is_listed_however_its_symbol_is_written(make_client, gateway):
    """EURUSD (TradingView's spelling) and EUR.USD are one pair: the deny list names it once."""
    client = make_client(risk_symbol_denylist="EUR.USD", risk_symbol_allowlist="EURUSD,GBP.USD")
    for symbol in ("EURUSD", "eur.usd", "EUR.USD"):
        error = rejected(order(client, symbol=symbol, quantity=20_000), "symbol_not_allowed")
        assert "is on the deny list" in error["message"]
    assert gateway_orders(gateway) == 0
    assert order(client, symbol="GBPUSD", quantity=20_000).status_code == 202


def _unread(handler, marker: bytes) -> bool:
    """``marker`` waits in the order connection's socket, not read by ib_async yet."""
    fd = handler.ib.client.conn.transport.get_extra_info("socket").fileno()
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:  # a duplicate
        try:
            return marker in sock.recv(1 << 16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False


def _steps(client, order_id):
    record = client.get(f"/api/v1/orders/{order_id}").get_json()["lifecycle"]
    return [step["text"] for step in record["steps"]]


def test_a_change_is_sent_only_onto_the_order_it_was_checked_on(make_client, gateway):
    """A quantity cut the broker refuses, then a price raise checked on the cut order while
    the refusal was on its way: sent, the raise went out on the full quantity, an order the
    max notional would have refused. It is not sent now; the order stays as it was."""
    bid = gateway.broker_call(lambda broker: broker.quote(AAPL_CON_ID)).bid
    price, raised = round(bid * 0.93, 2), round(bid * 0.97, 2)
    client = make_client(risk_max_notional=round(10 * bid * 0.95))  # 10 at `raised`: over it
    handler = client.application.extensions["trading"].handler
    order_id = order(client, order_type="LMT", limit_price=price, quantity=10).get_json()["id"]
    wait_for(lambda: handler.get(order_id).status == "Submitted")
    gateway.reject_next_order("drill: change refused")
    with loop_paused(handler.thread):  # the cut is checked (the gateway answers quotes) ...
        res = client.post(f"/api/v1/orders/{order_id}/modify", json={"quantity": 5})
        assert res.status_code == 202, res.get_json()
        gateway.stall(60)  # ... then sent, and its refusal comes back only after the stall
    wait_for(lambda: "change sent: quantity 5" in _steps(client, order_id))
    with loop_paused(handler.thread):  # the refusal waits unread while the raise is checked
        gateway.end_stall()
        wait_for(lambda: _unread(handler, b"drill: change refused"))
        res = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": raised})
        assert res.status_code == 202, res.get_json()  # 5 at `raised` is within the limit
    wait_for(lambda: any("change not sent" in text for text in _steps(client, order_id)))
    [working] = gateway.open_orders()
    assert (working.total_quantity, working.lmt_price) == (10, price)
    record = handler.get(order_id)
    assert (record.intent.quantity, record.intent.limit_price) == (10, price)
    assert any(message.code == 201 for message in record.messages)


def test_changes_queued_back_to_back_are_each_checked_on_the_one_before(make_client, gateway):
    """A script's second change, checked before the order thread took the first: checked on
    the order as the first leaves it, and sent on top of it (not refused as 'changed since')."""
    bid = gateway.broker_call(lambda broker: broker.quote(AAPL_CON_ID)).bid
    price, raised = round(bid * 0.93, 2), round(bid * 0.97, 2)
    client = make_client(risk_max_notional=round(10 * bid * 0.95))
    handler = client.application.extensions["trading"].handler
    order_id = order(client, order_type="LMT", limit_price=price, quantity=10).get_json()["id"]
    wait_for(lambda: handler.get(order_id).status == "Submitted")
    with loop_paused(handler.thread):  # it takes none of the changes yet
        cut = client.post(f"/api/v1/orders/{order_id}/modify", json={"quantity": 5})
        assert cut.status_code == 202, cut.get_json()
        res = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": raised})
        assert res.status_code == 202, res.get_json()  # 5 at `raised` is within the limit
        too_big = client.post(f"/api/v1/orders/{order_id}/modify", json={"quantity": 10})
        assert too_big.status_code == 422, too_big.get_json()  # 10 at `raised` is not
    wait_for(lambda: handler.get(order_id).intent.limit_price == raised)
    [working] = gateway.open_orders()
    assert (working.total_quantity, working.lmt_price) == (5, raised)
    assert not any("change not sent" in text for text in _steps(client, order_id))
