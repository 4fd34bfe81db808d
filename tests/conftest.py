"""Shared fixtures: an embedded simulated gateway, the app connected to it, the app served."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import waitress
from waitress import wasyncore

import app_simple
from config import load_settings
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

ROOT = Path(__file__).resolve().parent.parent

API_TOKEN = "test-api-token-0123456789"
# the simulated gateways' clock starts inside a US trading session (a Monday, 10:00 New York)
TRADING_CLOCK = 1_796_050_800.0  # 2026-11-30T10:00:00-05:00
FAST_SETTLE = {"settle_first": 0.1, "settle_validation": 0.2, "settle_final": 0.1}


@pytest.fixture
def gateway():
    """A fresh simulated gateway on a free loopback port."""
    gw = SimGateway(ServerSettings(port=0, clock_start=TRADING_CLOCK), BrokerConfig(seed=7)).start()
    yield gw
    gw.stop()


def app_settings(gateway: SimGateway, **overrides):
    """Settings that point the app at ``gateway`` (no .env, no environment)."""
    values = {"ib_mode": "gateway", "ib_host": "127.0.0.1", "ib_port": gateway.port,
              "connect_timeout": 5, "monitor_timeout": 5, "journal_path": ":memory:",
              "reconcile_grace": 1, "api_token": API_TOKEN, "secret_key": "test-secret-key-0123456789",
              "risk_max_orders_per_minute": 100_000, "risk_max_open_orders": 10_000,
              "risk_price_collar_pct": 50, **FAST_SETTLE, **overrides}
    return load_settings(env={}, dotenv_path=None, overrides=values)


@pytest.fixture
def app(gateway):
    """The app connected to the gateway, services stopped afterwards."""
    from app_simple import create_app

    application = create_app({"SETTINGS": app_settings(gateway), "TESTING": True})
    yield application
    application.extensions["trading"].stop()


def api_client(app):
    """A script's client: every request carries the API bearer token."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_TOKEN}"
    return test_client


@pytest.fixture
def client(app):
    return api_client(app)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(autouse=True)
def _quiet_ib_async():
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    yield


@contextmanager
def served(app) -> Iterator[str]:
    """Serve ``app`` with waitress (the app's options, 8 threads) on a free loopback port in a
    thread."""
    options = {**app_simple.WAITRESS_OPTIONS, "threads": 8}
    server = waitress.create_server(app, host="127.0.0.1", port=0, **options)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop_services = getattr(app_simple, "shutdown", None)
        if stop_services is not None:
            stop_services(app)  # services, then the instance lock
        else:
            app.extensions["trading"].stop()
        # the services' stop closed the event streams; now end waitress's loop from its own
        # thread (closing its sockets from here would race its select())
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(5)
        server.task_dispatcher.shutdown(timeout=5)
        assert not thread.is_alive(), "waitress did not stop"
