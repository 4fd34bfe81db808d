"""The Caddy round trip: Debian's caddy in front of the app, as README "Connect TradingView" sets
it up, all on loopback.

Caddy runs ``deploy/Caddyfile`` itself, with a test name for the public site, free loopback
ports and ``tls internal`` (its own certificate authority) instead of Let's Encrypt. The sender
plays TradingView: HTTPS to the public name from another loopback address (127.0.0.2), a URL
and a body, no custom headers. The app (waitress, TRUSTED_PROXIES=127.0.0.1) must see that
address, https and the public host, and nothing but the webhook may get through.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request, request_started

import app_simple
from conftest import API_TOKEN, ROOT, TRADING_CLOCK, app_settings, served, wait_for
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

CADDY = "/usr/bin/caddy"
PUBLIC = "tv.example.test"
SENDER = "127.0.0.2"  # TradingView's side; Caddy connects to the app from 127.0.0.1
STRANGER = "127.0.0.3"
SECRET = "tv-caddy-secret-0123456789"
FAST = {"settle_first": 0, "settle_validation": 0, "settle_final": 0, "monitor_timeout": 0.2}
# what the test changes in deploy/Caddyfile: loopback, Caddy's own CA, free ports, no HTTP/3
GLOBAL_OPTIONS = """{{
	admin off
	skip_install_trust
	storage file_system {storage}
	http_port {http_port}
	https_port {https_port}
	auto_https disable_redirects
	servers {{
		protocols h1 h2
	}}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def caddyfile_for_test(
    deploy: str, https_port: int, http_port: int, app_port: int, storage: Path
) -> str:
    """deploy/Caddyfile with the public name, the app's port and the test's TLS."""
    site, app = "tv.example.com {", "reverse_proxy 127.0.0.1:5000"
    assert deploy.count(site) == 1 and deploy.count(app) == 1, "deploy/Caddyfile changed shape"
    text = deploy.replace(
        site, f"https://{PUBLIC}:{https_port} {{\n\tbind 127.0.0.1\n\ttls internal"
    ).replace(app, f"reverse_proxy 127.0.0.1:{app_port}")
    return GLOBAL_OPTIONS.format(storage=storage, http_port=http_port, https_port=https_port) + text


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Site:
    """Caddy's public site in front of the served app."""

    port: int
    cafile: Path
    log: Path
    app: Flask
    app_url: str
    gateway: SimGateway
    seen: list[dict[str, Any]] = field(default_factory=list)  # what the app saw, per request

    def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        source: str = SENDER,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One HTTPS request to the public name, from ``source``, as the raw ``path``."""
        context = ssl.create_default_context(cafile=str(self.cafile))
        raw = socket.create_connection(
            ("127.0.0.1", self.port), timeout=10, source_address=(source, 0)
        )
        with context.wrap_socket(raw, server_hostname=PUBLIC) as tls:
            conn = http.client.HTTPConnection(PUBLIC, self.port, timeout=10)
            conn.sock = tls  # already connected (the public name resolves to Caddy)
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            try:
                body = res.read()
            except http.client.IncompleteRead as cut:  # Caddy answered a body it refused, then
                body = cut.partial  # closed while ours was still coming: the answer's end lost
            answer = Answer(res.status, res.headers, body)
            conn.close()
        return answer

    def alert(
        self,
        body: dict[str, Any],
        path: str = "/api/v1/webhook",
        content_type: str = "text/plain; charset=utf-8",
        source: str = SENDER,
    ) -> Answer:
        """What TradingView sends: a URL and a body (its only header is the content type)."""
        return self.send(
            "POST", path, json.dumps(body).encode(), source, {"Content-Type": content_type}
        )

    def audit(self) -> list[dict[str, Any]]:
        return self.app.extensions["trading"].journal.audit_rows(1000)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    if not Path(CADDY).exists():
        pytest.fail(f"{CADDY} is missing: apt-get install -y caddy (scripts/test does it)")
    home = tmp_path_factory.mktemp("caddy")
    gateway = SimGateway(
        ServerSettings(port=0, clock_start=TRADING_CLOCK), BrokerConfig(seed=7)
    ).start()
    try:
        settings = app_settings(
            gateway,
            **FAST,
            webhook_secret=SECRET,
            trusted_proxies="127.0.0.1",
            webhook_allowed_ips=SENDER,
            trusted_hosts=f"127.0.0.1,localhost,{PUBLIC}",
        )
        app = app_simple.create_app({"SETTINGS": settings})
        seen: list[dict[str, Any]] = []

        def record(sender: Flask, **_: Any) -> None:
            seen.append(
                {
                    "path": request.path,
                    "endpoint": request.endpoint,
                    "remote": request.remote_addr,
                    "scheme": request.scheme,
                    "host": request.host,
                }
            )

        request_started.connect(record, app)
        with served(app) as app_url, Caddy(home, int(app_url.rsplit(":", 1)[1])) as (port, log):
            yield Site(
                port,
                home / "data" / "pki" / "authorities" / "local" / "root.crt",
                log,
                app,
                app_url,
                gateway,
                seen,
            )
        request_started.disconnect(record, app)
    finally:
        gateway.stop()


class Caddy:
    """``caddy run`` on the test's Caddyfile; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, home: Path, app_port: int) -> None:
        self.home, self.app_port = home, app_port
        self.port = free_port()
        self.log = home / "caddy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> tuple[int, Path]:
        config = self.home / "Caddyfile"
        config.write_text(
            caddyfile_for_test(
                (ROOT / "deploy" / "Caddyfile").read_text(),
                self.port,
                free_port(),
                self.app_port,
                self.home / "data",
            )
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home / "xdg-data"),
            "XDG_CONFIG_HOME": str(self.home / "xdg-config"),
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self.port, self.log

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        """Until Caddy answers TLS on its port with its CA's certificate for the public name."""
        cafile = self.home / "data" / "pki" / "authorities" / "local" / "root.crt"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"caddy exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                context = ssl.create_default_context(cafile=str(cafile))
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw,
                    context.wrap_socket(raw, server_hostname=PUBLIC),
                ):
                    return
            except (OSError, ssl.SSLError):
                time.sleep(0.1)
        pytest.fail(f"caddy did not serve TLS within {timeout}s:\n{self.log.read_text()}")

    def _stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def tv_alert(**fields: Any) -> dict[str, Any]:
    """The README's TradingView message as TradingView fills it."""
    return {
        "secret": SECRET,
        "ticker": "NASDAQ:MSFT",
        "action": "buy",
        "contracts": "2",
        "price": 412.5,
        "order_id": "Long Entry",
        "alert_message": "via caddy",
        "time": "2026-11-30T15:00:00Z",
        **fields,
    }


def seen_for(site: Site, path: str) -> list[dict[str, Any]]:
    return [row for row in site.seen if row["path"] == path]


# --------------------------------------------------------------------- tests
def test_an_alert_through_caddy_places_the_order_and_the_app_sees_the_sender(site):
    before = len(site.seen)
    res = site.alert(tv_alert())
    assert res.status == 202, res.body
    order_id = res.json()["id"]
    wait_for(lambda: [o for o in site.gateway.all_orders() if o.order_ref == order_id])
    saw = site.seen[before:]
    assert saw == [
        {
            "path": "/api/v1/webhook",
            "endpoint": "api.webhook_alert",
            "remote": SENDER,
            "scheme": "https",
            "host": f"{PUBLIC}:{site.port}",
        }
    ]
    row = site.audit()[0]
    assert (row["remote"], row["outcome"], row["order_id"]) == (SENDER, "queued", order_id)
    assert SECRET not in str(site.audit())


def test_the_url_form_and_application_json_through_caddy(site):
    body = {k: v for k, v in tv_alert(time="2026-11-30T15:01:00Z").items() if k != "secret"}
    res = site.alert(body, path=f"/api/v1/webhook/{SECRET}", content_type="application/json")
    assert res.status == 202, res.body
    again = site.alert(body, path=f"/api/v1/webhook/{SECRET}", content_type="application/json")
    assert again.status == 200 and again.json()["id"] == res.json()["id"]  # a retried alert
    assert SECRET not in str(site.audit()) and SECRET not in site.log.read_text()


def test_a_wrong_secret_through_caddy_is_401_for_the_sender_not_the_proxy(site):
    res = site.alert(tv_alert(secret="not-the-secret-0123456789", time="2026-11-30T15:02:00Z"))
    assert res.status == 401 and res.json()["error"]["code"] == "unauthorized"
    row = site.audit()[0]
    assert (row["remote"], row["outcome"]) == (SENDER, "unauthorized: wrong secret")


def test_a_body_too_big_for_an_alert_stops_at_caddy(site):
    """An alert is a few hundred bytes; a stranger's megabytes are refused by the proxy, never
    carried to the app (whose server would hold them on disk until the last byte)."""
    before = len(site.seen)
    res = site.send(
        "POST", "/api/v1/webhook", b"x" * 200_000, SENDER, {"Content-Type": "text/plain"}
    )
    assert res.status in (413, 502)  # Caddy 2.7 on answers 413; Debian 12's 2.6 says 502
    assert site.seen[before:] == []


def test_a_stranger_cannot_pass_for_tradingview_through_caddy(site):
    """WEBHOOK_ALLOWED_IPS holds the sender's address; an X-Forwarded-For naming it is
    dropped by Caddy, so a stranger is judged by its own address."""
    body = json.dumps(tv_alert(time="2026-11-30T15:03:00Z")).encode()
    res = site.send(
        "POST",
        "/api/v1/webhook",
        body,
        STRANGER,
        {"Content-Type": "text/plain", "X-Forwarded-For": SENDER},
    )
    assert res.status == 403 and res.json()["error"]["code"] == "forbidden_source"
    assert site.audit()[0]["remote"] == STRANGER


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", f"/login?token={API_TOKEN}"),
        ("POST", "/login"),
        ("GET", "/api/v1/state"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/health"),
        ("POST", "/api/v1/orders"),
        ("POST", "/api/v1/kill-switch"),
        ("GET", "/api/v1/webhook"),
        ("POST", "/api/v1/webhook/../orders"),
        ("POST", "/api/v1/webhook/%2e%2e/orders"),
        ("POST", "/api/v1/webhook/..%2forders"),
        ("POST", "/api/v1/./orders"),
        ("POST", "/api/v1/./webhook"),
        ("POST", "/api/v1/webhook/a/b"),
    ],
)
def test_the_dashboard_is_not_on_the_public_site(site, method, path):
    """Caddy answers everything but the webhook itself, even with the right bearer token."""
    before = len(site.seen)
    orders = len(site.gateway.all_orders())
    body = json.dumps({"symbol": "MSFT", "action": "BUY", "quantity": 1}).encode()
    res = site.send(
        method,
        path,
        body if method == "POST" else b"",
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
    )
    assert res.status == 404, (res.status, res.body)
    assert "set-cookie" not in {name.lower() for name in res.headers}
    assert all(row["endpoint"] in (None, "api.webhook_alert") for row in site.seen[before:])
    assert len(site.gateway.all_orders()) == orders


def test_the_dashboard_stays_reachable_on_loopback(site):
    """The private way in: the app's own loopback port (an SSH tunnel ends there)."""
    host, port = site.app_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/api/v1/state", headers={"Authorization": f"Bearer {API_TOKEN}"})
    res = conn.getresponse()
    res.read()
    conn.close()
    assert res.status == 200
    assert seen_for(site, "/api/v1/state")[-1]["remote"] == "127.0.0.1"
    assert seen_for(site, "/api/v1/state")[-1]["scheme"] == "http"
