"""The dashboard's options and futures panel in a real browser (static/deriv/).

Same harness as test_dashboard.py (its fixtures: the app served by waitress on the simulated
gateway, Debian's chromium through Playwright, every console error a failure).
"""

from __future__ import annotations

import re

import pytest
import test_dashboard
from playwright.sync_api import Page, expect
from test_dashboard import Dashboard, number, posted, routed

from conftest import wait_for

pytestmark = pytest.mark.browser
live, dash = test_dashboard.live, test_dashboard.dash  # fixtures
EXPIRY = "20261218"  # a monthly expiry of the simulator's AAPL chain (its clock: 2026-11-30)


def load_chain(board: Dashboard, expiry: str) -> None:
    page = board.page
    page.fill("#chain-symbol", "aapl")
    page.click("#chain-load")
    tab = page.locator(f'.chain-tab[data-expiry="{expiry}"]')
    expect(tab).to_be_visible()
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("#chain-status")).to_contain_text(f"AAPL {expiry}")
    # the board's time (ISO text on the wire) in the page's one clock format, with its zone
    expect(page.locator("#chain-status")).to_contain_text(re.compile(r" as of \d\d:\d\d:\d\d \S+$"))


def test_chain_view_fills_the_ticket_and_the_option_fills_with_multiplier_100(dash: Dashboard):
    page = dash.open().page
    load_chain(dash, EXPIRY)
    rows = page.locator("#chain-table tbody tr")
    expect(rows).to_have_count(13)  # the simulator lists 13 strikes: all within 8 of the money
    expect(page.locator("#chain-table tbody tr.atm")).to_have_count(1)
    atm = float(page.locator("#chain-table tbody tr.atm").get_attribute("data-strike") or "0")
    assert abs(atm - 190) <= 10
    row = page.locator('#chain-table tbody tr[data-strike="200"]')
    call_delta = number(row.locator("td").nth(3).text_content())
    put_delta = number(row.locator("td").nth(8).text_content())
    assert 0 < call_delta < 1 and -1 < put_delta < 0
    assert re.fullmatch(r"\d+\.\d%", row.locator("td").nth(2).text_content() or "")
    dash.shot("deriv-chain")

    ask_button = page.locator('[data-leg="call-200-ask"]')
    ask = number(ask_button.text_content())
    ask_button.click()
    expect(page.locator("#dt-sec_type")).to_have_value("OPT")
    expect(page.locator("#dt-expiry")).to_have_value(EXPIRY)
    expect(page.locator("#dt-strike")).to_have_value("200")
    expect(page.locator("#dt-right")).to_have_value("C")
    expect(page.locator("#dt-action")).to_have_value("BUY")
    expect(page.locator("#dt-order_type")).to_have_value("LMT")
    assert float(page.input_value("#dt-limit_price")) == ask
    limit = round(ask + 0.10, 2)  # the simulator's prices move: stay marketable if the ask ticks up
    page.fill("#dt-limit_price", str(limit))
    page.fill("#dt-quantity", "3")
    page.click("#dt-review")
    words = page.locator("#dt-confirm-words")
    expect(words).to_contain_text(f"Buy 3 AAPL {EXPIRY} 200 C limit")
    expect(words).to_contain_text("×100")
    dash.shot("deriv-confirm")
    page.click("#dt-send")
    expect(page.locator("#dt-result")).to_have_attribute("data-verdict", "filled")

    position = page.locator("#positions tbody tr").filter(has_text=f"AAPL {EXPIRY} 200 C")
    expect(position).to_contain_text("×100")
    expect(position.locator("td").nth(1)).to_have_text("3")
    filled_at = re.search(r"filled at ([\d.]+)", page.locator("#dt-result").text_content() or "")
    assert filled_at and float(filled_at.group(1)) <= limit  # a limit buy never pays above it
    average = number(position.locator("td").nth(2).text_content())  # per unit, like the price
    assert average == pytest.approx(float(filled_at.group(1)) + 0.0065, abs=1e-4)  # + commission
    # the row can show before the option's first mark ("—"): wait for the price
    expect(position.locator("td").nth(3)).to_have_text(re.compile(r"^\d"))
    cells = position.locator("td").all_text_contents()  # in one read: a new mark redraws the row
    price, value = number(cells[3]), number(cells[4].replace("$", ""))
    assert value == pytest.approx(price * 3 * 100, rel=0.01)
    expect(
        page.locator("#fills tbody tr").filter(has_text=f"AAPL {EXPIRY} 200 C")
    ).not_to_have_count(0)
    [held] = [
        p for p in dash.gateway.positions() if p.contract.local_symbol == "AAPL  261218C00200000"
    ]
    assert held.position == 3
    dash.shot("deriv-position")

    # a market order on an option: refused without the acknowledgement, filled with it
    dash.allow_console_error("422")  # the browser logs the refused POST
    page.locator('[data-leg="put-190-bid"]').click()
    expect(page.locator("#dt-action")).to_have_value("SELL")
    page.select_option("#dt-action", "BUY")
    page.select_option("#dt-order_type", "MKT")
    expect(page.locator("#dt-ack")).to_be_visible()
    orders_before = len(dash.gateway.all_orders())
    page.click("#dt-review")
    page.click("#dt-send")
    expect(page.locator("#dt-error")).to_contain_text("market_order_ack")
    assert len(dash.gateway.all_orders()) == orders_before
    page.check("#dt-market_order_ack")
    page.click("#dt-review")
    page.click("#dt-send")
    expect(page.locator("#dt-result")).to_have_attribute("data-verdict", "filled")
    expect(
        page.locator("#positions tbody tr").filter(has_text=f"AAPL {EXPIRY} 190 P")
    ).to_contain_text("×100")


def test_futures_ticket_picks_a_contract_month_and_a_market_order_fills(dash: Dashboard):
    page = dash.open().page
    page.select_option("#dt-sec_type", "FUT")
    page.fill("#dt-symbol", "es")
    page.locator("#dt-symbol").dispatch_event("change")
    months = page.locator("#dt-month option")
    expect(months).to_have_count(3)
    expect(months.first).to_contain_text("ESZ6")
    page.select_option("#dt-month", index=1)  # the March contract
    page.select_option("#dt-order_type", "MKT")
    expect(page.locator("#dt-limit_price")).to_be_disabled()
    expect(page.locator("#dt-ack")).to_be_hidden()  # the acknowledgement is for options only
    page.click("#dt-review")
    expect(page.locator("#dt-confirm-words")).to_contain_text("Buy 1 ES 202703 at market")
    page.click("#dt-send")
    expect(page.locator("#dt-result")).to_have_attribute("data-verdict", "filled")
    position = page.locator("#positions tbody tr").filter(has_text="ES 202703")
    expect(position).to_contain_text("×50")
    [held] = wait_for(
        lambda: [p for p in dash.gateway.positions() if p.contract.local_symbol == "ESH7"]
    )
    assert held.position == 1 and held.contract.multiplier == "50"
    dash.shot("deriv-future")

    position.locator(".close-position").click()  # a derivative's Close fills the derivatives ticket
    expect(page.locator("#dt-contract")).to_contain_text("ES 202703 (ESH7)")
    expect(page.locator("#dt-action")).to_have_value("SELL")
    page.select_option("#dt-order_type", "MKT")
    page.click("#dt-review")
    page.click("#dt-send")
    expect(page.locator("#dt-result")).to_have_attribute("data-verdict", "filled")
    wait_for(
        lambda: (
            not [
                p
                for p in dash.gateway.positions()
                if p.contract.local_symbol == "ESH7" and p.position
            ]
        )
    )


def es_at_market(page: Page) -> None:
    """The derivatives ticket on an ES future (its front month) at market."""
    page.select_option("#dt-sec_type", "FUT")
    page.fill("#dt-symbol", "es")
    page.locator("#dt-symbol").dispatch_event("change")
    expect(page.locator("#dt-month option")).to_have_count(3)
    page.select_option("#dt-order_type", "MKT")


def test_an_order_sent_again_after_its_answer_was_lost_is_placed_once(dash: Dashboard):
    """The server placed the order but its answer never reached the page: the trader reviews
    and confirms the same order again, and the retry answers the first order (the ticket
    sends an Idempotency-Key, kept for that order until an answer comes)."""
    page = dash.open().page
    es_at_market(page)
    lost = dash.lose_first_answer(r".*/api/v1/orders\?wait=1$")  # placed, the answer lost
    page.click("#dt-review")
    page.click("#dt-send")
    expect(page.locator("#dt-error")).to_contain_text("cannot be reached")
    assert lost and lost[0] in (200, 202)
    page.click("#dt-review")
    page.click("#dt-send")
    expect(page.locator("#dt-result")).to_have_attribute("data-verdict", "filled")
    # the answer is the first order's: said so, not shown as a new one filled
    expect(page.locator("#dt-result")).to_contain_text("already placed: not sent twice")
    [held] = wait_for(
        lambda: [p for p in dash.gateway.positions() if p.contract.local_symbol == "ESZ6"]
    )
    assert held.position == 1
    assert len(dash.gateway.all_orders()) == 1


def test_a_second_enter_does_not_send_an_order_nobody_saw(dash: Dashboard):
    """Enter on the ticket reviews; a second Enter (a key repeat, a double press) lands on
    Back, not on Confirm, which takes no input for its first 500 ms: nothing is sent."""
    page = dash.open().page
    es_at_market(page)
    page.evaluate("""() => {  // Confirm's state the moment the step appears
        const step = document.getElementById("dt-confirm");
        new MutationObserver(() => {
            if (!step.hidden) window.sendWhenShown = document.getElementById("dt-send").disabled;
        }).observe(step, {attributes: true, attributeFilter: ["hidden"]});
    }""")
    page.focus("#dt-quantity")
    page.keyboard.press("Enter")  # Review
    expect(page.locator("#dt-back")).to_be_focused()
    assert page.evaluate("window.sendWhenShown") is True
    page.keyboard.press("Enter")  # the second press lands on Back
    expect(page.locator("#dt-confirm")).to_be_hidden()
    dash.requests_settled()
    assert not posted(dash, "/api/v1/orders?wait=1") and not dash.gateway.all_orders()
    page.click("#dt-review")
    expect(page.locator("#dt-back")).to_be_focused()
    page.click("#dt-send")  # a deliberate Confirm, once the step took input
    expect(page.locator("#dt-result")).to_have_attribute("data-verdict", "filled")


def test_a_close_of_a_future_sold_elsewhere_meanwhile_is_not_sent(dash: Dashboard):
    """The ticket was filled to close 1 ES; it is sold elsewhere before Confirm: selling it
    would leave the trader short 1, so nothing is sent and the ticket says why."""
    page = dash.open().page
    es_at_market(page)
    page.click("#dt-review")
    page.click("#dt-send")
    expect(page.locator("#dt-result")).to_have_attribute("data-verdict", "filled")
    position = page.locator("#positions tbody tr").filter(has_text="ES 202612")
    position.locator(".close-position").click()
    expect(page.locator("#dt-action")).to_have_value("SELL")
    expect(page.locator("#dt-quantity")).to_have_value("1")
    page.select_option("#dt-order_type", "MKT")
    page.click("#dt-review")
    held: list = []
    page.route("**/api/v1/positions", lambda route: held.append(route))
    page.click("#dt-send")  # the position is read first: Back meanwhile sends nothing
    routed(page, held)
    expect(page.locator("#dt-send")).to_be_disabled()  # no second Confirm meanwhile
    page.click("#dt-back")
    for route in held:
        route.continue_()
    page.unroute("**/api/v1/positions")
    dash.requests_settled()
    assert len(posted(dash, "/api/v1/orders?wait=1")) == 1  # the buy only
    page.click("#dt-review")
    expect(page.locator("#dt-send")).to_be_enabled()
    sale = {"symbol": "ES", "sec_type": "FUT", "local_symbol": "ESZ6", "action": "SELL"}
    status, answer = dash.live.api("POST", "/api/v1/orders?wait=1", {**sale, "quantity": 1})
    assert status in (200, 202), answer
    expect(position).to_have_count(0)
    page.click("#dt-send")
    expect(page.locator("#dt-error")).to_contain_text(
        "Not sent: ESZ6 is no longer held (the ticket was filled to close 1)"
    )
    assert len(posted(dash, "/api/v1/orders?wait=1")) == 1  # the buy only
    assert not [p for p in dash.gateway.positions() if p.position]


def test_a_board_is_not_shown_under_another_expirys_tab(dash: Dashboard):
    """Choosing another expiry takes the old board away while the new one is quoted: its
    prices (a click fills the ticket with that contract) never stand under the new tab."""
    page = dash.open().page
    page.fill("#chain-symbol", "aapl")
    page.click("#chain-load")
    first = page.locator(".chain-tab").first
    expect(first).to_have_attribute("aria-selected", "true")
    expect(page.locator("#chain-status")).to_contain_text("underlying")
    expect(page.locator('[data-leg="call-200-ask"]')).to_be_visible()
    page.route(re.compile(rf".*/api/v1/options/quotes\?.*expiry={EXPIRY}.*"), lambda r: r.abort())
    dash.allow_console_error(r"ERR_FAILED|Failed to load resource")
    page.locator(f'.chain-tab[data-expiry="{EXPIRY}"]').click()
    expect(page.locator("#chain-status")).to_contain_text("cannot be reached")
    expect(page.locator(f'.chain-tab[data-expiry="{EXPIRY}"]')).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.locator('[data-leg="call-200-ask"]')).to_be_hidden()


def test_the_ticket_shows_every_decimal_and_asks_for_the_symbol_when_the_mode_is_unknown(
    dash: Dashboard,
):
    """The confirmation rounded a limit to two decimals (9.005 read "limit 9.01"), and a
    /status that could not be read hid the typed-symbol check of a live account: unknown, the
    ticket now asks as for a live one."""
    page = dash.open().page
    load_chain(dash, EXPIRY)
    page.locator('[data-leg="call-200-ask"]').click()
    page.fill("#dt-limit_price", "9.005")
    page.click("#dt-review")
    expect(page.locator("#dt-confirm-words")).to_contain_text("limit 9.005")
    expect(page.locator("#dt-live-guard")).to_be_hidden()  # a paper account: no typed symbol
    page.click("#dt-back")
    dash.allow_console_error("502")  # the browser logs the failed GET
    page.route("**/api/v1/status", lambda route: route.fulfill(status=502, body="bad gateway"))
    try:
        page.click("#dt-review")
        expect(page.locator("#dt-live-guard")).to_be_visible()
        expect(page.locator("#dt-live-text")).to_have_text("Type AAPL to confirm this order.")
    finally:
        page.unroute("**/api/v1/status")
    orders_before = len(dash.gateway.all_orders())
    page.wait_for_timeout(600)  # past the Confirm button's guard time
    page.click("#dt-send")  # without the typed symbol: nothing is sent
    expect(page.locator("#dt-live-confirm")).to_have_attribute("aria-invalid", "true")
    assert len(dash.gateway.all_orders()) == orders_before


def test_a_late_chain_answer_of_the_previous_symbol_is_not_shown_under_the_new_one(
    dash: Dashboard,
):
    """A slow AAPL board arriving after SPY was loaded (both have the expiry) replaced SPY's
    prices under SPY's tabs; a click then filled the ticket with an AAPL option."""
    page = dash.open().page
    held: list = []
    page.route("**/api/v1/options/quotes?symbol=AAPL*", lambda route: held.append(route))
    page.fill("#chain-symbol", "aapl")
    page.click("#chain-load")
    routed(page, held)
    expiry = re.search(r"expiry=(\d+)", held[0].request.url).group(1)  # type: ignore[union-attr]
    page.fill("#chain-symbol", "spy")
    page.click("#chain-load")
    page.locator(f'.chain-tab[data-expiry="{expiry}"]').click()  # the expiry AAPL's board is of
    expect(page.locator("#chain-status")).to_contain_text(f"SPY {expiry}")
    expect(page.locator("#chain-table")).to_be_visible()
    spy_strikes = page.locator("#chain-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.strike)"
    )
    with page.expect_response(lambda r: "symbol=AAPL" in r.url, timeout=15_000):
        held[0].continue_()  # AAPL's board now comes back
    page.unroute("**/api/v1/options/quotes?symbol=AAPL*")
    page.wait_for_timeout(300)  # the page has handled it
    expect(page.locator("#chain-status")).to_contain_text(f"SPY {expiry}")
    assert (
        page.locator("#chain-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.strike)"
        )
        == spy_strikes
    )


def test_a_late_futures_month_list_of_the_previous_symbol_is_not_shown_under_the_new_one(
    dash: Dashboard,
):
    """ES's months arriving after NQ's replaced them under the symbol NQ: the order went out
    as NQ with ES's month and its notional was figured with ES's multiplier (x50, not x20)."""
    page = dash.open().page
    held: list = []
    page.route("**/api/v1/futures/contracts?symbol=ES*", lambda route: held.append(route))
    page.select_option("#dt-sec_type", "FUT")
    page.fill("#dt-symbol", "es")
    page.locator("#dt-symbol").dispatch_event("change")
    routed(page, held)
    page.fill("#dt-symbol", "nq")
    page.locator("#dt-symbol").dispatch_event("change")
    months = page.locator("#dt-month option")
    expect(months.first).to_contain_text("NQZ6")
    with page.expect_response(lambda r: "symbol=ES" in r.url, timeout=15_000):
        held[0].continue_()  # ES's months now come back
    page.unroute("**/api/v1/futures/contracts?symbol=ES*")
    page.wait_for_timeout(300)  # the page has handled it
    expect(months.first).to_contain_text("NQZ6")
    assert all("×20" in text for text in months.all_text_contents())
