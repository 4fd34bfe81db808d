"""The dashboard on IB's bad days, in a real browser: a server outage (1100 → 1102) in the
header and the ticket, the farms in the health bar, delayed quotes labelled, and the reason
shown when the account has no market data at all."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from test_dashboard import Dashboard, dash, live  # noqa: F401 - the browser fixtures

from conftest import TRADING_CLOCK, wait_for
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings


@pytest.fixture
def gateway(request) -> Iterator[SimGateway]:
    """A gateway whose account has the market data named by the parameter (default live)."""
    kind = getattr(request, "param", "live")
    gw = SimGateway(
        ServerSettings(port=0, clock_start=TRADING_CLOCK, market_data=kind), BrokerConfig(seed=7)
    ).start()
    yield gw
    gw.stop()


def test_outage_shows_in_the_header_and_blocks_the_ticket_until_1102(
    dash: Dashboard, gateway: SimGateway
) -> None:
    dash.allow_console_error("status of 503")  # the ticket's quote, refused during the outage
    page = dash.open().page
    dash.enter_symbol("AAPL")
    ib = page.locator("#conn-ib")
    expect(ib.locator(".conn-state")).to_have_text("reachable")
    expect(ib.locator(".conn-age")).to_have_text(re.compile(r"^\d+ farm\(s\) ok$"))
    stale = page.locator(".stale-note")  # account, positions, watchlist, chart, P&L
    expect(stale).to_have_count(5)
    for note in stale.all():
        expect(note).to_be_hidden()
    gateway.outage(seconds=600)  # until every look below is done, however slow the machine
    expect(page.locator("#health")).to_have_text("IB servers unreachable")
    # the gateway pushes nothing meanwhile: every panel of broker figures says it is stale,
    # and the ticket shows no last prices (nor offers them to the limit field)
    for note in stale.all():
        expect(note).to_have_text("stale")
        expect(note).to_have_attribute("title", re.compile("IB's servers are unreachable"))
    expect(page.locator("body")).to_have_class(re.compile(r"\bdata-stale\b"))
    expect(page.locator("#quote-bid")).to_have_text("—")
    expect(page.locator("#quote-bid-btn")).to_be_disabled()
    expect(ib.locator(".conn-state")).to_have_text(
        re.compile(r"^unreachable since \d\d:\d\d:\d\d \S+$")
    )
    expect(ib.locator(".conn-age")).to_have_text(
        re.compile(r"^3 farms broken since \d\d:\d\d:\d\d \S+$")
    )
    title = ib.get_attribute("title") or ""
    assert "market data farm usfarm: broken since" in title and "(2103)" in title
    expect(page.locator("#review-btn")).to_be_disabled()
    notice = page.locator("#ticket-notice")
    expect(notice).to_contain_text("IB servers unreachable (error 1100")
    expect(notice).to_contain_text("nothing is queued to send later")
    dash.shot("ib_servers_unreachable")
    gateway.end_outage()  # 1102
    expect(page.locator("#health")).to_have_text("connected", timeout=15_000)
    expect(ib.locator(".conn-state")).to_have_text("reachable")
    expect(notice).to_be_hidden()
    assert "usfarm: ok since" in (ib.get_attribute("title") or "")
    expect(page.locator("#review-btn")).to_be_enabled()
    for note in stale.all():
        expect(note).to_be_hidden()
    expect(page.locator("body")).not_to_have_class(re.compile(r"\bdata-stale\b"))
    expect(page.locator("#quote-bid")).to_have_text(re.compile(r"^\d[\d,]*\.\d{2,5}$"))


@pytest.mark.parametrize("gateway", ["delayed"], indirect=True)
def test_delayed_quote_is_labelled_on_every_price(dash: Dashboard, gateway: SimGateway) -> None:
    dash.allow_console_error(r"status of 502")  # the chart: IB serves no bars without live data
    page = dash.open().page
    expect(page.locator("#chart-status")).to_contain_text("live market data subscription")
    bid = dash.enter_symbol("AAPL")
    assert bid > 0
    expect(page.locator("#quote")).to_have_class(re.compile(r"\bdelayed\b"))
    expect(page.locator("#quote-status")).to_contain_text("DELAYED (~15 min old")
    label = page.locator("#quote-bid-btn .quote-label")
    after = label.evaluate("node => getComputedStyle(node, '::after').content")
    assert "delayed" in after
    dash.shot("delayed_quote")


@pytest.mark.parametrize("gateway", ["delayed"], indirect=True)
def test_delayed_position_prices_are_labelled(dash: Dashboard, gateway: SimGateway) -> None:
    dash.allow_console_error(r"status of 502")  # the chart: IB serves no bars without live data
    page = dash.open().page
    status, body = dash.live.api(
        "POST", "/api/v1/orders", {"symbol": "MSFT", "action": "BUY", "quantity": 4}
    )
    assert status == 202, body
    row = page.locator("#positions tbody tr").filter(has_text="MSFT")
    price = row.locator("td[data-label=Price]")
    expect(price.locator(".tag.delayed")).to_have_text("delayed")
    expect(price).to_have_class(re.compile(r"\bdelayed\b"))
    assert "no live market-data subscription" in (price.get_attribute("title") or "")
    expect(row.locator("td[data-label=Value] .tag.delayed")).to_have_text("delayed")
    # the row can come before its first mark ("—", labelled already): wait for the price
    expect(price).to_have_text(re.compile(r"^[\d,]+\.\d+\s*delayed$"))
    assert float((price.text_content() or "").removesuffix("delayed").replace(",", "")) > 0
    dash.shot("delayed_positions")


@pytest.mark.parametrize("live", ["frozen_data"], indirect=True)
def test_frozen_prices_are_labelled_in_the_ticket_and_the_positions(
    dash: Dashboard, gateway: SimGateway
) -> None:
    """Asked for delayed-frozen data (MARKET_DATA_TYPE=4), a subscribed account gets frozen
    prices (IB's last ones before the close): labelled like delayed ones, with their kind."""
    page = dash.open().page
    status, body = dash.live.api(
        "POST", "/api/v1/orders", {"symbol": "MSFT", "action": "BUY", "quantity": 4}
    )
    assert status == 202, body
    dash.enter_symbol("AAPL")
    expect(page.locator("#quote-status")).to_contain_text("FROZEN (the last price IB recorded")
    label = page.locator("#quote-bid-btn .quote-label")
    assert "frozen" in label.evaluate("node => getComputedStyle(node, '::after').content")
    wait_for(
        lambda: (
            dash.live.api("GET", "/api/v1/positions")[1]["positions"][0]["market_data"] == "frozen"
        )
    )
    price = (
        page.locator("#positions tbody tr").filter(has_text="MSFT").locator("td[data-label=Price]")
    )
    expect(price.locator(".tag.delayed")).to_have_text("frozen")
    assert "before the market closed" in (price.get_attribute("title") or "")


def test_live_position_prices_are_not_labelled(dash: Dashboard, gateway: SimGateway) -> None:
    page = dash.open().page
    status, body = dash.live.api(
        "POST", "/api/v1/orders", {"symbol": "MSFT", "action": "BUY", "quantity": 4}
    )
    assert status == 202, body
    row = page.locator("#positions tbody tr").filter(has_text="MSFT")
    expect(row.locator("td[data-label=Price]")).not_to_have_text("—")
    wait_for(
        lambda: (
            dash.live.api("GET", "/api/v1/positions")[1]["positions"][0]["market_data"] == "live"
        )
    )
    expect(row.locator(".tag.delayed")).to_have_count(0)


@pytest.mark.parametrize("gateway", ["none"], indirect=True)
def test_no_market_data_shows_the_reason_and_what_to_do(
    dash: Dashboard, gateway: SimGateway
) -> None:
    dash.allow_console_error("status of 502")  # the chart's bars: IB refuses them too (162)
    page = dash.open().page
    page.fill("#symbol", "AAPL")
    status = page.locator("#quote-status")
    expect(status).to_contain_text("IB error 10168")
    expect(status).to_contain_text("Client Portal")
    expect(page.locator("#quote-bid")).to_have_text("—")
    expect(page.locator("#chart-status")).to_contain_text("No bars for AAPL: IB error")
    dash.shot("no_market_data")


def test_competing_session_is_named_in_the_quote(dash: Dashboard, gateway: SimGateway) -> None:
    dash.allow_console_error("status of 503")  # the ticket's quote, refused during the outage
    page = dash.open().page
    dash.enter_symbol("AAPL")
    gateway.competing_session(seconds=600)
    status = page.locator("#quote-status")
    expect(status).to_contain_text("competing live session", timeout=10_000)
    expect(status).to_contain_text("Log out of the other session")
    expect(page.locator("#quote-bid")).to_have_text("—")
    dash.shot("competing_session")


def test_a_journal_that_cannot_be_written_shows_in_the_health_bar(
    dash: Dashboard, gateway: SimGateway
) -> None:
    """A full disk said "connected" on the page while orders were refused: the badge says
    the journal is not saving, a Journal entry says since when and why, both clear by
    themselves once it saves again."""
    page = dash.open().page
    expect(page.locator("#health")).to_have_text("connected")
    journal_chip = page.locator("#conn-journal")
    expect(journal_chip).to_be_hidden()
    journal = dash.live.app.extensions["trading"].journal
    journal.make_read_only()
    try:
        order = {"symbol": "AAPL", "action": "BUY", "quantity": 1, "order_type": "MKT"}
        status, body = dash.live.api("POST", "/api/v1/orders", order)
        assert status == 503, body  # refused: it could not be journaled
        expect(page.locator("#health")).to_have_text("journal not saving")
        expect(journal_chip).to_be_visible()
        expect(journal_chip.locator(".conn-state")).to_have_text(
            re.compile(r"^not saving since \d\d:\d\d:\d\d \S+$")
        )
        assert "readonly" in (journal_chip.get_attribute("title") or "")
        dash.shot("journal_not_saving")
    finally:
        journal._query("PRAGMA query_only=OFF", ())  # the disk has room again
    expect(page.locator("#health")).to_have_text("connected", timeout=10_000)  # a probe saved
    expect(journal_chip).to_be_hidden()


def test_a_broken_market_data_farm_marks_the_figures_stale_until_it_is_back(
    dash: Dashboard, gateway: SimGateway
) -> None:
    """2103 alone (IB's servers still reachable): the farm's quotes stop until 2104, and the
    positions' marks and the P&L with them; the panels say so instead of looking live."""
    page = dash.open().page
    stale = page.locator(".stale-note")
    expect(stale).to_have_count(5)
    gateway.farm_down()  # until farm_up
    expect(page.locator("body")).to_have_class(re.compile(r"\bdata-stale\b"))
    for note in stale.all():
        expect(note).to_have_text("stale")
        expect(note).to_have_attribute(
            "title", re.compile("market data farm usfarm is broken: prices may be frozen")
        )
    expect(page.locator("#conn-ib .conn-state")).to_have_text("farm down")
    gateway.farm_up()
    expect(page.locator("body")).not_to_have_class(re.compile(r"\bdata-stale\b"))
    for note in stale.all():
        expect(note).to_be_hidden()
