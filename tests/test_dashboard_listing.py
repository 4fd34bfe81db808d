"""A stock listed in another currency, in a real browser: the ticket names the listing and
trades it, and its position's Close sells that listing, not the US one."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from test_dashboard import Dashboard, dash, live  # noqa: F401 - the browser fixtures
from test_risk_currency import AAPL_EUR

from conftest import TRADING_CLOCK, wait_for
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings


@pytest.fixture
def gateway() -> Iterator[SimGateway]:
    """A gateway that also lists AAPL in euros (as IB does, on Xetra)."""
    gw = SimGateway(
        ServerSettings(port=0, clock_start=TRADING_CLOCK),
        BrokerConfig(seed=7, extra_contracts=(AAPL_EUR,)),
    ).start()
    yield gw
    gw.stop()


def holdings(board: Dashboard) -> dict[tuple[str, str], float]:
    status, answer = board.live.api("GET", "/api/v1/positions")
    assert status == 200, answer
    return {(p["symbol"], p["currency"]): p["quantity"] for p in answer["positions"]}


def hold_five_in_euros(board: Dashboard) -> None:
    status, order = board.live.api(
        "POST",
        "/api/v1/orders",
        {"symbol": "AAPL", "currency": "EUR", "action": "BUY", "quantity": 5},
    )
    assert status == 202, order
    wait_for(lambda: holdings(board) == {("AAPL", "EUR"): 5})


def test_a_close_of_a_stock_listed_in_euros_sells_that_listing(dash: Dashboard) -> None:
    """Close sent the symbol alone, which the broker takes as the US listing: the trader sold
    5 AAPL in dollars (a new short) and kept the 5 in euros."""
    hold_five_in_euros(dash)
    page = dash.open().page
    position = page.locator("#positions tbody tr").filter(has_text="AAPL")
    expect(position.locator(".tag.ccy").first).to_have_text("EUR")
    position.locator("button.close-position").click()
    expect(page.locator("#currency")).to_have_value("EUR")
    expect(page.locator("#action-sell")).to_be_checked()
    expect(page.locator("#quantity")).to_have_value("5")
    page.click("#review-btn")
    expect(page.locator("#confirm-words")).to_have_text("Sell 5 AAPL (EUR listing) at market, DAY")
    status, quote = dash.live.api("GET", "/api/v1/quote?symbol=AAPL&currency=EUR")
    assert status == 200 and quote["bid"] < 150, quote  # the euro listing's, not the US one's
    notional = page.locator("#confirm-notional")
    expect(notional).to_contain_text("EUR")
    expect(notional).to_contain_text(re.compile(r"5 × bid (9\d|1[0-4]\d)\."))
    dash.shot("close-eur-listing")
    expect(page.locator("#confirm-send")).to_be_enabled()
    page.click("#confirm-send")
    wait_for(lambda: holdings(dash) == {}, timeout=10)
    dash.enter_symbol("MSFT")  # the next order, once the close was sent: on the US listing
    expect(page.locator("#currency")).to_have_value("USD")


def test_a_symbol_typed_after_a_close_is_asked_for_in_dollars_again(dash: Dashboard) -> None:
    """The Close set the ticket's currency to the closed listing's; another symbol typed then
    is a new order, on its US listing unless the trader types a currency."""
    hold_five_in_euros(dash)
    page = dash.open().page
    page.locator("#positions tbody tr").filter(has_text="AAPL").locator(
        "button.close-position"
    ).click()
    expect(page.locator("#currency")).to_have_value("EUR")
    dash.shot("ticket-currency")
    dash.enter_symbol("MSFT")
    expect(page.locator("#currency")).to_have_value("USD")
    dash.allow_console_error("status of 400")  # MSFT's quote asked as an FX pair
    page.select_option("#sec_type", "CASH")
    expect(page.locator("#currency")).to_be_hidden()  # an FX pair's currencies are its symbol


def test_a_close_offers_to_cancel_only_its_listings_working_orders(dash: Dashboard) -> None:
    """The Close dialog matched working orders by symbol: closing the euro listing offered
    (ticked) to cancel a working order on the US one, which guards nothing of it."""
    hold_five_in_euros(dash)
    ids = {}
    for name, currency, action in (("eur", "EUR", "SELL"), ("usd", "USD", "BUY")):
        status, quote = dash.live.api("GET", f"/api/v1/quote?symbol=AAPL&currency={currency}")
        assert status == 200, quote
        body = {
            "symbol": "AAPL",
            "currency": currency,
            "action": action,
            "quantity": 1,
            "order_type": "LMT",
            "limit_price": round(quote["bid"] * (1.05 if action == "SELL" else 0.95), 2),
        }
        status, order = dash.live.api("POST", "/api/v1/orders", body)
        assert status == 202, order
        ids[name] = order["id"]
    wait_for(lambda: len(dash.gateway.open_orders()) == 2)
    page = dash.open().page
    expect(page.locator("#working-count")).to_have_text("2")
    page.locator("#positions tbody tr").filter(has_text="AAPL").locator(
        "button.close-position"
    ).click()
    dialog = page.locator("#close-dialog")
    expect(dialog).to_contain_text("1 order is still working for AAPL")
    expect(dialog.locator(f"input[data-order-id='{ids['eur']}']")).to_be_checked()
    expect(dialog.locator(f"input[data-order-id='{ids['usd']}']")).to_have_count(0)
