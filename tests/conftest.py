"""Shared fixtures: an embedded simulated gateway and the app connected to it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

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
