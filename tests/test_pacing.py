"""Pacing: both connections send at a smooth pace just under IB's 50 messages/s.

The simulated gateway enforces IB's limit per client (error 100 above it); a burst of
orders through the app, with the reader quoting for the risk gate at the same time, must
reach the gateway without one violation, and the burst must really have been throttled.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator

import pytest

import ib_pacing
from app_simple import create_app
from conftest import app_settings, wait_for

READER, OWN = 999, 1000
BURST = 100
SYMBOLS = ("AAPL", "MSFT", "IBM", "AMZN")


@pytest.fixture
def app(gateway):
    """conftest's app with the default-ish 5 s monitoring window: in a burst of 100 orders on a
    busy machine, an order can stay PendingSubmit longer than the tests' usual 2 s."""
    application = create_app(
        {"SETTINGS": app_settings(gateway, monitor_timeout=5), "TESTING": True}
    )
    yield application
    application.extensions["trading"].stop()


async def _count_throttling(ib, starts: list[int]) -> None:
    ib.client.throttleStart += lambda: starts.append(1)


def test_both_connections_send_through_the_smooth_pacer(app):
    services = app.extensions["trading"]
    for connection in (services.handler, services.connector):
        client = connection.ib.client
        pacer = client.sendMsg.__self__
        assert isinstance(pacer, ib_pacing.SmoothPacer)
        assert 44 <= pacer.bucket.rate <= 45.5  # IB allows 50/s: the rest is room for jitter
        assert pacer.bucket.rate + pacer.bucket.burst < 50  # arrival jitter at the gateway
        assert client.MaxRequests == 0  # ib_async's own throttle is not in the way


def _paced(bucket: ib_pacing.TokenBucket, count: int, slips: Iterator[float]) -> list[float]:
    """When a sender that wakes up late by ``next(slips)`` s each time sends ``count`` messages."""
    now, sent = 0.0, list[float]()
    while len(sent) < count:
        while len(sent) < count and bucket.take(now):
            sent.append(now)
        if len(sent) < count:
            now += bucket.wait(now) + next(slips)
    return sent


@pytest.mark.parametrize("slip", [0.0, 0.01, 0.04, 0.06])
def test_a_late_wake_up_costs_the_pace_nothing(slip):
    """ib_async's throttle counts from the late send (5 per 1/9 s with a 40 ms slip each time:
    50 sends in 1.36 s); the bucket refills by the clock: one slip at the end at most."""
    sent = _paced(
        ib_pacing.TokenBucket(ib_pacing.RATE, ib_pacing.BURST), 50, itertools.repeat(slip)
    )
    ideal = (50 - ib_pacing.BURST) / ib_pacing.RATE  # 1.0 s
    assert sent[-1] <= ideal + slip + 1e-9


@pytest.mark.parametrize("late", [(0.0, 0.002, 0.03, 0.06), (0.0, 0.03, 0.15, 0.4, 1.2)])
def test_no_second_holds_more_than_50_sends_however_late_the_wake_ups(late):
    rng = random.Random(7)
    sent = _paced(
        ib_pacing.TokenBucket(ib_pacing.RATE, ib_pacing.BURST),
        2000,
        iter(lambda: rng.choice(late), None),
    )
    busiest = max(bisect.bisect_left(sent, t + 1.0) - i for i, t in enumerate(sent))
    assert busiest <= ib_pacing.RATE + ib_pacing.BURST < 50
    if max(late) < (ib_pacing.BURST - 1) / ib_pacing.RATE:  # slips it absorbs: full pace
        assert busiest >= ib_pacing.RATE


@pytest.mark.slow
def test_a_burst_of_orders_draws_no_error_100_while_the_reader_is_busy(gateway, app, client):
    services = app.extensions["trading"]
    handler = services.handler
    starts: list[int] = []
    handler.thread.call(_count_throttling(handler.ib, starts), 5)
    before = gateway.stats()

    ids = []
    for i in range(BURST):
        answer = client.post(
            "/api/v1/orders",
            json={"symbol": SYMBOLS[i % len(SYMBOLS)], "action": "BUY", "quantity": 1},
        )
        assert answer.status_code == 202, answer.get_json()
        ids.append(answer.get_json()["id"])
    records = wait_for(lambda: _all_final(handler, ids), timeout=60, interval=0.1)

    after = gateway.stats()
    assert [r.verdict for r in records] == ["filled"] * BURST
    assert after.pacing_violations == before.pacing_violations == 0
    assert not [m for r in records for m in r.messages if m.code == 100]
    assert starts, "the burst never reached the throttle: nothing was paced"
    placed = (
        after.requests_by_client[OWN, "PlaceOrder"] - before.requests_by_client[OWN, "PlaceOrder"]
    )
    assert placed == BURST
    reader_sent = after.received_by_client[READER] - before.received_by_client[READER]
    assert reader_sent >= len(SYMBOLS)  # it quoted for the risk gate meanwhile


def _all_final(handler, ids: list[str]):
    records = [handler.get(order_id) for order_id in ids]
    if all(r is not None and r.verdict is not None for r in records):
        return records
    return None


async def _slow_pace(ib, burst: int = 2) -> None:
    """``burst`` messages at once, then two a second: a burst waits in the pacer's queue."""
    ib.client.sendMsg.__self__.bucket = ib_pacing.TokenBucket(2.0, burst)


@pytest.mark.parametrize(
    ("stop", "verdict", "reason"),
    [
        ("kill switch", "not_sent", "kill switch engaged before it left the pacing queue"),
        ("cancel all", "cancelled", "cancelled before it left the pacing queue"),
    ],
)
def test_orders_still_in_the_pacing_queue_never_leave_after_a_global_cancel(
    gateway, app, client, stop, verdict, reason
):
    """The global cancel went out behind every message queued for the pace: the new orders
    queued before it reached IB first, and market orders filled before the cancel came."""
    handler = app.extensions["trading"].handler
    handler.thread.call(_slow_pace(handler.ib), 5)
    before = gateway.stats()
    ids = []
    for _ in range(8):
        answer = client.post(
            "/api/v1/orders", json={"symbol": "AAPL", "action": "BUY", "quantity": 1}
        )
        assert answer.status_code == 202, answer.get_json()
        ids.append(answer.get_json()["id"])
    # every one handed to ib_async (it has its orderId): most still wait for the pace
    wait_for(lambda: all(handler.get(i).order_id for i in ids), timeout=10)
    if stop == "kill switch":
        answer = client.post("/api/v1/kill-switch", json={"engaged": True, "reason": "drill"})
    else:
        answer = client.post("/api/v1/orders/cancel-all")
    assert answer.status_code in (200, 202), answer.get_json()
    records = wait_for(lambda: _all_final(handler, ids), timeout=30, interval=0.1)

    withdrawn = [r for r in records if r.verdict == verdict and r.verdict_reason == reason]
    assert len(withdrawn) >= 3, [(r.verdict, r.verdict_reason) for r in records]
    placed = (
        gateway.stats().requests_by_client[OWN, "PlaceOrder"]
        - before.requests_by_client[OWN, "PlaceOrder"]
    )
    assert placed == len(ids) - len(withdrawn)
    at_gateway = {o.order_id for o in gateway.all_orders() if o.client_id == OWN}
    assert not at_gateway & {r.order_id for r in withdrawn}
    bought = sum(p.position for p in gateway.positions() if p.contract.symbol == "AAPL")
    assert bought <= placed  # nothing withdrawn was filled
    wait_for(lambda: not handler._tasks, timeout=10)  # every placement has ended
    for record in withdrawn:  # the verdict is its last word (no "watching the order" after it)
        assert reason in handler.get(record.id).steps[-1].text, handler.get(record.id).steps
    if stop == "kill switch":
        client.post("/api/v1/kill-switch", json={"engaged": False})


def test_withdraw_takes_only_the_named_new_orders_out_and_keeps_the_order_of_the_rest():
    from collections import deque
    from types import SimpleNamespace

    queue = deque(["3\x005\x00AAPL\x00", "4\x005\x00", "3\x0015\x00MSFT\x00", "58\x001\x00"])
    queue += ["3\x006\x00IBM\x00", "3\x00x\x00", "3\x00"]
    client = SimpleNamespace(_msgQ=queue)
    assert ib_pacing.withdraw(client, {5, 6, 7}) == [5, 6]
    assert list(queue) == [
        "4\x005\x00",
        "3\x0015\x00MSFT\x00",
        "58\x001\x00",
        "3\x00x\x00",
        "3\x00",
    ]
    assert ib_pacing.withdraw(client, {5}) == [] and len(queue) == 5


def test_a_bracket_partly_sent_when_the_kill_switch_engages_is_not_cut_in_two(gateway, app, client):
    """A bracket's entry and take-profit go out with transmit off: IB holds them until the
    stop-loss arrives. Withdrawing only the queued tail would leave an entry without its stop
    waiting in TWS: a bracket is withdrawn whole or not at all."""
    handler = app.extensions["trading"].handler
    q = _warm_then_slow(client, handler)  # the entry goes, its legs wait
    before = gateway.stats()
    answer = client.post(
        "/api/v1/orders",
        json={
            "symbol": "AAPL",
            "action": "BUY",
            "quantity": 1,
            "take_profit": round(q["ask"] + 5, 2),
            "stop_loss": round(q["bid"] - 5, 2),
        },
    )
    assert answer.status_code == 202, answer.get_json()
    entry = answer.get_json()["id"]
    ids = [entry, f"{entry}-tp", f"{entry}-sl"]
    wait_for(lambda: all(handler.get(i) and handler.get(i).order_id for i in ids), timeout=10)
    client.post("/api/v1/kill-switch", json={"engaged": True, "reason": "drill"})
    records = wait_for(lambda: _all_final(handler, ids), timeout=30, interval=0.1)

    assert not [r.id for r in records if "pacing queue" in (r.verdict_reason or "")]
    placed = (
        gateway.stats().requests_by_client[OWN, "PlaceOrder"]
        - before.requests_by_client[OWN, "PlaceOrder"]
    )
    assert placed == 3  # the whole bracket reached the gateway; the global cancel followed
    client.post("/api/v1/kill-switch", json={"engaged": False})


def _warm_then_slow(client, handler) -> dict:
    """One AAPL order filled (its contract qualified once), then the pace slowed to one message
    at once and two a second; AAPL's quote."""
    warm = client.post("/api/v1/orders", json={"symbol": "AAPL", "action": "BUY", "quantity": 1})
    wait_for(lambda: _all_final(handler, [warm.get_json()["id"]]), timeout=10)
    quote = client.get("/api/v1/quote?symbol=AAPL").get_json()
    handler.thread.call(_slow_pace(handler.ib, burst=1), 5)
    return quote


async def _queue_length(ib) -> int:
    return len(ib.client._msgQ)


def test_a_change_queued_for_an_order_ib_has_not_acknowledged_is_not_withdrawn(
    gateway, app, client
):
    """A change's placeOrder names the orderId of its order: an order sent but not yet
    acknowledged (a stalled gateway) whose change waits for the pace is live at IB, and is
    left to the global cancel, not concluded 'not sent'."""
    handler = app.extensions["trading"].handler
    far = round(_warm_then_slow(client, handler)["bid"] * 0.9, 2)
    handler.ib.client.sendMsg.__self__.bucket.tokens = 0.0  # the next message waits 0.5 s
    order = {"symbol": "AAPL", "action": "BUY", "quantity": 1, "order_type": "LMT"}
    answer = client.post("/api/v1/orders", json={**order, "limit_price": far})
    assert answer.status_code == 202, answer.get_json()
    gateway.stall(3.0)  # it reads the order only after the change and the global cancel
    order_id = answer.get_json()["id"]
    wait_for(lambda: handler.get(order_id).order_id, timeout=5)
    wait_for(lambda: handler.thread.call(_queue_length(handler.ib), 5) == 0, timeout=5)
    changed = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": far - 1})
    assert changed.status_code == 202, changed.get_json()
    wait_for(lambda: handler.thread.call(_queue_length(handler.ib), 5) == 1, timeout=5)
    client.post("/api/v1/kill-switch", json={"engaged": True, "reason": "drill"})
    record = wait_for(lambda: _all_final(handler, [order_id]), timeout=30, interval=0.1)[0]
    assert record.verdict == "cancelled", (record.verdict, record.verdict_reason)
    # never said 'not sent' on the way (the broker's report would take it back only later)
    assert not [step.text for step in record.steps if "not_sent" in step.text]
    client.post("/api/v1/kill-switch", json={"engaged": False})


def test_an_order_and_its_change_both_still_queued_never_leave(gateway, app, client):
    handler = app.extensions["trading"].handler
    far = round(_warm_then_slow(client, handler)["bid"] * 0.9, 2)
    handler.ib.client.sendMsg.__self__.bucket.tokens = 0.0  # the next message waits 0.5 s
    before = gateway.stats()
    order = {"symbol": "AAPL", "action": "BUY", "quantity": 1, "order_type": "LMT"}
    order_id = client.post("/api/v1/orders", json={**order, "limit_price": far}).get_json()["id"]
    wait_for(lambda: handler.get(order_id).order_id, timeout=5)
    changed = client.post(f"/api/v1/orders/{order_id}/modify", json={"limit_price": far - 1})
    assert changed.status_code == 202, changed.get_json()
    wait_for(lambda: handler.thread.call(_queue_length(handler.ib), 5) == 2, timeout=5)
    client.post("/api/v1/kill-switch", json={"engaged": True, "reason": "drill"})
    record = wait_for(lambda: _all_final(handler, [order_id]), timeout=10, interval=0.1)[0]
    assert (record.verdict, record.verdict_reason) == (
        "not_sent",
        "kill switch engaged before it left the pacing queue",
    )
    placed = (
        gateway.stats().requests_by_client[OWN, "PlaceOrder"]
        - before.requests_by_client[OWN, "PlaceOrder"]
    )
    assert placed == 0
    client.post("/api/v1/kill-switch", json={"engaged": False})
