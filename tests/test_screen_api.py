"""The trader's screen in the API, against the simulated gateway: live marks and P&L today, the
watchlist and its shared quote lines, symbol search, price alerts, chart bars, the stream."""

from __future__ import annotations

import errno
import json
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from conftest import API_TOKEN, TRADING_CLOCK, api_client, app_settings, served, wait_for
from screen_store import ScreenStore, WatchItem
from sim_gateway.broker import BrokerConfig
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings


@pytest.fixture
def start_app(tmp_path):
    """Factory: a gateway and the app on it (data folder under tmp_path); all stopped after."""
    made: list = []

    def start(app_overrides: dict | None = None, **gateway_settings: Any):
        from app_simple import create_app

        gateway = SimGateway(
            ServerSettings(port=0, clock_start=TRADING_CLOCK, **gateway_settings),
            BrokerConfig(seed=7),
        ).start()
        made.append(gateway)
        overrides = {"journal_path": str(tmp_path / "data" / "orders.db"), **(app_overrides or {})}
        app = create_app({"SETTINGS": app_settings(gateway, **overrides), "TESTING": True})
        made.append(app.extensions["trading"])
        return gateway, app, api_client(app)

    yield start
    for thing in reversed(made):
        thing.stop()


def buy(client: Any, symbol: str, quantity: int) -> None:
    posted = client.post(
        "/api/v1/orders",
        json={"symbol": symbol, "action": "BUY", "quantity": quantity, "order_type": "MKT"},
    ).get_json()
    wait_for(
        lambda: [
            e
            for e in client.get("/api/v1/executions").get_json()["executions"]
            if e["order_ref"] == posted["id"]
        ],
        timeout=15,
    )


def near_alerts(last: Callable[[], float], api: Callable[..., tuple[int, dict]]) -> list[dict]:
    """An ``above`` and a ``below`` AAPL alert one tick either side of the price now, both
    primed (the price did not move while they were made): whichever way the price moves, one
    of them crosses."""
    for _ in range(5):
        price = last()
        made = [
            api(
                "POST",
                "/api/v1/alerts",
                {"symbol": "AAPL", "condition": side, "level": round(price + step, 2)},
            )[1]
            for side, step in (("above", 0.01), ("below", -0.01))
        ]
        if all(a["primed_at"] for a in made):
            return made
        for alert in made:
            api("DELETE", f"/api/v1/alerts/{alert['id']}")
    raise AssertionError("the price moved every time two alerts were made")


def test_a_position_whose_portfolio_message_came_first_gets_its_pnl(start_app) -> None:
    """IB sends a fill's updatePortfolio and its position on two streams, in no promised
    order. With the portfolio first, the new position was never subscribed to reqPnLSingle:
    its price, value and P&L then moved only with updatePortfolio (every few minutes at IB)
    while its data_age said a second."""
    gateway, app, client = start_app()
    gateway.set_portfolio_first(True)
    buy(client, "AAPL", 10)

    def marked() -> bool:
        rows = client.get("/api/v1/positions").get_json()["positions"]
        return [(r["symbol"], r["daily_pnl"] is not None) for r in rows] == [("AAPL", True)]

    wait_for(marked, timeout=15)


def test_a_closed_positions_pnl_subscription_is_cancelled(start_app) -> None:
    """A position closes: IB sends its position message (0), then its portfolio row (0). The
    held set had counted the portfolio's old quantity at the first, and the second changed
    nothing it looked at: reqPnLSingle stayed subscribed to a position no longer held."""
    gateway, app, client = start_app()
    buy(client, "AAPL", 10)
    reader = app.extensions["trading"].settings.client_id
    wait_for(lambda: len(gateway.pnl_single_subscriptions(reader)) == 1)
    sold = client.post(
        "/api/v1/orders",
        json={"symbol": "AAPL", "action": "SELL", "quantity": 10, "order_type": "MKT"},
    )
    assert sold.status_code == 202, sold.get_json()
    wait_for(lambda: gateway.pnl_single_subscriptions(reader) == [], timeout=15)


@pytest.mark.slow
def test_positions_move_with_the_market_and_add_up_to_the_account(start_app) -> None:
    gateway, app, client = start_app()
    buy(client, "AAPL", 100)
    buy(client, "MSFT", 50)

    def marked() -> dict | None:
        body = client.get("/api/v1/pnl").get_json()
        rows = body["positions"]
        if (
            len(rows) == 2
            and all(r["daily_pnl"] is not None for r in rows)
            and body["daily_pnl"] is not None
        ):
            return body
        return None

    first = wait_for(marked)
    prices = {r["symbol"]: {r["market_price"]} for r in first["positions"]}

    def moved() -> bool:
        body = marked()
        for row in body["positions"] if body else []:
            prices[row["symbol"]].add(row["market_price"])
        return all(len(seen) >= 3 for seen in prices.values())

    wait_for(moved, timeout=10)  # no fill in between: the marks moved with the market

    def adds_up() -> bool:  # pnl and pnlSingle of one instant: the rows add up to the account
        body = marked()
        return body is not None and round(
            sum(r["unrealized_pnl"] for r in body["positions"]), 2
        ) == round(body["unrealized_pnl"], 2)

    wait_for(adds_up, timeout=15)
    positions = client.get("/api/v1/positions").get_json()["positions"]
    assert {p["symbol"] for p in positions} == {"AAPL", "MSFT"}
    assert all(p["daily_pnl"] is not None for p in positions)
    row = positions[0]
    assert row["market_value"] == pytest.approx(row["market_price"] * row["quantity"], rel=1e-6)
    account = client.get("/api/v1/account").get_json()
    assert "daily_pnl" in account["figures"]


@pytest.mark.slow
def test_watchlist_is_kept_and_streams_on_shared_lines_within_the_limit(
    start_app, tmp_path, monkeypatch
) -> None:
    import quote_hub

    # GET /quotes below leases its lines too: a 1 s lease (production: 5 s) lets them go
    # sooner once the dashboards stop watching
    monkeypatch.setattr(quote_hub, "LEASE_SECONDS", 1.0)
    gateway, app, client = start_app({"market_data_lines": 4})  # 2 for the hub, 2 kept back
    hub = app.extensions["trading"].quotes
    symbols = [
        {"symbol": "AAPL"},
        {"symbol": "msft"},
        {"symbol": "EUR.USD", "sec_type": "CASH"},
        {"symbol": "NVDA"},
    ]
    put = client.put("/api/v1/watchlist", json={"symbols": symbols})
    assert put.status_code == 200, put.get_json()
    assert [s["symbol"] for s in put.get_json()["symbols"]] == ["AAPL", "MSFT", "EUR.USD", "NVDA"]
    assert client.get("/api/v1/watchlist").get_json() == put.get_json()
    kept = ScreenStore(tmp_path / "data").watchlist()
    assert [i.symbol for i in kept] == ["AAPL", "MSFT", "EUR.USD", "NVDA"]
    assert gateway.market_data_lines() == 0  # nobody watches: no line taken
    first, second = hub.watch(), hub.watch()  # two dashboards: one line per symbol

    def quoted() -> dict | None:
        body = client.get("/api/v1/quotes").get_json()
        return body if len([q for q in body["quotes"] if q["last"]]) == 2 else None

    body = wait_for(quoted)
    assert body["lines_used"] == 2 and body["refused"] == ["EUR.USD", "NVDA"]
    assert "MARKET_DATA_LINES=4" in body["message"] and "EUR.USD" in body["message"]
    assert gateway.market_data_lines() == 2
    lasts = {q["symbol"]: {q["last"]} for q in body["quotes"]}

    def ticking() -> bool:
        for q in client.get("/api/v1/quotes").get_json()["quotes"]:
            lasts[q["symbol"]].add(q["last"])
        return all(len(v) >= 2 for v in lasts.values())

    wait_for(ticking)
    quote = client.get("/api/v1/quotes").get_json()["quotes"][0]
    assert quote["market_data"] == "live" and quote["change_pct"] is not None
    hub.unwatch(first)
    assert gateway.market_data_lines() == 2  # the other dashboard still watches
    hub.unwatch(second)
    wait_for(lambda: gateway.market_data_lines() == 0)  # released when nobody watches


def test_delayed_data_is_labelled_and_no_subscription_explained(start_app) -> None:
    gateway, app, client = start_app(market_data="delayed")
    client.put("/api/v1/watchlist", json={"symbols": [{"symbol": "AAPL"}]})
    app.extensions["trading"].quotes.watch()
    quote = wait_for(
        lambda: [q for q in client.get("/api/v1/quotes").get_json()["quotes"] if q["last"]]
    )[0]
    assert quote["market_data"] == "delayed"


def test_delayed_data_ib_announces_with_10089_is_shown_not_stopped(start_app) -> None:
    """A paper account hears 10089 ('... Delayed market data is available.') on the reader's
    delayed request and the delayed ticks follow: the watchlist and /quote show them, labelled
    delayed, with no notice (the line was taken for stopped: no prices, asked again every 5 s)."""
    gateway, app, client = start_app(market_data="api-delayed")
    client.put("/api/v1/watchlist", json={"symbols": [{"symbol": "AAPL"}]})
    app.extensions["trading"].quotes.watch()

    def priced() -> list[dict]:
        return [q for q in client.get("/api/v1/quotes").get_json()["quotes"] if q["last"]]

    row = wait_for(priced, timeout=8)[0]
    assert row["market_data"] == "delayed" and row.get("notice") is None, row
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    assert quote["market_data"] == "delayed" and quote["last"] is not None
    assert quote["notice_code"] is None and quote["notice"] is None


def test_no_subscription_and_unknown_symbols_are_explained_per_symbol(start_app) -> None:
    gateway, app, client = start_app(market_data="none")
    client.put("/api/v1/watchlist", json={"symbols": [{"symbol": "AAPL"}, {"symbol": "NOSUCH"}]})
    app.extensions["trading"].quotes.watch()

    def explained() -> dict | None:
        rows = {q["symbol"]: q for q in client.get("/api/v1/quotes").get_json()["quotes"]}
        return rows if all(r.get("notice") for r in rows.values()) and len(rows) == 2 else None

    rows = wait_for(explained)
    assert "10168" in rows["AAPL"]["notice"] and rows["AAPL"]["last"] is None
    assert "unknown symbol" in rows["NOSUCH"]["notice"]


def test_symbol_search_alerts_and_bad_parameters(start_app) -> None:
    gateway, app, client = start_app()
    found = client.get("/api/v1/symbols?q=eur").get_json()
    assert found["results"] and {r["sec_type"] for r in found["results"]} == {"CASH"}
    assert "EUR.USD" in {r["symbol"] for r in found["results"]}
    assert client.get("/api/v1/symbols?q=AAP").get_json()["results"][0]["symbol"] == "AAPL"
    client.put("/api/v1/watchlist", json={"symbols": [{"symbol": "AAPL"}]})
    hub = app.extensions["trading"].quotes
    hub.watch()
    last = wait_for(lambda: next((q.last for q in hub.snapshot().quotes if q.last), None))
    beyond = client.post(
        "/api/v1/alerts",
        json={"symbol": "aapl", "condition": "below", "level": round(last + 5, 2), "note": "test"},
    )
    assert beyond.status_code == 201, beyond.get_json()
    beyond = beyond.get_json()
    assert beyond["primed_at"] is None  # already below: waits for the price to come back over

    def api(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        res = client.open(path, method=method, json=body)
        return res.status_code, res.get_json()

    near = near_alerts(lambda: next(q.last for q in hub.snapshot().quotes if q.last), api)
    gateway.set_clock(speed=20)  # the price wanders fast: it crosses one of them soon
    fired = wait_for(
        lambda: [a for a in client.get("/api/v1/alerts").get_json()["alerts"] if a["triggered_at"]],
        timeout=10,
    )
    gateway.set_clock(speed=1)
    assert fired[0]["id"] in {a["id"] for a in near}
    for time_field in ("created_at", "primed_at", "triggered_at"):  # the API's one time format
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fired[0][time_field])
    assert (fired[0]["price"] >= fired[0]["level"]) == (fired[0]["condition"] == "above")
    assert client.get(f"/api/v1/alerts/{beyond['id']}").get_json()["triggered_at"] is None
    recent = hub.snapshot().alerts
    assert fired[0]["id"] in [a.id for _, a in recent] and beyond["id"] not in [
        a.id for _, a in recent
    ]
    assert len(client.get("/api/v1/alerts").get_json()["alerts"]) == 3
    far = beyond
    assert client.delete(f"/api/v1/alerts/{far['id']}").get_json()["id"] == far["id"]
    assert client.delete(f"/api/v1/alerts/{far['id']}").status_code == 404
    for url, field in (
        ("/api/v1/symbols?q=", "q"),
        ("/api/v1/symbols?q=%3Cb%3E", "q"),
        ("/api/v1/bars?symbol=AAPL&bar=7m", "bar"),
        ("/api/v1/bars?symbol=AAPL&bar=5m&bar_size=1 hour", "bar"),
        ("/api/v1/bars?symbol=AAPL&duration=9Q", "duration"),
        ("/api/v1/bars?symbol=A$PL&bar=5m", "symbol"),
        ("/api/v1/stream?watch=AAPL;rm", "watch"),
    ):
        res = client.get(url)
        assert res.status_code == 400, url
        assert res.get_json()["error"]["field"] == field, (url, res.get_json())
    for body, field in (
        ({"symbol": "AAPL", "condition": "above", "level": -1}, "level"),
        ({"symbol": "AAPL", "condition": "sideways", "level": 1}, "condition"),
        ({"condition": "above", "level": 1}, "symbol"),
    ):
        res = client.post("/api/v1/alerts", json=body)
        assert res.status_code == 400 and res.get_json()["error"]["field"] == field, body
    res = client.put("/api/v1/watchlist", json={"symbols": [{"symbol": "1BAD"}]})
    assert res.status_code == 400 and res.get_json()["error"]["field"].startswith("symbols")


def test_an_alert_fires_on_a_crossing_and_keeps_its_state_across_a_restart(tmp_path) -> None:
    store = ScreenStore(tmp_path)
    beyond = store.add_alert("AAPL", "STK", "below", 100.0, last=99.0)  # already under
    near = store.add_alert("AAPL", "STK", "above", 101.0, last=100.5)
    unknown = store.add_alert("MSFT", "STK", "above", 50.0)  # no price known yet
    assert beyond.primed_at is None and near.primed_at is not None and unknown.primed_at is None
    assert store.fire("AAPL", "STK", 99.5) == []  # still under: no crossing
    assert store.fire("AAPL", "STK", 100.2) == []  # back over 100: ``beyond`` is primed
    assert store.alert(beyond.id).primed_at is not None  # type: ignore[union-attr]
    store = ScreenStore(tmp_path)  # a restart: the primed state is kept
    assert store.alert(beyond.id).primed_at is not None  # type: ignore[union-attr]
    assert [a.id for a in store.fire("AAPL", "STK", 101.0)] == [near.id]  # at the level
    assert [(a.id, a.price) for a in store.fire("AAPL", "STK", 99.9)] == [(beyond.id, 99.9)]
    assert store.fire("AAPL", "STK", 101.5) == store.fire("AAPL", "STK", 99.0) == []  # once
    assert store.fire("MSFT", "STK", 51.0) == []  # the first price seen is beyond: waits
    assert store.fire("MSFT", "STK", 49.0) == []
    assert store.alert(unknown.id).triggered_at is None  # type: ignore[union-attr]
    assert [a.id for a in ScreenStore(tmp_path).fire("MSFT", "STK", 50.0)] == [unknown.id]
    assert ScreenStore(tmp_path).armed() == []


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every save of the screen's files fails as on a full disk."""
    import screen_store

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(screen_store.os, "fsync", full)


def test_a_full_disk_refuses_alert_changes_with_503_and_still_fires_alerts(
    tmp_path, monkeypatch
) -> None:
    """A full disk answered 500 to the deletion of an alert (its creation 503 `not_saved`),
    and stopped a crossing alert from firing: its save raised inside the quote callback. The
    deletion is refused in the API's shape, the alert stays armed, and it still fires."""
    gateway = SimGateway(ServerSettings(port=0, clock_start=TRADING_CLOCK), BrokerConfig(seed=7))
    gateway.start()
    from app_simple import create_app

    settings = app_settings(gateway, journal_path=str(tmp_path / "orders.db"))
    app = create_app({"SETTINGS": settings, "TESTING": True})
    try:
        client = api_client(app)
        made = client.post(
            "/api/v1/alerts", json={"symbol": "AAPL", "condition": "above", "level": 1}
        )
        assert made.status_code == 201, made.get_json()
        disk_full(monkeypatch)
        deleted = client.delete(f"/api/v1/alerts/{made.get_json()['id']}")
        assert deleted.status_code == 503 and deleted.get_json()["error"]["code"] == "not_saved"
        assert client.get("/api/v1/alerts").get_json()["alerts"][0]["triggered_at"] is None
    finally:
        app.extensions["trading"].stop()
        gateway.stop()
    monkeypatch.undo()  # the disk has room again, for a while
    store = ScreenStore(tmp_path)  # the screen's files (next to the journal)
    below = store.add_alert("AAPL", "STK", "below", 100.0, last=101.0)
    disk_full(monkeypatch)
    assert [a.id for a in store.fire("AAPL", "STK", 99.0)] == [below.id]
    assert below.id not in {a.id for a in store.armed()}  # fired once, not again
    assert store.fire("AAPL", "STK", 98.0) == []


def test_symbol_search_waits_only_in_a_long_call_slot(start_app) -> None:
    """A search asks the broker and waits seconds on a silent gateway: it held a thread kept
    for the kill switch, /health and /status when every long-call slot was taken. Like
    /quote, it then answers 503 busy at once."""
    _, app, client = start_app()
    slots = app.extensions["trading"].long_calls
    held = 0
    while slots.acquire(blocking=False):
        held += 1
    try:
        answer = client.get("/api/v1/symbols?q=MSF")
        assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "busy"
    finally:
        for _ in range(held):
            slots.release()
    assert client.get("/api/v1/symbols?q=MSF").get_json()["results"][0]["symbol"] == "MSFT"


def test_chart_bars_short_forms_and_fx_midpoint(start_app) -> None:
    gateway, app, client = start_app()
    day = client.get("/api/v1/bars?symbol=AAPL&bar=5m&duration=1D")
    assert day.status_code == 200, day.get_json()
    body = day.get_json()
    assert body["bar_size"] == "5 mins" and body["duration"] == "1 D" and len(body["bars"]) == 288
    year = client.get("/api/v1/bars?symbol=AAPL&bar=1D&duration=1Y").get_json()
    assert len(year["bars"]) == 365 and year["bar_size"] == "1 day"
    fx = client.get("/api/v1/bars?symbol=EUR.USD&sec_type=CASH&bar=1h&duration=1D").get_json()
    assert fx["what"] == "MIDPOINT" and len(fx["bars"]) == 24


def test_stream_pushes_quotes_and_releases_its_lines(start_app) -> None:
    gateway, app, client = start_app()
    client.put("/api/v1/watchlist", json={"symbols": [{"symbol": "AAPL"}]})
    with served(app) as base:
        request = urllib.request.Request(
            f"{base}/api/v1/stream?watch=MSFT", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        frames: list[dict] = []
        with urllib.request.urlopen(request, timeout=10) as stream:
            event = None
            for raw in stream:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "quotes":
                    frame = json.loads(line[6:])
                    if {q["symbol"] for q in frame["quotes"] if q["last"]} == {"AAPL", "MSFT"}:
                        frames.append(frame)
                    # a tick can leave the shown prices as they were: wait for a move (or 30)
                    if (
                        frames[1:]
                        and frames[-1]["quotes"] != frames[0]["quotes"]
                        or len(frames) > 30
                    ):
                        break
            assert gateway.market_data_lines() == 2
        assert frames[0]["quotes"] != frames[-1]["quotes"]
        wait_for(lambda: gateway.market_data_lines() == 0)


@pytest.mark.slow
def test_polling_quotes_keeps_their_lines_streamed_then_releases_them(
    start_app, monkeypatch
) -> None:
    """A dashboard that cannot hold a stream polls GET /quotes: the watchlist and its `watch`
    symbols are streamed while it polls, and released a few seconds after it stops."""
    import quote_hub

    # a 2 s lease (production: 5 s) still spans many polls; the hub reads it at each poll
    monkeypatch.setattr(quote_hub, "LEASE_SECONDS", 2.0)
    lease = quote_hub.LEASE_SECONDS

    gateway, app, client = start_app()
    client.put("/api/v1/watchlist", json={"symbols": [{"symbol": "MSFT"}]})
    assert app.extensions["trading"].quotes.watchers() == 0 and gateway.market_data_lines() == 0
    lasts: dict[str, set] = {"MSFT": set(), "EUR.USD": set()}

    def polled() -> bool:
        res = client.get("/api/v1/quotes?watch=EUR.USD:CASH")
        assert res.status_code == 200, res.get_json()
        for q in res.get_json()["quotes"]:
            if q["last"] is not None:
                lasts[q["symbol"]].add(q["last"])
                assert q["time"].endswith("Z")  # the API's one time format
        return all(len(seen) >= 2 for seen in lasts.values())

    wait_for(polled, timeout=15)  # quotes move from poll to poll
    assert gateway.market_data_lines() == 2
    stopped = time.monotonic()
    wait_for(lambda: gateway.market_data_lines() == 0, timeout=lease + 5)
    assert time.monotonic() - stopped >= lease - 1  # kept between polls
    res = client.get("/api/v1/quotes?watch=AAPL;rm")
    assert res.status_code == 400 and res.get_json()["error"]["field"] == "watch"


def test_a_refused_stream_leaves_no_watcher(start_app) -> None:
    gateway, app, client = start_app()
    svc = app.extensions["trading"]
    taken = 0
    while svc.long_calls.acquire(blocking=False):
        taken += 1
    try:
        res = client.get("/api/v1/stream?watch=MSFT")
        assert res.status_code == 503
    finally:
        for _ in range(taken):
            svc.long_calls.release()
    assert svc.quotes.watchers() == 0
    assert gateway.market_data_lines() == 0


def test_quotes_of_a_lost_connection_are_not_shown_as_current(start_app) -> None:
    """After a reconnect the watchlist shows what the new line brings: here nothing but IB's
    notice (no subscription any more), not the last session's prices as if they were live."""
    gateway, app, client = start_app()
    client.put("/api/v1/watchlist", json={"symbols": [{"symbol": "AAPL"}]})
    app.extensions["trading"].quotes.watch()

    def aapl() -> dict:  # {} while no line is up (between the connections)
        rows = client.get("/api/v1/quotes").get_json()["quotes"]
        return next((q for q in rows if q["symbol"] == "AAPL"), {})

    wait_for(lambda: aapl().get("last"))
    gateway.set_market_data_subscriptions("none")
    gateway.drop_connections()
    row = wait_for(lambda: (r := aapl()).get("notice") and r, timeout=15)
    assert "10168" in row["notice"]
    assert (row["bid"], row["ask"], row["last"]) == (None, None, None), row


@pytest.mark.slow
def test_a_line_stopped_by_a_competing_session_shows_no_old_price_and_comes_back(start_app) -> None:
    """10197 stops a live stream at the gateway: the watchlist shows IB's reason without the
    last prices (they stop moving), and once the competing session ends the line is asked
    again and prices flow, without the old notice."""
    gateway, app, client = start_app()
    client.put("/api/v1/watchlist", json={"symbols": [{"symbol": "AAPL"}]})
    app.extensions["trading"].quotes.watch()

    def aapl() -> dict:
        rows = client.get("/api/v1/quotes").get_json()["quotes"]
        return next((q for q in rows if q["symbol"] == "AAPL"), {})

    wait_for(lambda: aapl().get("last"))
    gateway.competing_session(seconds=2.0)
    row = wait_for(lambda: (r := aapl()).get("notice") and r)
    assert "competing live session" in row["notice"]
    assert (row["bid"], row["ask"], row["last"]) == (None, None, None), row
    wait_for(lambda: not gateway.competing_active())
    back = wait_for(lambda: (r := aapl()).get("last") and not r.get("notice") and r, timeout=15)
    assert back["bid"] is not None and back["ask"] is not None


@pytest.mark.slow
def test_a_symbol_whose_lookup_timed_out_in_an_outage_is_streamed_after_it(
    start_app, monkeypatch
) -> None:
    """During 1100 the gateway holds contract look-ups: a symbol first watched then times out.
    That is not an unknown symbol: once IB is back (1102, same connection) it is asked again
    and streamed, instead of staying blank until the next reconnect."""
    import reader_market

    monkeypatch.setattr(reader_market, "QUOTE_TIMEOUT", 1.0)
    gateway, app, client = start_app()
    gateway.outage(seconds=600)  # until the look-up has timed out, however slow the machine
    wait_for(lambda: not client.get("/api/v1/status").get_json()["ib_servers"]["reachable"])
    app.extensions["trading"].quotes.watch([WatchItem("MSFT", "STK")])

    def msft() -> dict:
        rows = client.get("/api/v1/quotes").get_json()["quotes"]
        return next((q for q in rows if q["symbol"] == "MSFT"), {})

    wait_for(lambda: msft().get("notice") is not None, timeout=15)  # the look-up timed out
    gateway.end_outage()  # 1102
    wait_for(lambda: client.get("/api/v1/status").get_json()["ib_servers"]["reachable"])
    row = wait_for(lambda: (r := msft()).get("last") and r, timeout=10)
    assert row["notice"] is None, row


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("watchlist.json", '[{"id": "x"}]'),
        ("watchlist.json", "[null]"),
        ("watchlist.json", '["AAPL"]'),
        ("watchlist.json", '{"symbols": []}'),
        ("alerts.json", '[{"id": "x"}]'),
        (
            "alerts.json",
            '[{"id": "a", "symbol": "AAPL", "sec_type": "STK", "condition": "near",'
            ' "level": 1, "note": "", "created_at": 0}]',
        ),
        ("alerts.json", "not json"),
    ],
)
def test_a_screen_file_of_another_shape_is_set_aside_not_a_crash(tmp_path, name, content) -> None:
    """A row of another shape (a hand edit, a file of another version) raised TypeError in
    the start-up's ScreenStore: a traceback, the app did not start. The file is set aside as
    .bad and the app starts with none, as for an unreadable one."""
    (tmp_path / name).write_text(content)
    store = ScreenStore(tmp_path)
    assert store.watchlist() == () and store.alerts() == []
    assert (tmp_path / f"{name}.bad").read_text() == content
    assert not (tmp_path / name).exists()


def test_a_screen_file_with_a_newer_versions_extra_fields_is_kept(tmp_path) -> None:
    (tmp_path / "watchlist.json").write_text('[{"symbol": "AAPL", "exchange": "SMART"}]')
    assert [item.symbol for item in ScreenStore(tmp_path).watchlist()] == ["AAPL"]
