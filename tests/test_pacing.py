"""Pacing: both connections send at a smooth pace just under IB's 50 messages/s.

The simulated gateway enforces IB's limit per client (error 100 above it); a burst of
orders through the app, with the reader quoting for the risk gate at the same time, must
reach the gateway without one violation, and the burst must really have been throttled.
"""

from __future__ import annotations

import pytest

import ib_connection
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


def test_the_pace_is_close_to_but_under_the_gateway_limit(app):
    rate = ib_connection.THROTTLE_REQUESTS / ib_connection.THROTTLE_INTERVAL
    assert 44 <= rate <= 45.5  # IB allows 50/s: the rest is room for arrival jitter
    services = app.extensions["trading"]
    for connection in (services.handler, services.connector):
        client = connection.ib.client
        assert (client.MaxRequests, client.RequestsInterval) == (
            ib_connection.THROTTLE_REQUESTS,
            ib_connection.THROTTLE_INTERVAL,
        )


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
