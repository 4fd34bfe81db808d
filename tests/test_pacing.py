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
