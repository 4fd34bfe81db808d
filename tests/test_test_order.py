"""The standalone baseline script, run as a trader runs it."""

import subprocess
import sys

import pytest

from conftest import ROOT, TRADING_CLOCK
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings


def run_script(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "test_order.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_fills_against_the_embedded_gateway():
    result = run_script("--settle", "0.2,0.3,0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Embedded simulated IB Gateway" in out
    assert "📊 Status: None → PendingSubmit" in out
    assert "→ Filled" in out
    assert "⏱️ Applying sleep workaround" in out and "✅ Sleep completed" in out
    assert "🎉 SUCCESS! Order reached: Filled" in out


def test_non_zero_exit_when_the_order_does_not_fill(gateway):
    result = run_script(
        "--port",
        str(gateway.port),
        "--host",
        "127.0.0.1",
        "--order-type",
        "LMT",
        "--limit-price",
        "1",
        "--settle",
        "0,0,0",
        "--timeout",
        "1",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Submitted" in result.stdout and "did not fill" in result.stdout


def test_unknown_symbol_and_bad_flags_fail_clearly(gateway):
    result = run_script("--port", str(gateway.port), "--host", "127.0.0.1", "--symbol", "ZZZZ")
    assert result.returncode == 2 and "Unknown symbol" in result.stdout
    result = run_script("--order-type", "LMT")
    assert result.returncode == 2 and "--limit-price" in result.stderr
    assert run_script("--quantity", "0").returncode == 2


def test_connection_refused_is_reported(gateway):
    port = gateway.port
    gateway.stop()
    result = run_script("--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2 and "Cannot connect" in result.stdout


def test_fills_on_an_account_without_any_market_data(start_gateway_without_data):
    """No subscription and no delayed data (--market-data-subscriptions none): an order needs
    no quote, so the baseline still fills — embedded and against a separate gateway."""
    result = run_script("--settle", "0.2,0.3,0.2", "--sim-market-data", "none")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "🎉 SUCCESS! Order reached: Filled" in result.stdout
    gateway = start_gateway_without_data
    result = run_script("--host", "127.0.0.1", "--port", str(gateway.port), "--settle", "0,0,0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(f"Error {code}" in result.stdout for code in (354, 10167, 10168))


@pytest.fixture
def start_gateway_without_data():
    gw = SimGateway(
        ServerSettings(port=0, clock_start=TRADING_CLOCK, market_data="none"), BrokerConfig(seed=7)
    ).start()
    yield gw
    gw.stop()
