"""Alerts as TradingView sends them: the secret in the body or the URL, placeholders filled,
text/plain, target positions, duplicates, wrong secrets, the source allowlist, proxies."""

from __future__ import annotations

import json
import logging
import re

import pytest

import webhook
from conftest import API_TOKEN, ROOT, api_client, app_settings, wait_for

SECRET = "tv-webhook-secret-0123456789"
FAST = {"settle_first": 0, "settle_validation": 0, "settle_final": 0, "monitor_timeout": 0.2}


def tv_alert(**fields):
    """A body as TradingView fills the README's template (numbers quoted or not)."""
    return {
        "secret": SECRET,
        "ticker": "NASDAQ:MSFT",
        "action": "buy",
        "contracts": "3",
        "price": 412.5,
        "order_id": "Long Entry",
        "alert_message": "entry #1",
        "time": "2026-11-27T14:30:05Z",
        **fields,
    }


def post(client, body, path="/api/v1/webhook", content_type="application/json", **kw):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, data=raw, content_type=content_type, **kw)


def audit(app) -> list[dict]:
    return app.extensions["trading"].journal.audit_rows(1000)


def position(app, symbol: str) -> float:
    snap = app.extensions["trading"].connector.snapshot()
    return webhook.position_of(snap.positions, symbol, "STK")


@pytest.fixture
def make_app(gateway):
    from app_simple import create_app, shutdown

    made = []

    def build(**overrides):
        values = {**FAST, "webhook_secret": SECRET, **overrides}
        made.append(create_app({"SETTINGS": app_settings(gateway, **values)}))
        return made[-1]

    yield build
    for application in made:
        shutdown(application)


@pytest.fixture
def hook(make_app):
    return make_app()


def order_of(app, order_id: str) -> dict:
    client = app.test_client()
    res = client.get(f"/api/v1/orders/{order_id}", headers={"Authorization": f"Bearer {API_TOKEN}"})
    return res.get_json()["lifecycle"]


# ------------------------------------------------------------- the secret
@pytest.mark.parametrize("content_type", ["text/plain; charset=utf-8", "application/json"])
def test_secret_in_the_body_places_the_order(hook, gateway, caplog, content_type):
    caplog.set_level(logging.DEBUG)
    sender = hook.test_client()
    res = post(sender, tv_alert(), content_type=content_type)
    assert res.status_code == 202, res.get_json()
    order = order_of(hook, res.get_json()["id"])
    assert order["source"] == "webhook"
    intent = order["intent"]
    assert (intent["symbol"], intent["action"], intent["quantity"], intent["order_type"]) == (
        "MSFT",
        "BUY",
        3,
        "MKT",
    )
    wait_for(lambda: [o for o in gateway.all_orders() if o.order_ref == order["id"]])
    rows = audit(hook)
    assert rows[0]["outcome"] == "queued"
    assert SECRET not in str(rows) and SECRET not in caplog.text
    assert "Long Entry" in str(rows)  # the alert is audited, without its secret


def test_passphrase_and_placeholders_as_tradingview_fills_them(hook):
    sender = hook.test_client()
    body = {
        "passphrase": SECRET,
        "ticker": "AAPL",
        "action": "SELL",
        "contracts": 2,
        "close": "187.2345",
        "order_type": "lmt",
        "order_id": "Short Entry",
        "timenow": "2026-11-27T14:31:00Z",
    }
    res = post(sender, body, content_type="text/plain")
    assert res.status_code == 202, res.get_json()
    intent = order_of(hook, res.get_json()["id"])["intent"]
    assert (intent["action"], intent["quantity"], intent["order_type"]) == ("SELL", 2, "LMT")
    assert intent["limit_price"] == pytest.approx(187.23)  # {{close}} on the price tick


def test_secret_in_the_url_is_never_logged_nor_audited(hook, gateway, caplog):
    caplog.set_level(logging.DEBUG)
    sender = hook.test_client()
    body = {k: v for k, v in tv_alert().items() if k != "secret"}
    res = post(sender, body, path=f"/api/v1/webhook/{SECRET}")
    assert res.status_code == 202, res.get_json()
    guess = "guessed-token-abcdefghijklmnop"
    wrong = post(sender, body, path=f"/api/v1/webhook/{guess}")
    assert wrong.status_code == 401
    rows = audit(hook)
    assert rows[0]["outcome"] == "unauthorized: wrong secret"
    assert "/api/v1/webhook/<redacted>" in str(rows[0]["request"])
    for value in (SECRET, guess):
        assert value not in str(rows) and value not in caplog.text
    for logger in ("waitress", "werkzeug", hook.logger.name):  # the servers' own lines too
        logging.getLogger(logger).error("Exception while serving /api/v1/webhook/%s", guess)
    assert guess not in caplog.text and caplog.text.count("/api/v1/webhook/<redacted>") == 3


def test_wrong_secret_is_401_audited_counted_and_never_logged(hook, gateway, caplog):
    caplog.set_level(logging.DEBUG)
    sender = hook.test_client()
    sender.environ_base["REMOTE_ADDR"] = "10.0.0.42"
    guesses = [f"wrong-secret-{n}-abcdefgh" for n in range(5)]
    for n, guess in enumerate(guesses):
        path = "/api/v1/webhook" if n % 2 else f"/api/v1/webhook/{guess}"
        res = post(sender, tv_alert(secret=guess), path=path)
        assert res.status_code == 401 and res.get_json()["error"]["code"] == "unauthorized"
    assert post(sender, tv_alert()).status_code == 429  # locked out, the right secret too
    assert post(sender, {"ticker": "MSFT"}, path=f"/api/v1/webhook/{SECRET}").status_code == 429
    outcomes = [row["outcome"] for row in audit(hook)]
    assert outcomes.count("unauthorized: wrong secret") == 5
    text = str(audit(hook)) + caplog.text
    assert not any(guess in text for guess in guesses) and SECRET not in text
    assert hook.extensions["trading"].journal.count() == 0 and not gateway.all_orders()


def test_every_secret_given_must_be_right(hook):
    sender = hook.test_client()
    res = post(sender, tv_alert(), headers={"X-Webhook-Secret": "another-wrong-secret-0"})
    assert res.status_code == 401
    assert post(sender, tv_alert(secret=12345)).status_code == 401
    assert post(sender, {"ticker": "MSFT", "action": "buy", "contracts": 1}).status_code == 401


# ------------------------------------------------------------- bad alerts
@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        ({"ticker": "MSFT", "contracts": 1}, "application/json", 400, "action"),
        ({"ticker": "MSFT", "action": "buy"}, "application/json", 400, "quantity"),
        ({"ticker": "ES1!", "action": "buy", "contracts": 1}, "text/plain", 400, "ticker"),
        ({"ticker": "MSFT", "action": "hold", "contracts": 1}, "application/json", 400, "action"),
        (
            {"ticker": "MSFT", "action": "buy", "contracts": "ten"},
            "application/json",
            400,
            "contracts",
        ),
        (
            {"ticker": "MSFT", "action": "buy", "contracts": 1.5},
            "application/json",
            400,
            "quantity",
        ),
        (
            {"ticker": "MSFT", "market_position": "long"},
            "application/json",
            400,
            "market_position_size",
        ),
        (
            {"ticker": "MSFT", "market_position": "sideways", "market_position_size": 1},
            "application/json",
            400,
            "market_position",
        ),
    ],
)
def test_alerts_that_name_no_order_are_a_clear_400(
    hook, gateway, body, content_type, status, field
):
    res = post(hook.test_client(), {**body, "secret": SECRET}, content_type=content_type)
    assert res.status_code == status, res.get_json()
    error = res.get_json()["error"]
    assert error["field"] == field, error
    assert audit(hook)[0]["outcome"].startswith("invalid") and SECRET not in str(audit(hook))
    assert not gateway.all_orders()


def test_bodies_that_are_not_json_are_refused(hook):
    sender = hook.test_client()
    text = post(sender, b"MSFT crossing 412.5", content_type="text/plain")
    assert text.status_code == 400 and "not valid JSON" in text.get_json()["error"]["message"]
    html = post(sender, json.dumps(tv_alert()).encode(), content_type="text/html")
    assert html.status_code == 415
    wrong = post(
        sender,
        b"not json",
        content_type="text/plain",
        headers={"X-Webhook-Secret": "wrong-secret-0123456789"},
    )
    assert wrong.status_code == 401  # a header secret is checked before the body is read
    assert hook.extensions["trading"].journal.count() == 0


# ------------------------------------------------------- target positions
def target(symbol: str, market_position: str, size: float, n: int) -> dict:
    return {
        "secret": SECRET,
        "ticker": f"NYSE:{symbol}",
        "action": "buy",
        "contracts": 1,
        "market_position": market_position,
        "market_position_size": str(size),
        "order_id": "rev",
        "time": f"2026-11-27T15:00:{n:02d}Z",
    }


def test_target_position_flattens_and_reverses(hook, gateway):
    sender = hook.test_client()
    symbol = "IBM"
    assert position(hook, symbol) == 0
    steps = [("long", 5, "BUY", 5, 5), ("short", 3, "SELL", 8, -3), ("flat", 0, "BUY", 3, 0)]
    for n, (market_position, size, action, quantity, after) in enumerate(steps):
        res = post(sender, target(symbol, market_position, size, n))
        assert res.status_code == 202, res.get_json()
        order_id = res.get_json()["id"]
        intent = order_of(hook, order_id)["intent"]
        assert (intent["action"], intent["quantity"]) == (action, quantity), market_position
        wait_for(lambda after=after: position(hook, symbol) == after)
        wait_for(lambda order_id=order_id: order_of(hook, order_id)["verdict"] == "filled")
    again = post(sender, target(symbol, "flat", 0, 9))
    assert again.status_code == 200 and again.get_json()["id"] is None
    assert "already 0" in again.get_json()["message"]
    replay = post(sender, target(symbol, "short", 3, 1))  # a retried alert: its first order
    assert replay.status_code == 200 and replay.get_json()["replayed"] is True
    assert replay.get_json()["order"]["intent"]["quantity"] == 8
    assert len([o for o in gateway.all_orders() if o.contract.symbol == symbol]) == 3


def test_target_position_waits_for_our_unfinished_orders(hook, gateway):
    """A resting order for the symbol will still move the position: no difference is ordered
    on top of it (409, audited) until it is filled or cancelled."""
    api = hook.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_TOKEN}"
    resting = api.post(
        "/api/v1/orders",
        json={
            "symbol": "IBM",
            "action": "BUY",
            "quantity": 4,
            "order_type": "LMT",
            "limit_price": 150,
        },
    )
    assert resting.status_code == 202, resting.get_json()
    resting_id = resting.get_json()["id"]
    wait_for(lambda: order_of(hook, resting_id)["verdict"] == "working")
    sender = hook.test_client()
    refused = post(sender, target("IBM", "long", 5, 20))
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["error"]["code"] == "order_in_flight"
    assert resting_id in refused.get_json()["error"]["message"]
    assert audit(hook)[0]["outcome"] == f"refused: order in flight {resting_id}"
    assert post(sender, target("MSFT", "long", 1, 21)).status_code == 202  # another symbol
    assert api.post(f"/api/v1/orders/{resting_id}/cancel").status_code == 202
    wait_for(lambda: order_of(hook, resting_id)["verdict"] == "cancelled")
    placed = post(sender, target("IBM", "long", 5, 22))
    assert placed.status_code == 202, placed.get_json()
    intent = order_of(hook, placed.get_json()["id"])["intent"]
    assert (intent["action"], intent["quantity"]) == ("BUY", 5)
    wait_for(lambda: len([o for o in gateway.all_orders() if o.contract.symbol == "IBM"]) == 2)


# ------------------------------------------------------------- duplicates
def test_duplicates_by_alert_id_else_by_body_and_time(hook, gateway):
    sender = hook.test_client()
    first = post(sender, tv_alert(alert_id="Long Entry 2026-11-27T14:30"))
    assert first.status_code == 202
    again = post(
        sender, tv_alert(alert_id="Long Entry 2026-11-27T14:30"), path=f"/api/v1/webhook/{SECRET}"
    )
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    timed = post(sender, tv_alert())
    assert post(sender, tv_alert()).get_json()["id"] == timed.get_json()["id"]
    later = post(sender, tv_alert(time="2026-11-27T14:35:05Z"))
    assert later.status_code == 202 and later.get_json()["id"] != timed.get_json()["id"]
    wait_for(lambda: len(gateway.all_orders()) == 3)
    # the same alert_id on another alert: the error names alert_id, the field a sender sets
    other = post(sender, tv_alert(alert_id="Long Entry 2026-11-27T14:30", contracts=2))
    error = other.get_json()["error"]
    assert other.status_code == 422 and error["code"] == "idempotency_conflict"
    assert error["field"] == "alert_id" and error["message"].startswith("this alert_id was")
    # an API client's key cannot take an alert's (the webhook's keys start with webhook:)
    taken = api_client(hook).post(
        "/api/v1/orders",
        json={"symbol": "IBM", "action": "BUY", "quantity": 1},
        headers={"Idempotency-Key": "webhook:Long-Entry"},
    )
    assert taken.status_code == 400 and taken.get_json()["error"]["field"] == "Idempotency-Key"
    assert len(gateway.all_orders()) == 3


def test_dedup_key_without_id_or_time_is_the_body_and_the_minute():
    body = {"ticker": "MSFT", "action": "buy", "contracts": 1}
    alert = webhook.AlertIn.model_validate(body)
    assert webhook.dedup_key(alert, body, now=120.0) == webhook.dedup_key(alert, body, 179.0)
    assert webhook.dedup_key(alert, body, now=120.0) != webhook.dedup_key(alert, body, 180.0)


def test_kill_switch_and_risk_gate_hold_for_alerts(make_app, gateway):
    app = make_app(risk_max_quantity=10)
    sender = app.test_client()
    big = post(sender, tv_alert(contracts=50))
    assert big.status_code == 422 and big.get_json()["error"]["code"] == "risk_rejected"
    engaged = sender.post(
        "/api/v1/kill-switch",
        json={"engaged": True, "reason": "drill"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert engaged.status_code == 200
    halted = post(sender, tv_alert(time="2026-11-27T14:40:00Z"))
    assert halted.status_code == 423
    assert not gateway.all_orders()


# ---------------------------------------------------------- source allowlist
def test_allowlist_applies_to_the_client_address(make_app, gateway):
    app = make_app(webhook_allowed_ips="52.89.214.238,10.1.2.0/24")
    tradingview, stranger = app.test_client(), app.test_client()
    tradingview.environ_base["REMOTE_ADDR"] = "52.89.214.238"
    stranger.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    refused = post(stranger, tv_alert())
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden_source"
    assert audit(app)[0]["outcome"].startswith("refused: source not in WEBHOOK_ALLOWED_IPS")
    assert post(tradingview, tv_alert()).status_code == 202


# ------------------------------------------------------------------ proxies
FORWARDED = {  # as Caddy sends them: the Host passed on, and named again
    "Host": "tv.example.com",
    "X-Forwarded-For": "52.89.214.238",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "tv.example.com",
}


def behind_caddy(make_app, trusted: str = "127.0.0.1"):
    """The app behind the proxy on this machine, TradingView's address allowed; (app, the
    proxy's client)."""
    app = make_app(
        trusted_proxies=trusted,
        trusted_hosts="127.0.0.1,tv.example.com",
        webhook_allowed_ips="52.89.214.238",
    )
    proxy = app.test_client()
    proxy.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    return app, proxy


@pytest.mark.parametrize("trusted", ["127.0.0.1", "1"])
def test_trusted_proxy_gives_the_client_address_scheme_and_host(make_app, trusted):
    app, proxy = behind_caddy(make_app, trusted)
    res = post(proxy, tv_alert(), headers=FORWARDED)
    assert res.status_code == 202, res.get_json()
    assert audit(app)[0]["remote"] == "52.89.214.238"
    login = proxy.get(f"/login?token={API_TOKEN}", headers=FORWARDED)
    assert login.status_code == 302 and "; Secure" in login.headers["Set-Cookie"]


def test_wrong_secrets_from_tradingviews_addresses_do_not_lock_its_alerts_out(make_app):
    """TradingView sends every customer's alerts from the same few addresses: anyone with an
    account could point five alerts with a wrong secret at the trader's URL and lock those
    addresses out, and the trader's own alerts (exits too) answered 429 for up to a day. With
    WEBHOOK_ALLOWED_IPS set, the webhook locks no listed address out; elsewhere it still does."""
    app, proxy = behind_caddy(make_app)
    stranger = {**tv_alert(), "secret": "not-the-secret-0123456789"}
    statuses = [post(proxy, stranger, headers=FORWARDED).status_code for _ in range(8)]
    assert statuses == [401] * 8
    res = post(proxy, tv_alert(), headers=FORWARDED)
    assert res.status_code == 202, res.get_json()
    outcomes = [row["outcome"] for row in audit(app)]
    assert outcomes.count("unauthorized: wrong secret") == 8  # each still audited
    # the sign-in from those addresses is not locked out by the webhook's wrong secrets
    assert proxy.get(f"/login?token={API_TOKEN}", headers=FORWARDED).status_code == 302


def test_forwarded_headers_of_an_untrusted_peer_are_ignored(make_app):
    app = make_app(
        trusted_proxies="127.0.0.1",
        trusted_hosts="localhost,tv.example.com",
        webhook_allowed_ips="52.89.214.238",
    )
    liar = app.test_client()
    liar.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    res = post(liar, tv_alert(), headers=FORWARDED)
    assert res.status_code == 403 and audit(app)[0]["remote"] == "198.51.100.9"
    login = liar.get(f"/login?token={API_TOKEN}", headers=FORWARDED)
    assert "Secure" not in login.headers["Set-Cookie"]


def test_a_chain_of_trusted_proxies_is_walked_back(make_app):
    app = make_app(trusted_proxies="127.0.0.1,10.0.0.0/8", webhook_allowed_ips="203.0.113.5")
    proxy = app.test_client()
    proxy.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.5, 10.2.3.4"}  # spoofed, client, proxy
    assert post(proxy, tv_alert(), headers=chain).status_code == 202
    assert audit(app)[0]["remote"] == "203.0.113.5"


def test_proxy_settings_are_validated():
    from config import ConfigError, load_settings

    for key, value in (
        ("TRUSTED_PROXIES", "9"),
        ("TRUSTED_PROXIES", "proxy.lan"),
        ("WEBHOOK_ALLOWED_IPS", "tradingview.com"),
    ):
        with pytest.raises(ConfigError, match=f"^{key}="):
            load_settings(env={key: value}, dotenv_path=None)
    settings = load_settings(
        env={
            "TRUSTED_PROXIES": "127.0.0.1, ::1, 10.0.0.0/8",
            "WEBHOOK_ALLOWED_IPS": "52.89.214.238",
        },
        dotenv_path=None,
    )
    assert settings.trusted_proxies == ("127.0.0.1/32", "::1/128", "10.0.0.0/8")
    assert settings.webhook_allowed_ips == ("52.89.214.238/32",)


# ------------------------------------------------------------ the README's
TRADINGVIEW_FILLS = {  # what TradingView puts in place of each placeholder of the README
    "{{exchange}}": "NASDAQ",
    "{{ticker}}": "MSFT",
    "{{strategy.order.action}}": "sell",
    "{{strategy.order.contracts}}": "2",
    "{{close}}": "412.37",
    "{{strategy.order.id}}": "Short Entry",
    "{{strategy.order.alert_message}}": "",
    "{{timenow}}": "2026-11-30T15:04:00Z",
    "{{strategy.market_position}}": "long",
    "{{strategy.market_position_size}}": "3",
}


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readmes_alert_messages_work_as_tradingview_fills_them(hook, gateway):
    messages = re.findall(r"```json\n(.*?)```", readme_section("Connect TradingView"), re.S)
    assert len(messages) == 2
    sender = hook.test_client()
    # the strategy's order (sell 2), then its position (long 3: buy 5 from short 2)
    for message, expected in zip(
        messages, [("MSFT", "SELL", 2, -2), ("MSFT", "BUY", 5, 3)], strict=True
    ):
        filled = message.replace("YOUR_WEBHOOK_SECRET", SECRET)
        for placeholder, value in TRADINGVIEW_FILLS.items():
            filled = filled.replace(placeholder, value)
        assert "{{" not in filled, filled
        res = post(sender, filled.encode(), content_type="text/plain; charset=utf-8")
        assert res.status_code == 202, (message, res.get_json())
        order_id = res.get_json()["id"]
        intent = order_of(hook, order_id)["intent"]
        assert (intent["symbol"], intent["action"], intent["quantity"]) == expected[:3]
        wait_for(lambda expected=expected: position(hook, "MSFT") == expected[3])
        wait_for(lambda order_id=order_id: order_of(hook, order_id)["verdict"] == "filled")


def test_the_readmes_env_for_tradingview_loads():
    from config import load_settings

    block = re.search(
        r"```\n(\s*TRUSTED_PROXIES=.*?)```", readme_section("Connect TradingView"), re.S
    )
    assert block is not None
    env = dict(line.strip().split("=", 1) for line in block.group(1).splitlines() if line.strip())
    settings = load_settings(env=env, dotenv_path=None)
    assert settings.trusted_proxies == ("127.0.0.1/32",)
    assert "tv.example.com" in settings.trusted_hosts
    assert settings.webhook_allowed_ips == (
        "52.89.214.238/32",
        "34.212.75.30/32",
        "54.218.53.128/32",
        "52.32.178.7/32",
    )
