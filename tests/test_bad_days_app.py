"""The app on IB's bad days, over the simulated gateway: server outages (1100 → 1102 / 1101),
farm notices, accounts without market-data subscriptions and competing live sessions."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import TRADING_CLOCK, api_client, app_settings, later, wait_for
from ib_link import LinkEvent, LinkMonitor
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

# clock seconds of an outage that ends when the test jumps the gateway's clock past it: longer
# than pytest's timeout (120 s), so never on its own however slow the machine
OUTAGE = 300.0


def post_order(client, **fields):
    body = {"symbol": "AAPL", "action": "BUY", "quantity": 1, "order_type": "MKT", **fields}
    return client.post("/api/v1/orders", json=body)


def order_json(client, order_id):
    return client.get(f"/api/v1/orders/{order_id}").get_json()


def servers(client):
    return client.get("/api/v1/status").get_json()["ib_servers"]


@pytest.fixture
def start_app():
    """Factory: a gateway (ServerSettings keywords) and the app on it; all stopped after."""
    made: list = []

    def start(app_overrides: dict | None = None, **gateway_settings):
        from app_simple import create_app

        gateway = SimGateway(
            ServerSettings(port=0, clock_start=TRADING_CLOCK, **gateway_settings),
            BrokerConfig(seed=7),
        ).start()
        made.append(gateway)
        app = create_app(
            {"SETTINGS": app_settings(gateway, **(app_overrides or {})), "TESTING": True}
        )
        made.append(app.extensions["trading"])
        return gateway, app, api_client(app)

    yield start
    for thing in reversed(made):
        thing.stop()


# ----------------------------------------------------------------------------- outages
@pytest.mark.slow
def test_outage_refuses_orders_records_the_fill_made_meanwhile_and_accepts_after_1102(start_app):
    gateway, app, client = start_app()
    # the fill and the outage's end are due on the gateway's clock, later than the test's
    # timeout: each comes when the test jumps the clock to it, however slow the machine
    gateway.set_fill_delay(30)
    placed = post_order(client, quantity=5)
    assert placed.status_code == 202
    order_id = placed.get_json()["id"]
    wait_for(lambda: order_json(client, order_id)["lifecycle"]["status"] == "PreSubmitted")
    gateway.outage(seconds=OUTAGE)
    wait_for(lambda: not servers(client)["reachable"])

    broken = {("usfarm", "broken"), ("ushmds", "broken"), ("secdefnj", "broken")}
    # the farm notices follow 1100 in the same burst
    link = wait_for(
        lambda: (
            (v := servers(client)) and broken <= {(f["name"], f["state"]) for f in v["farms"]} and v
        )
    )
    assert link["code"] == 1100 and "IB servers unreachable" in link["reason"]
    health = client.get("/api/v1/health")
    assert health.status_code == 503 and "IB servers unreachable" in health.get_json()["reason"]
    assert client.get("/api/v1/status").get_json()["ok"] is False
    refused = post_order(client)
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "ib_servers_unreachable"
    assert app.extensions["trading"].journal.count() == 1  # nothing queued to send later

    later(gateway, 30)  # the fill happens at IB while the gateway
    wait_for(lambda: gateway.held()[1] > 0, timeout=5)  # cannot tell us: held for the end
    assert gateway.outage_active() and order_json(client, order_id)["verdict"] != "filled"
    later(gateway, OUTAGE)  # past the outage's end: 1102
    wait_for(lambda: servers(client)["reachable"], timeout=10)
    assert servers(client)["code"] == 1102
    wait_for(lambda: order_json(client, order_id)["verdict"] == "filled", timeout=10)
    fills = order_json(client, order_id)["lifecycle"]["fills"]
    assert sum(f["shares"] for f in fills) == 5  # delivered after 1102, none lost
    assert client.get("/api/v1/health").status_code == 200
    gateway.set_fill_delay(0)  # the next order fills as it is acknowledged
    after = post_order(client, quantity=2)
    assert after.status_code == 202, after.get_json()
    wait_for(lambda: order_json(client, after.get_json()["id"])["verdict"] == "filled")


@pytest.mark.slow
def test_a_fill_that_arrives_during_1100_is_taken_once(start_app):
    """IB's gateway may pass a fill on between its 1100s: the order is filled while the
    servers are unreachable, and 1102's reconciliation adds nothing to it."""
    gateway, app, client = start_app()
    gateway.set_fill_delay(30)  # due when the test moves the clock, inside the outage
    order_id = post_order(client, quantity=5).get_json()["id"]
    wait_for(lambda: order_json(client, order_id)["lifecycle"]["status"] == "PreSubmitted")
    gateway.outage(seconds=OUTAGE, through=True)
    wait_for(lambda: not servers(client)["reachable"])
    later(gateway, 30)
    wait_for(lambda: order_json(client, order_id)["verdict"] == "filled", timeout=5)
    assert not servers(client)["reachable"]  # taken during the outage, not at its end
    later(gateway, OUTAGE)  # past the outage's end: 1102
    wait_for(lambda: servers(client)["reachable"], timeout=10)
    wait_for(lambda: client.get("/api/v1/health").status_code == 200, timeout=10)
    lifecycle = order_json(client, order_id)["lifecycle"]
    assert sum(f["shares"] for f in lifecycle["fills"]) == 5
    assert lifecycle["status"] == "Filled" and lifecycle["filled"] == 5
    positions = wait_for(
        lambda: [
            p
            for p in client.get("/api/v1/positions").get_json()["positions"]
            if p["symbol"] == "AAPL"
        ]
    )
    assert positions[0]["quantity"] == 5


@pytest.mark.slow
def test_outage_with_data_lost_1101_reconciles_the_fill_and_resubscribes(start_app):
    gateway, app, client = start_app()
    svc = app.extensions["trading"]
    gateway.set_fill_delay(30)  # due when the test moves the clock, inside the outage
    order_id = post_order(client, action="SELL", quantity=7).get_json()["id"]
    wait_for(lambda: order_json(client, order_id)["lifecycle"]["status"] == "PreSubmitted")
    reader_reconnects = svc.connector.state().reconnects
    gateway.outage(seconds=OUTAGE, lost=True)  # the fill's messages are dropped by the gateway
    wait_for(lambda: not servers(client)["reachable"])
    assert post_order(client).status_code == 503
    later(gateway, 30)  # the fill happens at IB meanwhile
    wait_for(lambda: gateway.held()[1] > 0, timeout=5)
    later(gateway, OUTAGE)  # past the outage's end: 1101
    # after 1101 both connections reconnect: subscriptions made again, orders reconciled
    wait_for(lambda: svc.connector.state().reconnects > reader_reconnects, timeout=10)
    wait_for(lambda: order_json(client, order_id)["verdict"] == "filled", timeout=15)
    lifecycle = order_json(client, order_id)["lifecycle"]
    assert sum(f["shares"] for f in lifecycle["fills"]) == 7
    assert any("recovered" in s["text"] or "matched" in s["text"] for s in lifecycle["steps"])
    wait_for(lambda: client.get("/api/v1/health").status_code == 200, timeout=10)
    wait_for(lambda: client.get("/api/v1/account").status_code == 200, timeout=10)
    gateway.set_fill_delay(0)
    answer = post_order(client, quantity=1)
    assert answer.status_code == 202, answer.get_json()


@pytest.mark.slow
def test_data_age_is_not_kept_fresh_by_heartbeats_while_ib_is_unreachable(
    start_app, fast_heartbeat
):
    """During 1100 the gateway still answers the heartbeat but sends no account data: /status's
    data_age counts on from the outage's start instead of claiming the data as fresh as the
    last heartbeat."""
    gateway, app, client = start_app()
    wait_for(lambda: client.get("/api/v1/status").get_json()["data_age"] is not None)
    gateway.outage(seconds=600)
    wait_for(lambda: not servers(client)["reachable"])
    status = wait_for(
        lambda: (s := client.get("/api/v1/status").get_json())["data_age"] > 3 and s, timeout=8
    )
    assert status["connections"]["reader"]["state"] == "connected"  # the socket answers


def test_a_reconnect_during_an_outage_does_not_make_the_data_look_fresh(start_app):
    """The gateway drops the sockets while IB's servers are still lost: the reconnect took the
    gateway's first download (what it knew at the outage) as fresh data, and its repeated 1100
    as the outage's start; /status, /positions and /account said half a second old."""
    gateway, app, client = start_app()
    wait_for(lambda: client.get("/api/v1/status").get_json()["data_age"] is not None)
    connector, handler = app.extensions["trading"].connector, app.extensions["trading"].handler
    gateway.outage(seconds=600)
    wait_for(lambda: not connector.link_state().reachable and not handler.link_state().reachable)
    began = servers(client)["since"]
    time.sleep(2.5)
    reconnects = [c.state().reconnects for c in (connector, handler)]
    gateway.drop_connections()
    wait_for(  # both: the outage's start is the earlier of the two connections' notices
        lambda: all(
            c.connected and c.state().reconnects > before and not c.link_state().reachable
            for c, before in zip((connector, handler), reconnects, strict=True)
        ),
        15,
    )
    status = wait_for(
        lambda: (s := client.get("/api/v1/status").get_json())["ib_servers"]["code"] and s
    )
    assert status["ib_servers"]["reachable"] is False
    assert status["ib_servers"]["since"] == began  # the outage's start, not the reconnect's 1100
    for path in ("/api/v1/status", "/api/v1/positions", "/api/v1/account"):
        assert client.get(path).get_json()["data_age"] > 2.4, path


@pytest.mark.slow
def test_executions_answers_that_never_end_still_list_the_fills(start_app, monkeypatch):
    """TWS 10.30.1 never ends a reqExecutions answer (ib_async #54): every refresh that asked
    for executions failed after 10 s, open orders and all, and no fill was ever listed. The
    fills it sent are taken, and the next asks wait 1 s, not 10."""
    import reader_orders

    monkeypatch.setattr(reader_orders, "EXEC_WAIT", 1.0)
    monkeypatch.setattr(reader_orders, "EXEC_WAIT_HUNG", 0.3)
    gateway, app, client = start_app()
    wait_for(lambda: client.get("/api/v1/account").status_code == 200)
    gateway.set_executions_answer("none")
    posted = post_order(client, quantity=1).get_json()
    wait_for(
        lambda: [
            e
            for e in client.get("/api/v1/executions").get_json()["executions"]
            if e["order_ref"] == posted["id"]
        ],
        timeout=8,
    )
    connector = app.extensions["trading"].connector
    assert connector._executions_hung
    before = connector.refreshes
    # not one per 10 s (three would take 20 s at least); 15 s: a loaded machine's refresh
    # takes over a second
    wait_for(lambda: connector.refreshes >= before + 3, timeout=15)
    gateway.set_executions_answer("full")
    wait_for(lambda: not connector._executions_hung, timeout=10)


def test_the_order_lists_age_is_its_last_answers_not_the_heartbeats(start_app, fast_heartbeat):
    """Other clients' orders are asked for, not pushed: with the order list unanswered and the
    heartbeat answered, the header's "data" age (orders_age) stayed under a second while
    /orders said its list was old."""
    gateway, app, client = start_app()
    wait_for(lambda: client.get("/api/v1/status").get_json()["orders_age"] is not None)
    gateway.set_open_orders_answered(False)
    status = wait_for(
        lambda: (s := client.get("/api/v1/status").get_json())["orders_age"] > 4 and s, timeout=10
    )
    assert status["connections"]["reader"]["state"] == "connected"  # the heartbeat answers
    assert client.get("/api/v1/orders").get_json()["data_age"] > 4


def test_a_poller_gets_no_304_while_ib_is_unreachable(start_app):
    """During 1100 the reader stays connected but nothing is pushed: a script polling
    /positions with If-None-Match gets the body (its data_age counting on), not a 304 that
    keeps the copy it fetched before the outage."""
    gateway, app, client = start_app()
    wait_for(lambda: client.get("/api/v1/positions").get_json()["data_age"] is not None)

    def revalidated() -> bool:  # the prices may move between the two GETs: then again
        etag = client.get("/api/v1/positions").headers["ETag"]
        return client.get("/api/v1/positions", headers={"If-None-Match": etag}).status_code == 304

    wait_for(revalidated, timeout=5)
    gateway.outage(seconds=600)
    wait_for(lambda: not servers(client)["reachable"])
    etag = client.get("/api/v1/positions").headers["ETag"]  # nothing moves it now
    answer = client.get("/api/v1/positions", headers={"If-None-Match": etag})
    assert answer.status_code == 200 and answer.get_json()["data_age"] is not None


@pytest.mark.slow
def test_order_list_age_counts_from_the_outage_start_while_ib_is_unreachable(
    start_app, fast_heartbeat
):
    """During 1100 the gateway still answers reqAllOpenOrders from what it knew when it lost
    IB (fills made at IB meanwhile are not in it): the order list's age counts from the
    outage's start, in /status and in /orders, and is fresh again after 1102."""
    gateway, app, client = start_app()
    wait_for(lambda: client.get("/api/v1/status").get_json()["orders_age"] is not None)
    gateway.outage(seconds=OUTAGE)  # until the test ends it
    wait_for(lambda: not servers(client)["reachable"])
    wait_for(lambda: client.get("/api/v1/status").get_json()["orders_age"] > 3, timeout=5)
    assert client.get("/api/v1/orders").get_json()["data_age"] > 3
    gateway.end_outage()  # 1102
    wait_for(lambda: servers(client)["reachable"], timeout=10)
    wait_for(lambda: client.get("/api/v1/orders").get_json()["data_age"] < 2, timeout=5)


def test_farm_notices_are_shown_with_their_time(client):
    farms = wait_for(lambda: servers(client)["farms"])
    assert {(f["kind"], f["name"], f["state"]) for f in farms} >= {
        ("market data", "usfarm", "ok"),
        ("historical data", "ushmds", "ok"),
        ("security definitions", "secdefnj", "ok"),
    }
    assert all(f["since"].endswith("Z") and f["since"] > "2020" for f in farms)  # ISO UTC


def test_an_inactive_farm_notice_names_its_farm() -> None:
    """IB's 2108 ends "…upon demand.usfarm" (no colon): a farm broken, then inactive, is the one
    farm, inactive, not broken for good beside a farm named by the whole sentence."""
    monitor = LinkMonitor()
    monitor.on_message(2103, "Market data farm connection is broken:usfarm.nj", 10.0)
    text = "Market data farm connection is inactive but should be available upon demand.usfarm.nj"
    monitor.on_message(2108, text, 20.0)
    assert [(f.name, f.state) for f in monitor.state.farms] == [("usfarm.nj", "inactive")]


def test_link_monitor_keeps_the_start_of_an_outage_and_farm_since() -> None:
    monitor = LinkMonitor()
    assert monitor.on_message(2104, "Market data farm connection is OK:usfarm", 10.0) is None
    assert monitor.on_message(2104, "Market data farm connection is OK:usfarm", 20.0) is None
    assert monitor.state.farms[0].since == 10.0
    assert monitor.on_message(1100, "lost", 30.0) is LinkEvent.LOST
    assert monitor.on_message(1100, "lost", 40.0) is LinkEvent.LOST
    assert not monitor.state.reachable and monitor.state.since == 30.0
    assert monitor.on_message(1101, "restored", 50.0) is LinkEvent.RESTORED_DATA_LOST
    assert monitor.state.reachable and monitor.state.code == 1101
    assert monitor.on_message(2103, "Market data farm connection is broken:usfarm", 60.0) is None
    assert monitor.state.farms[0].state == "broken" and monitor.state.farms[0].since == 60.0
    assert monitor.on_message(202, "Order cancelled", 70.0) is None


def test_an_outage_that_ended_between_sockets_is_not_the_start_of_the_next() -> None:
    """An outage began, the gateway restarted during it and the outage ended while no socket
    was there to hear 1102; the new socket's notices said the farms were fine. A new outage a
    little later was reported as begun with the first (its ages counted from there too)."""
    monitor = LinkMonitor()
    monitor.on_message(1100, "lost", 30.0)
    monitor.reset()  # the gateway restarts during the outage
    assert monitor.on_message(2104, "Market data farm connection is OK:usfarm", 40.0) is None
    assert monitor.on_message(1100, "lost", 45.0) is LinkEvent.LOST
    assert monitor.state.since == 45.0  # a new outage, not the one of 30.0


# ----------------------------------------------------------------------------- market data
def test_account_without_subscription_gets_delayed_quotes_labelled_and_orders_accepted(start_app):
    gateway, app, client = start_app(market_data="delayed")
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    assert quote["market_data"] == "delayed" and quote["bid"] > 0 and quote["ask"] > 0
    assert quote["notice_code"] is None
    placed = post_order(client, order_type="LMT", limit_price=round(quote["ask"], 2))
    assert placed.status_code == 202, placed.get_json()
    journaled = app.extensions["trading"].journal.get(placed.get_json()["id"])
    assert journaled.risk["figures"]["quote_delayed"] is True  # the audit says "delayed"
    market = post_order(client, quantity=3)
    assert market.status_code == 202, market.get_json()
    wait_for(lambda: order_json(client, market.get_json()["id"])["verdict"] == "filled")


def held(client, symbol):
    rows = client.get("/api/v1/positions").get_json()["positions"]
    return next((p for p in rows if p["symbol"] == symbol), None)


def test_each_position_is_labelled_by_its_own_contracts_quote(start_app):
    """An account with IB's free live FX quotes and no stock subscription: a fresh app quoted
    one held contract (the first) and labelled every position with what that quote said, the
    stock "live" beside the FX pair. Each held contract is asked about itself."""
    from app_simple import create_app

    gateway, app, client = start_app()
    gateway.set_market_data_subscriptions("delayed", fx="live")
    assert post_order(client, symbol="EUR.USD", sec_type="CASH", quantity=20000).status_code == 202
    assert post_order(client, quantity=3).status_code == 202
    wait_for(lambda: held(client, "AAPL") and held(client, "EUR.USD"))
    app.extensions["trading"].stop()
    fresh = create_app({"SETTINGS": app_settings(gateway, client_id=1999), "TESTING": True})
    try:
        client = api_client(fresh)
        labels = wait_for(
            lambda: (
                (a := held(client, "AAPL"))
                and (f := held(client, "EUR.USD"))
                and a["market_data"]
                and f["market_data"]
                and (a["market_data"], f["market_data"])
            ),
            timeout=10,
        )
        assert labels == ("delayed", "live")
    finally:
        fresh.extensions["trading"].stop()


@pytest.mark.parametrize("kind", ["delayed", "live"])
def test_positions_say_whether_their_prices_are_delayed(start_app, kind):
    """The positions' market price and value (IB's portfolio stream) are the account's market
    data: labelled delayed on an account without a subscription, live on one with it; a fresh
    app holding positions asks one quote itself to know."""
    from app_simple import create_app

    gateway, app, client = start_app(market_data=kind)
    assert post_order(client, quantity=3).status_code == 202  # the risk gate's quote tells
    # the row can come before its first mark (market_price None): wait for both
    row = wait_for(
        lambda: (p := held(client, "AAPL")) and p["market_data"] and p["market_price"] and p
    )
    assert row["market_data"] == kind and row["market_price"] > 0
    app.extensions["trading"].stop()
    fresh = create_app({"SETTINGS": app_settings(gateway, client_id=1999), "TESTING": True})
    try:
        client = api_client(fresh)
        row = wait_for(lambda: (p := held(client, "AAPL")) and p["market_data"] and p)
        assert row["market_data"] == kind and row["quantity"] == 3
        assert client.get("/api/v1/state").get_json()["positions"][0]["market_data"] == kind
    finally:
        fresh.extensions["trading"].stop()


def test_delayed_collar_is_configurable(start_app):
    gateway, app, client = start_app(
        {"risk_price_collar_pct": 50, "risk_delayed_collar_pct": 1}, market_data="delayed"
    )
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    res = post_order(client, order_type="LMT", limit_price=round(quote["ask"] * 0.95, 2))
    assert res.status_code == 422
    assert "delayed quote" in res.get_json()["error"]["message"]
    assert "delayed-data collar 1%" in res.get_json()["error"]["message"]


def test_no_market_data_at_all_refuses_with_the_cause_and_what_to_do(start_app):
    gateway, app, client = start_app(market_data="none")
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    assert quote["bid"] is None and quote["last"] is None and quote["notice_code"] == 10168
    assert "delayed data is not enabled" in quote["notice"]
    res = post_order(client)
    assert res.status_code == 422
    error = res.get_json()["error"]
    assert error["code"] == "risk_rejected" and "10168" in error["message"]
    assert "Client Portal" in error["message"]
    assert gateway.all_orders() == []


def test_live_only_type_on_an_unsubscribed_account_names_354(start_app):
    gateway, app, client = start_app({"market_data_type": 1}, market_data="delayed")
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    assert quote["notice_code"] == 354 and quote["bid"] is None
    assert "MARKET_DATA_TYPE=3" in quote["notice"]


def test_competing_live_session_is_named_and_old_prices_are_not_shown(start_app):
    gateway, app, client = start_app()
    assert client.get("/api/v1/quote?symbol=AAPL").get_json()["bid"] > 0
    gateway.competing_session(seconds=600)
    quote = wait_for(
        lambda: (
            (q := client.get("/api/v1/quote?symbol=AAPL").get_json())["notice_code"] == 10197 and q
        )
    )
    assert quote["bid"] is None and quote["ask"] is None  # not the last snapshot's prices
    assert "competing live session" in quote["notice"] and "Log out" in quote["notice"]
    res = post_order(client)
    assert res.status_code == 422 and "competing live session" in res.get_json()["error"]["message"]


# ----------------------------------------------------------------------------- historical data
@pytest.mark.slow
def test_bars_waiting_when_the_gateway_drops_the_connection_answer_503(start_app):
    """A read waiting on the gateway when its socket closes answers 503 with Retry-After (it
    answered 500: ib_async's "Socket disconnect" went up unhandled), and the next one works."""
    gateway, app, client = start_app()
    query = "/api/v1/bars?symbol=AAPL&duration=1800 S&bar_size=5 secs"
    assert client.get(query).status_code == 200  # the contract is known from here on
    with gateway.stalled():  # the request waits; the reconnect waits for the stall's end
        answers: list = []
        asking = threading.Thread(
            target=lambda: answers.append(client.get(query + "&what=MIDPOINT"))
        )
        asking.start()
        connector = app.extensions["trading"].connector
        wait_for(lambda: connector._history_inflight)  # on its way to the stalled gateway
        gateway.drop_connections()
        asking.join(10)
    res = answers[0]
    assert res.status_code == 503, res.get_json()
    assert res.get_json()["error"]["code"] == "gateway_disconnected"
    assert int(res.headers["Retry-After"]) >= 1
    wait_for(lambda: client.get(query).status_code == 200, timeout=15)  # reconnected: served


@pytest.mark.slow
def test_a_delayed_only_account_is_told_why_it_gets_no_bars(start_app):
    """IB refuses historical bars without a live subscription (162 "No market data
    permissions"): the chart says so, and what would give them."""
    gateway, app, client = start_app(market_data="delayed")
    res = client.get("/api/v1/bars?symbol=AAPL&duration=1800 S&bar_size=1 min")
    assert res.status_code == 502, res.get_json()
    error = res.get_json()["error"]
    assert error["code"] == "history_refused" and "IB error 162" in error["message"]
    assert "live market data subscription" in error["message"]


def test_bars_are_cached_and_a_burst_never_draws_162(start_app):
    gateway, app, client = start_app()
    query = "/api/v1/bars?symbol=AAPL&duration=1800 S&bar_size=5 secs"
    first = client.get(query)
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["cached"] is False and len(body["bars"]) == 360
    assert all(b["low"] <= b["close"] <= b["high"] for b in body["bars"])
    again = client.get(query).get_json()
    assert again["cached"] is True and again["bars"] == body["bars"]
    assert gateway.historical_counts() == (
        1,
        0,
    )  # the identical request IB would refuse within 15 s never left
    # eight different requests for one contract at once: IB refuses the 6th within 2 s
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda i: client.get(
                    f"/api/v1/bars?symbol=AAPL&duration={(i + 2) * 60} S&bar_size=5 secs"
                ),
                range(8),
            )
        )
    assert [a.status_code for a in answers] == [200] * 8, [
        a.get_json() for a in answers if a.status_code != 200
    ]
    assert all(len(a.get_json()["bars"]) for a in answers)
    assert gateway.historical_counts() == (9, 0)


def test_bars_budget_refuses_with_retry_after_instead_of_drawing_162(start_app, monkeypatch):
    import history

    monkeypatch.setattr(history, "WINDOW_MAX", 3)
    gateway, app, client = start_app()
    for minutes in (1, 2, 3):
        assert (
            client.get(
                f"/api/v1/bars?symbol=MSFT&duration={minutes * 60} S&bar_size=1 min"
            ).status_code
            == 200
        )
    res = client.get("/api/v1/bars?symbol=MSFT&duration=240 S&bar_size=1 min")
    assert res.status_code == 429 and res.get_json()["error"]["code"] == "history_paced"
    assert int(res.headers["Retry-After"]) > 0
    bad = client.get("/api/v1/bars?symbol=MSFT&bar_size=7 mins")
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "bar_size"


def test_history_pacer_keeps_a_margin_under_ibs_limits() -> None:
    from history import BarsKey, HistoryBudgetSpent, HistoryPacer

    pacer = HistoryPacer()
    key = BarsKey("AAPL", "STK", "1 D", "5 secs", "TRADES")
    assert [pacer.wait(key, 0.0) for _ in range(5)] == [0.0] * 5
    # the 6th waits: IB refuses it within 2 s of the first, as IB counts arrivals (+0.5 s)
    assert 2.3 < pacer.wait(key, 0.1) <= 2.41
    other = BarsKey("MSFT", "STK", "1 D", "5 secs", "BID_ASK")
    for i in range(22):  # BID_ASK counts twice: 5 + 44 = 49 of 50
        assert pacer.wait(other, 3.0 * i + 3) == 0.0
    with pytest.raises(HistoryBudgetSpent) as spent:
        pacer.wait(other, 70.0)
    assert 500 < spent.value.retry_after <= 600


def test_kill_switch_engaged_during_an_outage_cancels_once_ib_is_back(start_app):
    gateway, app, client = start_app()
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    order_id = post_order(
        client, order_type="LMT", limit_price=round(quote["bid"] * 0.7, 2)
    ).get_json()["id"]
    wait_for(lambda: len(gateway.open_orders()) == 1)
    gateway.outage(seconds=OUTAGE)  # until the clock jumps past its end, however slow the machine
    handler = app.extensions["trading"].handler
    wait_for(lambda: not handler.link_state().reachable)  # the order connection was told
    cancel = client.post(f"/api/v1/orders/{order_id}/cancel")
    assert (
        cancel.status_code == 503 and cancel.get_json()["error"]["code"] == "ib_servers_unreachable"
    )
    # the request waits (up to 10 s) for the broker to confirm the cancels: it is answered
    # once the outage is over, so it runs on a thread of its own meanwhile
    answers: list = []
    body = {"engaged": True, "reason": "outage drill"}
    engage = threading.Thread(
        target=lambda: answers.append(api_client(app).post("/api/v1/kill-switch", json=body))
    )
    engage.start()
    try:
        wait_for(lambda: handler.halted)
        assert post_order(client).status_code in (423, 503)  # halted (and IB unreachable)
        assert gateway.open_orders() and gateway.outage_active()  # nothing cancelled meanwhile
        later(gateway, OUTAGE)  # past the outage's end: 1102
    finally:
        engage.join(20)
    [res] = answers
    assert res.status_code == 200 and res.get_json()["engaged"] is True
    wait_for(lambda: servers(client)["reachable"], timeout=10)
    wait_for(lambda: not gateway.open_orders(), timeout=10)  # the global cancel went after 1102
    wait_for(lambda: order_json(client, order_id)["verdict"] == "cancelled", timeout=10)


def test_a_fill_arriving_while_ib_says_1100_is_recorded_not_dropped(start_app):
    """Some gateways still pass messages on during 1100: nothing is ignored meanwhile."""
    gateway, app, client = start_app()
    gateway.set_fill_delay(30)  # due when the test moves the clock, after the 1100
    order_id = post_order(client, quantity=4).get_json()["id"]
    wait_for(lambda: order_json(client, order_id)["lifecycle"]["status"] == "PreSubmitted")
    lost = "Connectivity between IB and Trader Workstation has been lost."
    for client_id in (999, 1000):
        assert gateway.send_error(client_id, -1, 1100, lost)
    wait_for(lambda: not servers(client)["reachable"])
    later(gateway, 30)
    wait_for(lambda: order_json(client, order_id)["verdict"] == "filled", timeout=10)
    assert not servers(client)["reachable"]  # recorded while IB was still said unreachable
    assert sum(f["shares"] for f in order_json(client, order_id)["lifecycle"]["fills"]) == 4
    restored = "Connectivity between IB and TWS has been restored- data maintained."
    for client_id in (999, 1000):
        gateway.send_error(client_id, -1, 1102, restored)
    wait_for(lambda: servers(client)["reachable"])
    gateway.set_fill_delay(0)
    assert post_order(client).status_code == 202


def test_bad_day_settings_are_validated() -> None:
    from config import ConfigError, load_settings

    settings = load_settings(env={}, dotenv_path=None)
    assert (
        settings.market_data_type,
        settings.sim_market_data,
        settings.sim_nightly_reset,
        settings.risk_delayed_collar_pct,
    ) == (3, "live", "23:45/300", None)
    assert (
        load_settings(env={"SIM_NIGHTLY_RESET": "OFF"}, dotenv_path=None).sim_nightly_reset == "off"
    )
    for key, value in (
        ("SIM_NIGHTLY_RESET", "25:00/10"),
        ("SIM_NIGHTLY_RESET", "23:45"),
        ("MARKET_DATA_TYPE", "5"),
        ("SIM_MARKET_DATA", "some"),
        ("RISK_DELAYED_COLLAR_PCT", "-1"),
    ):
        with pytest.raises(ConfigError) as refused:
            load_settings(env={key: value}, dotenv_path=None)
        assert key in str(refused.value)


@pytest.mark.slow
def test_bars_timeout_answers_504_and_is_not_cached_as_no_bars(start_app, monkeypatch):
    """A historical request the gateway does not answer in time (stalled) is a time-out,
    504: ib_async returns an empty list on its time-out, which was answered 200 with no bars
    and cached for 20 s as the contract's (empty) history."""
    import reader_market

    monkeypatch.setattr(reader_market, "HISTORY_TIMEOUT", 1.0)
    gateway, app, client = start_app()
    query = "/api/v1/bars?symbol=AAPL&duration=3600 S&bar_size=1 min"
    assert client.get(query + "&what=MIDPOINT").status_code == 200  # the contract is known
    with gateway.stalled():  # ended before the heartbeat's 4 s: the connection stays up
        res = client.get(query)
    assert res.status_code == 504, res.get_json()
    error = res.get_json()["error"]
    assert error["code"] == "history_timeout" and "did not answer" in error["message"]
    again = wait_for(lambda: (r := client.get(query)).status_code == 200 and r.get_json())
    assert again["cached"] is False and len(again["bars"]) == 60  # asked again, not "no bars"


def test_a_quote_asked_while_the_gateway_stalls_does_not_hold_up_the_next_ones(
    start_app, fast_heartbeat
):
    """A quote asked during a stall the heartbeat ends (reconnect) was shared with every later
    quote of the symbol: ib_async never ends a request of a connection we closed, so AAPL's
    quotes answered 504 for good after the reconnect, and its orders 503 (no reference price)
    while the header said connected."""
    gateway, app, client = start_app()
    quote = "/api/v1/quote?symbol=AAPL"
    assert client.get(quote).status_code == 200
    with gateway.stalled():  # until the heartbeat (1.5 s) has given up: connections made again
        assert client.get(quote).status_code in (503, 504)  # asked while the gateway is silent
        wait_for(lambda: client.get("/api/v1/health").status_code == 503)
    wait_for(lambda: client.get("/api/v1/health").status_code == 200, timeout=15)
    res = client.get(quote)
    assert res.status_code == 200, res.get_json()
    placed = client.post("/api/v1/orders", json={"symbol": "AAPL", "action": "BUY", "quantity": 1})
    assert placed.status_code == 202, placed.get_json()


def test_a_retried_order_during_an_outage_answers_with_its_order(client, gateway):
    """A script whose POST got no answer retries with the same Idempotency-Key while IB's
    servers are unreachable (1100): it is told its order (placed before the outage), as
    README promises for a repeated key, not 503 'new orders are refused' (read as: not
    placed). A new order is still refused."""
    body = {"symbol": "AAPL", "action": "BUY", "quantity": 1, "order_type": "MKT"}
    key = {"Idempotency-Key": "retry-in-outage"}
    first = client.post("/api/v1/orders", json=body, headers=key)
    assert first.status_code == 202, first.get_json()
    gateway.outage(seconds=OUTAGE)  # until both requests below were answered
    wait_for(lambda: not servers(client)["reachable"])
    retried = client.post("/api/v1/orders", json=body, headers=key)
    assert retried.status_code == 200, retried.get_json()
    assert retried.get_json()["id"] == first.get_json()["id"]
    assert retried.headers["Idempotent-Replayed"] == "true"
    other = client.post("/api/v1/orders", json=body, headers={"Idempotency-Key": "a-new-one"})
    assert (
        other.status_code == 503 and other.get_json()["error"]["code"] == "ib_servers_unreachable"
    )
    assert client.application.extensions["trading"].journal.count() == 1
    gateway.end_outage()
