"""Options and futures orders through the API, over the simulated gateway.

The contract is checked against the broker's contract details before anything is queued: an
ambiguous or unknown contract, a wrong multiplier or an off-tick price is a 400 naming the
field; a valid one is placed by its conId and fills like any order, with the journal,
idempotency, the kill switch and reconciliation working as for stocks.
"""

from __future__ import annotations

import pytest

from conftest import api_client, app_settings, wait_for
from instruments import ContractSpec

EXPIRY = "20261218"  # a monthly expiry of the simulator's AAPL chain (its clock: 2026-11-30)
CALL_200 = {"symbol": "AAPL", "sec_type": "OPT", "expiry": EXPIRY, "strike": 200, "right": "C"}


@pytest.fixture
def deriv_app(gateway):
    from app_simple import create_app

    settings = app_settings(gateway)  # the default risk limits
    application = create_app({"SETTINGS": settings, "TESTING": True})
    yield application
    application.extensions["trading"].stop()


@pytest.fixture
def client(deriv_app):
    return api_client(deriv_app)


def option_quote(app, **fields):
    """The broker's conId, multiplier and ask of an option (through the app's reader)."""
    connector = app.extensions["trading"].connector
    found = connector.contract(ContractSpec(**{"sec_type": "OPT", "symbol": "AAPL", **fields}))
    quote = wait_for(lambda: (q := connector.quote("AAPL", "OPT", con_id=found.con_id)).ask and q)
    return found, quote


def filled(client, answer) -> dict:
    """The order's record once the broker filled it (``?wait=1`` may answer with a working
    order on a busy machine: the fill is then waited for here)."""
    assert answer.status_code in (200, 202), answer.get_json()
    order_id = answer.get_json()["id"]

    def done():
        record = client.get(f"/api/v1/orders/{order_id}").get_json()
        return record["lifecycle"]["verdict"] == "filled" and record["lifecycle"]

    return wait_for(done)


def marketable_buy(ask: float) -> float:
    """A limit above the ask on the option rule's grid (pennies below 3, nickels from 3)."""
    price = ask * 1.05
    tick = 0.05 if price >= 3 else 0.01
    return round(round(price / tick + 0.5) * tick, 2)


def test_option_limit_order_fills_by_conid_with_multiplier_100(client, deriv_app, gateway):
    found, quote = option_quote(deriv_app, expiry=EXPIRY, strike=200, right="C")
    body = {**CALL_200, "action": "BUY", "quantity": 2, "limit_price": marketable_buy(quote.ask)}
    order = filled(client, client.post("/api/v1/orders?wait=1", json=body))
    assert order["intent"]["order_type"] == "LMT"
    intent = order["intent"]
    assert (intent["con_id"], intent["multiplier"], intent["local_symbol"]) == (
        found.con_id,
        100.0,
        "AAPL  261218C00200000",
    )
    [position] = [p for p in gateway.positions() if p.contract.con_id == found.con_id]
    assert position.position == 2
    fill = order["avg_fill_price"]
    assert position.avg_cost == pytest.approx(fill * 100 + 0.65)  # IB: per contract, x100

    def shown():
        rows = client.get("/api/v1/positions").get_json()["positions"]
        return next((p for p in rows if p["con_id"] == found.con_id and p["market_value"]), None)

    row = wait_for(shown)
    assert row["quantity"] == 2 and row["sec_type"] == "OPT"
    assert (row["description"], row["multiplier"]) == ("AAPL 20261218 200 C", 100)
    assert row["avg_price"] == pytest.approx(row["avg_cost"] / 100)
    assert row["market_value"] == pytest.approx(row["market_price"] * 2 * 100, rel=1e-6)
    assert row["unrealized_pnl"] == pytest.approx(
        row["market_value"] - 2 * row["avg_cost"], abs=0.02
    )
    fills = wait_for(
        lambda: [
            e
            for e in client.get("/api/v1/executions").get_json()["executions"]
            if e["order_ref"] == order["id"]
        ]
    )
    assert sum(f["shares"] for f in fills) == 2
    for f in fills:
        assert (f["description"], f["multiplier"]) == ("AAPL 20261218 200 C", 100)
        assert f["value"] == pytest.approx(f["shares"] * f["price"] * 100)
    listed = client.get(f"/api/v1/orders/{order['id']}").get_json()
    assert listed["description"] == "AAPL 20261218 200 C"
    pnl_rows = client.get("/api/v1/pnl").get_json()["positions"]
    [pnl_row] = [p for p in pnl_rows if p["con_id"] == found.con_id]
    assert (pnl_row["description"], pnl_row["symbol"]) == ("AAPL 20261218 200 C", "AAPL")
    journaled = deriv_app.extensions["trading"].journal.get(order["id"])
    assert journaled.record.intent.con_id == found.con_id  # the journal keeps the contract


AMBIGUOUS = [  # (the fields given, the field the 400 names)
    ({"expiry": EXPIRY, "strike": 200}, "right"),
    ({"expiry": EXPIRY, "right": "P"}, "strike"),
    ({"strike": 200, "right": "C"}, "expiry"),
]
BAD = [  # (a change to a valid option order, the error code, the field it names)
    ({"strike": 201}, "unknown_contract", "strike"),
    ({"expiry": "20261217"}, "unknown_contract", "expiry"),  # a Thursday: nothing expires
    ({"multiplier": 10}, "validation_error", "multiplier"),
    ({"limit_price": 3.52}, "validation_error", "limit_price"),  # from 3.00: nickels
    ({"expiry": "202612"}, "validation_error", "expiry"),
    ({"right": "X"}, "validation_error", "right"),
    ({"sec_type": "STK"}, "validation_error", "expiry"),
]


def test_an_ambiguous_or_bad_contract_is_a_400_naming_the_field(client, gateway):
    """One app for every case (each is one request): the 400 names the field to give or fix."""
    for given, field in AMBIGUOUS:
        answer = client.post(
            "/api/v1/orders",
            json={
                "symbol": "AAPL",
                "sec_type": "OPT",
                "action": "BUY",
                "quantity": 1,
                "limit_price": 1.0,
                **given,
            },
        )
        error = answer.get_json()["error"]
        assert (answer.status_code, error["code"], error["field"]) == (
            400,
            "ambiguous_contract",
            field,
        ), given
        assert f"give {field}" in error["message"]
    future = client.post(
        "/api/v1/orders",
        json={"symbol": "ES", "sec_type": "FUT", "exchange": "CME", "action": "BUY", "quantity": 1},
    )
    error = future.get_json()["error"]
    assert (future.status_code, error["code"], error["field"]) == (
        400,
        "ambiguous_contract",
        "expiry",
    )
    for change, code, field in BAD:
        answer = client.post(
            "/api/v1/orders",
            json={
                **CALL_200,
                "action": "BUY",
                "quantity": 1,
                "order_type": "LMT",
                "limit_price": 1.0,
                **change,
            },
        )
        error = answer.get_json()["error"]
        assert (answer.status_code, error["code"], error["field"]) == (400, code, field), change
    assert gateway.all_orders() == [] and gateway.executions() == []


def test_futures_market_order_by_local_symbol_fills_with_multiplier_50(client, gateway):
    order = filled(
        client,
        client.post(
            "/api/v1/orders?wait=1",
            json={
                "symbol": "ES",
                "sec_type": "FUT",
                "local_symbol": "ESZ6",
                "exchange": "CME",
                "action": "BUY",
                "quantity": 1,
                "order_type": "MKT",
            },
        ),
    )
    assert (order["intent"]["multiplier"], order["intent"]["exchange"]) == (50.0, "CME")
    [position] = [p for p in gateway.positions() if p.contract.con_id == order["intent"]["con_id"]]
    assert position.position == 1
    assert position.avg_cost == pytest.approx(order["avg_fill_price"] * 50 + 0.85)

    def shown():
        rows = client.get("/api/v1/positions").get_json()["positions"]
        return next((p for p in rows if p["sec_type"] == "FUT" and p["market_value"]), None)

    row = wait_for(shown)
    assert (row["description"], row["multiplier"], row["local_symbol"]) == ("ES 202612", 50, "ESZ6")
    assert row["market_value"] == pytest.approx(row["market_price"] * 50, rel=1e-6)


def test_option_orders_keep_idempotency_kill_switch_and_reconciliation(client, deriv_app, gateway):
    _, quote = option_quote(deriv_app, expiry=EXPIRY, strike=200, right="C")
    resting = round(quote.bid * 0.8, 2)  # below the bid, inside the test's 50 % collar
    body = {
        **CALL_200,
        "action": "BUY",
        "quantity": 1,
        "limit_price": resting,
        "client_order_id": "opt-once",
    }
    first = client.post("/api/v1/orders", json=body)
    again = client.post("/api/v1/orders", json=body)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["id"] == first.get_json()["id"] and again.get_json()["replayed"]
    order_id = first.get_json()["id"]
    wait_for(lambda: len(gateway.open_orders()) == 1)

    gateway.drop_connections()  # both connections come back and reconcile the journal
    wait_for(lambda: client.get("/api/v1/status").get_json()["ok"], timeout=15)
    record = wait_for(
        lambda: (
            (r := client.get(f"/api/v1/orders/{order_id}").get_json()).get("status") == "Submitted"
            and r
        )
    )
    assert (
        record["open"] and record["lifecycle"]["intent"]["local_symbol"] == "AAPL  261218C00200000"
    )

    engaged = client.post("/api/v1/kill-switch", json={"engaged": True, "reason": "test"})
    assert engaged.status_code == 200 and engaged.get_json()["cancel_confirmed"]
    assert gateway.open_orders() == []
    refused = client.post("/api/v1/orders", json={**body, "client_order_id": "opt-twice"})
    assert refused.status_code == 423
    client.post("/api/v1/kill-switch", json={"engaged": False})


# ----------------------------------------------------------------------------- risk gate
def gate_with(quote, **overrides):
    """A gate over a fixed quote (unit tests of the rules; the app's gate is tested above)."""
    from config import load_settings
    from risk import RiskGate

    settings = load_settings(env={}, dotenv_path=None, overrides=overrides)
    return RiskGate(
        settings,
        lambda symbol, sec_type, con_id, currency: quote,
        lambda: 0,
        lambda: ("DU1234567",),
    )


def test_notional_uses_the_multiplier_and_the_asset_class_limits():
    from order_records import OrderIntent
    from risk import RiskRejected

    gate = gate_with((4.9, 5.1, 5.0), risk_opt_max_notional=5_000, risk_opt_max_contracts=20)
    option = OrderIntent(
        symbol="AAPL",
        action="BUY",
        quantity=10,
        order_type="LMT",
        limit_price=5.0,
        sec_type="OPT",
        multiplier=100.0,
        con_id=1,
    )
    accepted = gate.reserve(option)
    assert accepted.notional == 5_000 and accepted.figures["multiplier"] == 100
    with pytest.raises(RiskRejected) as over:
        gate.reserve(OrderIntent(**{**option.__dict__, "quantity": 21}))
    assert over.value.decision.rule == "asset_class_limit" and "21 OPT contracts" in str(over.value)
    with pytest.raises(RiskRejected) as big:  # 15 x 5.00 = 75 would pass without the x100
        gate.reserve(OrderIntent(**{**option.__dict__, "quantity": 15}))
    assert big.value.decision.rule == "asset_class_limit"
    assert big.value.decision.notional == 7_500 and "multiplier 100" in str(big.value)
    stock = OrderIntent(symbol="AAPL", action="BUY", quantity=15, order_type="LMT", limit_price=5.0)
    assert gate.reserve(stock).notional == 75  # stocks: no multiplier, the global limits


def test_market_orders_on_options_need_an_acknowledgement():
    from order_records import OrderIntent
    from risk import RiskRejected

    gate = gate_with((4.9, 5.1, 5.0))
    market = OrderIntent(
        symbol="AAPL",
        action="BUY",
        quantity=1,
        order_type="MKT",
        sec_type="OPT",
        multiplier=100.0,
        con_id=1,
    )
    with pytest.raises(RiskRejected, match="option_market_order"):
        gate.reserve(market)
    assert gate.reserve(OrderIntent(**{**market.__dict__, "market_order_ack": True})).accepted


def test_options_default_to_limit_orders_and_a_market_order_needs_the_flag(client, gateway):
    no_price = client.post("/api/v1/orders", json={**CALL_200, "action": "BUY", "quantity": 1})
    assert no_price.status_code == 400 and no_price.get_json()["error"]["field"] == "limit_price"
    market = {**CALL_200, "action": "BUY", "quantity": 1, "order_type": "MKT"}
    refused = client.post("/api/v1/orders", json=market)
    error = refused.get_json()["error"]
    assert (refused.status_code, error["field"]) == (422, "market_order_ack")
    assert gateway.open_orders() == [] and gateway.executions() == []
    filled(client, client.post("/api/v1/orders?wait=1", json={**market, "market_order_ack": True}))
    stock_flag = client.post(
        "/api/v1/orders",
        json={"symbol": "AAPL", "action": "BUY", "quantity": 1, "market_order_ack": True},
    )
    assert stock_flag.status_code == 400


def test_an_option_order_over_the_class_notional_is_refused(client, deriv_app, gateway):
    _, quote = option_quote(deriv_app, expiry=EXPIRY, strike=190, right="C")
    limit = marketable_buy(quote.ask)
    quantity = int(50_000 / (limit * 100)) + 1  # under 50 contracts, over 50,000 with x100
    answer = client.post(
        "/api/v1/orders",
        json={
            "symbol": "AAPL",
            "sec_type": "OPT",
            "expiry": EXPIRY,
            "strike": 190,
            "right": "C",
            "action": "BUY",
            "quantity": quantity,
            "limit_price": limit,
        },
    )
    error = answer.get_json()["error"]
    assert (answer.status_code, error["code"]) == (422, "risk_rejected"), error
    [decision] = error["details"]
    assert decision["rule"] == "asset_class_limit"
    assert decision["notional"] == pytest.approx(limit * quantity * 100)
    assert gateway.open_orders() == []


def test_a_working_option_order_is_modified_on_its_market_rule_and_previewed(
    client, deriv_app, gateway
):
    _, quote = option_quote(deriv_app, expiry=EXPIRY, strike=200, right="C")
    resting = round(quote.bid * 0.8, 2)
    body = {**CALL_200, "action": "BUY", "quantity": 1, "limit_price": resting}
    preview = client.post("/api/v1/orders/preview", json=body)
    assert preview.status_code == 200, preview.get_json()
    assert preview.get_json()["commission"] == pytest.approx(1.0)  # 0.65 a contract, at least 1
    by_local = client.post(
        "/api/v1/orders/preview",
        json={
            "symbol": "AAPL",
            "sec_type": "OPT",
            "local_symbol": "AAPL  261218C00200000",
            "action": "SELL",
            "quantity": 1,
            "limit_price": resting,
        },
    )  # what a position's Close sends
    assert by_local.status_code == 200, by_local.get_json()
    order_id = client.post("/api/v1/orders", json=body).get_json()["id"]
    wait_for(lambda: len(gateway.open_orders()) == 1)
    off = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": 3.52})
    assert (off.status_code, off.get_json()["error"]["field"]) == (400, "limit_price")
    assert "0.05" in off.get_json()["error"]["message"]
    lower = round(resting - 0.01, 2)
    assert (
        client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": lower}).status_code
        == 202
    )
    wait_for(
        lambda: [
            o
            for o in gateway.open_orders()
            if o.lmt_price is not None and abs(o.lmt_price - lower) < 1e-9
        ]
    )
    client.post(f"/api/v1/orders/{order_id}/cancel")
    wait_for(lambda: gateway.open_orders() == [])


def on_option_grid(price: float) -> float:
    """``price`` on the option rule's grid (pennies below 3, nickels from 3)."""
    tick = 0.05 if price >= 3 else 0.01
    return round(round(price / tick) * tick, 2)


def test_an_option_stop_is_checked_against_the_options_own_quote(client, deriv_app, gateway):
    """The stop check quotes the option (by conId), not the stock of its symbol: a BUY stop
    above the option's ask rests (the stock's ask is far above it), a SELL stop above the
    option's bid triggers at once and is refused, and a modified stop is checked likewise."""
    _, quote = option_quote(deriv_app, expiry=EXPIRY, strike=200, right="C")
    stop = marketable_buy(quote.ask)
    body = {
        **CALL_200,
        "action": "BUY",
        "quantity": 1,
        "order_type": "STP",
        "stop_price": stop,
        "market_order_ack": True,  # a stop on an option goes to the market when it triggers
    }
    placed = client.post("/api/v1/orders", json=body)
    assert placed.status_code == 202, placed.get_json()
    wait_for(lambda: len(gateway.open_orders()) == 1)
    higher = on_option_grid(stop * 1.02 + 0.05)
    order_id = placed.get_json()["id"]
    moved = client.post(f"/api/v1/orders/{order_id}/modify", json={"stop_price": higher})
    assert moved.status_code == 202, moved.get_json()
    client.post(f"/api/v1/orders/{order_id}/cancel")
    wait_for(lambda: gateway.open_orders() == [])

    _, quote = option_quote(deriv_app, expiry=EXPIRY, strike=200, right="C")
    above_bid = on_option_grid(quote.ask * 1.05 + 0.05)  # above the ask, so above the bid too
    sell = {**body, "action": "SELL", "stop_price": above_bid}
    refused = client.post("/api/v1/orders", json=sell)
    error = refused.get_json()["error"]
    assert (refused.status_code, error["code"]) == (422, "stop_triggers_immediately"), error
    assert gateway.open_orders() == [] and gateway.executions() == []


def test_a_futures_stop_the_market_has_passed_is_refused(client, deriv_app, gateway):
    """Quoted by its conId: a BUY stop on ES below its ask triggers at once (was placed
    unchecked: the check looked for a stock named ES and, finding none, said nothing)."""
    connector = deriv_app.extensions["trading"].connector
    found = connector.contract(ContractSpec(symbol="ES", sec_type="FUT", expiry="202612"))
    quote = wait_for(lambda: (q := connector.quote("ES", "FUT", con_id=found.con_id)).ask and q)
    stop = round(quote.ask * 0.99 / 0.25) * 0.25
    body = {"symbol": "ES", "sec_type": "FUT", "expiry": "202612", "action": "BUY", "quantity": 1}
    refused = client.post("/api/v1/orders", json={**body, "order_type": "STP", "stop_price": stop})
    error = refused.get_json()["error"]
    assert (refused.status_code, error["code"]) == (422, "stop_triggers_immediately"), error
    assert gateway.all_orders() == [] and gateway.executions() == []


def test_a_future_is_described_by_its_contract_month_not_its_last_trading_day(client, gateway):
    """CL's January contract stops trading in December: the order, the position and the fill
    name it as the futures listing does (CL 202701), not by its last trading day's month."""
    [january, *_] = client.get("/api/v1/futures/contracts?symbol=CL").get_json()["contracts"]
    assert january["contract_month"] > january["last_trade_date"][:6]
    body = {"symbol": "CL", "sec_type": "FUT", "expiry": january["contract_month"]}
    order = filled(
        client,
        client.post(
            "/api/v1/orders?wait=1",
            json={**body, "action": "BUY", "quantity": 1, "order_type": "MKT"},
        ),
    )
    listed = client.get(f"/api/v1/orders/{order['id']}").get_json()
    assert listed["description"] == january["description"] == "CL 202701"

    def shown():
        rows = client.get("/api/v1/positions").get_json()["positions"]
        return next((p for p in rows if p["con_id"] == january["con_id"]), None)

    assert wait_for(shown)["description"] == "CL 202701"
    fills = wait_for(
        lambda: [
            e
            for e in client.get("/api/v1/executions").get_json()["executions"]
            if e["order_ref"] == order["id"]
        ]
    )
    assert {f["description"] for f in fills} == {"CL 202701"}


def test_an_options_price_under_one_increment_is_refused(client, gateway):
    """1e-12 is a whole number (zero) of increments: a trailing stop of it on an option was
    sent, and a sell filled at once (a naked short call)."""
    for body in (
        {"order_type": "TRAIL", "trailing_amount": 1e-12, "market_order_ack": True},
        {"order_type": "LMT", "limit_price": 1e-9},
    ):
        order = {**CALL_200, "action": "SELL", "quantity": 1, **body}
        res = client.post("/api/v1/orders", json=order)
        assert res.status_code == 400, res.get_json()
    assert gateway.all_orders() == []
