"""Alerts the webhook must refuse clearly or read right: numbers no order can have, booleans,
a secret that is no text, a mistyped secret URL, FX pairs named as TradingView names them."""

from __future__ import annotations

import logging
import re
import threading
import time
import types

import pytest
from test_webhook import (  # noqa: F401 - fixtures
    SECRET,
    TRADINGVIEW_FILLS,
    audit,
    hook,
    make_app,
    order_of,
    post,
    readme_section,
    target,
    tv_alert,
)

import webhook
from conftest import wait_for
from reader_rows import PositionRow
from web import tradingview


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/webhook/tradingview/{SECRET}",  # a segment too many
        f"/api/v1/webhook//{SECRET}",  # a base URL ending in / joined to "/<secret>"
        f"/api/v1/webhook/{SECRET}/",
    ],
)
def test_a_mistyped_secret_url_is_never_logged_nor_audited(hook, gateway, caplog, path):
    """The secret of a URL with an extra segment or slash used to reach the audit table and
    the servers' log lines (only the first segment after /webhook/ was redacted)."""
    caplog.set_level(logging.DEBUG)
    body = {k: v for k, v in tv_alert().items() if k != "secret"}
    res = post(hook.test_client(), body, path=path)
    assert res.status_code in (308, 404)
    assert SECRET not in str(audit(hook))
    logging.getLogger("waitress").error("Exception while serving %s", path)
    assert SECRET not in caplog.text and "/api/v1/webhook/<redacted>" in caplog.text
    assert not gateway.all_orders()


def test_a_secret_that_is_no_text_is_a_wrong_secret(hook, gateway):
    """JSON may write a lone surrogate ("\\ud800"), which no UTF-8 secret can be: it used to
    answer 500 before any secret was compared (and count nothing towards the lockout)."""
    raw = b'{"secret": "\\ud800", "ticker": "MSFT", "action": "buy", "contracts": 1}'
    res = post(hook.test_client(), raw)
    assert res.status_code == 401 and res.get_json()["error"]["code"] == "unauthorized"
    assert audit(hook)[0]["outcome"] == "unauthorized: wrong secret"
    assert not gateway.all_orders()


def test_a_listing_that_is_no_text_is_a_400_and_audited(hook, gateway):
    """A lone surrogate in the ticker's exchange went into the audit row's outcome, which
    SQLite cannot encode: 500, and no audit row."""
    raw = b'{"secret": "%s", "ticker": "\\ud800:BP", "action": "buy", "quantity": 1}' % (
        SECRET.encode()
    )
    res = post(hook.test_client(), raw)
    assert res.status_code == 400 and res.get_json()["error"]["field"] == "ticker"
    assert audit(hook)[0]["outcome"].startswith("invalid: ticker:")
    assert not gateway.all_orders()


def test_a_strangers_long_headers_are_cut_in_the_audit_and_the_answer(hook):
    """The audit row of a refused request carried the whole Origin or charset a stranger sent
    (a 200 KB header: 8 MB of journal in 25 requests, until the disk was full and every order
    refused), and the 415 answered the charset back whole."""
    client = hook.test_client()
    long = "a" * 200_000
    res = post(client, tv_alert(), headers={"Origin": f"http://{long}"})
    assert res.status_code == 403
    res = post(client, tv_alert(), content_type=f"application/json; charset={long}")
    assert res.status_code == 415 and len(res.get_data()) < 1000
    rows = audit(hook)[:2]
    assert len(rows) == 2 and all(len(row["outcome"]) <= 500 for row in rows)


@pytest.mark.parametrize(
    "fields, field",
    [
        ('"market_position": "long", "market_position_size": 1e400', "market_position_size"),
        ('"market_position": "short", "position_size": -Infinity', "position_size"),
        ('"action": "buy", "contracts": 1, "order_type": "LMT", "price": 1e400', "price"),
        ('"action": "buy", "contracts": 1, "order_type": "LMT", "price": 1e308', "limit_price"),
        # JSON integers past a float's range are exact Python ints (float() overflows on them)
        (
            '"market_position": "long", "market_position_size": 1' + "0" * 400,
            "market_position_size",
        ),
        ('"market_position": "long", "position_size": 1' + "0" * 400, "position_size"),
        ('"action": "buy", "contracts": 1, "order_type": "LMT", "price": 1' + "0" * 400, "price"),
        ('"action": "buy", "contracts": 1' + "0" * 400, "contracts"),
    ],
)
def test_numbers_no_order_can_have_are_a_clear_400(hook, gateway, fields, field):
    """JSON's Infinity, a number past a float's range and a price no tick can divide name
    their field (they used to answer 500: a target of inf shares, a limit price of inf)."""
    raw = f'{{"secret": "{SECRET}", "ticker": "MSFT", {fields}}}'.encode()
    res = post(hook.test_client(), raw)
    assert res.status_code == 400, res.get_data(as_text=True)
    assert res.get_json()["error"]["field"] == field
    assert audit(hook)[0]["outcome"].startswith("invalid")
    assert not gateway.all_orders()


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"action": "buy", "contracts": True}, "contracts"),
        ({"market_position": "long", "market_position_size": True}, "market_position_size"),
        ({"action": "buy", "qty": 1, "order_type": "LMT", "price": True}, "price"),
    ],
)
def test_true_or_false_is_no_number(hook, gateway, fields, field):
    """A template whose placeholder gave a boolean names the field; true used to place an order
    of 1 share (pydantic takes true for 1; POST /orders refuses it)."""
    res = post(hook.test_client(), {"secret": SECRET, "ticker": "MSFT", **fields})
    assert res.status_code == 400, res.get_data(as_text=True)
    error = res.get_json()["error"]
    assert error["field"] == field and "true or false" in error["message"]
    assert not gateway.all_orders()


def test_target_position_of_an_fx_pair_without_sec_type(hook, gateway):
    """TradingView's {{ticker}} of an FX chart (FX:EURUSD) with no sec_type: the order is the
    pair (CASH, as POST /orders infers it), and so is the position the target is measured from.
    It used to be read as a stock named EURUSD (always 0): every "long" bought the size again
    and "flat" answered "already 0" with the pair still held."""
    sender = hook.test_client()

    def fx(market_position: str, size: float, n: int) -> dict:
        return {**target("EURUSD", market_position, size, n), "ticker": "FX:EURUSD"}

    def held() -> float:
        snap = hook.extensions["trading"].connector.snapshot()
        return webhook.position_of(snap.positions, "EURUSD", "CASH")

    first = post(sender, fx("long", 20000, 40))
    assert first.status_code == 202, first.get_json()
    intent = order_of(hook, first.get_json()["id"])["intent"]
    assert (intent["sec_type"], intent["action"], intent["quantity"]) == ("CASH", "BUY", 20000)
    wait_for(lambda: order_of(hook, first.get_json()["id"])["verdict"] == "filled")
    wait_for(lambda: held() == 20000)
    again = post(sender, fx("long", 20000, 41))
    assert again.status_code == 200 and again.get_json()["id"] is None, again.get_json()
    flat = post(sender, fx("flat", 0, 42))
    assert flat.status_code == 202, flat.get_json()
    intent = order_of(hook, flat.get_json()["id"])["intent"]
    assert (intent["action"], intent["quantity"]) == ("SELL", 20000)
    wait_for(lambda: held() == 0)
    assert len(gateway.all_orders()) == 2


def test_an_fx_limit_alert_is_priced_on_the_pairs_tick():
    """{{close}} of FX:EURUSD as an LMT alert's price: rounded to the pair's 0.00005, not to a
    stock's cent (1.08437 used to become a limit of 1.08)."""
    alert = webhook.AlertIn.model_validate(
        {
            "ticker": "FX:EURUSD",
            "action": "buy",
            "qty": 20000,
            "order_type": "LMT",
            "price": 1.08437,
        }
    )
    assert webhook.plan(alert, 0.0)["limit_price"] == 1.08435


def test_a_copy_after_the_minute_turned_is_the_same_alert(hook, gateway, monkeypatch):
    """An alert without an id or a time (the README's indicator alert) was deduplicated per
    calendar minute: a copy a moment after the minute turned placed a second order. A copy
    within the window of the first order replays it; past the window, the same body is a new
    alert. (A 2 s window here, the minute shrunk.)"""
    monkeypatch.setattr(webhook, "DEDUP_WINDOW", 2)
    sender = hook.test_client()
    body = {"ticker": "MSFT", "action": "buy", "contracts": 1}
    wait_for(lambda: time.time() % 2 > 1.0)  # late in a window
    first = post(sender, {**body, "secret": SECRET})
    assert first.status_code == 202
    svc = hook.extensions["trading"]
    entry = svc.journal.get(first.get_json()["id"])
    window = int(entry.idem_key.rpartition(":")[2])  # the window its key was made in
    wait_for(lambda: time.time() // 2 > window)  # the next window has begun
    copy = post(sender, {**body, "secret": SECRET})
    assert copy.status_code == 200 and copy.get_json()["id"] == first.get_json()["id"]
    assert len(gateway.all_orders()) <= 1 and svc.journal.count() == 1
    alert = webhook.AlertIn.model_validate(body)
    later = tradingview._dedup_key(svc, alert, body, entry.record.created_at + 2.01)
    assert later not in (entry.idem_key, None)  # past the window: a new alert


class WatchedLock:
    """A lock that says when a second acquire begins."""

    def __init__(self) -> None:
        self._lock, self._attempts = threading.Lock(), 0
        self.second_waits = threading.Event()

    def acquire(self, timeout: float = -1) -> bool:
        self._attempts += 1
        if self._attempts == 2:
            self.second_waits.set()
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()


def test_a_copy_while_the_first_is_still_being_placed_across_the_minute_is_the_same_alert(
    hook, gateway, monkeypatch
):
    """The copy chose its key before the first one's order was journaled: it found nothing
    under the previous minute's key and placed a second order under the new minute's."""
    gate = hook.extensions["trading"].gate
    reserve, inside, go_on = gate.reserve, threading.Event(), threading.Event()

    def held_first(intent):  # the first alert waits in the risk gate, its key chosen
        if not inside.is_set():
            inside.set()
            assert go_on.wait(10)
        return reserve(intent)

    monkeypatch.setattr(gate, "reserve", held_first)
    turn = WatchedLock()  # MSFT's turn: tells when the copy waits for it
    monkeypatch.setitem(tradingview._TURNS, ("STK", "MSFT"), turn)
    minute = (time.time() // 60 + 1) * 60
    clock = iter([minute - 0.05, minute + 0.05])  # the first just before the minute turns
    monkeypatch.setattr(tradingview, "time", types.SimpleNamespace(time=lambda: next(clock)))
    body = {"ticker": "MSFT", "action": "buy", "contracts": 1, "secret": SECRET}
    answers: list = []
    threads = [
        threading.Thread(target=lambda: answers.append(post(hook.test_client(), body)))
        for _ in range(2)
    ]
    threads[0].start()
    assert inside.wait(10)
    threads[1].start()
    assert turn.second_waits.wait(10)  # the copy waits for the first to be journaled
    go_on.set()
    for thread in threads:
        thread.join(20)
    assert sorted(a.status_code for a in answers) == [200, 202], [a.get_json() for a in answers]
    assert answers[0].get_json()["id"] == answers[1].get_json()["id"]
    assert hook.extensions["trading"].journal.count() == 1


def test_a_target_alert_takes_no_bracket(hook, gateway):
    """Exits on a target alert were sized to the difference ordered: a reversal from +5 to -5
    got a stop for 10, which would turn the short into a long again; and its working exits
    held back the strategy's next target alerts (409), so its own exit was lost."""
    sender = hook.test_client()
    alert = {**target("IBM", "short", 5, 1), "stop_loss": 200, "take_profit": 50}
    res = post(sender, alert)
    assert res.status_code == 400, res.get_json()
    assert res.get_json()["error"]["field"] == "take_profit"
    assert "not taken with market_position" in res.get_json()["error"]["message"]
    assert gateway.all_orders() == []


@pytest.mark.parametrize("ticker", ["LSE:BP", "TSX:SHOP"])
def test_a_stock_listed_outside_the_us_needs_its_currency(hook, gateway, ticker):
    """The exchange prefix was dropped: LSE:BP became an order for BP's US listing in USD (an
    ADR of six shares each), at a {{close}} quoted in pence."""
    res = post(hook.test_client(), tv_alert(ticker=ticker))
    assert res.status_code == 400, res.get_json()
    assert res.get_json()["error"]["field"] == "ticker"
    assert f"{ticker} is not a US listing" in res.get_json()["error"]["message"]
    us = post(hook.test_client(), {**tv_alert(ticker="NYSE:IBM"), "time": "2026-12-01T15:00:00Z"})
    assert us.status_code == 202, us.get_json()
    assert len(gateway.all_orders()) <= 1


@pytest.mark.parametrize("ticker", ["NYSE_DL:IBM", "NASDAQ_DLY:MSFT"])
def test_a_delayed_data_exchange_is_its_exchange(hook, gateway, ticker):
    """TradingView's {{exchange}} of a chart on delayed data ends in _DL or _DLY (NYSE_DL,
    LSE_DLY): a US one was refused as a foreign listing, a foreign one named as NYSE_DL."""
    sender = hook.test_client()
    res = post(sender, tv_alert(ticker=ticker))
    assert res.status_code == 202, res.get_json()
    refused = post(sender, tv_alert(ticker="LSE_DLY:BP"))
    assert refused.status_code == 400 and refused.get_json()["error"]["field"] == "ticker"
    assert "LSE:BP is not a US listing" in refused.get_json()["error"]["message"]


def test_the_readmes_alert_messages_send_the_exchange(hook, gateway):
    """{{ticker}} is filled without the exchange (BP, not LSE:BP): an LSE:BP strategy ordered
    BP's US listing in USD. The README's messages send {{exchange}}:{{ticker}}, so it is a 400."""
    messages = re.findall(r"```json\n(.*?)```", readme_section("Connect TradingView"), re.S)
    assert len(messages) == 2
    sender = hook.test_client()
    for message in messages:
        filled = message.replace("YOUR_WEBHOOK_SECRET", SECRET)
        for placeholder, value in {
            **TRADINGVIEW_FILLS,
            "{{exchange}}": "LSE_DLY",
            "{{ticker}}": "BP",
        }.items():
            filled = filled.replace(placeholder, value)
        res = post(sender, filled.encode(), content_type="text/plain; charset=utf-8")
        assert res.status_code == 400, (message, res.get_json())
        assert "LSE:BP is not a US listing" in res.get_json()["error"]["message"]
    assert gateway.all_orders() == []


def test_a_numeric_time_or_alert_id_is_taken_as_text(hook, gateway):
    sender = hook.test_client()
    first = post(sender, {**tv_alert(), "time": 1764687600})
    assert first.status_code == 202, first.get_json()
    again = post(sender, {**tv_alert(), "time": 1764687600})
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    other = post(sender, {**tv_alert(), "alert_id": 42})
    assert other.status_code == 202, other.get_json()


def test_a_target_counts_the_listing_the_order_trades():
    """SHOP held in CAD is not the SHOP a USD alert trades: the difference was ordered from
    the CAD holding (SELL 90 on the US listing, a short there)."""
    rows = [
        PositionRow("DU1", 1, "SHOP", "STK", "CAD", 100, 90.0, None, None, None, None),
        PositionRow("DU1", 2, "SHOP", "STK", "USD", 4, 60.0, None, None, None, None),
    ]
    assert webhook.position_of(rows, "SHOP", "STK") == 4
    assert webhook.position_of(rows, "SHOP", "STK", currency="CAD") == 100
    alert = webhook.AlertIn.model_validate(
        {"ticker": "SHOP", "market_position": "long", "market_position_size": 10}
    )
    assert webhook.plan(alert, webhook.position_of(rows, "SHOP", "STK"))["quantity"] == 6


@pytest.mark.parametrize("written", ["1_0", " ", "10 shares", "0x10"])
def test_a_quantity_not_written_as_a_number_is_refused(hook, gateway, written):
    """Python's number rules took "1_0" for 10 (pydantic parses a string so): an order of 10
    from a template that sent something else. Only numbers as TradingView writes them count."""
    res = post(
        hook.test_client(),
        {"secret": SECRET, "ticker": "MSFT", "action": "buy", "contracts": written},
    )
    assert res.status_code == 400, res.get_data(as_text=True)
    assert res.get_json()["error"]["field"] == "contracts"
    assert not gateway.all_orders()
