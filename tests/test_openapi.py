"""The generated OpenAPI document as a contract: every route is in it, and the server keeps it.

schemathesis fuzzes every operation (the state-changing ones too, against the simulator) and
checks more than "no 5xx": status codes, content types, response bodies and headers must be the
documented ones, and (negative mode) invalid input must be refused.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import API_TOKEN, api_client, app_settings, wait_for

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
# schemathesis's WSGI transport asks for gzip like requests does but never decodes it (an HTTP
# client would): ask for plain bodies (the gzip answers have their own test in test_api.py)
PLAIN = {"Accept-Encoding": "identity"}
SECRET = "webhook-secret-0123456789"
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Engaging the kill switch waits for the broker to confirm the cancels: fewer examples.
EXAMPLES = {("POST", "/api/v1/kill-switch"): 8}
# Generated cases per operation: 20 in every run (the hypothesis profile "suite", 500 examples),
# ten times more with `--hypothesis-profile=deep`
FUZZ_EXAMPLES = max(20, settings().max_examples // 25)


@pytest.fixture
def fuzz_app(gateway):
    """The app with no settle wait (fuzzed valid orders finish at once) and a webhook."""
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


def key(operation) -> tuple[str, str]:
    return operation.method.upper(), operation.path


def test_every_route_is_documented(app):
    """Every url_map rule is in the document with each of its methods, but the browser pages."""
    from openapi import NOT_API, api_rules

    doc = api_client(app).get("/api/v1/openapi.json").get_json()
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    from openapi import PATH_ARG

    routes = {
        (m, PATH_ARG.sub(r"{\1}", rule.rule))
        for rule in api_rules(app)
        for m in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes == documented
    assert len(documented) >= 20
    # the left-out rules are exactly the browser's pages and files (HTML, not JSON)
    pages = {rule.rule for rule in app.url_map.iter_rules()} - {r.rule for r in api_rules(app)}
    assert pages == NOT_API
    assert all(not page.startswith("/api/") for page in pages)


def test_the_document_says_which_operations_need_the_token(app):
    """An operation marked ``security: []`` answers without credentials; every other one
    answers an anonymous caller 401 (the GETs without path parameters, tried here)."""
    doc = api_client(app).get("/api/v1/openapi.json").get_json()
    anonymous = app.test_client()
    tried = 0
    for path, ops in doc["paths"].items():
        op = ops.get("get")
        if op is None or "{" in path or path.endswith("/stream"):
            continue
        public = op.get("security") == []
        status = anonymous.get(path).status_code
        assert (status != 401) is public, (path, status, op.get("security"))
        tried += 1
    assert tried >= 15


def test_document_types_every_answer(app):
    doc = api_client(app).get("/api/v1/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok, (method, path)
            for code in ok:
                [(media, body)] = op["responses"][code]["content"].items()
                schema = body["schema"]
                assert schema != {"type": "object"}, (method, path, "untyped answer")
                assert (
                    "$ref" in schema or media != "application/json" or path.endswith("openapi.json")
                ), (method, path)
            assert op["responses"]["default"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorOut"
            }
    text = str(doc)
    assert "'gt'" not in text and "'le'" not in text  # only JSON Schema keywords
    limit = {p["name"]: p for p in doc["paths"]["/api/v1/orders"]["get"]["parameters"]}["limit"]
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}


def test_an_unhealthy_answer_is_the_documented_one(client, gateway):
    """/health's 503 is its own body (ok false and the reason, for monitors): the document
    said it was the error shape, so a typed client failed to read it."""
    from schemas_out import HealthOut

    doc = client.get("/api/v1/openapi.json").get_json()
    [(media, body)] = doc["paths"]["/api/v1/health"]["get"]["responses"]["503"]["content"].items()
    assert (media, body["schema"]) == (
        "application/json",
        {"$ref": "#/components/schemas/HealthOut"},
    )
    gateway.outage(seconds=600)
    health = wait_for(lambda: (res := client.get("/api/v1/health")).status_code == 503 and res)
    gateway.end_outage()
    answer = HealthOut.model_validate(health.get_json())
    assert answer.ok is False and "IB servers unreachable" in (answer.reason or "")


def fuzz(app, mode: GenerationMode, examples: int, checks: list, after=None) -> list:
    """Run generated cases of every operation through ``checks``; returns (operation key,
    status) of every answer."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, headers=AUTH)
    seen: list[tuple[tuple[str, str], int]] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]  # an Err result raises here, as it should
    # schemathesis leaves out the document's own URL (GET /openapi.json): 33 of the 34
    assert len(operations) == 33
    for operation in operations:
        if key(operation) == ("GET", "/api/v1/stream"):
            check_stream(app)  # an endless body: read its start, below
            continue

        @settings(
            max_examples=EXAMPLES.get(key(operation), examples),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            if "token" in (case.path_parameters or {}):
                case.path_parameters = {"token": SECRET}  # a guess would lock the client out
            if case.headers:  # every secret given must be right: a random signature is not
                case.headers.pop("X-Signature", None)
            headers = request_headers(case)
            response = case.call(headers=headers)
            case.validate_response(response, checks=checks, headers=headers)
            seen.append((key(operation), response.status_code))  # noqa: B023  # run() runs now

        try:
            run()
        except schemathesis.errors.InvalidSchema:
            raise
        except Exception as exc:  # an operation with nothing to negate (no input) is skipped
            if mode is GenerationMode.NEGATIVE and type(exc).__name__ == "Unsatisfiable":
                continue
            raise
        if after is not None:
            after(operation)
    return seen


def request_headers(case) -> dict[str, str]:
    """Our token, the webhook secret and plain bodies; but a case whose negated part is the
    security parameter (its Authorization removed or mangled) goes without our token, and a
    header the case's negation generated is never replaced by ours (but the webhook secret: any
    string is valid there, and a wrong one would count as a failed secret and lock us out)."""
    ours = {**AUTH, **PLAIN, "X-Webhook-Secret": SECRET}
    if case.meta is None or not case.meta.is_negative_at(ParameterLocation.HEADER):
        return ours
    generated = {name.lower() for name in case.headers or {}}
    auth_negated = case.operation.schema.is_security_param_negated(case)
    return {
        name: value
        for name, value in ours.items()
        if name == "X-Webhook-Secret"
        or (name.lower() not in generated and not (auth_negated and name in AUTH))
    }


def check_stream(app) -> None:
    """GET /stream answers the documented event-stream (the body never ends: read its start)."""
    response = api_client(app).get("/api/v1/stream", buffered=False)
    try:
        assert response.status_code == 200 and response.mimetype == "text/event-stream"
        assert next(iter(response.response)).startswith(b"retry:")
    finally:
        response.close()


@pytest.mark.slow
@pytest.mark.timeout(300)  # every operation fuzzed: a minute on a busy machine
def test_fuzzing_valid_requests_keeps_the_contract(fuzz_app, gateway):
    """Generated valid requests to every operation, placing, cancelling, halting included."""
    client = api_client(fuzz_app)

    def release(operation):
        client.post("/api/v1/kill-switch", json={"engaged": False})

    seen = fuzz(fuzz_app, GenerationMode.POSITIVE, FUZZ_EXAMPLES, CONFORMANCE, after=release)
    reached = {op for op, _ in seen}
    assert ("POST", "/api/v1/orders/cancel-all") in reached
    assert {status for op, status in seen if op == ("POST", "/api/v1/kill-switch")} == {200}
    # whatever the fuzzer got placed is listed as ours, and nothing else reached the gateway
    ours = {
        o["id"] for o in client.get("/api/v1/orders?limit=500").get_json()["orders"] if o["ours"]
    }
    assert {o.order_ref for o in gateway.all_orders()} <= ours


def test_state_changing_answers_keep_the_contract(fuzz_app, gateway):
    """The successful paths of every state-changing operation, checked like the fuzzed ones
    (random valid orders rarely pass the cross-field and risk rules)."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_app, headers=AUTH)
    headers = {**AUTH, **PLAIN, "X-Webhook-Secret": SECRET}

    def call(method, path, expect, **parts):
        case = schema[path][method].Case(**parts)
        response = case.call(headers=headers)
        case.validate_response(response, checks=CONFORMANCE, headers=headers)
        assert response.status_code == expect, (method, path, response.text)
        return response.json()

    mkt = {"symbol": "IBM", "action": "BUY", "quantity": 2}
    placed = call("POST", "/api/v1/orders", 202, body=mkt)
    call("POST", "/api/v1/orders", 202, body=mkt, headers={"Idempotency-Key": "k-1"})
    assert (
        call("POST", "/api/v1/orders", 200, body=mkt, headers={"Idempotency-Key": "k-1"})[
            "replayed"
        ]
        is True
    )
    waited = call("POST", "/api/v1/orders", 200, body=mkt, query={"wait": "1"})
    assert waited["order"]["verdict"] == "filled"
    bid = call("GET", "/api/v1/quote", 200, query={"symbol": "IBM"})["bid"]
    resting = call(
        "POST",
        "/api/v1/orders",
        202,
        body={**mkt, "order_type": "LMT", "limit_price": round(bid * 0.6, 2), "tif": "GTC"},
    )
    call("POST", "/api/v1/orders/preview", 200, body=mkt)
    call("GET", "/api/v1/orders/{order_id}", 200, path_parameters={"order_id": placed["id"]})
    order_id = {"order_id": resting["id"]}
    wait_for(lambda: client_get(fuzz_app, resting["id"])["status"] == "Submitted")
    call(
        "POST",
        "/api/v1/orders/{order_id}/modify",
        202,
        path_parameters=order_id,
        body={"quantity": 3},
    )
    call("POST", "/api/v1/orders/{order_id}/cancel", 202, path_parameters=order_id)
    call(
        "POST",
        "/api/v1/webhook",
        202,
        body={"ticker": "MSFT", "action": "buy", "quantity": 1, "alert_id": "tv-9"},
    )
    call("POST", "/api/v1/orders/cancel-all", 202)
    engaged = call("POST", "/api/v1/kill-switch", 200, body={"engaged": True, "reason": "drill"})
    assert engaged["engaged"] is True and "cancel_confirmed" in engaged
    call("GET", "/api/v1/kill-switch", 200)
    assert call("POST", "/api/v1/kill-switch", 200, body={"engaged": False}) == {"engaged": False}
    state = call("GET", "/api/v1/state", 200)
    assert {o["id"] for o in state["orders"]} >= {placed["id"], resting["id"], waited["id"]}


def client_get(app, order_id: str) -> dict:
    return api_client(app).get(f"/api/v1/orders/{order_id}").get_json()


@pytest.mark.slow
@pytest.mark.timeout(300)  # every operation fuzzed: a minute on a busy machine
def test_fuzzing_invalid_requests_is_refused_and_places_nothing(fuzz_app, gateway):
    seen = fuzz(
        fuzz_app, GenerationMode.NEGATIVE, FUZZ_EXAMPLES, CONFORMANCE + [negative_data_rejection]
    )
    # POST /orders/cancel-all takes no input at all: nothing to make invalid
    posts = {
        rule.rule.replace("<order_id>", "{order_id}").replace("<token>", "{token}")
        for rule in fuzz_app.url_map.iter_rules()
        if "POST" in (rule.methods or ()) and rule.rule.startswith("/api/v1/")
    } - {"/api/v1/orders/cancel-all"}
    refused = [status for (method, path), status in seen if method == "POST" and path in posts]
    # every state-changing operation with an input had invalid cases sent (FUZZ_EXAMPLES each,
    # but hypothesis stops early once it has tried all it can think of for a small input)
    assert {path for (method, path), _ in seen if method == "POST"} >= posts
    assert len(refused) >= 5 * FUZZ_EXAMPLES
    # negative_data_rejection judged each case; a rare generated "invalid" case is valid as
    # sent (schemathesis then lets it pass), e.g. {"engaged": false} on the kill switch
    assert sum(status >= 400 for status in refused) >= 0.97 * len(refused)
    assert fuzz_app.extensions["trading"].journal.count() == 0  # nothing queued, ever
    assert list(gateway.all_orders()) == []


def _clashing_app(first: type, second: type):
    from flask import Flask

    from openapi import documented

    app = Flask(__name__)
    app.add_url_rule("/api/v1/one", "one", documented(first)(lambda: ""))
    app.add_url_rule("/api/v1/two", "two", documented(second)(lambda: ""))
    return app


def test_two_models_of_one_name_are_refused():
    """Components are named after their class: two different classes of one name would leave one
    undocumented (its $ref pointing at nothing or at the other): building the document refuses."""
    from pydantic import BaseModel

    from openapi import ComponentNameClash, document

    def model(field: str) -> type[BaseModel]:
        class Row(BaseModel):  # the same name, different fields
            __annotations__ = {field: int}

        return Row

    def holder(row: type[BaseModel]) -> type[BaseModel]:
        class Holder(BaseModel):
            rows: list[row]  # type: ignore[valid-type]

        return Holder

    Fine = model("a")
    assert "Row" in document(_clashing_app(Fine, holder(Fine)))["components"]["schemas"]
    with pytest.raises(ComponentNameClash, match="'Row'.*2 different models"):
        document(_clashing_app(model("a"), model("b")))
    outer_a, outer_b = holder(model("a")), holder(model("b"))
    outer_b.__name__ = "OtherHolder"
    with pytest.raises(ComponentNameClash, match="Row"):  # nested: pydantic would rename both
        document(_clashing_app(outer_a, outer_b))
