"""A position in another currency than the account's (USD.JPY: yen): its price, value and
unrealized P&L stay in its own currency, and the dashboard names that currency."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from test_dashboard import Dashboard, dash, live  # noqa: F401 - the browser fixtures

from conftest import wait_for


def marked_row(get, symbol: str):
    """``symbol``'s position once IB's pnlSingle (``daily_pnl``) has reached it."""

    def row():
        rows = [p for p in get()["positions"] if p["symbol"] == symbol]
        return rows and rows[0]["daily_pnl"] is not None and rows[0]

    return wait_for(row, timeout=15)


def test_a_yen_position_keeps_its_price_value_and_pnl_in_yen(client, gateway):
    placed = client.post(
        "/api/v1/orders", json={"symbol": "USD.JPY", "action": "BUY", "quantity": 20_000}
    )
    assert placed.status_code == 202, placed.get_json()
    row = marked_row(lambda: client.get("/api/v1/positions").get_json(), "USD.JPY")
    assert row["currency"] == "JPY"
    # pnlSingle's value is in dollars: divided by the quantity it made a "price" of 1.0
    assert row["market_price"] == pytest.approx(150, rel=0.01)
    assert row["market_value"] == pytest.approx(20_000 * row["market_price"], rel=1e-4)
    expected = (row["market_price"] - row["avg_cost"]) * 20_000
    assert row["unrealized_pnl"] == pytest.approx(expected, abs=1.0)  # yen, as avg_cost
    # the fill's price and value are in yen, and its row says so (it said the commission's)
    [fill] = wait_for(
        lambda: [
            e
            for e in client.get("/api/v1/executions").get_json()["executions"]
            if e["order_ref"] == placed.get_json()["id"]
        ]
    )
    assert fill["currency"] == "JPY" and fill["price"] == pytest.approx(150, rel=0.01)
    assert fill["commission_currency"] in ("", "USD")  # the report's, once it reached the reader
    # /pnl's row names the currency of its yen figures too (it named none)
    pnl = marked_row(lambda: client.get("/api/v1/pnl").get_json(), "USD.JPY")
    assert pnl["currency"] == "JPY" and pnl["market_value"] == pytest.approx(
        row["market_value"], rel=0.01
    )


def test_the_positions_table_names_a_foreign_currency(dash: Dashboard) -> None:
    page = dash.open().page
    for symbol in ("USD.JPY", "MSFT"):
        status, body = dash.live.api(
            "POST", "/api/v1/orders", {"symbol": symbol, "action": "BUY", "quantity": 100}
        )
        assert status == 202, body
    yen = page.locator("#positions tbody tr").filter(has_text="USD.JPY")
    expect(yen.locator("td[data-label=Value] .tag.ccy")).to_have_text("JPY")
    expect(yen.locator("td[data-label=Unrealized] .tag.ccy")).to_have_text("JPY")
    dollars = page.locator("#positions tbody tr").filter(has_text="MSFT")
    expect(dollars.locator("td[data-label=Value]")).not_to_have_text("—")
    expect(dollars.locator(".tag.ccy")).to_have_count(0)


def test_a_fill_leaves_the_price_alone_while_ibs_pnl_single_is_of_the_position_before(
    client, gateway
):
    """IB sends a position's pnlSingle on a cadence of its own, about a second after the
    position message of a fill, and until then its value is of the old quantity: divided by
    the new one it showed AAPL at half its price once as many again were bought."""

    def buy() -> None:
        placed = client.post(
            "/api/v1/orders", json={"symbol": "AAPL", "action": "BUY", "quantity": 100}
        )
        assert placed.status_code == 202, placed.get_json()

    def aapl(quantity: float):
        rows = [p for p in client.get("/api/v1/positions").get_json()["positions"]]
        return next((r for r in rows if r["symbol"] == "AAPL" and r["quantity"] == quantity), None)

    buy()
    price = marked_row(lambda: client.get("/api/v1/positions").get_json(), "AAPL")["market_price"]
    gateway.set_pnl_delay(3)
    buy()
    row = wait_for(lambda: aapl(200))
    assert row["market_price"] == pytest.approx(price, rel=0.02)
    assert row["market_value"] == pytest.approx(200 * row["market_price"], rel=1e-3)
    expected = (row["market_price"] - row["avg_cost"]) * 200
    assert row["unrealized_pnl"] == pytest.approx(expected, abs=2.0)
