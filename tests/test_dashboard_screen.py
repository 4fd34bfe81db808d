"""The trader's screen in a real browser (Chromium via Playwright, the app and simulator for real):
watchlist quotes change without reload, the chart has candles and an order line, dragging the
line and confirming modifies the order at the broker, a fill raises a notification, an alert
fires. Fixtures and helpers are test_dashboard's (one browser per module, console errors fail).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect
from test_dashboard import Dashboard, dash, live, routed  # noqa: F401 - fixtures
from test_screen_api import near_alerts

from conftest import ROOT, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # each takes seconds: scheduled first
VENDOR = ROOT / "static" / "vendor" / "lightweight-charts.js"


@pytest.fixture(autouse=True)
def _chart_library() -> None:
    if not Path(VENDOR).is_file():
        pytest.fail(
            "static/vendor/lightweight-charts.js is missing: run `npm ci && npm run vendor` "
            "(scripts/test does)"
        )


def hold_first(page: Page, method: str) -> list[Route]:
    """Hold the page's first ``method`` request to /api/v1/watchlist (let the others through);
    the held route is the list's item once there is one (``routed``)."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        if route.request.method == method and not held:
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/v1/watchlist", hold)
    return held


def quote_cells(board: Dashboard, symbol: str) -> str:
    return board.page.locator(f'#watchlist tr[data-symbol="{symbol}"] td.last').text_content() or ""


def drag_order_line(board: Dashboard, order_id: str, shot: str | None = None) -> None:
    """Drag the chart's line of ``order_id`` 40 px up, once it is drawn (``shot``: a
    screenshot of the chart before)."""
    page = board.page
    y = wait_for(lambda: page.evaluate(f"window.screenDebug.orderLineY({order_id!r})"), timeout=10)
    box = page.evaluate(
        "(() => { const b = window.screenDebug.chartBox(); return {x: b.x, y: b.y, w: b.width}; })()"
    )
    if shot:
        board.shot(shot)
    x = box["x"] + box["w"] / 3
    page.mouse.move(x, box["y"] + y)
    page.mouse.down()
    page.mouse.move(x, box["y"] + y - 40, steps=8)
    page.mouse.up()


def test_watchlist_quotes_change_without_reload_and_search_suggests(dash: Dashboard) -> None:
    page = dash.open().page
    page.fill("#watch-input", "EUR")
    option = page.locator("#watch-suggest li").filter(has_text="EUR.USD")
    expect(option).to_be_visible()
    option.dispatch_event("mousedown")
    expect(page.locator('#watchlist tr[data-symbol="EUR.USD"]')).to_be_visible()
    page.fill("#watch-input", "AAPL")
    page.press("#watch-input", "Enter")
    row = page.locator('#watchlist tr[data-symbol="AAPL"]')
    expect(row.locator("td.last")).to_have_text(re.compile(r"^\d[\d,]*\.\d{2}$"))
    pick = row.locator("th button").element_handle()
    pick.focus()  # a keyboard user on "Chart AAPL" while the quotes move
    first = quote_cells(dash, "AAPL")
    wait_for(lambda: quote_cells(dash, "AAPL") != first, timeout=10)  # pushed, no reload
    # the row is updated in place: a click (mouse down, then up) or the focus is never lost
    # to a new button drawn in between (every quotes frame drew new rows)
    assert pick.evaluate("(b) => b.isConnected && document.activeElement === b")
    expect(page.locator('#watchlist tr[data-symbol="EUR.USD"] td.last')).to_have_text(
        re.compile(r"^\d\.\d{4,5}$")
    )
    status, body = dash.live.api("GET", "/api/v1/watchlist")
    assert [s["symbol"] for s in body["symbols"]] == ["EUR.USD", "AAPL"]
    dash.shot("screen-watchlist")


def test_a_symbol_added_before_the_saved_watchlist_came_joins_it(dash: Dashboard) -> None:
    """The saved watchlist answers late (a slow link); a symbol typed meanwhile is added to
    it, not saved instead of it, and the chart shows what the trader then picks."""
    saved = [{"symbol": "MSFT", "sec_type": "STK"}]
    assert dash.live.api("PUT", "/api/v1/watchlist", {"symbols": saved})[0] == 200
    held = hold_first(dash.page, "GET")
    page = dash.open().page
    routed(page, held)  # the page asked for its watchlist
    page.fill("#watch-input", "USD.JPY")
    page.press("#watch-input", "Enter")  # before the saved list came
    held[0].continue_()
    row = page.locator('#watchlist tr[data-symbol="USD.JPY"]')
    expect(row).to_be_visible()
    expect(page.locator('#watchlist tr[data-symbol="MSFT"]')).to_be_visible()
    row.locator("th button").click()
    expect(page.locator("#chart-status")).to_contain_text("USD.JPY · ")
    expect(page.locator("#chart-symbol")).to_have_text("USD.JPY")
    status, body = dash.live.api("GET", "/api/v1/watchlist")
    assert [s["symbol"] for s in body["symbols"]] == ["MSFT", "USD.JPY"]


def test_two_quick_removes_from_the_watchlist_both_stay_removed(dash: Dashboard) -> None:
    """The first removal's save answers late; a second removal made meanwhile is made to the
    list the first one leaves, not to the list before it (which put the first symbol back)."""
    saved = [{"symbol": s, "sec_type": "STK"} for s in ("MSFT", "AAPL", "IBM")]
    assert dash.live.api("PUT", "/api/v1/watchlist", {"symbols": saved})[0] == 200
    page = dash.open().page
    expect(page.locator('#watchlist tr[data-symbol="IBM"]')).to_be_visible()
    held = hold_first(page, "PUT")
    page.click('button[aria-label="Remove MSFT"]')
    routed(page, held)
    page.click('button[aria-label="Remove AAPL"]')
    held[0].continue_()
    for gone in ("MSFT", "AAPL"):
        expect(page.locator(f'#watchlist tr[data-symbol="{gone}"]')).to_have_count(0)
    expect(page.locator('#watchlist tr[data-symbol="IBM"]')).to_be_visible()
    status, body = dash.live.api("GET", "/api/v1/watchlist")
    assert [s["symbol"] for s in body["symbols"]] == ["IBM"]


def test_chart_order_line_drag_modifies_at_the_broker_and_fill_notifies(dash: Dashboard) -> None:
    server = dash.live
    status, quote = server.api("GET", "/api/v1/quote?symbol=AAPL")
    limit = round(quote["bid"] * 0.97, 2)
    status, placed = server.api(
        "POST",
        "/api/v1/orders?wait=1",
        {
            "symbol": "AAPL",
            "action": "BUY",
            "quantity": 5,
            "order_type": "LMT",
            "limit_price": limit,
            "tif": "GTC",
        },
    )
    assert status == 200, placed
    order_id = placed["order"]["id"]
    dash.page.context.grant_permissions(["notifications"])
    page = dash.open().page
    assert page.evaluate("Notification.permission") == "granted"
    expect(page.locator("#chart-symbol")).to_have_text("AAPL")
    expect(page.locator("#chart-status")).to_contain_text("bars of 5 mins")
    page.locator('.bar-sizes button[data-bar="1m"]').click()
    expect(page.locator("#chart-status")).to_contain_text("bars of 1 min")
    assert page.locator("#chart canvas").count() > 0
    drag_order_line(dash, order_id, shot="screen-chart")
    dialog = page.locator("#modify-dialog")
    expect(dialog).to_be_visible()  # the confirm step of a modify
    proposed = float(page.input_value("#modify-limit_price"))
    assert proposed > limit
    dash.shot("screen-drag-confirm")
    page.click("#modify-send")
    wait_for(
        lambda: any(
            o.order_ref == order_id and abs(o.lmt_price - proposed) < 1e-6
            for o in dash.gateway.all_orders()
        ),
        timeout=10,
    )
    # a fill raises the notification: toast, aria-live region
    status, market = server.api(
        "POST",
        "/api/v1/orders",
        {"symbol": "AAPL", "action": "BUY", "quantity": 3, "order_type": "MKT"},
    )
    assert status == 202, market
    toast = page.locator("#toasts .toast").filter(has_text="Filled")
    try:
        expect(toast).to_contain_text("Buy 3 AAPL")
    except AssertionError as exc:  # once its record stayed PreSubmitted 0 / 3: say what was known
        _, record = server.api("GET", f"/api/v1/orders/{market['id']}")
        broker = [(o.order_ref, o.client_id, o.status, o.filled) for o in dash.gateway.all_orders()]
        raise AssertionError(f"no fill toast; record {record}; broker {broker}") from exc
    expect(page.locator("#screen-announcer")).to_contain_text("Filled")
    # the position's P&L today moves with the market, next to the account's
    today = page.locator('#pnl-rows tr[data-symbol="AAPL"] td.today')
    expect(today).to_have_text(re.compile(r"\d"))
    first = today.text_content()
    wait_for(lambda: today.text_content() != first, timeout=10)
    expect(page.locator("#pnl-today")).to_have_text(re.compile(r"\d"))
    # a cancel is announced too
    status, _ = server.api("POST", f"/api/v1/orders/{order_id}/cancel")
    assert status == 202
    expect(page.locator("#toasts .toast").filter(has_text="Cancelled")).to_contain_text(
        "Buy 5 AAPL"
    )
    dash.shot("screen-fill-toast")


def test_dragging_a_usd_jpy_order_line_proposes_a_price_on_its_half_pip_grid(
    dash: Dashboard,
) -> None:
    server = dash.live
    status, quote = server.api("GET", "/api/v1/quote?symbol=USD.JPY&sec_type=CASH")
    assert status == 200, quote
    limit = int(quote["bid"] * 0.97) + 0.005  # on USD.JPY's grid (0.005), off a cent's
    body = {"symbol": "USD.JPY", "sec_type": "CASH", "action": "BUY", "quantity": 20000}
    status, placed = server.api(
        "POST", "/api/v1/orders?wait=1", {**body, "order_type": "LMT", "limit_price": limit}
    )
    assert status == 200, placed
    page = dash.open().page
    page.fill("#watch-input", "USD.JPY")
    page.press("#watch-input", "Enter")
    page.locator('#watchlist tr[data-symbol="USD.JPY"] th button').click()
    expect(page.locator("#chart-symbol")).to_have_text("USD.JPY")
    expect(page.locator("#chart-status")).to_contain_text("USD.JPY · ")  # its bars are drawn
    order_id = placed["order"]["id"]
    drag_order_line(dash, order_id)
    expect(page.locator("#modify-dialog")).to_be_visible()
    proposed = page.input_value("#modify-limit_price")
    assert float(proposed) > limit
    assert re.fullmatch(r"\d+\.\d{1,3}", proposed), proposed  # the cent grid had 5 decimals
    assert abs(round(float(proposed) / 0.005) * 0.005 - float(proposed)) < 1e-9, proposed
    page.click("#modify-send")
    wait_for(
        lambda: any(
            o.order_ref == order_id and abs(o.lmt_price - float(proposed)) < 1e-9
            for o in dash.gateway.all_orders()
        ),
        timeout=10,
    )


def test_alert_fires_in_the_page(dash: Dashboard) -> None:
    page = dash.open().page
    expect(page.locator("#chart-symbol")).to_have_text("AAPL")

    def streamed() -> dict | None:  # the chart's quote line: the price the alerts start from
        quotes = dash.live.api("GET", "/api/v1/quotes")[1]["quotes"]
        return next((q for q in quotes if q["symbol"] == "AAPL" and q["last"]), None)

    quote = wait_for(streamed)
    page.fill("#alert-symbol", "AAPL")
    page.select_option("#alert-condition", "below")
    page.fill("#alert-level", str(round(quote["last"] + 5, 2)))  # already below: waits
    page.click("#alert-form button[type=submit]")
    expect(page.locator("#alert-list li")).to_contain_text("waits for a price above")
    near_alerts(lambda: wait_for(streamed)["last"], dash.live.api)  # by a script: announced too
    expect(page.locator("#alert-list li")).to_have_count(3)
    toast = page.locator("#toasts .toast").filter(has_text="Price alert")
    dash.gateway.set_clock(speed=20)  # the price wanders fast: it crosses one of them soon
    try:
        expect(toast.first).to_contain_text(
            re.compile(r"AAPL traded at or (above|below)"), timeout=10000
        )
    finally:
        dash.gateway.set_clock(speed=1)
    expect(page.locator("#alert-list li.fired").first).to_be_visible()
    expect(page.locator("#alert-list li").filter(has_text="waits for a price above")).to_have_count(
        1
    )
    page.fill("#alert-level", "-3")
    dash.allow_console_error("status of 400")
    page.click("#alert-form button[type=submit]")
    expect(page.locator("#alert-error")).to_contain_text("level")
    dash.shot("screen-alert")


def test_alerts_made_and_deleted_elsewhere_show_without_a_reload(dash: Dashboard) -> None:
    """The list was fetched at load and after the page's own changes only: an alert a script
    made stayed unseen until one fired (a stale screen; it also made the test above racy)."""
    page = dash.open().page
    expect(page.locator("#alert-list")).to_be_attached()
    status, made = dash.live.api(
        "POST", "/api/v1/alerts", {"symbol": "MSFT", "condition": "above", "level": 100000}
    )
    assert status == 201, made
    expect(page.locator("#alert-list li")).to_have_count(1)
    expect(page.locator("#alert-list li")).to_contain_text("MSFT")
    status, _ = dash.live.api("DELETE", f"/api/v1/alerts/{made['id']}")
    assert status in (200, 204)
    expect(page.locator("#alert-list li")).to_have_count(0)


def test_quotes_and_the_live_bar_keep_moving_while_polling(dash: Dashboard) -> None:
    """The stream refused (e.g. a proxy that buffers it): the page polls /state, and the
    watchlist and the chart's last bar keep moving from polled quotes."""
    status, body = dash.live.api("PUT", "/api/v1/watchlist", {"symbols": [{"symbol": "MSFT"}]})
    assert status == 200, body
    page = dash.page
    page.route(
        re.compile(r".*/api/v1/stream(\?.*)?$"),
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"status": 503, "code": "too_many_streams", "message": "busy"}}',
        ),
    )
    dash.allow_console_error(r"EventSource|status of 503")
    dash.open()
    expect(page.locator("#feed")).to_have_text("polling")
    expect(page.locator("#chart-symbol")).to_have_text("MSFT")
    expect(page.locator("#chart-status")).to_contain_text("bars of 5 mins")
    expect(page.locator('#watchlist tr[data-symbol="MSFT"] td.last')).to_have_text(
        re.compile(r"^\d[\d,]*\.\d{2}$")
    )
    first = quote_cells(dash, "MSFT")
    bar = page.evaluate("window.screenDebug.bars()")
    wait_for(lambda: quote_cells(dash, "MSFT") != first, timeout=10)  # polled, no reload
    wait_for(lambda: page.evaluate("window.screenDebug.bars()") != bar, timeout=10)  # live bar
    assert any("/api/v1/quotes?watch=MSFT%3ASTK" in r for r in dash.requests)
    dash.shot("screen-polling")


def test_every_time_on_the_page_is_in_the_browsers_zone_and_names_it(dash: Dashboard) -> None:
    """A trader in New York (the clock at 10:00 EST): the chart's bars are drawn at New York
    times (lightweight-charts draws UTC: they read 15:00), and every clock says its zone."""
    dash.allow_console_error("status of 503")  # the ticket's quote during the outage
    page = dash.page
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"})
        dash.open()
        expect(page.locator("#chart-status")).to_contain_text(
            re.compile(r"bars of 5 mins · \w+ · times EST$")
        )
        status, body = dash.live.api(
            "GET", "/api/v1/bars?symbol=AAPL&sec_type=STK&bar=5m&duration=1D"
        )
        assert status == 200, body
        newest = body["bars"][-1]["time"]  # ISO 8601 UTC
        epoch = page.evaluate("(iso) => Date.parse(iso) / 1000", newest)
        drawn = page.evaluate("window.screenDebug.bars().time")
        assert abs(drawn - (epoch - 5 * 3600)) <= 300, (newest, drawn)  # a bar either side
        dash.enter_symbol("AAPL")
        expect(page.locator("#quote-status")).to_contain_text(
            re.compile(r"as of \d\d:\d\d:\d\d EST$")
        )
        dash.gateway.outage(seconds=600)
        expect(page.locator("#conn-ib .conn-state")).to_have_text(
            re.compile(r"^unreachable since \d\d:\d\d:\d\d EST$")
        )
        # the server's own words name their zone: UTC (the server's zone need not be ours)
        expect(page.locator("#ticket-notice")).to_contain_text(
            re.compile(r"error 1100 since \d\d:\d\d:\d\d UTC")
        )
    finally:
        cdp.send("Emulation.setTimezoneOverride", {"timezoneId": ""})  # the next test's zone
        cdp.detach()


def test_an_alert_fired_while_the_page_polls_is_announced(dash: Dashboard) -> None:
    """The stream is refused: the page polls /quotes, whose frames carry the fired alerts.
    The page outlived an app that had fired 100 alerts (its frames carried the hundredth until
    the 'restart'); this app numbers the ones it fires from 1: they are announced all the same."""
    page = dash.page
    page.route(
        re.compile(r".*/api/v1/stream(\?.*)?$"),
        lambda route: route.fulfill(status=503, content_type="application/json", body="{}"),
    )
    old = {"seq": 100, "id": "a-old", "symbol": "AAPL", "sec_type": "STK", "condition": "above"}
    old |= {"level": 1.0, "note": "", "price": 1.0, "primed_at": None}
    old |= {"created_at": "2026-01-01T00:00:00.000Z", "triggered_at": "2026-01-01T00:00:00.000Z"}
    restarted = False

    def frames(route: Route) -> None:
        answer = route.fetch()
        frame = answer.json()
        route.fulfill(response=answer, json=frame if restarted else {**frame, "alerts": [old]})

    page.route(re.compile(r".*/api/v1/quotes(\?.*)?$"), frames)
    dash.allow_console_error(r"EventSource|status of 503")
    dash.open()
    expect(page.locator("#feed")).to_have_text("polling")
    with page.expect_response(re.compile(r".*/api/v1/quotes(\?.*)?$")):
        pass  # the page has read a frame with the old app's hundredth alert
    restarted = True

    def last() -> float | None:
        quotes = dash.live.api("GET", "/api/v1/quotes?watch=AAPL")[1]["quotes"]
        return next((q["last"] for q in quotes if q["symbol"] == "AAPL" and q["last"]), None)

    near_alerts(lambda: wait_for(last), dash.live.api)
    dash.gateway.set_clock(speed=20)  # the price wanders fast: it crosses one of them soon
    try:
        toast = page.locator("#toasts .toast").filter(has_text="Price alert")
        expect(toast.first).to_contain_text(re.compile(r"AAPL traded at or (above|below)"))
    finally:
        dash.gateway.set_clock(speed=1)


def test_a_chart_request_the_gateway_does_not_answer_in_time_says_so(
    dash: Dashboard, monkeypatch
) -> None:
    """The chart read "0 bars of 1 min" (a time-out answered as an empty history and cached
    for 20 s): it says the gateway did not answer, and once it does the bars are shown."""
    import reader_market

    dash.allow_console_error("status of 504")
    page = dash.open().page
    expect(page.locator("#chart-status")).to_contain_text("bars of 5 mins")
    waited = reader_market.HISTORY_TIMEOUT
    monkeypatch.setattr(reader_market, "HISTORY_TIMEOUT", 0.5)
    # until the page has said so, however slow the machine; the browser tests' heartbeat
    # waits 15 s (a failed one would reconnect and make the retry a 503)
    dash.gateway.stall(60.0)
    page.click('.bar-sizes button[data-bar="1m"]')
    expect(page.locator("#chart-status")).to_contain_text(
        "did not answer the historical-data request"
    )
    dash.gateway.end_stall()
    # the usual wait again: what the stall held comes first, and a loaded machine can take
    # longer than 0.5 s for a day of minute bars
    monkeypatch.setattr(reader_market, "HISTORY_TIMEOUT", waited)
    query = "/api/v1/bars?symbol=AAPL&sec_type=STK&bar=1m&duration=1D"
    wait_for(lambda: (a := dash.live.api("GET", query))[0] == 200 and a[1]["bars"], timeout=15)
    page.click('.bar-sizes button[data-bar="5m"]')
    page.click('.bar-sizes button[data-bar="1m"]')
    expect(page.locator("#chart-status")).to_contain_text(re.compile(r"\d+ bars of 1 min"))
