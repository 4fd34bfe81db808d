"""Target-position alerts against a reader that has not heard of our fill yet, and two target
alerts at once: the difference is ordered once, never twice."""

from __future__ import annotations

import threading
import time

import pytest
from test_webhook import hook, make_app, order_of, position, post, target  # noqa: F401 - fixtures

import alert_times
import webhook
from conftest import loop_paused, wait_for
from order_records import FillRecord, Lifecycle, OrderIntent
from reader_rows import ExecutionRow
from risk import RiskQuote
from web import tradingview


def quotes_without_the_reader(app, monkeypatch) -> None:
    """The risk gate's quotes (a round trip on the reader's loop) as they are now, so that the
    gate keeps answering while the reader is frozen."""
    gate = app.extensions["trading"].gate
    q = app.extensions["trading"].connector.quote("IBM")
    monkeypatch.setattr(gate, "_quotes", lambda *_args, **_kw: RiskQuote(q.bid, q.ask, q.last))


def ibm_orders(gateway) -> list:
    return [o for o in gateway.all_orders() if o.contract.symbol == "IBM"]


def test_a_second_target_alert_waits_for_the_reader_to_hear_our_fill(hook, gateway, monkeypatch):
    """Our record is Filled while the reader still shows the old position: the same target
    again is refused (503, Retry-After), not ordered a second time; once the reader has the
    fill, the same target is already held and a new one orders the difference."""
    monkeypatch.setattr(tradingview, "READER_CATCH_UP", 1.5)
    quotes_without_the_reader(hook, monkeypatch)
    sender = hook.test_client()
    with loop_paused(hook.extensions["trading"].connector.thread):  # the reader's view stays
        first = post(sender, target("IBM", "long", 10, 30))
        assert first.status_code == 202, first.get_json()
        first_id = first.get_json()["id"]
        wait_for(lambda: order_of(hook, first_id)["verdict"] == "filled")
        assert position(hook, "IBM") == 0  # the reader has not heard of it
        started = time.monotonic()
        again = post(sender, target("IBM", "long", 10, 31))
        assert again.status_code == 503, again.get_json()
        assert time.monotonic() - started >= 1.5  # it waited for the reader, then gave up
        error = again.get_json()["error"]
        assert error["code"] == "position_unconfirmed"
        assert first_id in error["message"] and again.headers["Retry-After"]
        assert len(ibm_orders(gateway)) == 1
    wait_for(lambda: position(hook, "IBM") == 10)
    held = post(sender, target("IBM", "long", 10, 32))
    assert held.status_code == 200 and held.get_json()["id"] is None, held.get_json()
    assert "already 10" in held.get_json()["message"]
    more = post(sender, target("IBM", "long", 15, 33))
    assert more.status_code == 202, more.get_json()
    intent = order_of(hook, more.get_json()["id"])["intent"]
    assert (intent["action"], intent["quantity"]) == ("BUY", 5)
    wait_for(lambda: position(hook, "IBM") == 15)
    assert len(ibm_orders(gateway)) == 2


@pytest.mark.parametrize("run", range(2))
def test_two_target_alerts_at_once_place_one_order(hook, gateway, monkeypatch, run):
    """Two alerts for the same symbol on two server threads: the second is checked after the
    first's order exists (409 order_in_flight, or 200 once the position is held)."""
    gate = hook.extensions["trading"].gate
    quote = gate._quotes

    def slow_quote(*args, **kwargs):  # the gate's quote takes a while: both would pass the check
        time.sleep(0.3)
        return quote(*args, **kwargs)

    monkeypatch.setattr(gate, "_quotes", slow_quote)
    start = threading.Barrier(2)
    answers: list = []

    def send(n: int) -> None:
        client = hook.test_client()
        start.wait()
        answers.append(post(client, target("IBM", "long", 5, 40 + n)))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    placed = [a for a in answers if a.status_code == 202]
    others = [a for a in answers if a.status_code != 202]
    assert len(placed) == 1 and len(others) == 1, [a.get_json() for a in answers]
    assert others[0].status_code in (409, 200), others[0].get_json()
    wait_for(lambda: position(hook, "IBM") == 5)
    assert len(ibm_orders(gateway)) == 1


def test_unheard_fills_are_those_the_reader_neither_lists_nor_asked_for_after():
    def record(order_id: str, *fills: tuple[str, float]) -> Lifecycle:
        return Lifecycle(
            id=order_id,
            intent=OrderIntent("IBM", "BUY", 1, "MKT"),
            source="webhook",
            created_at=0.0,
            phase="done",
            fills=tuple(FillRecord(exec_id, at, 1, 150.0) for exec_id, at in fills),
        )

    def listed(exec_id: str) -> ExecutionRow:
        return ExecutionRow(
            exec_id, 1, 1, 1000, "", "", "DU1", "IBM", "BUY", 1, 150.0, None, "USD", None
        )

    ours = [record("o-1", ("e1", 100.0)), record("o-2", ("e2", 200.0), ("e3", 300.0))]
    assert webhook.unheard_fills(ours, [], None) == ["o-1", "o-2"]
    assert webhook.unheard_fills(ours, [listed("e1"), listed("e3")], None) == ["o-2"]
    assert webhook.unheard_fills(ours, [listed("e3")], 250.0) == []  # e1, e2 reported before
    assert webhook.unheard_fills(ours, [], 300.0) == ["o-2"]  # e3 not before the ask
    assert webhook.unheard_fills([record("o-3")], [], None) == []


# ------------------------------------------------------ alerts out of order
def test_an_older_target_alert_never_undoes_a_newer_one(hook, gateway):
    """Long 10 (:00) then flat (:01), delivered flat first: the long alert bought 10 and the
    account stayed long while the strategy was flat. Now it is refused (409 stale_alert,
    naming both times), and so is a script's retry of an older alert; a replay still answers
    its first order, and newer alerts are taken."""
    sender = hook.test_client()
    flat = post(sender, target("IBM", "flat", 0, 1))
    assert flat.status_code == 200 and flat.get_json()["id"] is None, flat.get_json()
    late = post(sender, target("IBM", "long", 10, 0))
    assert late.status_code == 409, late.get_json()
    error = late.get_json()["error"]
    assert (error["code"], error["field"]) == ("stale_alert", "time")
    assert "2026-11-27T15:00:00Z" in error["message"] and "2026-11-27T15:00:01Z" in error["message"]
    assert ibm_orders(gateway) == [] and position(hook, "IBM") == 0
    long = post(sender, target("IBM", "long", 10, 2))
    assert long.status_code == 202, long.get_json()
    wait_for(lambda: order_of(hook, long.get_json()["id"])["verdict"] == "filled")
    wait_for(lambda: position(hook, "IBM") == 10)
    retried = post(sender, target("IBM", "flat", 0, 1))  # the :01 alert again, after :02
    assert retried.status_code == 409 and retried.get_json()["error"]["code"] == "stale_alert"
    replay = post(sender, target("IBM", "long", 10, 2))  # the same alert twice: one order
    assert replay.status_code == 200 and replay.get_json()["replayed"] is True
    assert replay.get_json()["id"] == long.get_json()["id"]
    other = post(sender, target("MSFT", "long", 1, 0))  # the times are per contract
    assert other.status_code == 202, other.get_json()
    assert len(ibm_orders(gateway)) == 1 and position(hook, "IBM") == 10


def test_epoch_times_in_seconds_or_milliseconds_order_target_alerts(hook, gateway):
    """Pine's ``time`` is epoch milliseconds, a script's often seconds: both are one clock."""
    sender = hook.test_client()
    newer = {**target("IBM", "flat", 0, 0), "time": 1_796_050_801_000}  # ms
    assert post(sender, newer).status_code == 200
    older = {**target("IBM", "long", 10, 0), "time": "1796050800"}  # s, one second before
    refused = post(sender, older)
    assert refused.status_code == 409, refused.get_json()
    assert "2026-11-30T15:00:00Z" in refused.get_json()["error"]["message"]
    assert ibm_orders(gateway) == []


def test_a_target_alert_from_the_future_holds_no_real_alert_back(hook, gateway):
    """A hand-written test alert dated next year is acted on, but real alerts of the contract
    sent before that date are not refused for it (they would be until then)."""
    sender = hook.test_client()
    ahead = {**target("IBM", "flat", 0, 0), "time": "2099-01-01T00:00:00Z"}
    assert post(sender, ahead).status_code == 200
    real = post(sender, target("IBM", "long", 10, 0))
    assert real.status_code == 202, real.get_json()


def test_a_target_alerts_time_must_be_a_time(hook, gateway):
    """A ``time`` TradingView never sends (a misspelt placeholder left as it is) would leave
    target alerts unordered without a word: 400 naming it. Order alerts keep any text."""
    sender = hook.test_client()
    for bad in ("{{time_now}}", "yesterday", "-5", "1e400"):
        res = post(sender, {**target("IBM", "long", 10, 0), "time": bad})
        assert res.status_code == 400, (bad, res.get_json())
        assert res.get_json()["error"]["field"] == "time"
    assert ibm_orders(gateway) == []
    order = {**target("IBM", "long", 1, 0), "time": "{{time_now}}", "market_position": None}
    assert post(sender, order).status_code == 202


def test_alert_times_as_tradingview_and_scripts_send_them():
    assert alert_times.sent_at("2026-11-27T15:00:00Z") == 1_795_791_600
    assert alert_times.sent_at("2026-11-27T10:00:00-05:00") == 1_795_791_600
    assert alert_times.sent_at("2026-11-27T15:00:00") == 1_795_791_600  # UTC when unnamed
    assert alert_times.sent_at("1795791600") == alert_times.sent_at(" 1795791600000 ")
    assert alert_times.sent_at("1795791600.5") == 1_795_791_600.5
    for bad in ("", "now", "2026-13-01T00:00:00Z", "-1", "inf", "1e400", "99999999999999999"):
        with pytest.raises(ValueError):
            alert_times.sent_at(bad)
    assert alert_times.shown(1_795_791_600.25) == "2026-11-27T15:00:00.250Z"


def test_the_newest_target_times_stay_one_per_contract_and_bounded():
    newest = alert_times.NewestTargets(limit=2)
    ibm, msft, aapl = (("DU1", "STK", name, "USD") for name in ("IBM", "MSFT", "AAPL"))
    newest.acted(ibm, 100.0)
    newest.acted(ibm, 90.0)  # an older one acted on (a replay): the newest stays
    assert newest.newer_than(ibm, 99.0) == 100.0
    assert newest.newer_than(ibm, 100.0) is None  # the same time is not older
    assert newest.newer_than(("DU2", "STK", "IBM", "USD"), 1.0) is None  # another account
    newest.acted(msft, 50.0)
    newest.acted(ibm, 101.0)
    newest.acted(aapl, 10.0)  # the third contract: MSFT, acted on least recently, goes
    assert len(newest) == 2 and newest.newer_than(msft, 0.0) is None
    assert newest.newer_than(ibm, 0.0) == 101.0
