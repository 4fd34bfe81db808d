"""The JSON API as a contract: OpenAPI fuzzing, the webhook, the error shape."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from conftest import API_TOKEN, api_client, app_settings, wait_for

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SECRET = "webhook-secret-0123456789"


@pytest.fixture
def fuzz_app(gateway):
    """The app with no settle wait (fuzzed valid orders finish at once)."""
    from app_simple import create_app
    app = create_app({"SETTINGS": app_settings(
        gateway, settle_first=0, settle_validation=0, settle_final=0, monitor_timeout=0.2,
        webhook_secret=SECRET)})
    yield app
    app.extensions["trading"].stop()


def gateway_order_refs(gateway):
    return [o.order_ref for o in gateway.all_orders()]


def fuzz(schema, mode, examples, check):
    """Run ``examples`` generated cases per operation through ``check``."""
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            check(operation, case, case.call(headers=AUTH))

        run()


@pytest.mark.slow
def test_fuzzing_valid_requests_never_gives_5xx(fuzz_app, gateway):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)
    accepted = []

    def check(operation, case, response):
        assert response.status_code < 500, (case.path, case.body, response.text)
        if (operation.method.upper(), operation.path) == ("POST", "/api/v1/orders") \
                and response.status_code in (200, 202):
            accepted.append(response.json()["id"])

    fuzz(schema, GenerationMode.POSITIVE, 150, check)
    assert set(gateway_order_refs(gateway)) <= set(accepted)


@pytest.mark.slow
def test_fuzzing_invalid_requests_places_nothing(fuzz_app, gateway):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app)
    statuses = []

    def check(operation, case, response):
        assert response.status_code < 500, (case.path, case.body, response.text)
        if operation.method.upper() == "POST":
            statuses.append(response.status_code)
            assert response.status_code >= 400, (case.path, case.body, response.text)
            body = response.json()
            assert set(body) == {"error"} and body["error"]["status"] == response.status_code

    fuzz(schema, GenerationMode.NEGATIVE, 150, check)
    assert len(statuses) > 300
    assert fuzz_app.extensions["trading"].journal.count() == 0  # nothing queued, ever
    assert gateway_order_refs(gateway) == []


def test_openapi_document_describes_the_order_schema(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    order = doc["components"]["schemas"]["OrderIn"]
    assert {"symbol", "action", "quantity"} <= set(order["required"])
    assert "TRAIL" in json.dumps(order)
    assert doc["paths"]["/api/v1/orders"]["post"]["requestBody"]["required"] is True


def webhook(client, body, **headers):
    raw = json.dumps(body).encode()
    return client.post("/api/v1/webhook", data=raw, content_type="application/json",
                       headers=headers)


def signature(raw: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()


def test_webhook_authenticates_dedups_and_places(fuzz_app, gateway):
    client = fuzz_app.test_client()  # no bearer token: the webhook has its own secret
    alert = {"ticker": "MSFT", "action": "buy", "quantity": 3, "alert_id": "tv-1",
             "time": "2026-11-27T10:00:00Z"}
    assert webhook(client, alert).status_code == 401
    assert webhook(client, alert, **{"X-Webhook-Secret": "wrong-secret-000000"}).status_code == 401
    assert webhook(client, alert, **{"X-Signature": "sha256=00"}).status_code == 401
    assert fuzz_app.extensions["trading"].journal.count() == 0
    raw = json.dumps(alert).encode()
    res = client.post("/api/v1/webhook", data=raw, content_type="application/json",
                      headers={"X-Signature": signature(raw)})
    assert res.status_code == 202, res.get_json()
    order_id = res.get_json()["id"]
    replay = webhook(client, alert, **{"X-Webhook-Secret": SECRET})
    assert replay.status_code == 200 and replay.get_json()["id"] == order_id
    assert replay.headers["Idempotent-Replayed"] == "true"
    wait_for(lambda: gateway_order_refs(gateway) == [order_id])
    bad = webhook(client, {"ticker": "MSFT", "action": "buy", "quantity": -1},
                  **{"X-Webhook-Secret": SECRET})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "quantity"
    record = api_client(fuzz_app).get(f"/api/v1/orders/{order_id}").get_json()
    assert record["lifecycle"]["source"] == "webhook"


def test_webhook_is_rate_limited_and_off_without_a_secret(gateway, client):
    assert webhook(client, {"ticker": "MSFT"}).status_code == 404  # no WEBHOOK_SECRET
    from app_simple import create_app
    app = create_app({"SETTINGS": app_settings(gateway, webhook_secret=SECRET,
                                               webhook_rate_per_minute=2, client_id=501)})
    try:
        hook = app.test_client()
        codes = [webhook(hook, {"ticker": "MSFT", "action": "BUY", "quantity": 1,
                                "alert_id": f"a{n}"}, **{"X-Webhook-Secret": SECRET}).status_code
                 for n in range(4)]
        assert codes == [202, 202, 429, 429]
    finally:
        app.extensions["trading"].stop()


def test_state_agrees_with_the_read_endpoints(client, gateway):
    """/state (every stream frame) is built from the same cached parts as the single GETs."""
    posted = client.post("/api/v1/orders?wait=1", json={
        "symbol": "IBM", "action": "BUY", "quantity": 2, "order_type": "MKT"}).get_json()
    wait_for(lambda: [e for e in client.get("/api/v1/executions").get_json()["executions"]
                      if e["order_ref"] == posted["id"]], timeout=5)
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
    assert ours["status"] == "Filled" and ours["lifecycle"]["verdict"] == "filled"
    assert body["status"]["ok"] is True and body["version"] >= 1


def test_our_broker_confirmed_final_status_beats_a_stale_reader_row(app):
    """Between a fill and the reader's next refresh, /orders shows what our order connection
    already heard from the broker; a verdict of our own (not_sent) never overrides the broker."""
    import dataclasses

    from api import _merge
    from ib_connector import OrderRow, Snapshot
    from order_records import Lifecycle, OrderIntent

    row = OrderRow(perm_id=77, order_id=5, client_id=1000, order_ref="o-1", account="DU1",
                   symbol="IBM", sec_type="STK", action="BUY", quantity=2, order_type="MKT",
                   limit_price=None, stop_price=None, tif="DAY", status="Submitted", filled=0,
                   remaining=2, avg_fill_price=None, open=True)
    record = Lifecycle(id="o-1", intent=OrderIntent(symbol="IBM", action="BUY", quantity=2,
                                                    order_type="MKT"),
                       source="api", created_at=0.0, phase="done", perm_id=77, status="Filled",
                       filled=2, remaining=0, avg_fill_price=180.5, verdict="filled")
    snap = Snapshot(connection=None, account=None, positions=(), orders=(row,), executions=(),
                    updated_at=None, orders_updated_at=None)
    with app.test_request_context():
        [merged] = _merge(snap, [record], detail=False)
        assert (merged["status"], merged["open"], merged["filled"], merged["avg_fill_price"]) \
            == ("Filled", False, 2, 180.5)
        ours_only = dataclasses.replace(record, status="Cancelled", verdict="not_sent")
        [kept] = _merge(snap, [ours_only], detail=False)
        assert (kept["status"], kept["open"]) == ("Submitted", True)
