"""Who may talk to the app: tokens, browser sessions with CSRF, hosts, limits, one instance."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import security
from config import ConfigError
from conftest import API_TOKEN, ROOT, app_settings


def page_token(client) -> str:
    html = client.get("/").get_data(as_text=True)
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


ORDER = {"symbol": "AAPL", "action": "BUY", "quantity": 1}


def assert_nothing_placed(app, gateway):
    """Nothing journaled (so nothing can be sent later) and nothing at the gateway."""
    assert app.extensions["trading"].journal.count() == 0
    assert not gateway.all_orders()


def test_api_needs_a_token(app, gateway):
    anonymous = app.test_client()
    for method, url in (("get", "/api/v1/status"), ("get", "/api/v1/orders"),
                        ("post", "/api/v1/orders"), ("post", "/api/v1/kill-switch")):
        res = getattr(anonymous, method)(url, json=ORDER)
        assert res.status_code == 401, url
        assert res.get_json()["error"]["code"] == "unauthorized"
    wrong = anonymous.get("/api/v1/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert anonymous.get("/api/v1/health").status_code == 200  # for monitors
    assert_nothing_placed(app, gateway)


def test_browser_session_needs_csrf_for_writes(app, gateway):
    browser = app.test_client()
    token = page_token(browser)  # loading the dashboard opens the session
    assert browser.get("/api/v1/status").status_code == 200
    res = browser.post("/api/v1/orders", json=ORDER)
    assert res.status_code == 400 and res.get_json()["error"]["code"] == "csrf_failed"
    res = browser.post("/api/v1/orders", json=ORDER, headers={"X-CSRFToken": "forged"})
    assert res.status_code == 400
    assert_nothing_placed(app, gateway)
    res = browser.post("/api/v1/orders", json=ORDER, headers={"X-CSRFToken": token})
    assert res.status_code == 202


def test_cross_site_form_post_is_refused(app, gateway):
    browser = app.test_client()
    page_token(browser)
    res = browser.post("/api/v1/orders", data={"symbol": "AAPL", "action": "BUY",
                                               "quantity": "100"},
                       headers={"Origin": "https://evil.example"})
    assert res.status_code == 400
    res = browser.post("/api/v1/kill-switch", data="engaged=true",
                       content_type="application/x-www-form-urlencoded")
    assert res.status_code == 400
    assert_nothing_placed(app, gateway)


def test_session_cookie_is_strict(app):
    res = app.test_client().get("/")
    cookie = res.headers["Set-Cookie"]
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie


def test_wrong_host_is_refused(client):
    res = client.get("/api/v1/status", headers={"Host": "evil.example:5000"})
    assert res.status_code == 400
    assert client.get("/", headers={"Host": "rebind.attacker.test"}).status_code == 400
    assert client.get("/api/v1/status", headers={"Host": "127.0.0.1:5000"}).status_code == 200


def test_oversized_body_is_refused(client, gateway):
    body = {**ORDER, "symbol": "A" * 10, "pad": "x" * 70_000}
    res = client.post("/api/v1/orders", json=body)
    assert res.status_code == 413 and res.get_json()["error"]["status"] == 413
    assert not gateway.completed_orders()


def test_security_headers(client):
    for url in ("/", "/api/v1/status"):
        headers = client.get(url).headers
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"


def test_optional_dashboard_password(gateway):
    from app_simple import create_app
    app = create_app({"SETTINGS": app_settings(gateway, dashboard_password="hunter2-hunter2")})
    try:
        browser = app.test_client()
        assert browser.get("/").status_code == 302
        assert browser.get("/api/v1/status").status_code == 401
        html = browser.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        assert browser.post("/login", data={"password": "hunter2-hunter2"}).status_code == 400
        wrong = browser.post("/login", data={"password": "nope", "csrf_token": token})
        assert b"Wrong password" in wrong.data
        right = browser.post("/login", data={"password": "hunter2-hunter2", "csrf_token": token})
        assert right.status_code == 302
        assert browser.get("/api/v1/status").status_code == 200
    finally:
        app.extensions["trading"].stop()


def test_non_loopback_bind_needs_token_and_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "SECRET_KEY")}
    env.update(DASHBOARD_HOST="0.0.0.0", JOURNAL_PATH=str(tmp_path / "orders.db"))
    result = subprocess.run([sys.executable, str(ROOT / "app_simple.py")], cwd=tmp_path, env={
        **env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "API_TOKEN and SECRET_KEY" in result.stderr
    settings = app_settings_for_bind("0.0.0.0", api_token=API_TOKEN)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        security.check_bind(settings)
    security.check_bind(app_settings_for_bind("0.0.0.0", api_token=API_TOKEN,
                                              secret_key="s" * 20))
    security.check_bind(app_settings_for_bind("127.0.0.1"))


def app_settings_for_bind(host, **values):
    from config import load_settings
    return load_settings(env={}, dotenv_path=None, overrides={"dashboard_host": host, **values})


def test_second_instance_refuses_to_start(gateway, tmp_path):
    from app_simple import create_app
    journal = str(tmp_path / "data" / "orders.db")
    first = create_app({"SETTINGS": app_settings(gateway, journal_path=journal)})
    try:
        with pytest.raises(security.InstanceLockedError, match="another copy of the app"):
            create_app({"SETTINGS": app_settings(gateway, journal_path=journal, client_id=501,
                                                 order_client_id=502)})
    finally:
        from app_simple import shutdown
        shutdown(first)
    again = create_app({"SETTINGS": app_settings(gateway, journal_path=journal)})
    shutdown(again)


def test_generated_token_is_kept_private(gateway, tmp_path):
    from app_simple import create_app, shutdown
    journal = str(tmp_path / "data" / "orders.db")
    app = create_app({"SETTINGS": app_settings(gateway, journal_path=journal, api_token=None)})
    try:
        path = tmp_path / "data" / "api_token"
        token = path.read_text().strip()
        assert len(token) >= 32 and oct(path.stat().st_mode & 0o777) == "0o600"
        res = app.test_client().get("/api/v1/status",
                                    headers={"Authorization": f"Bearer {token}"})
        assert res.status_code == 200
    finally:
        shutdown(app)


def test_secrets_never_reach_the_logs(gateway, caplog):
    import logging

    from app_simple import create_app, shutdown
    secret = "webhook-secret-abcdefghij"
    caplog.set_level(logging.DEBUG)
    app = create_app({"SETTINGS": app_settings(gateway, webhook_secret=secret,
                                               dashboard_password="pw-0123456789abcdef")})
    try:
        client = app.test_client()
        client.get("/api/v1/status", headers={"Authorization": "Bearer wrong-token"})
        client.post("/api/v1/webhook", json={}, headers={"X-Webhook-Secret": "bad"})
        client.post("/login", data={"password": "nope"})
        ok = client.get("/api/v1/status", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert ok.status_code == 200
    finally:
        shutdown(app)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for value in (API_TOKEN, secret, "pw-0123456789abcdef", "test-secret-key-0123456789"):
        assert value not in text
