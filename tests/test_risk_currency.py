"""The risk gate values an order in the account's base currency: the quote of the listing the
order trades (AAPL in EUR is not AAPL in USD), converted with the FX rate the gateway quotes."""

from __future__ import annotations

import pytest

from conftest import TRADING_CLOCK, api_client, app_settings
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings
from sim_gateway.types import Contract

# AAPL on a European exchange, in euros: the simulator starts it at 100 (the USD listing at 190)
AAPL_EUR = Contract(
    con_id=900_001,
    symbol="AAPL",
    primary_exchange="IBIS",
    currency="EUR",
    local_symbol="AAPL",
    trading_class="XETRA",
    long_name="APPLE INC",
)


@pytest.fixture
def euro_gateway():
    config = BrokerConfig(seed=7, extra_contracts=(AAPL_EUR,))
    gw = SimGateway(ServerSettings(port=0, clock_start=TRADING_CLOCK), config).start()
    yield gw
    gw.stop()


@pytest.fixture
def make_client():
    apps = []

    def make(gw, **limits):
        from app_simple import create_app

        app = create_app({"SETTINGS": app_settings(gw, **limits)})
        apps.append(app)
        return api_client(app)

    yield make
    for app in apps:
        app.extensions["trading"].stop()


def preview(client, **fields):
    body = {"action": "BUY", "order_type": "LMT", **fields}
    return client.post("/api/v1/orders/preview", json=body)


def test_an_order_in_euros_is_checked_against_its_listing_and_valued_in_dollars(
    make_client, euro_gateway
):
    client = make_client(euro_gateway, risk_price_collar_pct=5, risk_max_notional=1000)
    # the USD listing first: its quote must not stand in for the EUR listing's afterwards
    usd = preview(client, symbol="AAPL", quantity=1, limit_price=190.0)
    assert usd.status_code == 200, usd.get_json()
    assert usd.get_json()["risk"]["figures"]["quote_mid"] == pytest.approx(190, rel=0.02)

    euros = preview(client, symbol="AAPL", currency="EUR", quantity=9, limit_price=100.0)
    assert euros.status_code == 200, euros.get_json()  # 100 EUR is inside the EUR collar
    figures = euros.get_json()["risk"]["figures"]
    assert figures["quote_mid"] == pytest.approx(100, rel=0.02)
    assert figures["currency"] == "USD"
    assert figures["fx_rate"] == pytest.approx(1.08, rel=0.01)  # EUR.USD's mid
    assert figures["notional"] == pytest.approx(9 * 100 * 1.08, rel=0.01)

    # 10 shares at 100 EUR are about 1,080 USD: over the 1,000 limit (not 1,000 "dollars")
    over = preview(client, symbol="AAPL", currency="EUR", quantity=10, limit_price=100.0)
    error = over.get_json()["error"]
    assert over.status_code == 422 and error["details"][0]["rule"] == "max_notional", error
    assert error["details"][0]["notional"] == pytest.approx(1080, rel=0.01)
    assert euro_gateway.all_orders() == []


def test_an_order_without_a_rate_into_the_base_currency_is_refused():
    from config import load_settings
    from order_records import OrderIntent
    from risk import RiskGate, RiskRejected

    def quotes(symbol: str, sec_type: str, con_id: int, currency: str):
        if sec_type == "CASH":  # no FX pair converts CHF into USD, either way round
            raise LookupError(f"unknown symbol {symbol!r}")
        return (99.0, 101.0, 100.0)

    settings = load_settings(env={}, dotenv_path=None)
    gate = RiskGate(settings, quotes, lambda: 0, lambda: ("DU1234567",))
    nestle = OrderIntent(symbol="NESN", action="BUY", quantity=1, order_type="MKT", currency="CHF")
    with pytest.raises(RiskRejected) as refused:
        gate.reserve(nestle)
    decision = refused.value.decision
    assert decision.rule == "no_fx_rate" and decision.notional is None
    assert "priced in CHF and the limits are in USD, but no FX pair converts CHF into USD" in (
        decision.message
    )
    assert gate.limits()["notional_today"] == 0


def test_an_fx_cross_is_valued_in_dollars_not_in_its_quote_currency(make_client, gateway):
    # EUR.JPY is priced in yen and EUR.GBP in pounds: 19,000 euros are about 20,500 dollars
    client = make_client(gateway, risk_max_notional=21_000)
    body = {"action": "BUY", "order_type": "MKT"}
    yen = preview(client, **body, symbol="EUR.JPY", quantity=19_000)
    assert yen.status_code == 200, yen.get_json()  # not 3,078,000 "dollars"
    figures = yen.get_json()["risk"]["figures"]
    assert figures["quote_mid"] == pytest.approx(162, rel=0.01)
    assert figures["fx_rate"] == pytest.approx(1 / 150, rel=0.01)  # 1 / USD.JPY
    assert figures["notional"] == pytest.approx(19_000 * 1.08, rel=0.01)

    pounds = preview(client, **body, symbol="EUR.GBP", quantity=19_000)
    assert pounds.status_code == 200, pounds.get_json()
    assert pounds.get_json()["risk"]["figures"]["fx_rate"] == pytest.approx(1.27, rel=0.01)
    # 20,000 euros are about 21,600 dollars: over the limit (not 17,000 pounds read as dollars)
    over = preview(client, **body, symbol="EUR.GBP", quantity=20_000)
    error = over.get_json()["error"]
    assert over.status_code == 422 and error["details"][0]["rule"] == "max_notional", error

    placed = client.post("/api/v1/orders", json={**body, "symbol": "EUR.JPY", "quantity": 19_000})
    assert placed.status_code == 202, placed.get_json()
