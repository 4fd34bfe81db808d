"""The JSON API: the webhook, conditional GETs, paging of /orders, the error shape."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest

from conftest import API_TOKEN, api_client, app_settings, loop_paused, wait_for

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SECRET = "webhook-secret-0123456789"


@pytest.fixture
def fuzz_app(gateway):
    """The app with no settle wait and a webhook secret."""
    from app_simple import create_app

    app = create_app(
        {
            "SETTINGS": app_settings(
                gateway,
                settle_first=0,
                settle_validation=0,
                settle_final=0,
                monitor_timeout=0.2,
                webhook_secret=SECRET,
            )
        }
    )
    yield app
    app.extensions["trading"].stop()


def gateway_order_refs(gateway):
    return [o.order_ref for o in gateway.all_orders()]


def test_openapi_document_describes_the_order_schema(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    order = doc["components"]["schemas"]["OrderIn"]
    assert {"symbol", "action", "quantity"} <= set(order["required"])
    assert "TRAIL" in json.dumps(order)
    assert doc["paths"]["/api/v1/orders"]["post"]["requestBody"]["required"] is True


def webhook(client, body, **headers):
    raw = json.dumps(body).encode()
    return client.post(
        "/api/v1/webhook", data=raw, content_type="application/json", headers=headers
    )


def signature(raw: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()


def test_webhook_authenticates_dedups_and_places(fuzz_app, gateway):
    client = fuzz_app.test_client()  # no bearer token: the webhook has its own secret
    alert = {
        "ticker": "MSFT",
        "action": "buy",
        "quantity": 3,
        "alert_id": "tv-1",
        "time": "2026-11-27T10:00:00Z",
    }
    assert webhook(client, alert).status_code == 401
    assert webhook(client, alert, **{"X-Webhook-Secret": "wrong-secret-000000"}).status_code == 401
    assert webhook(client, alert, **{"X-Signature": "sha256=00"}).status_code == 401
    assert fuzz_app.extensions["trading"].journal.count() == 0
    raw = json.dumps(alert).encode()
    res = client.post(
        "/api/v1/webhook",
        data=raw,
        content_type="application/json",
        headers={"X-Signature": signature(raw)},
    )
    assert res.status_code == 202, res.get_json()
    order_id = res.get_json()["id"]
    replay = webhook(client, alert, **{"X-Webhook-Secret": SECRET})
    assert replay.status_code == 200 and replay.get_json()["id"] == order_id
    assert replay.headers["Idempotent-Replayed"] == "true"
    wait_for(lambda: gateway_order_refs(gateway) == [order_id])
    bad = webhook(
        client, {"ticker": "MSFT", "action": "buy", "quantity": -1}, **{"X-Webhook-Secret": SECRET}
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "quantity"
    record = api_client(fuzz_app).get(f"/api/v1/orders/{order_id}").get_json()
    assert record["lifecycle"]["source"] == "webhook"


def test_webhook_is_rate_limited_and_off_without_a_secret(gateway, client):
    assert webhook(client, {"ticker": "MSFT"}).status_code == 404  # no WEBHOOK_SECRET
    from app_simple import create_app

    app = create_app(
        {
            "SETTINGS": app_settings(
                gateway, webhook_secret=SECRET, webhook_rate_per_minute=2, client_id=501
            )
        }
    )
    try:
        hook = app.test_client()
        answers = [
            webhook(
                hook,
                {"ticker": "MSFT", "action": "BUY", "quantity": 1, "alert_id": f"a{n}"},
                **{"X-Webhook-Secret": SECRET},
            )
            for n in range(4)
        ]
        assert [a.status_code for a in answers] == [202, 202, 429, 429]
        # a script that can retry is told when: the first call leaves the 60 s window then
        assert 55 <= int(answers[2].headers["Retry-After"]) <= 60
    finally:
        app.extensions["trading"].stop()


def test_state_agrees_with_the_read_endpoints(client, gateway):
    """/state (every stream frame) is built from the same cached parts as the single GETs."""
    posted = client.post(
        "/api/v1/orders?wait=1",
        json={"symbol": "IBM", "action": "BUY", "quantity": 2, "order_type": "MKT"},
    ).get_json()
    wait_for(
        lambda: [
            e
            for e in client.get("/api/v1/executions").get_json()["executions"]
            if e["order_ref"] == posted["id"]
        ],
        timeout=15,
    )
    state = client.get("/api/v1/state")
    assert state.mimetype == "application/json"
    body = state.get_json()
    account = client.get("/api/v1/account").get_json()
    assert account.pop("data_age") is not None
    positions = client.get("/api/v1/positions").get_json()["positions"]
    executions = client.get("/api/v1/executions").get_json()["executions"]
    orders = client.get("/api/v1/orders").get_json()["orders"]
    # prices move between the GETs: compare what does not move with them
    assert body["account"].keys() == account.keys()
    assert body["account"]["account"] == account["account"]
    assert body["account"]["values"].keys() == account["values"].keys()

    def held(rows):
        return {(p["symbol"], p["quantity"], p["avg_cost"]) for p in rows}

    assert held(body["positions"]) == held(positions)
    assert any(p["symbol"] == "IBM" and p["quantity"] == 2 for p in positions)
    assert body["executions"] == executions
    assert [o["id"] for o in body["orders"]] == [o["id"] for o in orders]
    ours = next(o for o in body["orders"] if o["id"] == posted["id"])
    assert ours["status"] == "Filled" and ours["verdict"] == "filled"

    # brief rows, as /orders has them: the lifecycle is one GET away, at the row's url (the
    # record may still take its commission between two GETs, after the /state above: the
    # three agree once it is quiet)
    def agree() -> tuple[dict, dict] | None:
        rows = client.get("/api/v1/state").get_json()["orders"]
        listed = client.get("/api/v1/orders").get_json()["orders"]
        row, same = (next(o for o in r if o["id"] == posted["id"]) for r in (rows, listed))
        full = client.get(row["url"]).get_json()
        stamps = {row["updated_at"], full["updated_at"], full["lifecycle"]["updated_at"]}
        return (row, full) if row == same and len(stamps) == 1 else None

    row, full = wait_for(agree, timeout=15)
    assert "lifecycle" not in row and row["source"] == "api" and "parent" not in row
    assert full["lifecycle"]["verdict"] == "filled" and full["lifecycle"]["fills"]
    assert body["status"]["ok"] is True and body["version"] >= 1


def test_our_broker_confirmed_final_status_beats_a_stale_reader_row(app):
    """Between a fill and the reader's next refresh, /orders shows what our order connection
    already heard from the broker; a verdict of our own (not_sent) never overrides the broker."""
    import dataclasses

    from order_records import Lifecycle, OrderIntent
    from reader_rows import OrderRow, Snapshot
    from web.reads import _merge

    row = OrderRow(
        perm_id=77,
        order_id=5,
        client_id=1000,
        order_ref="o-1",
        account="DU1",
        symbol="IBM",
        sec_type="STK",
        action="BUY",
        quantity=2,
        order_type="MKT",
        limit_price=None,
        stop_price=None,
        tif="DAY",
        status="Submitted",
        filled=0,
        remaining=2,
        avg_fill_price=None,
        open=True,
    )
    record = Lifecycle(
        id="o-1",
        intent=OrderIntent(symbol="IBM", action="BUY", quantity=2, order_type="MKT"),
        source="api",
        created_at=0.0,
        phase="done",
        perm_id=77,
        status="Filled",
        filled=2,
        remaining=0,
        avg_fill_price=180.5,
        verdict="filled",
    )
    snap = Snapshot(
        connection=None,
        account=None,
        positions=(),
        orders=(row,),
        executions=(),
        updated_at=None,
        orders_updated_at=None,
    )
    with app.test_request_context():
        [merged] = _merge(snap, [record])
        assert (merged["status"], merged["open"], merged["filled"], merged["avg_fill_price"]) == (
            "Filled",
            False,
            2,
            180.5,
        )
        ours_only = dataclasses.replace(record, status="Cancelled", verdict="not_sent")
        [kept] = _merge(snap, [ours_only])
        assert (kept["status"], kept["open"]) == ("Submitted", True)


READS = [
    "/api/v1/status",
    "/api/v1/state",
    "/api/v1/account",
    "/api/v1/positions",
    "/api/v1/executions",
    "/api/v1/executions.csv",
    "/api/v1/orders",
    "/api/v1/orders?status=open&limit=5",
    "/api/v1/kill-switch",
    "/api/v1/health",
    "/api/v1/openapi.json",
]


def revalidates(client, url: str) -> bool:
    """200 with a weak ETag; the same ETag back gives 304 with no body (unless the data
    changed in between: then False, and the caller asks again)."""
    first = client.get(url)
    assert first.status_code == 200, (url, first.data)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and etag.endswith('"')
    again = client.get(url, headers={"If-None-Match": f'"other", {etag}'})
    if again.status_code == 200:
        return False
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    return True


def test_read_endpoints_answer_304_while_their_data_has_not_changed(fuzz_app, monkeypatch):
    import web.common

    monkeypatch.setattr(web.common, "COMPRESS_FROM", 0)  # one order: compress the small /state too
    client = api_client(fuzz_app)
    posted = client.post(
        "/api/v1/orders?wait=1", json={"symbol": "IBM", "action": "BUY", "quantity": 1}
    ).get_json()
    wait_for(lambda: client.get("/api/v1/account").status_code == 200)
    for url in READS + [f"/api/v1/orders/{posted['id']}"]:
        wait_for(lambda url=url: revalidates(client, url), timeout=15)
    # /state is shared for a second at most: its status's clock and ages then move on
    first = client.get("/api/v1/state").get_json()["status"]["now"]
    wait_for(lambda: client.get("/api/v1/state").get_json()["status"]["now"] > first, timeout=10)
    # compressed for a client that accepts gzip: the same JSON, built once per version
    plain = client.get("/api/v1/state")
    packed = client.get("/api/v1/state", headers={"Accept-Encoding": "gzip, deflate"})
    assert plain.headers["Vary"] == packed.headers["Vary"] == "Accept-Encoding"
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert len(packed.data) < len(plain.data)
    assert json.loads(gzip.decompress(packed.data))["orders"] == plain.get_json()["orders"]
    for refuses in ("gzip;q=0", "identity", "deflate, br"):  # what the client takes, not more
        answer = client.get("/api/v1/state", headers={"Accept-Encoding": refuses})
        assert "Content-Encoding" not in answer.headers, refuses
    long = ", ".join(f"x-encoding-{i};q=0.1" for i in range(20)) + ", gzip"  # a long header too
    assert (
        client.get("/api/v1/state", headers={"Accept-Encoding": long}).headers["Content-Encoding"]
        == "gzip"
    )
    # a change gives a new ETag: the old one no longer matches
    etags = {url: client.get(url).headers["ETag"] for url in ("/api/v1/orders", "/api/v1/state")}
    client.post("/api/v1/orders?wait=1", json={"symbol": "MSFT", "action": "BUY", "quantity": 1})
    for url, etag in etags.items():
        changed = client.get(url, headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["ETag"] != etag
    # an unknown order is 404, whatever the client claims to have
    missing = client.get("/api/v1/orders/nope", headers={"If-None-Match": "*"})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=!!", "cursor"),
        ("cursor=bm90LWpzb24", "cursor"),
        ("symbol=1BM", "symbol"),
        ("status=bogus", "status"),
        ("since=yesterday", "since"),
        ("since=-5", "since"),
        ("since=1796050800000", "since"),  # epoch milliseconds: every order would be older
    ],
)
def test_orders_query_errors_name_the_field(client, query, field):
    res = client.get(f"/api/v1/orders?{query}", headers={"If-None-Match": "*"})
    body = res.get_json()
    assert res.status_code == 400, body
    assert set(body) == {"error"} and body["error"]["status"] == 400
    assert body["error"]["code"] == "validation_error" and body["error"]["field"] == field


@pytest.mark.parametrize(
    "since, hint",
    [("2026-13-01", "ISO 8601 time such as"), ("2026-12-01T10:00:00+01:00", "sent as %2B")],
)
def test_a_since_that_is_no_time_says_what_a_time_looks_like(client, since, hint):
    """A bad date (month 13), or an offset whose unescaped + arrived as a space, was refused
    as 'Input should be a valid number', which sent the script author looking for a number."""
    res = client.get(f"/api/v1/orders?since={since}")  # the + unescaped, as curl sends it
    assert res.status_code == 400
    assert hint in res.get_json()["error"]["message"]


def test_orders_pages_and_filters(fuzz_app):
    client = api_client(fuzz_app)
    t0 = time.time()
    ids = [
        client.post(
            "/api/v1/orders?wait=1", json={"symbol": symbol, "action": "BUY", "quantity": 1}
        ).get_json()["id"]
        for symbol in ("IBM", "MSFT", "IBM", "AAPL", "IBM")
    ]
    wait_for(lambda: len(client.get("/api/v1/orders").get_json()["orders"]) == 5)
    full = client.get("/api/v1/orders").get_json()
    assert full["next_cursor"] is None and {o["id"] for o in full["orders"]} == set(ids)
    pages, cursor = [], None
    while True:
        page = client.get(
            "/api/v1/orders",
            query_string={"limit": 2, "cursor": cursor} if cursor else {"limit": 2},
        ).get_json()
        pages.append([o["id"] for o in page["orders"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == [o["id"] for o in full["orders"]]
    ibm = client.get("/api/v1/orders?symbol=ibm").get_json()["orders"]
    assert sorted(o["id"] for o in ibm) == sorted(ids[i] for i in (0, 2, 4))
    assert client.get("/api/v1/orders?status=open").get_json()["orders"] == []
    assert len(client.get("/api/v1/orders?status=completed").get_json()["orders"]) == 5
    assert len(client.get(f"/api/v1/orders?since={t0 - 1}").get_json()["orders"]) == 5
    assert client.get(f"/api/v1/orders?since={time.time() + 60}").get_json()["orders"] == []
    iso = datetime.fromtimestamp(t0 - 1, UTC).isoformat()
    assert len(client.get("/api/v1/orders", query_string={"since": iso}).get_json()["orders"]) == 5


def test_our_fills_show_their_commission_though_only_the_order_connection_is_told(
    fuzz_app, gateway
):
    """IB sends a fill's commission report to the client that placed it (the order
    connection) and the Master API client only: the reader, not the master, listed our own
    fills without a commission. It takes them from the order connection's records."""
    client = api_client(fuzz_app)
    posted = client.post(
        "/api/v1/orders?wait=1", json={"symbol": "IBM", "action": "BUY", "quantity": 1}
    ).get_json()
    handler = fuzz_app.extensions["trading"].handler
    told = wait_for(lambda: [f.commission for f in handler.get(posted["id"]).fills if f.commission])
    row = wait_for(
        lambda: [
            e
            for e in client.get("/api/v1/executions").get_json()["executions"]
            if e["order_ref"] == posted["id"] and e["commission"] is not None
        ]
    )[0]
    assert [row["commission"]] == told and told[0] > 0


def test_a_poller_gets_no_304_while_the_reader_is_down(fuzz_app, gateway):
    """A script polling with If-None-Match sees data_age grow once the reader has lost the
    gateway: a 304 would keep the copy it fetched while connected, its age frozen there."""
    client = api_client(fuzz_app)
    wait_for(lambda: client.get("/api/v1/account").status_code == 200)
    urls = ["/api/v1/account", "/api/v1/positions", "/api/v1/orders", "/api/v1/executions"]
    for url in urls:
        wait_for(lambda url=url: revalidates(client, url), timeout=15)
    gateway.stop()
    wait_for(lambda: not fuzz_app.extensions["trading"].connector.connected)
    tags = {url: client.get(url).headers["ETag"] for url in urls}  # nothing moves them now
    for url in urls:
        first = client.get(url, headers={"If-None-Match": tags[url]})
        assert first.status_code == 200, url
        age = first.get_json()["data_age"]
        assert wait_for(
            lambda url=url, age=age: (
                client.get(url, headers={"If-None-Match": tags[url]}).get_json()["data_age"] > age
            ),
            timeout=10,
        )
    # what does not come from the reader still revalidates
    assert revalidates(client, "/api/v1/kill-switch")


def test_waitress_keeps_the_connection_open_after_a_304():
    """waitress 3.0.2 closes every connection after a 304; waitress_compat keeps it open, so a
    polling script's If-None-Match does not cost a new connection each time."""
    import http.client
    import threading

    from waitress import create_server, wasyncore
    from waitress.channel import HTTPChannel

    import waitress_compat

    def app(environ, start_response):
        if environ.get("HTTP_IF_NONE_MATCH"):
            start_response("304 Not Modified", [("ETag", 'W/"1"')])
            return [b""]
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    def closes_after_304() -> bool:
        server = create_server(app, host="127.0.0.1", port=0, threads=1)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=5)
        try:
            conn.request("GET", "/", headers={"If-None-Match": 'W/"1"'})
            res = conn.getresponse()
            res.read()
            assert res.status == 304
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"ok"  # the same connection serves on
            return res.will_close
        finally:
            conn.close()
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            thread.join(5)
            server.task_dispatcher.shutdown(timeout=5)

    original = HTTPChannel.task_class
    try:
        assert closes_after_304()  # waitress as it is
        waitress_compat.install()
        assert not closes_after_304()
    finally:
        HTTPChannel.task_class = original


@pytest.mark.slow
def test_orders_and_executions_stay_304_while_prices_move(fuzz_app):
    """A held position's price moves the account and positions every second (live marks); a
    poller of /orders and /executions still gets 304 while no order or fill changed."""
    client = api_client(fuzz_app)
    placed = client.post(
        "/api/v1/orders?wait=1", json={"symbol": "IBM", "action": "BUY", "quantity": 1}
    )
    assert placed.status_code == 200, placed.get_json()
    services = fuzz_app.extensions["trading"]
    connector = services.connector
    wait_for(lambda: connector.snapshot().executions)

    def order_versions() -> tuple:  # what the orders' and fills' ETags are made of
        snap = connector.snapshot()
        return (snap.orders_version, snap.executions_version, services.handler.version)

    for _attempt in range(3):
        before = order_versions()
        tags = {
            url: client.get(url).headers["ETag"] for url in ("/api/v1/orders", "/api/v1/executions")
        }
        seen = connector.snapshot()
        wait_for(lambda seen=seen: connector.snapshot().version > seen.version + 1, timeout=10)
        if order_versions() == before:
            break
        # the order itself changed meanwhile (its commission report landing late on a busy
        # machine): that rightly changes the ETag; measure again
    else:
        pytest.fail("the order changed in every window")
    for url, etag in tags.items():
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304, (url, again.status_code)
    # a new order is a new /orders (and, once it fills, a new /executions)
    client.post("/api/v1/orders?wait=1", json={"symbol": "IBM", "action": "BUY", "quantity": 1})
    for url, etag in tags.items():
        wait_for(
            lambda url=url, etag=etag: (
                client.get(url, headers={"If-None-Match": etag}).status_code == 200
            )
        )


def test_positions_etag_follows_the_price_of_a_held_position(fuzz_app):
    """A poller of /positions with If-None-Match gets the new market price and P&L as soon
    as they move, not a 304 that keeps the old figures until the next fill."""
    client = api_client(fuzz_app)
    placed = client.post(
        "/api/v1/orders?wait=1", json={"symbol": "IBM", "action": "BUY", "quantity": 1}
    )
    assert placed.status_code == 200, placed.get_json()

    def ibm() -> dict | None:
        rows = client.get("/api/v1/positions").get_json()["positions"]
        return next((r for r in rows if r["symbol"] == "IBM" and r["market_price"]), None)

    connector = fuzz_app.extensions["trading"].connector
    wait_for(ibm)
    wait_for(lambda: any(e.commission is not None for e in connector.snapshot().executions))
    first = client.get("/api/v1/positions")
    etag = first.headers["ETag"]
    [held] = [r for r in first.get_json()["positions"] if r["symbol"] == "IBM"]
    moved = wait_for(lambda: (row := ibm()) and row["market_price"] != held["market_price"] and row)
    again = client.get("/api/v1/positions", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag
    [now] = [r for r in again.get_json()["positions"] if r["symbol"] == "IBM"]
    assert now["market_price"] != held["market_price"], (held, now, moved)


def test_an_accepted_order_is_in_state_before_the_broker_hears_of_it(client):
    """The dashboard re-reads /state right after a POST: the new order is there (and a poller's
    ETag moves) while the order thread has not even started on it."""
    services = client.application.extensions["trading"]
    first = client.get("/api/v1/state")
    with loop_paused(services.handler.thread):  # the order thread takes nothing
        posted = client.post(
            "/api/v1/orders",
            json={"symbol": "IBM", "action": "BUY", "quantity": 1, "order_type": "MKT"},
        )
        assert posted.status_code == 202, posted.get_json()
        order_id = posted.get_json()["order"]["id"]
        again = client.get("/api/v1/state", headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 200
        [row] = [o for o in again.get_json()["orders"] if o["id"] == order_id]
        assert row["phase"] == "queued", row


def test_another_clients_order_enters_since_once_its_fill_is_known(app):
    """``/orders?since=`` dates another client's order by its last fill. The fill can come in
    on a later refresh than the order row (a partial fill: the row's filled count is in the
    open-order list, the execution in the next sweep); the page, its cache and its ETag then
    change with it."""
    import dataclasses

    from reader_rows import ExecutionRow, OrderRow, Snapshot
    from web.common import Records
    from web.reads import _order_rows, _orders_key

    row = OrderRow(
        perm_id=111,
        order_id=5,
        client_id=7,
        order_ref="",
        account="DU1",
        symbol="IBM",
        sec_type="STK",
        action="BUY",
        quantity=3,
        order_type="LMT",
        limit_price=150.0,
        stop_price=None,
        tif="DAY",
        status="Submitted",
        filled=1,
        remaining=2,
        avg_fill_price=150.0,
        open=True,
    )
    fill = ExecutionRow(
        exec_id="e1",
        perm_id=111,
        order_id=5,
        client_id=7,
        order_ref="",
        time="2026-12-02T15:00:05+00:00",
        account="DU1",
        symbol="IBM",
        side="BUY",
        shares=1,
        price=150.0,
        commission=1.0,
        currency="USD",
        realized_pnl=None,
    )
    before = Snapshot(None, None, (), (row,), (), None, None, 4, 4, 1)
    after = dataclasses.replace(before, executions=(fill,), version=5, executions_version=2)
    ours = Records(0, [])
    assert _orders_key(before, ours) != _orders_key(after, ours)
    with app.test_request_context():
        [first] = _order_rows(app.extensions["trading"], before, ours, _orders_key(before, ours))
        [then] = _order_rows(app.extensions["trading"], after, ours, _orders_key(after, ours))
    assert first.at is None
    assert then.at == datetime.fromisoformat(fill.time).timestamp()


def test_status_etag_follows_what_status_says_not_only_the_data_version(client):
    """A request waiting in the order queue moves no record, yet /status shows it
    (queue_depth): a poller with If-None-Match gets the new figure, not a 304."""
    services = client.application.extensions["trading"]
    wait_for(lambda: client.get("/api/v1/status").get_json()["ok"])
    first = client.get("/api/v1/status")
    assert first.get_json()["queue_depth"] == 0
    etag, state_etag = first.headers["ETag"], client.get("/api/v1/state").headers["ETag"]
    with loop_paused(services.handler.thread):  # the order thread takes nothing
        assert client.post("/api/v1/orders/cancel-all").status_code == 202
        wait_for(
            lambda: (
                client.get("/api/v1/status", headers={"If-None-Match": etag}).status_code == 200
            ),
            timeout=10,
        )
        answer = client.get("/api/v1/status", headers={"If-None-Match": etag})
        assert answer.get_json()["queue_depth"] == 1 and answer.headers["ETag"] != etag
        whole = client.get("/api/v1/state", headers={"If-None-Match": state_etag})
        assert whole.status_code == 200 and whole.get_json()["status"]["queue_depth"] == 1


def test_the_fills_csv_says_what_the_json_says(fuzz_app):
    """/executions.csv and /executions list the same fills with the same values; its times
    are the API's (ISO 8601 UTC with milliseconds, ``...Z``), so a script can match a row of
    one with the other (the CSV wrote IB's text: ``2026-11-30T15:00:01+00:00``)."""
    import csv
    import io

    client = api_client(fuzz_app)
    empty = client.get("/api/v1/executions.csv")
    assert empty.status_code == 200 and empty.mimetype == "text/csv"
    assert list(csv.DictReader(io.StringIO(empty.get_data(as_text=True)))) == []
    placed = client.post(
        "/api/v1/orders?wait=1", json={"symbol": "IBM", "action": "BUY", "quantity": 1}
    )
    assert placed.status_code == 200, placed.get_json()
    connector = fuzz_app.extensions["trading"].connector
    wait_for(lambda: [e for e in connector.snapshot().executions if e.commission is not None])
    [fill] = client.get("/api/v1/executions").get_json()["executions"]
    [row] = csv.DictReader(io.StringIO(client.get("/api/v1/executions.csv").get_data(as_text=True)))
    assert row["time"] == fill["time"] and fill["time"].endswith("Z")
    assert row == {k: "" if v is None else str(v) for k, v in fill.items()}


def test_a_fills_csv_cell_never_starts_a_spreadsheet_formula(client, gateway):
    """Another client's order reference is text anyone with API access to the gateway writes:
    ``=HYPERLINK(...)`` in fills.csv ran as a formula when the trader opened the file in a
    spreadsheet. A text cell starting with = + - @ (or a tab/CR) is written with a leading '."""
    import asyncio
    import csv
    import io
    import threading

    from ib_async import IB, MarketOrder, Stock

    ref = '=HYPERLINK("http://x","y")'

    async def another_client() -> None:  # on a loop of its own, closed with its socket
        ib = IB()
        await ib.connectAsync("127.0.0.1", gateway.port, clientId=5, timeout=10)
        try:
            ib.placeOrder(Stock("IBM", "SMART", "USD"), MarketOrder("BUY", 1, orderRef=ref))
            await asyncio.sleep(0.5)
        finally:
            ib.disconnect()
            await asyncio.sleep(0.05)  # the transport closes on the loop

    client_thread = threading.Thread(target=asyncio.run, args=(another_client(),))
    client_thread.start()
    client_thread.join(20)

    def rows():
        text = client.get("/api/v1/executions.csv").get_data(as_text=True)
        return [r for r in csv.DictReader(io.StringIO(text)) if "HYPERLINK" in r["order_ref"]]

    [row] = wait_for(rows, timeout=10)
    assert row["order_ref"] == "'" + ref
    fills = client.get("/api/v1/executions").get_json()["executions"]
    assert [f["order_ref"] for f in fills if "HYPERLINK" in f["order_ref"]] == [ref]  # JSON as is


@pytest.mark.parametrize(
    "method, url, allowed",
    [
        ("put", "/api/v1/orders", {"GET", "POST"}),
        ("delete", "/api/v1/orders/o-1", {"GET"}),
        ("get", "/api/v1/orders/o-1/cancel", {"POST"}),
        ("post", "/api/v1/executions.csv", {"GET"}),
    ],
)
def test_a_method_not_allowed_says_which_are(client, method, url, allowed):
    """A 405 carries Allow (HTTP requires it), in the API's error shape: the JSON error
    dropped the header werkzeug's own answer has, so a client could not tell what to use."""
    res = getattr(client, method)(url)
    assert res.status_code == 405
    assert res.get_json()["error"]["code"] == "method_not_allowed"
    assert allowed <= {m.strip() for m in res.headers.get("Allow", "").split(",")}


@pytest.mark.parametrize(
    "query, field",
    [
        ("/orders?symbol=IBM&symbol=MSFT", "symbol"),
        ("/orders?status=open&status=completed", "status"),
        ("/orders?limit=5&limit=50", "limit"),
        ("/quote?symbol=AAPL&symbol=MSFT", "symbol"),
        ("/bars?symbol=AAPL&bar=1m&bar=1D", "bar"),
    ],
)
def test_a_parameter_given_twice_is_refused_not_half_read(client, query, field):
    """``symbol=IBM&symbol=MSFT`` answered IBM's orders only (the first value; the second
    was dropped without a word), so a script asking for both read 'MSFT: no orders'."""
    res = client.get(f"/api/v1{query}")
    assert res.status_code == 400, res.get_json()
    error = res.get_json()["error"]
    assert (error["code"], error["field"]) == ("validation_error", field)
