"""Paging /orders while orders are placed and change between pages: every order that was in
the list when the first page was read is given exactly once."""

from __future__ import annotations

import pytest

from conftest import api_client, app_settings, loop_paused, wait_for


@pytest.fixture
def fast_app(gateway):
    """The app with no settle wait: orders reach the broker and finish at once."""
    from app_simple import create_app

    app = create_app(
        {
            "SETTINGS": app_settings(
                gateway, settle_first=0, settle_validation=0, settle_final=0, monitor_timeout=0.2
            )
        }
    )
    yield app
    app.extensions["trading"].stop()


LIMIT_ORDER = {
    "symbol": "IBM",
    "action": "BUY",
    "quantity": 1,
    "order_type": "LMT",
    "limit_price": 100,
}


def page(client, limit: int, cursor: str | None = None, **filters) -> tuple[list[str], str | None]:
    query = {"limit": limit, **filters, **({"cursor": cursor} if cursor else {})}
    body = client.get("/api/v1/orders", query_string=query).get_json()
    return [o["id"] for o in body["orders"]], body["next_cursor"]


def rest(client, limit: int, cursor: str | None, **filters) -> list[str]:
    """Every page after ``cursor``."""
    ids: list[str] = []
    while cursor is not None:
        more, cursor = page(client, limit, cursor, **filters)
        ids += more
    return ids


def place(client, **order) -> str:
    res = client.post("/api/v1/orders?wait=1", json=order)
    assert res.status_code == 200, res.get_json()
    return res.get_json()["id"]


def test_a_page_ending_on_an_order_that_reaches_the_broker_repeats_nothing(fast_app):
    """Orders not at the broker yet are listed last; once there, first. A page that ended on
    one of them made the next page start after its new place: the working orders were given
    twice."""
    client = api_client(fast_app)
    handler = fast_app.extensions["trading"].handler
    working = [place(client, **LIMIT_ORDER) for _ in range(2)]
    connector = fast_app.extensions["trading"].connector
    wait_for(lambda: len(connector.snapshot().orders) == 2)  # at the broker, as the reader saw
    with loop_paused(handler.thread):  # the order thread takes nothing meanwhile
        queued = [
            client.post("/api/v1/orders", json=LIMIT_ORDER).get_json()["id"] for _ in range(3)
        ]
        first, cursor = page(client, 3)
    assert first == working[::-1] + queued[-1:]
    wait_for(lambda: len(connector.snapshot().orders) == 5)
    assert page(client, 100)[0][:3] == queued[::-1]  # now the newest at the broker
    seen = first + rest(client, 3, cursor)
    assert sorted(seen) == sorted(working + queued), seen


def test_an_order_leaving_a_filtered_list_skips_nothing(fast_app):
    """``status=open``: the order that ended the page is cancelled before the next page is
    read. The next page started at the old offset, past an order never given."""
    client = api_client(fast_app)
    working = [place(client, **LIMIT_ORDER) for _ in range(3)]
    connector = fast_app.extensions["trading"].connector
    wait_for(lambda: len(connector.snapshot().orders) == 3)
    first, cursor = page(client, 1, status="open")
    assert first == working[-1:]
    assert client.post(f"/api/v1/orders/{first[0]}/cancel").status_code == 202
    wait_for(lambda: first[0] not in page(client, 100, status="open")[0])
    assert rest(client, 1, cursor, status="open") == working[1::-1]


@pytest.mark.parametrize(
    "raw",
    [
        b'["o-1",3]',  # a cursor of the offset kind this API no longer makes
        b"[5,true,-5]",
        b"[5,1,true]",
        b'[5,1,"x"]',
        b'[5,2,NaN,"o-1"]',
        b"[5,2,-1.5,7]",
        b"[true,1,-5]",
        b"[5,3,-5]",
    ],
)
def test_a_cursor_not_made_here_is_a_400_naming_it(client, raw):
    from base64 import urlsafe_b64encode

    cursor = urlsafe_b64encode(raw).decode().rstrip("=")
    res = client.get("/api/v1/orders", query_string={"cursor": cursor})
    assert res.status_code == 400, res.get_json()
    assert res.get_json()["error"]["field"] == "cursor"
