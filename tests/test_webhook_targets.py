"""Target-position alerts against a reader that has not heard of our fill yet, and two target
alerts at once: the difference is ordered once, never twice."""

from __future__ import annotations

import threading
import time

import pytest
from test_webhook import hook, make_app, order_of, position, post, target  # noqa: F401 - fixtures

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
