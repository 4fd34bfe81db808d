"""The checks an order passes before anything is sent, for a new order, a modification and a
preview alike (issue 15): the schema and tick grid, the sides of a stop, the risk gate and the
live-trading guard; and the API's one format (ISO times, BUY/SELL, one error per field)."""

from __future__ import annotations

import re

import pytest

import app_simple
from conftest import TRADING_CLOCK, api_client, app_settings, loop_paused, wait_for
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def make_client(gateway):
    apps = []

    def make(gw=None, **settings):
        from app_simple import create_app

        app = create_app({"SETTINGS": app_settings(gw or gateway, **settings)})
        apps.append(app)
        return api_client(app)

    yield make
    for app in apps:
        app.extensions["trading"].stop()


def quote(client, symbol="AAPL", **params):
    res = client.get("/api/v1/quote", query_string={"symbol": symbol, **params})
    assert res.status_code == 200, res.get_json()
    return res.get_json()


def place(client, **fields):
    body = {"symbol": "AAPL", "action": "BUY", "quantity": 1, **fields}
    return client.post("/api/v1/orders", json=body)


def error(res, status: int) -> dict:
    body = res.get_json()
    assert res.status_code == status, body
    return body["error"]


def working_limit(client, gateway, **fields) -> tuple[str, float]:
    """A resting BUY LMT well below the market: (our id, its limit)."""
    bid = quote(client)["bid"]
    limit = round(bid * 0.8, 2)
    res = place(client, order_type="LMT", limit_price=limit, **fields)
    assert res.status_code == 202, res.get_json()
    order_id = res.get_json()["id"]
    wait_for(lambda: [o for o in gateway.open_orders() if o.order_ref == order_id])
    wait_for(lambda: client.get(f"/api/v1/orders/{order_id}").get_json()["status"] == "Submitted")
    return order_id, limit


def gateway_limit(gateway, order_id: str) -> float:
    return next(o.lmt_price for o in gateway.open_orders() if o.order_ref == order_id)


# ------------------------------------------------------------------ 2. modify
def test_modify_runs_the_checks_of_a_new_order_before_sending(make_client, gateway):
    client = make_client(risk_max_quantity=100)
    order_id, limit = working_limit(client, gateway)
    url = f"/api/v1/orders/{order_id}/modify"

    off_tick = error(client.post(url, json={"limit_price": round(limit + 0.007, 3)}), 400)
    assert off_tick["code"] == "validation_error" and off_tick["field"] == "limit_price"
    assert "price tick 0.01" in off_tick["message"]

    too_many = error(client.post(url, json={"quantity": 500}), 422)
    assert too_many["code"] == "risk_rejected" and too_many["field"] == "quantity"
    assert too_many["details"][0]["rule"] == "max_quantity"

    far = error(client.post(url, json={"limit_price": round(limit * 0.3, 2)}), 422)
    assert far["details"][0]["rule"] == "price_collar" and far["field"] == "limit_price"

    one_error = error(client.post(url, json={"quantity": "5"}), 400)
    assert one_error["details"] == [{"field": "quantity", "message": "must be a number"}]

    # nothing was sent: the broker still has the first price, and the record says so
    assert gateway_limit(gateway, order_id) == limit
    steps = [
        s["text"] for s in client.get(f"/api/v1/orders/{order_id}").get_json()["lifecycle"]["steps"]
    ]
    assert not [s for s in steps if s.startswith("change")]

    ok = client.post(url, json={"limit_price": round(limit - 0.05, 2)})
    assert ok.status_code == 202, ok.get_json()
    wait_for(lambda: gateway_limit(gateway, order_id) == round(limit - 0.05, 2))


def test_a_modify_whose_contract_cannot_be_looked_up_is_a_422_not_a_500(
    client, gateway, monkeypatch
):
    """The gate prices a change by looking the contract up (after a reconnect IB may answer
    nothing): a new order so refused answered 422 unknown_symbol, a modify 500."""
    order_id, limit = working_limit(client, gateway)
    gate = client.application.extensions["trading"].gate

    def no_contract(*_args, **_kwargs):
        raise LookupError("IB has no contract for AAPL STK in USD")

    monkeypatch.setattr(gate, "_quotes", no_contract)
    monkeypatch.setattr(gate, "_quote_cache", {})
    res = client.post(f"/api/v1/orders/{order_id}/modify", json={"quantity": 2})
    body = error(res, 422)
    assert body["code"] == "unknown_symbol" and "IB has no contract" in body["message"]
    assert gateway_limit(gateway, order_id) == limit


def test_a_change_that_makes_an_order_bigger_counts_towards_the_days_cap(make_client, gateway):
    """Small orders raised by modifies cannot pass the daily notional cap: what a change adds
    is counted (and journaled, for a restart) like a new order's notional."""
    probe = make_client()
    about = round(quote(probe)["bid"] * 0.8, 2)  # the limit working_limit will choose
    probe.application.extensions["trading"].stop()
    client = make_client(risk_daily_notional_cap=round(about * 6.5, 2))
    order_id, limit = working_limit(client, gateway)
    url = f"/api/v1/orders/{order_id}/modify"
    assert client.post(url, json={"quantity": 6}).status_code == 202
    wait_for(lambda: client.get(f"/api/v1/orders/{order_id}").get_json()["quantity"] == 6)

    refused = error(client.post(url, json={"quantity": 7}), 422)
    assert refused["details"][0]["rule"] == "daily_notional_cap"
    assert "over the cap" in refused["message"]
    lower = client.post(url, json={"limit_price": round(limit - 0.05, 2)})  # adds nothing
    assert lower.status_code == 202, lower.get_json()
    other = error(place(client, order_type="LMT", limit_price=limit), 422)
    assert other["details"][0]["rule"] == "daily_notional_cap"

    journal = client.application.extensions["trading"].journal
    assert journal.notional_since(0) == pytest.approx(6 * limit)  # what a restart starts from
    assert [o.total_quantity for o in gateway.open_orders() if o.order_ref == order_id] == [6]


def test_moving_a_brackets_exit_is_not_counted_towards_the_days_cap(make_client, gateway):
    """A bracket's exits were never counted when it was placed; counting their moves as new
    notional refused a stop loss tightened near the day's cap (it reduces the risk)."""
    probe = make_client()
    about = round(quote(probe)["bid"] * 0.8, 2)  # the entry resting_bracket will choose
    probe.application.extensions["trading"].stop()
    client = make_client(risk_daily_notional_cap=round(about + 2, 2))
    entry, order_id = resting_bracket(client)
    sl = f"{order_id}-sl"
    wait_for(
        lambda: len([o for o in gateway.open_orders() if o.order_ref.startswith(order_id)]) == 3
    )
    wait_for(lambda: client.get(f"/api/v1/orders/{sl}").get_json().get("status"))
    tighter = client.post(f"/api/v1/orders/{sl}/modify", json={"stop_price": round(entry - 1, 2)})
    assert tighter.status_code == 202, tighter.get_json()


def resting_bracket(client) -> tuple[float, str]:
    """A BUY bracket resting 20 % under the bid, its exits 5 above and below: (entry, id)."""
    entry = round(quote(client)["bid"] * 0.8, 2)
    res = place(
        client,
        order_type="LMT",
        limit_price=entry,
        take_profit=round(entry + 5, 2),
        stop_loss=round(entry - 5, 2),
        tif="GTC",
    )
    assert res.status_code == 202, res.get_json()
    return entry, res.get_json()["id"]


def test_modify_of_a_bracket_keeps_its_legs_on_the_right_side(client, gateway):
    entry, order_id = resting_bracket(client)
    wait_for(lambda: [o for o in gateway.open_orders() if o.order_ref == order_id])
    wait_for(lambda: client.get(f"/api/v1/orders/{order_id}").get_json()["status"] == "Submitted")
    above_tp = error(
        client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": round(entry + 6, 2)}),
        400,
    )
    assert above_tp["field"] == "take_profit"
    assert above_tp["message"] == "take_profit: must be above the limit price for a BUY"
    assert gateway_limit(gateway, order_id) == entry


def test_a_bracket_whose_exit_would_fill_with_its_entry_is_refused(client, gateway):
    """An entry that fills now (at market, a limit the market has reached) has its legs checked
    against the quote its exits meet, a stop entry's against its stop: a BUY at market with a
    take profit under the bid bought and sold at once."""
    q = quote(client)
    under_bid = error(place(client, take_profit=round(q["bid"] - 5, 2)), 422)
    assert under_bid["details"][0]["rule"] == "bracket_sides"
    assert under_bid["message"].startswith(
        f"bracket_sides: take_profit {round(q['bid'] - 5, 2)} is at or below the bid "
    )
    assert under_bid["message"].endswith("it would sell as soon as the entry fills")
    over_ask = error(place(client, action="SELL", stop_loss=round(q["ask"] - 5, 2)), 422)
    assert "stop_loss" in over_ask["message"] and "at or below the ask" in over_ask["message"]
    marketable = {"order_type": "LMT", "limit_price": round(q["ask"] + 0.04, 2)}
    tight = error(place(client, **marketable, stop_loss=round(q["bid"] + 0.01, 2)), 422)
    assert tight["message"].startswith("bracket_sides: stop_loss ")
    assert tight["message"].endswith("it would trigger as soon as the entry fills")
    preview = client.post(
        "/api/v1/orders/preview",
        json={"symbol": "AAPL", "action": "BUY", "quantity": 1, "take_profit": q["bid"]},
    )
    assert error(preview, 422)["details"][0]["rule"] == "bracket_sides"
    stop_entry = place(
        client,
        order_type="STP",
        stop_price=round(q["ask"] + 10, 2),
        take_profit=round(q["ask"] + 5, 2),
    )
    assert error(stop_entry, 400)["field"] == "take_profit"
    assert not gateway.all_orders()
    sides = {"take_profit": round(q["ask"] + 5, 2), "stop_loss": round(q["bid"] - 5, 2)}
    assert place(client, **sides).status_code == 202
    resting = {"order_type": "LMT", "limit_price": round(q["bid"] - 1, 2)}  # fills at its limit
    assert place(client, **resting, stop_loss=round(q["bid"] - 2, 2)).status_code == 202


@pytest.mark.parametrize("action", ["BUY", "SELL"])
def test_a_stop_entry_the_market_has_passed_is_checked_as_filling_now(client, gateway, action):
    """A stop entry triggers on arrival when the market is past its stop: its exits were
    checked against the stop only, so a BUY stop under the ask with a take profit under the
    bid bought and sold at once (accepting the immediate trigger, or from a webhook)."""
    q = quote(client)
    buy = action == "BUY"
    market = q["ask"] if buy else q["bid"]
    step = (
        -1 if buy else 1
    )  # the stop already passed, the take profit beyond it, past the exit's side
    stop = round(market + 20 * step, 2)
    legs = {"take_profit": round(market + 10 * step, 2), "stop_loss": round(market + 30 * step, 2)}
    passed = place(
        client,
        action=action,
        order_type="STP",
        stop_price=stop,
        accept_immediate_trigger=True,
        **legs,
    )
    refused = error(passed, 422)
    assert refused["details"][0]["rule"] == "bracket_sides"
    assert refused["message"].startswith(f"bracket_sides: take_profit {legs['take_profit']} is ")
    resting = {  # the same bracket on the far side of the market: rests, checked by its stop
        "stop_price": round(market - 20 * step, 2),
        "take_profit": round(market - 30 * step, 2),
        "stop_loss": round(market - 10 * step, 2),
    }
    assert place(client, action=action, order_type="STP", **resting).status_code == 202
    wait_for(
        lambda: (
            [o.aux_price for o in gateway.all_orders() if not o.parent_id]
            == [resting["stop_price"]]
        )
    )


def test_a_bracket_leg_moved_alone_stays_on_its_side_of_an_unfilled_entry(client, gateway):
    """A leg is an order of its own: moving it is checked against its entry's limit, and the
    entry's later move against the leg where it is now, not where it was placed."""
    entry, order_id = resting_bracket(client)
    tp, sl = f"{order_id}-tp", f"{order_id}-sl"
    wait_for(
        lambda: len([o for o in gateway.open_orders() if o.order_ref.startswith(order_id)]) == 3
    )
    for leg in (tp, sl):
        wait_for(lambda leg=leg: client.get(f"/api/v1/orders/{leg}").get_json()["status"])

    above_entry = error(
        client.post(f"/api/v1/orders/{sl}/modify", json={"stop_price": round(entry + 2, 2)}), 400
    )
    assert above_entry["field"] == "stop_price"
    assert above_entry["message"] == (
        f"stop_price: the bracket's stop_loss must be below the limit price for a BUY "
        f"(entry {order_id} is not filled yet)"
    )

    closer = round(entry + 1, 2)  # still above the entry: a take profit may come closer
    assert (
        client.post(f"/api/v1/orders/{tp}/modify", json={"limit_price": closer}).status_code == 202
    )
    wait_for(lambda: client.get(f"/api/v1/orders/{tp}").get_json()["limit_price"] == closer)
    messages = client.get(f"/api/v1/orders/{tp}").get_json()["lifecycle"]["messages"]
    assert not [m for m in messages if m["code"] in (10326, 10327)], messages  # IB's OCA group
    past_tp = error(
        client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": round(entry + 3, 2)}),
        400,
    )
    assert past_tp["field"] == "take_profit"
    assert gateway_limit(gateway, order_id) == entry
    stops = [o.aux_price for o in gateway.open_orders() if o.order_ref == sl]
    assert stops == [round(entry - 5, 2)]

    q = quote(client)  # the take profit moved up, the entry to the ask: checked where it is now
    higher = round(q["ask"] + 5, 2)
    assert (
        client.post(f"/api/v1/orders/{tp}/modify", json={"limit_price": higher}).status_code == 202
    )
    wait_for(lambda: client.get(f"/api/v1/orders/{tp}").get_json()["limit_price"] == higher)
    marketable = round(q["ask"] + 0.04, 2)
    res = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": marketable})
    assert res.status_code == 202, res.get_json()


def working_bracket(client, gateway) -> tuple[float, str]:
    """resting_bracket, its entry and both exits working at the gateway and in our records."""
    entry, order_id = resting_bracket(client)
    wait_for(
        lambda: len([o for o in gateway.open_orders() if o.order_ref.startswith(order_id)]) == 3
    )
    handler = client.application.extensions["trading"].handler
    for part in (order_id, f"{order_id}-tp", f"{order_id}-sl"):
        wait_for(lambda part=part: handler.get(part).status in ("PreSubmitted", "Submitted"))
    return entry, order_id


def test_a_leg_moved_while_its_entrys_change_is_on_its_way_is_checked_on_that_change(
    client, gateway
):
    """A script raising the entry and then lowering its take profit right after: the second
    change is checked on the entry as the first leaves it, not as the broker last confirmed it
    (the take profit under the raised entry would sell at a loss as soon as the entry fills)."""
    entry, order_id = working_bracket(client, gateway)
    handler = client.application.extensions["trading"].handler
    raised, tp = round(entry + 4, 2), f"{order_id}-tp"
    with loop_paused(handler.thread):  # the entry's change waits on the order thread
        res = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": raised})
        assert res.status_code == 202, res.get_json()
        under = error(
            client.post(f"/api/v1/orders/{tp}/modify", json={"limit_price": round(entry + 2, 2)}),
            400,
        )
    assert under["field"] == "limit_price"
    assert under["message"] == (
        "limit_price: the bracket's take_profit must be above the limit price for a BUY "
        f"(entry {order_id} is not filled yet)"
    )
    wait_for(lambda: gateway_limit(gateway, order_id) == raised)
    assert gateway_limit(gateway, tp) == round(entry + 5, 2)


def test_a_leg_moved_while_its_entrys_change_is_on_its_way_is_also_checked_on_the_entry_now(
    client, gateway
):
    """The entry lowered, then its take profit lowered to just above the new entry: sound only
    if the broker takes the entry's change. Refused: IB may yet refuse that change (here it
    does), and the take profit would then be under the entry it still has."""
    entry, order_id = working_bracket(client, gateway)
    handler = client.application.extensions["trading"].handler
    tp = f"{order_id}-tp"
    with loop_paused(handler.thread):
        res = client.post(
            f"/api/v1/orders/{order_id}/modify", json={"limit_price": round(entry - 3, 2)}
        )
        assert res.status_code == 202, res.get_json()
        under = error(
            client.post(f"/api/v1/orders/{tp}/modify", json={"limit_price": round(entry - 1, 2)}),
            400,
        )
        gateway.reject_next_order("Simulated rejection of the entry's change")
    assert under["field"] == "limit_price" and "take_profit must be above" in under["message"]
    wait_for(lambda: any(m.code == 201 for m in handler.get(order_id).messages))
    assert gateway_limit(gateway, order_id) == entry
    assert gateway_limit(gateway, tp) == round(entry + 5, 2)


def test_an_entry_moved_while_its_stops_change_is_on_its_way_is_checked_on_that_change(
    client, gateway
):
    """The other way round: the stop loss raised, then the entry lowered under it before the
    broker confirmed the stop; refused, as the bracket the two changes make would be."""
    entry, order_id = working_bracket(client, gateway)
    handler = client.application.extensions["trading"].handler
    stop, sl = round(entry - 1, 2), f"{order_id}-sl"
    with loop_paused(handler.thread):
        res = client.post(f"/api/v1/orders/{sl}/modify", json={"stop_price": stop})
        assert res.status_code == 202, res.get_json()
        above = error(
            client.post(
                f"/api/v1/orders/{order_id}/modify", json={"limit_price": round(entry - 2, 2)}
            ),
            400,
        )
    assert above["field"] == "stop_loss"
    assert above["message"] == "stop_loss: must be below the limit price for a BUY"
    wait_for(lambda: [o.aux_price for o in gateway.open_orders() if o.order_ref == sl] == [stop])
    assert gateway_limit(gateway, order_id) == entry


def test_a_bracket_leg_moves_once_its_entry_has_filled(client, gateway):
    """The filled entry is no longer a working order at IB: a leg's change that still names it
    as parent is refused (135 'Can't find order with id = <entry>') and the stop stays where it
    was; the change goes out without the parentId and the stop moves."""
    q = quote(client)
    res = place(client, take_profit=round(q["ask"] + 5, 2), stop_loss=round(q["bid"] - 5, 2))
    assert res.status_code == 202, res.get_json()
    order_id, sl = res.get_json()["id"], f"{res.get_json()['id']}-sl"
    wait_for(lambda: client.get(f"/api/v1/orders/{order_id}").get_json()["status"] == "Filled")
    wait_for(lambda: [o for o in gateway.open_orders() if o.order_ref == sl])

    closer = round(q["bid"] - 3, 2)
    res = client.post(f"/api/v1/orders/{sl}/modify", json={"stop_price": closer})
    assert res.status_code == 202, res.get_json()
    wait_for(lambda: client.get(f"/api/v1/orders/{sl}").get_json()["stop_price"] == closer)
    assert [o.aux_price for o in gateway.open_orders() if o.order_ref == sl] == [closer]
    record = client.get(f"/api/v1/orders/{sl}").get_json()["lifecycle"]
    refused = [m for m in record["messages"] if m["code"] in (135, 10326, 10327)]
    assert not refused, record["messages"]


def test_modify_is_refused_by_the_live_guard(tmp_path):
    """An order placed while live trading was allowed cannot be changed once it is not."""
    gw = SimGateway(
        ServerSettings(clock_start=TRADING_CLOCK),
        BrokerConfig(account="U7654321", live_account_drill=True),
    ).start()
    from app_simple import create_app

    journal = str(tmp_path / "orders.db")
    try:
        app = create_app(
            {"SETTINGS": app_settings(gw, journal_path=journal, allow_live_trading=True)}
        )
        try:
            order_id, limit = working_limit(api_client(app), gw)
        finally:
            app_simple.shutdown(app)  # services and the instance lock: the next app starts
        app = create_app({"SETTINGS": app_settings(gw, journal_path=journal)})
        try:
            client = api_client(app)
            wait_for(
                lambda: (
                    client.get(f"/api/v1/orders/{order_id}").get_json().get("verdict") == "working"
                ),
                timeout=15,
            )
            refused = error(
                client.post(
                    f"/api/v1/orders/{order_id}/modify",
                    json={"limit_price": round(limit - 0.05, 2)},
                ),
                422,
            )
            assert refused["details"][0]["rule"] == "live_trading_disabled"
            assert gateway_limit(gw, order_id) == limit
        finally:
            app_simple.shutdown(app)
    finally:
        gw.stop()


# ----------------------------------------------------------------- 3. preview
def test_preview_answers_the_risk_gates_verdict(client, gateway):
    q = quote(client)
    big = error(
        client.post(
            "/api/v1/orders/preview", json={"symbol": "AAPL", "action": "BUY", "quantity": 50_000}
        ),
        422,
    )
    assert big["code"] == "risk_rejected" and big["field"] == "quantity"
    verdict = big["details"][0]
    assert verdict["rule"] == "max_quantity" and verdict["accepted"] is False
    assert verdict["figures"]["quantity"] == 50_000

    collar = error(
        client.post(
            "/api/v1/orders/preview",
            json={
                "symbol": "AAPL",
                "action": "BUY",
                "quantity": 1,
                "order_type": "LMT",
                "limit_price": round(q["bid"] * 0.3, 2),
            },
        ),
        422,
    )
    assert collar["details"][0]["rule"] == "price_collar" and collar["field"] == "limit_price"

    fine = client.post(
        "/api/v1/orders/preview", json={"symbol": "AAPL", "action": "BUY", "quantity": 10}
    )
    body = fine.get_json()
    assert fine.status_code == 200, body
    assert body["risk"]["accepted"] is True and body["risk"]["notional"] > 0
    assert ISO_MS.match(body["risk"]["at"])
    assert body["commission"] is not None and body["immediate_trigger"] is None
    assert not gateway.all_orders()  # a preview places nothing


# --------------------------------------------------------- 4. stop on the wrong side
def test_a_stop_the_market_has_passed_needs_an_acknowledgement(client, gateway):
    q = quote(client)
    below = round(q["bid"] * 0.95, 2)  # a BUY stop under the market triggers at once
    stop = {"order_type": "STP", "stop_price": below}

    preview = client.post(
        "/api/v1/orders/preview", json={"symbol": "AAPL", "action": "BUY", "quantity": 1, **stop}
    )
    assert preview.status_code == 200, preview.get_json()
    warning = preview.get_json()["immediate_trigger"]
    assert f"BUY stop at {below:g} is at or below the market (ask" in warning

    refused = error(place(client, **stop), 422)
    assert refused["code"] == "stop_triggers_immediately" and refused["field"] == "stop_price"
    assert "accept_immediate_trigger" in refused["message"]
    assert not gateway.all_orders()

    sell_above = error(
        place(client, action="SELL", order_type="STP", stop_price=round(q["ask"] * 1.05, 2)), 422
    )
    assert "SELL stop" in sell_above["message"] and "at or above" in sell_above["message"]
    assert not gateway.all_orders()

    resting = place(client, order_type="STP", stop_price=round(q["ask"] * 1.05, 2))
    assert resting.status_code == 202, resting.get_json()
    assert (
        client.post(
            "/api/v1/orders/preview",
            json={
                "symbol": "AAPL",
                "action": "BUY",
                "quantity": 1,
                "order_type": "STP",
                "stop_price": round(q["ask"] * 1.05, 2),
            },
        ).get_json()["immediate_trigger"]
        is None
    )

    # the same stop as a change of the resting one
    order_id = resting.get_json()["id"]
    wait_for(lambda: [o for o in gateway.open_orders() if o.order_ref == order_id])
    moved = error(client.post(f"/api/v1/orders/{order_id}/modify", json={"stop_price": below}), 422)
    assert moved["code"] == "stop_triggers_immediately"

    acknowledged = place(client, accept_immediate_trigger=True, **stop)
    assert acknowledged.status_code == 202, acknowledged.get_json()
    wait_for(lambda: client.get(acknowledged.get_json()["url"]).get_json()["verdict"] == "filled")


def test_a_retried_stop_answers_its_order_even_once_the_market_has_passed_it(client, gateway):
    """The retry of a stop order (same Idempotency-Key, same order) answers the order it
    placed: it used to meet the immediate-trigger check first and answer 422 "send
    accept_immediate_trigger: true to place it anyway" for an order already placed (the
    client, told to place it again, would place a second one). A stop the market has passed
    since the first try is such a retry; so is one sent without the acknowledgement, which is
    not part of what a retry must repeat."""
    below = round(quote(client)["bid"] * 0.95, 2)
    stop = {"order_type": "STP", "stop_price": below}
    key = {"Idempotency-Key": "stop-retry-1"}
    body = {"symbol": "AAPL", "action": "BUY", "quantity": 1, **stop}
    first = client.post(
        "/api/v1/orders", json={**body, "accept_immediate_trigger": True}, headers=key
    )
    assert first.status_code == 202, first.get_json()
    retry = client.post("/api/v1/orders", json=body, headers=key)
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json()["id"] == first.get_json()["id"] and retry.get_json()["replayed"]
    wait_for(lambda: client.get(first.get_json()["url"]).get_json()["verdict"] == "filled")
    assert len(gateway.all_orders()) == 1
    fresh = error(client.post("/api/v1/orders", json=body, headers={"Idempotency-Key": "new"}), 422)
    assert fresh["code"] == "stop_triggers_immediately"  # a new order is still asked


# ------------------------------------------------------------ 6. FX quantity
def test_fx_quantity_counts_base_currency_units_with_its_own_limit(make_client, gateway):
    client = make_client(risk_max_quantity=10_000, risk_max_quantity_fx=50_000)
    fx = {"symbol": "EUR.USD", "action": "BUY"}
    preview = client.post("/api/v1/orders/preview", json={**fx, "quantity": 20_000})
    assert preview.status_code == 200, preview.get_json()  # no sec_type: found as an FX pair
    assert preview.get_json()["risk"]["accepted"] is True
    too_big = error(client.post("/api/v1/orders", json={**fx, "quantity": 60_000}), 422)
    assert too_big["details"][0]["rule"] == "max_quantity"
    assert "50000 units of the base currency for FX pairs" in too_big["message"]
    placed = client.post("/api/v1/orders", json={**fx, "quantity": 20_000})
    assert placed.status_code == 202, placed.get_json()
    assert placed.get_json()["order"]["intent"]["sec_type"] == "CASH"
    limits = client.get("/api/v1/status").get_json()["risk_limits"]["asset_classes"]
    assert limits["CASH"] == {"max_quantity": 50_000, "unit": "units of the base currency"}
    assert limits["STK"]["unit"] == "shares"


# ----------------------------------------------------------- 11. one format
def test_quote_finds_fx_without_sec_type_and_suggests_it_under_stock(client):
    fx = quote(client, "EUR.USD")
    assert fx["sec_type"] == "CASH" and 0.5 < fx["bid"] < 2 and ISO_MS.match(fx["time"])
    as_stock = error(client.get("/api/v1/quote?symbol=EUR.USD&sec_type=STK"), 404)
    assert as_stock["code"] == "unknown_symbol" and as_stock["field"] == "sec_type"
    assert "looks like an FX pair" in as_stock["message"]
    assert as_stock["details"][0]["suggested"] == "CASH"
    assert quote(client, "AAPL")["sec_type"] == "STK"


def test_a_quote_says_what_currency_its_prices_are_in(client):
    """A yen price read as dollars is off by 150 times: the quote names its currency (an FX
    pair's is the quote side)."""
    assert quote(client, "AAPL")["currency"] == "USD"
    assert quote(client, "EUR.USD")["currency"] == "USD"
    yen = quote(client, "USD.JPY")
    assert yen["currency"] == "JPY" and 50 < yen["bid"] < 500


def test_one_error_per_bad_field(client):
    bad = error(
        client.post("/api/v1/orders", json={"symbol": "AAPL", "action": "BUY", "quantity": "5"}),
        400,
    )
    assert bad["field"] == "quantity" and bad["message"] == "quantity: must be a number"
    assert bad["details"] == [{"field": "quantity", "message": "must be a number"}]
    two = error(
        client.post("/api/v1/orders", json={"symbol": "AAPL", "action": "HOLD", "quantity": "x"}),
        400,
    )
    assert sorted(d["field"] for d in two["details"]) == ["action", "quantity"]


def test_times_are_iso_utc_and_sides_buy_sell_everywhere(client, gateway):
    res = place(client, quantity=3)
    assert res.status_code == 202
    record = res.get_json()["order"]
    assert ISO_MS.match(record["created_at"]) and ISO_MS.match(record["steps"][0]["at"])
    url = res.get_json()["url"]
    wait_for(lambda: client.get(url).get_json()["verdict"] == "filled")
    order = client.get(url).get_json()
    lifecycle = order["lifecycle"]
    assert order["action"] == "BUY"
    for stamp in (
        [lifecycle["created_at"], lifecycle["updated_at"]]
        + [t["at"] for t in lifecycle["transitions"]]
        + [f["at"] for f in lifecycle["fills"]]
    ):
        assert ISO_MS.match(stamp), stamp
    executions = wait_for(lambda: client.get("/api/v1/executions").get_json()["executions"])
    assert [(e["side"], e["ib_side"]) for e in executions] == [("BUY", "BOT")]
    assert ISO_MS.match(executions[0]["time"])
    status = client.get("/api/v1/status").get_json()
    assert ISO_MS.match(status["now"])
    reader = status["connections"]["reader"]
    assert ISO_MS.match(reader["connected_since"]) and ISO_MS.match(reader["last_heartbeat"])
    assert isinstance(status["data_age"], float)  # an age stays seconds
    state = client.get("/api/v1/state").get_json()
    assert ISO_MS.match(state["orders"][0]["updated_at"])  # a brief row: its record's time
    assert state["executions"][0]["side"] == "BUY"
