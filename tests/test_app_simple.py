"""End-to-end through HTTP: the app on the embedded simulated gateway."""

from __future__ import annotations

import collections
import threading
from concurrent.futures import ThreadPoolExecutor

import ib_async.connection
import pytest

from conftest import API_TOKEN, TRADING_CLOCK, api_client, app_settings, wait_for


def post_order(client, wait=False, **fields):
    body = {"symbol": "AAPL", "action": "BUY", "quantity": 1, "order_type": "MKT", **fields}
    return client.post("/api/v1/orders" + ("?wait=1" if wait else ""), json=body)


def order_json(client, order_id):
    return client.get(f"/api/v1/orders/{order_id}").get_json()


def gateway_order_count(gateway):
    return len(gateway.all_orders())


def test_status_reports_both_connections(client, gateway):
    body = client.get("/api/v1/status").get_json()
    assert body["ok"] is True
    assert body["connections"]["reader"]["client_id"] == 999
    assert body["connections"]["orders"]["client_id"] == 1000
    assert body["threads"] == {"reader": True, "orders": True}
    assert body["server_version"] == 178
    assert body["account"] == "DU1234567" and body["paper"] is True
    assert body["queue_depth"] == 0
    assert set(gateway.connected_client_ids()) == {999, 1000}


def test_thirty_concurrent_orders_all_fill(client, gateway):
    def place(i):
        res = post_order(client, quantity=1, symbol="MSFT")
        assert res.status_code == 202, res.get_json()
        return res.get_json()["id"]

    with ThreadPoolExecutor(30) as pool:
        ids = list(pool.map(place, range(30)))
    assert len(set(ids)) == 30

    def all_filled():
        return all(order_json(client, i)["verdict"] == "filled" for i in ids)

    wait_for(all_filled, timeout=30)
    for order_id in ids:
        body = order_json(client, order_id)
        lifecycle = body["lifecycle"]
        statuses = [t["new"] for t in lifecycle["transitions"]]
        assert statuses[-1] == "Filled" and "PreSubmitted" in statuses
        assert lifecycle["order_id"] and lifecycle["perm_id"]
        assert [s["text"] for s in lifecycle["steps"]][:2] == [
            "queued",
            f"sent as orderId {lifecycle['order_id']}",
        ]
        assert lifecycle["fills"] and lifecycle["fills"][0]["commission"] == pytest.approx(1.0)
    # the gateway saw exactly these 30 orders, each once
    refs = sorted(o.order_ref for o in gateway.completed_orders())
    assert refs == sorted(ids)

    def position_is_30():
        rows = client.get("/api/v1/positions").get_json()["positions"]
        return [r for r in rows if r["symbol"] == "MSFT" and r["quantity"] == 30]

    row = wait_for(position_is_30)[0]
    assert row["market_price"] > 0 and row["avg_cost"] > 0
    account = client.get("/api/v1/account").get_json()
    assert account["figures"]["cash"] < 1_000_000 - 30 * 100
    orders = client.get("/api/v1/orders").get_json()["orders"]
    ours = [o for o in orders if o.get("ours")]
    assert {o["id"] for o in ours} >= set(ids)
    assert all(o["client_id"] == 1000 and o["status"] == "Filled" for o in ours)


def test_wait_option_returns_the_verdict(client):
    res = post_order(client, wait=True)
    assert res.status_code == 200
    body = res.get_json()
    assert body["order"]["verdict"] == "filled"
    assert body["url"] == f"/api/v1/orders/{body['id']}"


def test_order_of_another_client_shows_in_orders(client, gateway):
    import test_order

    code = test_order.main(
        [
            "--host",
            "127.0.0.1",
            "--port",
            str(gateway.port),
            "--client-id",
            "7",
            "--symbol",
            "IBM",
            "--settle",
            "0,0,0",
        ]
    )
    assert code == 0

    def seen():
        rows = client.get("/api/v1/orders").get_json()["orders"]
        return [r for r in rows if r["client_id"] == 7 and r["symbol"] == "IBM"]

    row = wait_for(seen, timeout=15)[0]
    assert row["status"] == "Filled" and row["ours"] is False
    detail = client.get(row["url"]).get_json()
    assert detail["perm_id"] == row["perm_id"]


def test_limit_order_modify_and_cancel(client, gateway):
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    far = round(quote["bid"] * 0.8, 2)
    res = post_order(client, order_type="LMT", limit_price=far, quantity=5)
    order_id = res.get_json()["id"]
    wait_for(lambda: order_json(client, order_id)["lifecycle"]["status"] == "Submitted")
    res = client.post(
        f"/api/v1/orders/{order_id}/modify", json={"limit_price": far - 1, "quantity": 7}
    )
    assert res.status_code == 202
    wait_for(
        lambda: [
            o
            for o in gateway.open_orders()
            if o.order_ref == order_id
            and o.total_quantity == 7
            and o.lmt_price == pytest.approx(far - 1)
        ]
    )
    res = client.post(f"/api/v1/orders/{order_id}/cancel")
    assert res.status_code == 202
    # IB's 202 ("Order Canceled") and the Cancelled status arrive as two messages: wait for both
    wait_for(
        lambda: (
            lambda o: (
                o["verdict"] == "cancelled"
                and any(m["code"] == 202 for m in o["lifecycle"]["messages"])
            )
        )(order_json(client, order_id))
    )
    body = order_json(client, order_id)
    assert body["lifecycle"]["transitions"][-1]["new"] == "Cancelled"
    assert not [o for o in gateway.open_orders() if o.order_ref == order_id]
    # a finished order cannot be cancelled again
    assert client.post(f"/api/v1/orders/{order_id}/cancel").status_code == 409


def test_rejected_order_records_the_ib_message(client, gateway):
    """IB reports the rejected order Inactive, then the 201 that says why: ?wait=1 answers with
    both (it answered on the Inactive, without IB's message and reason)."""
    gateway.reject_next_order("Simulated margin check")
    body = post_order(client, wait=True).get_json()
    lifecycle = body["order"]
    assert lifecycle["verdict"] == "rejected"
    assert any(
        m["code"] == 201 and "Simulated margin check" in m["text"] for m in lifecycle["messages"]
    )
    assert (
        lifecycle["verdict_reason"] == "Error 201: Order rejected - reason:Simulated margin check"
    )


def test_validation_delay_still_fills(gateway):
    from app_simple import create_app

    # the production settle (1 + 2 + 1 s) and a validation inside it, at half scale
    gateway.set_validation_delay(0.75)
    app = create_app(
        {
            "SETTINGS": app_settings(
                gateway, settle_first=0.25, settle_validation=0.5, settle_final=0.25
            )
        }
    )
    try:
        client = api_client(app)
        ids = [post_order(client).get_json()["id"] for _ in range(3)]
        wait_for(lambda: all(order_json(client, i)["verdict"] for i in ids), timeout=20)
        for i in ids:
            lifecycle = order_json(client, i)["lifecycle"]
            assert lifecycle["verdict"] == "filled"
            assert lifecycle["transitions"][0]["old"] == "PendingSubmit"
    finally:
        app.extensions["trading"].stop()


def test_informational_10349_does_not_cancel_a_live_order(client, gateway):
    gateway.set_tif_preset_warning(True)
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    res = post_order(client, order_type="LMT", limit_price=round(quote["bid"] * 0.8, 2))
    order_id = res.get_json()["id"]
    wait_for(lambda: order_json(client, order_id)["lifecycle"]["status"] == "Submitted")
    ib_order_id = order_json(client, order_id)["lifecycle"]["order_id"]
    # the gateway now says 10349 about this live order: ib_async would call it Cancelled
    gateway.send_error(1000, ib_order_id, 10349, "Order TIF was set to DAY based on order preset.")
    wait_for(
        lambda: any(
            m["code"] == 10349 for m in order_json(client, order_id)["lifecycle"]["messages"]
        )
    )
    body = order_json(client, order_id)
    assert body["lifecycle"]["status"] == "Submitted"
    assert body["verdict"] != "cancelled"
    assert [o for o in gateway.open_orders() if o.order_ref == order_id]


def test_bad_input_is_refused_and_nothing_reaches_the_gateway(client, gateway):
    before = gateway_order_count(gateway)
    cases = [
        ({"quantity": 0}, "quantity"),
        ({"quantity": -5}, "quantity"),
        ({"quantity": "ten"}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"action": "HOLD"}, "action"),
        ({"symbol": "A$PL"}, "symbol"),
        ({"order_type": "LMT"}, "limit_price"),
        ({"order_type": "STP"}, "stop_price"),
        ({"limit_price": 10}, "limit_price"),
        ({"tif": "FOREVER"}, "tif"),
        ({"extra": 1}, "extra"),
        ({"order_type": "LMT", "limit_price": -1}, "limit_price"),
    ]
    for fields, field in cases:
        res = post_order(client, **fields)
        assert res.status_code == 400, fields
        error = res.get_json()["error"]
        assert error["code"] == "validation_error" and error["field"] == field, (fields, error)
    res = client.post("/api/v1/orders", data="not json", content_type="application/json")
    assert res.status_code == 400 and res.get_json()["error"]["code"] == "invalid_body"
    assert client.get("/api/v1/nope").get_json()["error"]["status"] == 404
    assert client.get("/api/v1/status").get_json()["queue_depth"] == 0
    assert gateway_order_count(gateway) == before


def test_unknown_symbol_is_rejected_without_an_order(client, gateway):
    before = gateway_order_count(gateway)
    res = post_order(client, wait=True, symbol="ZZZZ")
    error = res.get_json()["error"]
    assert res.status_code == 422 and error["code"] == "unknown_symbol"
    assert error["field"] == "symbol"
    assert client.get("/api/v1/quote?symbol=ZZZZ").status_code == 404
    assert gateway_order_count(gateway) == before


@pytest.mark.slow
def test_gateway_down_answers_503_and_queues_nothing(client, gateway):
    before = gateway_order_count(gateway)
    with gateway.down():  # until the test has looked, however slow the machine
        # both connections have seen the gateway go (with only the reader down, the risk
        # gate's quote fails first: 503 gateway_not_answering, also retryable)
        wait_for(
            lambda: {
                c["state"] for c in client.get("/api/v1/status").get_json()["connections"].values()
            }.isdisjoint({"connected"}),
            timeout=15,
        )
        res = post_order(client)
        assert res.status_code == 503
        assert res.get_json()["error"]["code"] == "gateway_unavailable"
        assert client.get("/api/v1/health").status_code == 503
    wait_for(lambda: client.get("/api/v1/status").get_json()["ok"], timeout=15)
    assert gateway_order_count(gateway) == before
    assert post_order(client, wait=True).get_json()["order"]["verdict"] == "filled"


def test_health_is_not_ok_until_the_order_handler_has_matched_its_journal(app, client, monkeypatch):
    """A reconnected order handler takes no order until its journal is matched with the
    gateway (503 reconciling): /health said 200 meanwhile, so a monitor (or a script waiting
    for it) saw the app ready while orders were refused."""
    handler = app.extensions["trading"].handler
    matching, release = threading.Event(), threading.Event()
    reconcile = handler.reconciler.reconcile

    def slow_reconcile(ib):
        matching.set()
        release.wait(10)  # the order thread's loop waits here, as on a long journal
        reconcile(ib)

    monkeypatch.setattr(handler.reconciler, "reconcile", slow_reconcile)
    handler.thread.call_soon(lambda: handler.restart_connection("drill"))
    try:
        assert matching.wait(10) and handler.connected
        refused = post_order(client).get_json()["error"]  # connected: a script retries soon
        assert (refused["code"], refused["message"]) == (
            "reconciling",
            "reconciling the order journal with the gateway; retry shortly",
        )
        health = client.get("/api/v1/health")
        assert health.status_code == 503
        assert health.get_json()["reason"] == (
            "not ready: order-handler (connected, still subscribing or matching orders with "
            "the gateway)"
        )
    finally:
        release.set()
    wait_for(lambda: client.get("/api/v1/health").status_code == 200)
    assert post_order(client).status_code == 202


def test_an_ib_account_the_gateway_does_not_manage_is_named_and_trades_nothing(gateway):
    """IB_ACCOUNT mistyped (DU9999999 on a DU1234567 gateway): the app showed it connected
    (ok: true) with that account's figures all empty, and sent every order, which IB
    rejected. Now neither connection counts as up, each saying why, and no order goes out."""
    from app_simple import create_app

    settings = app_settings(gateway, account="DU9999999", connect_timeout=1)
    app = create_app({"SETTINGS": settings, "TESTING": True})
    try:
        client = api_client(app)
        status = client.get("/api/v1/status").get_json()
        assert status["ok"] is False
        for connection in status["connections"].values():
            assert connection["state"] != "connected"
            assert connection["last_error"] == (
                "ConnectionError: IB_ACCOUNT=DU9999999 is not an account of this gateway (it "
                "manages DU1234567): correct it, or leave it empty for the first one"
            )
        assert post_order(client).status_code == 503
        assert gateway_order_count(gateway) == 0
    finally:
        app.extensions["trading"].stop()


def test_no_route_touches_an_ib_object_from_a_flask_thread(client, monkeypatch):
    """Every byte to the gateway is written by a loop thread, never a request thread."""
    writers = set()
    original = ib_async.connection.Connection.sendMsg  # the socket write under every request

    def spy(self, msg):
        writers.add(threading.current_thread().name)
        return original(self, msg)

    monkeypatch.setattr(ib_async.connection.Connection, "sendMsg", spy)
    order_id = post_order(client, wait=True).get_json()["id"]
    for url in (
        "/",
        "/api/v1/status",
        "/api/v1/account",
        "/api/v1/positions",
        "/api/v1/orders",
        f"/api/v1/orders/{order_id}",
        "/api/v1/executions",
        "/api/v1/quote?symbol=MSFT",
        "/api/v1/health",
    ):
        assert client.get(url).status_code == 200, url
    assert writers and writers <= {"ib-connector", "order-handler"}


def test_a_loop_refuses_blocking_calls_from_its_own_thread(app):
    from loop_thread import WrongThreadError

    handler = app.extensions["trading"].handler

    async def nested():
        async def noop():
            return None

        try:
            handler.thread.call(noop(), 1)
        except WrongThreadError:
            return "refused"
        return "allowed"

    assert handler.thread.call(nested(), 5) == "refused"


def test_index_page_renders(client):
    res = client.get("/")
    assert res.status_code == 200
    assert b"PAPER" in res.data and b"order-form" in res.data


def test_hundred_posts_sharing_ten_idempotency_keys_place_ten_orders(client, gateway):
    def post(n):
        key = f"batch-{n % 10}"
        res = client.post(
            "/api/v1/orders",
            json={"symbol": "IBM", "action": "BUY", "quantity": 1 + n % 10},
            headers={"Idempotency-Key": key},
        )
        assert res.status_code in (200, 202), res.get_json()
        return key, res.get_json()["id"]

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(post, range(100)))
    ids_by_key = {}
    for key, order_id in results:
        ids_by_key.setdefault(key, set()).add(order_id)
    assert all(len(ids) == 1 for ids in ids_by_key.values()) and len(ids_by_key) == 10
    ids = {next(iter(v)) for v in ids_by_key.values()}
    wait_for(lambda: all(order_json(client, i)["verdict"] == "filled" for i in ids), timeout=15)
    refs = [o.order_ref for o in gateway.all_orders()]
    assert sorted(refs) == sorted(ids)
    # same key, different body -> 422; replay -> the original, flagged
    res = client.post(
        "/api/v1/orders",
        json={"symbol": "IBM", "action": "SELL", "quantity": 1},
        headers={"Idempotency-Key": "batch-0"},
    )
    assert res.status_code == 422 and res.get_json()["error"]["code"] == "idempotency_conflict"
    res = client.post(
        "/api/v1/orders",
        json={"symbol": "IBM", "action": "BUY", "quantity": 1, "client_order_id": "batch-0"},
    )
    assert res.status_code == 200 and res.headers["Idempotent-Replayed"] == "true"
    assert res.get_json()["id"] in ids_by_key["batch-0"]
    assert len(gateway.completed_orders()) == 10


def test_kill_switch_endpoint(client, gateway):
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    for _ in range(2):
        post_order(client, order_type="LMT", limit_price=round(quote["bid"] * 0.7, 2))
    wait_for(lambda: len(gateway.open_orders()) == 2)
    res = client.post("/api/v1/kill-switch", json={"engaged": True, "reason": "drill"})
    body = res.get_json()
    assert res.status_code == 200 and body["engaged"] and body["cancel_confirmed"], body
    assert not gateway.open_orders()
    assert post_order(client).status_code == 423
    assert client.get("/api/v1/kill-switch").get_json() == {"engaged": True, "reason": "drill"}
    assert client.post("/api/v1/kill-switch", json={"engaged": "yes"}).status_code == 400
    client.post("/api/v1/kill-switch", json={"engaged": False})
    assert post_order(client).status_code == 202
    # who halted and released trading, and when, stays in the audit table
    rows = client.application.extensions["trading"].journal.audit_rows()
    switched = [(r["source"], r["outcome"]) for r in rows if r["outcome"].startswith("kill")]
    assert switched == [("api", "kill switch released"), ("api", "kill switch engaged: drill")]


def test_the_kill_switch_halts_and_cancels_when_the_journal_cannot_be_written(client, gateway):
    """A full disk must not keep the emergency stop from stopping: it was a 503 that engaged
    nothing and sent no cancel, while the order kept working."""
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    post_order(client, order_type="LMT", limit_price=round(quote["bid"] * 0.7, 2))
    wait_for(lambda: gateway.open_orders())
    journal = client.application.extensions["trading"].journal
    journal.make_read_only()
    try:
        res = client.post("/api/v1/kill-switch", json={"engaged": True, "reason": "disk full"})
        body = res.get_json()
        assert res.status_code == 200 and body["engaged"] and body["cancel_confirmed"], body
        assert body["persisted"] is False
        assert not gateway.open_orders()
        assert post_order(client).status_code == 423
        halted = client.get("/api/v1/kill-switch").get_json()
        assert halted == {"engaged": True, "reason": "disk full"}
    finally:
        journal._query("PRAGMA query_only=OFF", ())  # the disk is writable again


def test_status_and_health_say_when_the_journal_cannot_be_written(client, gateway):
    """A full disk showed only in the log: /status said ok (and the page "connected") while
    new orders were refused and an order's changes were not saved. /status, /state and
    /health name it, and it clears by itself once the journal saves again."""
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    placed = post_order(client, order_type="LMT", limit_price=round(quote["bid"] * 0.7, 2))
    wait_for(lambda: gateway.open_orders())
    assert client.get("/api/v1/status").get_json()["journal"] == {
        "ok": True,
        "since": None,
        "error": None,
        "unsaved": 0,
    }
    journal = client.application.extensions["trading"].journal
    journal.make_read_only()
    try:
        cancel = client.post(f"/api/v1/orders/{placed.get_json()['id']}/cancel")
        assert cancel.status_code == 202, cancel.get_json()
        wait_for(lambda: not gateway.open_orders())  # its Cancelled is not saved
        body = wait_for(
            lambda: (b := client.get("/api/v1/status").get_json())["journal"]["unsaved"] and b
        )
        assert body["ok"] is False and body["journal"]["ok"] is False
        assert "readonly" in body["journal"]["error"] and body["journal"]["since"].endswith("Z")
        assert post_order(client).status_code == 503  # refused: it could not be journaled
        assert client.get("/api/v1/state").get_json()["status"]["journal"]["ok"] is False
        health = client.get("/api/v1/health")
        assert health.status_code == 503 and "journal" in health.get_json()["reason"]
    finally:
        journal._query("PRAGMA query_only=OFF", ())  # the disk has room again
    wait_for(lambda: client.get("/api/v1/status").get_json()["journal"]["ok"])  # the retry saved
    assert client.get("/api/v1/status").get_json()["ok"] is True
    assert client.get("/api/v1/health").status_code == 200


@pytest.mark.slow
def test_sigkill_mid_batch_then_restart_reconciles(gateway, tmp_path):
    """The app process killed with SIGKILL mid-batch; restarted, it accounts for every order."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from conftest import ROOT
    from journal import Journal

    gateway.set_fill_delay(0.5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "IB_MODE": "gateway",
        "IB_HOST": "127.0.0.1",
        "IB_PORT": str(gateway.port),
        "DASHBOARD_PORT": str(port),
        "JOURNAL_PATH": str(tmp_path / "orders.db"),
        "RECONCILE_GRACE": "0.5",
        "SETTLE_FIRST_WAIT": "0.1",
        "SETTLE_VALIDATION_WAIT": "0.1",
        "SETTLE_FINAL_WAIT": "0.1",
        "LOG_LEVEL": "WARNING",
        "API_TOKEN": API_TOKEN,
    }
    base = f"http://127.0.0.1:{port}/api/v1"

    def start():
        # run from this test's own folder: a developer's .env in the repo is not read
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app_simple.py")],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _get(f"{base}/status").get("ok"), timeout=20)
        return proc

    def post(n):
        req = urllib.request.Request(
            f"{base}/orders",
            method="POST",
            data=json.dumps({"symbol": "MSFT", "action": "BUY", "quantity": 1}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                return json.load(res)["id"]
        except OSError:
            return None

    proc = start()
    try:
        accepted = []
        for n in range(20):
            if n == 12:
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
            accepted.append(post(n))
        accepted = [a for a in accepted if a]
        assert 0 < len(accepted) <= 12
        proc = start()
        wait_for(
            lambda: all(
                _get(f"{base}/orders/{i}").get("verdict")
                in ("filled", "not_placed", "not_sent", "cancelled", "rejected")
                for i in accepted
            ),
            timeout=20,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0  # SIGTERM is a graceful shutdown
    journal = Journal(str(tmp_path / "orders.db"))
    try:
        journaled = {e.record.id: e.record for e in journal.load()}
    finally:
        journal.close()
    assert set(accepted) <= set(journaled)
    counts = collections.Counter(o.order_ref for o in gateway.all_orders())
    assert all(n == 1 for n in counts.values()), counts  # nothing resent
    for order_id, record in journaled.items():
        if counts[order_id]:
            assert record.verdict == "filled", record
        else:
            assert record.verdict in ("not_placed", "not_sent"), record
    del time


def _get(url):
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=2) as res:
            return json.load(res)
    except urllib.error.HTTPError as exc:
        return json.load(exc)
    except OSError:
        return {}


def test_reader_works_when_it_is_the_master_api_client():
    """With 999 as the gateway's Master API client id, orders still show (live, not polled)."""
    from app_simple import create_app
    from sim_gateway.controller import SimGateway
    from sim_gateway.server import ServerSettings

    gw = SimGateway(ServerSettings(master_client_id=999, clock_start=TRADING_CLOCK)).start()
    try:
        app = create_app({"SETTINGS": app_settings(gw)})
        try:
            client = api_client(app)
            order_id = post_order(client, wait=True, symbol="IBM").get_json()["id"]
            wait_for(
                lambda: [
                    o
                    for o in client.get("/api/v1/orders").get_json()["orders"]
                    if o["id"] == order_id and o["status"] == "Filled" and o["perm_id"]
                ],
                timeout=15,
            )
            wait_for(
                lambda: [
                    e
                    for e in client.get("/api/v1/executions").get_json()["executions"]
                    if e["order_ref"] == order_id and e["commission"]
                ],
                timeout=15,
            )
        finally:
            app.extensions["trading"].stop()
    finally:
        gw.stop()


def test_stream_slots_are_given_back(client, app):
    feed = app.extensions["trading"].feed
    for _ in range(feed.max_streams + 2):  # the server closes every response, as waitress does
        res = client.head("/api/v1/stream")
        assert res.status_code == 200
        res.close()
    assert feed.open_streams == 0
    res = client.get("/api/v1/stream", buffered=False)
    assert res.status_code == 200
    first = next(res.response)
    assert first.startswith(b"retry:")
    res.close()
    assert feed.open_streams == 0


def test_settings_and_overrides_together_is_one_readable_error():
    from app_simple import create_app
    from config import ConfigError, load_settings

    settings = load_settings(env={}, dotenv_path=None)
    with pytest.raises(ConfigError) as info:
        create_app({"SETTINGS": settings, "settle_first": 0})
    assert info.value.problems == ("give either SETTINGS or overrides, not both",)
    assert str(info.value) == "give either SETTINGS or overrides, not both"


def test_kill_switch_state_etag_moves_when_it_is_engaged_or_released(client):
    """A script polling /kill-switch with If-None-Match learns of a halt (and its release)
    even when no order was working, so nothing else changed."""
    etag = client.get("/api/v1/kill-switch").headers["ETag"]
    for engaged in (True, False):
        assert client.post("/api/v1/kill-switch", json={"engaged": engaged}).status_code == 200
        answer = client.get("/api/v1/kill-switch", headers={"If-None-Match": etag})
        assert answer.status_code == 200, engaged
        assert answer.get_json()["engaged"] is engaged
        etag = answer.headers["ETag"]


@pytest.mark.parametrize(
    "where", [{"host": "127.0.0.1", "port": 0}, {"listen": "127.0.0.1:0 127.0.0.1:0"}]
)
def test_the_port_taken_for_port_0_is_the_one_printed(where):
    """DASHBOARD_PORT=0: the sign-in URL names a port the dashboard listens on, also when
    waitress opens several sockets (a host name with several addresses)."""
    import socket

    from waitress import create_server

    from app_simple import bound_port

    server = create_server(lambda environ, start: [], **where)
    try:
        port = bound_port(server, 0)
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        server.close()
