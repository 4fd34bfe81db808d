"""The simulated gateway behaves like IB: market hours on a simulated clock, IB's error codes,
TWS's pacing and its answer to an unservable version range — seen by unmodified ib_async 2.1.0
and IB's ibapi 9.81.1.

Every gateway here starts its clock on Monday 2026-11-30 at 18:18 New York time, after the
close; tests move it forward with ``SimGateway.set_clock``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from ib_async import IB, Future, LimitOrder, MarketOrder, StopOrder
from test_sim_ibapi import App, app, ibapi_log  # noqa: F401 - fixtures for the ibapi tests
from test_sim_ibapi import aapl as ibapi_aapl
from test_sim_ibapi import order as ibapi_order
from test_sim_server import (
    Errors,
    aapl,
    async_test,
    cents,
    connected,
    qualified,
    quote,
    status,
    statuses,
    until,
)

from conftest import later
from sim_gateway.broker import BrokerConfig
from sim_gateway.clock import parse_when
from sim_gateway.codec import encode_client_hello
from sim_gateway.controller import SimGateway
from sim_gateway.server import ServerSettings

EVENING = parse_when("2026-11-30T18:18:00-05:00")  # Monday, after the close
OPEN = parse_when("2026-12-01T09:30:00-05:00")  # Tuesday's open
CLOSE = parse_when("2026-12-01T16:00:00-05:00")
HELD_399 = (
    "Order Message:\nBUY 1 AAPL NASDAQ.NMS\nWarning: Your order will not be placed at the "
    "exchange until 2026-12-01 09:30:00 US/Eastern"
)
OFF_TICK = "The price does not conform to the minimum price variation for this contract."
RTH_IGNORED = (
    "Order Event Warning:Attribute 'Outside Regular Trading Hours' is ignored based on the order "
    "type and destination. PlaceOrder is now being processed."
)


@pytest.fixture
def start_gateway() -> Any:
    """Factory of gateways whose clock starts at EVENING; all stopped after."""
    started: list[SimGateway] = []

    def start(**settings: Any) -> SimGateway:
        gw = SimGateway(
            ServerSettings(clock_start=EVENING, **settings), BrokerConfig(seed=7)
        ).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(start_gateway: Callable[..., SimGateway]) -> SimGateway:
    return start_gateway()


# ----------------------------------------------------------------------------- hours (ib_async)


@async_test
async def test_market_order_after_the_close_waits_with_399_and_fills_at_the_open(
    gateway: SimGateway,
) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        trade = ib.placeOrder(stock, MarketOrder("BUY", 1, tif="DAY"))
        await until(lambda: 399 in errors.codes(trade.order.orderId), what="warning 399")
        assert errors.text(399) == HELD_399
        await status(trade, "PreSubmitted")
        assert trade.fills == [] and gateway.executions() == []
        gateway.set_clock(OPEN)
        await status(trade, "Filled")
        assert [e.status for e in trade.log if e.errorCode] == ["ValidationError"]  # a warning


@async_test
@pytest.mark.parametrize("master", [None, 999], ids=["no master", "reader is the master"])
async def test_another_clients_commission_reaches_only_the_master_client(
    start_gateway: Callable[..., SimGateway], master: int | None
) -> None:
    """IB: "To receive commissions reports for all clients it is necessary to connect as the
    Master Client ID" (TWS API, Executions and Commissions). A reqExecutions answer lists
    every client's fills, but the commission reports of another client's only to the master
    (the sim sent them to everyone, and the app's reader relied on it)."""
    gateway = start_gateway(master_client_id=master)
    gateway.set_clock(OPEN + 3600)  # in the session: the order fills
    async with connected(gateway, client_id=7) as trader, connected(gateway, 999) as reader:
        [stock] = await qualified(trader, aapl())
        trade = trader.placeOrder(stock, MarketOrder("BUY", 1, tif="DAY"))
        await status(trade, "Filled")
        await until(lambda: trade.fills and trade.fills[0].commissionReport.execId, what="own")
        fills = await reader.reqExecutionsAsync()
        assert [f.execution.execId for f in fills] == [trade.fills[0].execution.execId]
        stored = {f.execution.execId: f for f in reader.fills()}  # what reports update
        assert bool(stored[fills[0].execution.execId].commissionReport.execId) == (master == 999)


@async_test
async def test_an_order_without_an_exchange_is_refused_with_321(gateway: SimGateway) -> None:
    """IB validates the request first: an order whose contract names no exchange gets 321
    "Missing order exchange" (users' wire logs) and no order; the simulator traded it."""
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        bare = copy.copy(stock)
        bare.exchange = ""
        trade = ib.placeOrder(bare, MarketOrder("BUY", 1, tif="DAY"))
        await until(lambda: 321 in errors.codes(trade.order.orderId), what="321")
        assert "Missing order exchange" in errors.text(321)
        assert not gateway.all_orders()
        placed = ib.placeOrder(stock, MarketOrder("BUY", 1, tif="DAY"))  # with SMART: taken
        await until(lambda: gateway.all_orders(), what="the order at the broker")
        assert placed.order.orderId != trade.order.orderId


@async_test
async def test_executions_answer_drills_never_end_or_come_empty(gateway: SimGateway) -> None:
    """TWS 10.30.1 sends the executions but never execDetailsEnd (ib_async #54, ib_insync
    #638); the 10.31 beta ends the answer at once, empty. The drills do the same to an
    unmodified ib_async."""
    gateway.set_clock(OPEN + 3600)
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        trade = ib.placeOrder(stock, MarketOrder("BUY", 1, tif="DAY"))
        await status(trade, "Filled")
        exec_id = trade.fills[0].execution.execId
        gateway.set_executions_answer("none")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ib.reqExecutionsAsync(), 0.5)
        assert [f.execution.execId for f in ib.fills()] == [exec_id]  # sent, never ended
        gateway.set_executions_answer("empty")
        assert await asyncio.wait_for(ib.reqExecutionsAsync(), 2) == []
        gateway.set_executions_answer("full")
        fills = await asyncio.wait_for(ib.reqExecutionsAsync(), 2)
        assert [f.execution.execId for f in fills] == [exec_id]
    with pytest.raises(ValueError, match="full, none or empty"):
        gateway.set_executions_answer("sometimes")


@async_test
async def test_outside_rth_limit_order_fills_in_extended_hours(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        marketable = LimitOrder("BUY", 1, 1000.0, tif="DAY", outsideRth=True)
        trade = ib.placeOrder(stock, marketable)
        await status(trade, "Filled")
        assert 399 not in errors.codes() and 2109 not in errors.codes()


@async_test
async def test_outside_rth_is_ignored_for_a_market_order_held_until_the_open(
    gateway: SimGateway,
) -> None:
    """IB: 2109, the flag cleared in openOrder, 399; the order waits for the regular session."""
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        trade = ib.placeOrder(stock, MarketOrder("BUY", 1, tif="DAY", outsideRth=True))
        await status(trade, "PreSubmitted")
        assert errors.codes(trade.order.orderId) == [2109, 399]
        assert errors.text(2109) == RTH_IGNORED
        assert [o.outside_rth for o in gateway.open_orders()] == [False]  # as openOrder shows
        await ib.reqCurrentTimeAsync()
        assert trade.fills == [] and gateway.executions() == []
        gateway.set_clock(OPEN)
        await status(trade, "Filled")


@async_test
async def test_futures_order_without_outside_rth_waits_for_regular_hours(
    gateway: SimGateway,
) -> None:
    """ES as IB describes it: trading hours 17:00-16:00 Chicago, regular hours 08:30-16:00. In
    the evening session an order without outsideRth is held (399) until 08:30; with it, it works."""
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [details] = await ib.reqContractDetailsAsync(Future("ES", "202612", "CME"))
        assert details.tradingHours.startswith("20261130:1700-20261201:1600;")
        assert details.liquidHours.startswith("20261130:0830-20261130:1600;20261201:0830-")
        es = details.contract
        assert es is not None
        held = ib.placeOrder(es, LimitOrder("BUY", 1, 20000.0, tif="DAY"))
        await until(lambda: 399 in errors.codes(held.order.orderId), what="warning 399")
        assert errors.text(399).endswith("until 2026-12-01 08:30:00 US/Central")
        overnight = ib.placeOrder(es, LimitOrder("BUY", 1, 20000.0, tif="DAY", outsideRth=True))
        await status(overnight, "Filled")
        assert held.orderStatus.status == "PreSubmitted" and held.fills == []
        gateway.set_clock(parse_when("2026-12-01T08:30:00-06:00"))
        await status(held, "Filled")


@async_test
async def test_day_order_expires_at_the_close_gtc_carries_over(gateway: SimGateway) -> None:
    gateway.set_clock(OPEN + 3600)
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        day = ib.placeOrder(stock, LimitOrder("BUY", 1, 100.0, tif="DAY"))
        gtc = ib.placeOrder(stock, LimitOrder("BUY", 1, 100.0, tif="GTC"))
        await status(day, "Submitted")
        await status(gtc, "Submitted")
        gateway.set_clock(CLOSE)
        await status(day, "Cancelled")
        assert [o.order_id for o in gateway.open_orders()] == [gtc.order.orderId]
        assert gtc.orderStatus.status == "Submitted"


@async_test
async def test_contract_details_carry_ib_format_hours(gateway: SimGateway) -> None:
    async with connected(gateway) as ib:
        [details] = await ib.reqContractDetailsAsync(aapl())
        assert details.timeZoneId == "US/Eastern"
        assert details.liquidHours.startswith(
            "20261130:0930-20261130:1600;20261201:0930-20261201:1600"
        )
        assert details.tradingHours.startswith("20261130:0400-20261130:2000;")
        assert "20261205:CLOSED" in details.liquidHours


# ----------------------------------------------------------------------------- IB's errors (ib_async)


@async_test
async def test_blank_tif_gets_10349_by_default_and_ib_async_calls_it_cancelled(
    gateway: SimGateway,
) -> None:
    """The failure this project exists to survive: on by default, like a real account's preset."""
    gateway.set_clock(OPEN + 60)
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        trade = ib.placeOrder(stock, MarketOrder("BUY", 1))  # ib_async's default: no TIF
        cancelled: list[int] = []
        trade.cancelledEvent += lambda t: cancelled.append(t.log[-1].errorCode)
        await until(lambda: 10349 in errors.codes(trade.order.orderId), what="10349")
        await until(lambda: cancelled, what="cancelledEvent")
        assert cancelled == [10349]
        await until(lambda: gateway.executions(), what="the order fills at the gateway anyway")


@async_test
async def test_a_long_brackets_exits_need_no_locate(gateway: SimGateway) -> None:
    """A bracket's sell exits close the long its entry opens: no 404 for a hard-to-borrow
    stock, and the stop works once the entry fills."""
    gateway.set_clock(OPEN + 60)
    gateway.set_hard_to_borrow("AAPL")
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        ticker = await quote(ib, stock)
        entry, profit, loss = ib.bracketOrder(
            "BUY", 10, cents(ticker.ask + 1), cents(ticker.ask + 20), cents(ticker.bid - 30)
        )
        parent, _, stop = [ib.placeOrder(stock, order) for order in (entry, profit, loss)]
        await status(parent, "Filled")
        await status(stop, "PreSubmitted")
        await ib.reqCurrentTimeAsync()
        assert 404 not in errors.codes() and stop.orderStatus.whyHeld == ""


@async_test
async def test_off_tick_price_gets_110_with_ibs_text(gateway: SimGateway) -> None:
    gateway.set_clock(OPEN + 60)
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        trade = ib.placeOrder(stock, LimitOrder("BUY", 1, 100.005, tif="DAY"))
        await until(lambda: 110 in errors.codes(trade.order.orderId), what="error 110")
        assert errors.text(110) == OFF_TICK
        await ib.reqCurrentTimeAsync()  # anything sent after the 110 has arrived by now
        # IB makes no order of it: no openOrder, no status (ib_async cancels the trade itself)
        assert statuses(trade) == ["PendingSubmit", "Cancelled"]
        assert trade.order.permId == 0 and gateway.completed_orders() == []
        assert 201 not in errors.codes()


@async_test
async def test_modifying_a_working_order_shows_presubmitted_then_submitted(
    gateway: SimGateway,
) -> None:
    """IB re-validates a modified order: PreSubmitted, then Submitted again."""
    gateway.set_clock(OPEN + 60)
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        trade = ib.placeOrder(stock, LimitOrder("BUY", 10, 100.0, tif="DAY"))
        await status(trade, "Submitted")
        change = copy.copy(trade.order)
        change.lmtPrice = 100.5
        ib.placeOrder(stock, change)
        await until(lambda: trade.order.lmtPrice == 100.5, what="modified order echoed")
        await status(trade, "Submitted")
        after = statuses(trade)[statuses(trade).index("Submitted") + 1 :]
        assert after == ["Submitted", "PreSubmitted", "Submitted"]  # Modify, then IB's two


def leg(gateway: SimGateway, order_id: int) -> Any:
    """The gateway's view of client 1's order ``order_id``."""
    return gateway.broker_call(lambda broker: broker.order(1, order_id))


@async_test
async def test_modifying_a_bracket_leg_naming_its_filled_parent_gets_135(
    gateway: SimGateway,
) -> None:
    """Once the entry has filled, IB no longer finds it: a leg's modify that still names it
    (parentId, as ib_async's echoed order does) is refused with 135 and the leg keeps its price
    (ib_insync #647: 'Error 135, reqId 22: Can't find order with id = 20'); without the parentId
    the change applies. While the entry works, naming it is how a leg is modified."""
    gateway.set_clock(OPEN + 60)
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        ticker = await quote(ib, stock)
        entry, profit, loss = ib.bracketOrder(
            "BUY", 10, cents(ticker.bid - 20), cents(ticker.ask + 20), cents(ticker.bid - 30)
        )
        parent, _, stop = [ib.placeOrder(stock, order) for order in (entry, profit, loss)]
        await status(stop, "PreSubmitted")
        waiting = copy.copy(stop.order)  # entry working: the leg names it, and is modified
        waiting.auxPrice = cents(ticker.bid - 29)
        waiting.ocaGroup, waiting.ocaType = str(parent.order.permId), 3  # IB's bracket group
        ib.placeOrder(stock, waiting)
        await until(lambda: leg(gateway, stop.order.orderId).aux_price == waiting.auxPrice)

        moved = copy.copy(parent.order)
        moved.lmtPrice = cents(ticker.ask + 1)  # marketable: the entry fills
        moved.transmit = True  # bracketOrder's entry was placed untransmitted: a change so waits
        ib.placeOrder(stock, moved)
        await status(parent, "Filled")
        late = copy.copy(stop.order)
        assert late.parentId == parent.order.orderId
        late.auxPrice = cents(ticker.bid - 25)
        ib.placeOrder(stock, late)
        await until(lambda: 135 in errors.codes(stop.order.orderId), what="error 135")
        assert errors.text(135) == f"Can't find order with id = {parent.order.orderId}"
        assert leg(gateway, stop.order.orderId).aux_price == waiting.auxPrice
        assert leg(gateway, stop.order.orderId).status == "PreSubmitted"
        assert stop.orderStatus.status == "Cancelled"  # ib_async's reading of 135: it is not

        late.parentId = 0
        with pytest.raises(AssertionError):  # ib_async sends, then asserts the trade is live
            ib.placeOrder(stock, late)
        await until(lambda: leg(gateway, stop.order.orderId).aux_price == late.auxPrice)
        assert errors.codes(stop.order.orderId).count(135) == 1


@async_test
async def test_a_bracket_leg_is_in_ibs_oca_group_and_is_modified_in_it(
    gateway: SimGateway,
) -> None:
    """IB links a bracket's children in an OCA group of its own, named by the parent's permId,
    whatever group they were placed with; a modify restating the group it was placed with is a
    revision (10326), one naming the parent without a group a type revision (10327): the leg
    keeps its price. Sent in IB's group the change applies."""
    gateway.set_clock(OPEN + 60)
    async with connected(gateway) as ib, connected(gateway, client_id=2) as other:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        ticker = await quote(ib, stock)
        entry, profit, loss = ib.bracketOrder(
            "BUY", 10, cents(ticker.bid - 20), cents(ticker.ask + 20), cents(ticker.bid - 30)
        )
        for leg_order in (profit, loss):
            leg_order.ocaGroup, leg_order.ocaType = "mine", 1
        parent, _, stop = [ib.placeOrder(stock, order) for order in (entry, profit, loss)]
        await status(stop, "PreSubmitted")
        seen = {t.order.orderId: t.order for t in await other.reqAllOpenOrdersAsync()}
        group = str(parent.order.permId)
        assert seen[stop.order.orderId].ocaGroup == group and seen[stop.order.orderId].ocaType == 1

        mine = copy.copy(stop.order)
        mine.auxPrice = cents(ticker.bid - 29)
        ib.placeOrder(stock, mine)
        await until(lambda: 10326 in errors.codes(stop.order.orderId), what="error 10326")
        assert errors.text(10326) == "OCA group revision is not allowed"
        assert leg(gateway, stop.order.orderId).aux_price == loss.auxPrice

        blank = copy.copy(mine)  # naming the parent without a group: a type revision
        blank.ocaGroup, blank.ocaType = "", 0
        with pytest.raises(AssertionError):  # ib_async took the 10326 for a cancel: it is not
            ib.placeOrder(stock, blank)
        await until(lambda: 10327 in errors.codes(stop.order.orderId), what="error 10327")
        assert errors.text(10327) == "OCA group type revision is not allowed"
        assert leg(gateway, stop.order.orderId).aux_price == loss.auxPrice

        held = copy.copy(mine)  # the leg as IB holds it: its group, the parent's permId
        held.ocaGroup = group
        with pytest.raises(AssertionError):
            ib.placeOrder(stock, held)
        await until(lambda: leg(gateway, stop.order.orderId).aux_price == held.auxPrice)
        assert leg(gateway, stop.order.orderId).oca_group == group  # still linked


@async_test
async def test_an_untransmitted_order_gets_no_status_until_its_group_is_transmitted(
    gateway: SimGateway,
) -> None:
    """transmit=False: TWS holds the order and reports nothing (ib_async keeps PendingSubmit)."""
    gateway.set_clock(OPEN + 60)
    async with connected(gateway) as ib:
        [stock] = await qualified(ib, aapl())
        parent = ib.placeOrder(stock, LimitOrder("BUY", 1, 100.0, tif="DAY", transmit=False))
        await ib.reqCurrentTimeAsync()
        await asyncio.sleep(0.3)
        assert statuses(parent) == ["PendingSubmit"] and parent.order.permId == 0
        stop = StopOrder("SELL", 1, 90.0, tif="DAY", parentId=parent.order.orderId)
        child = ib.placeOrder(stock, stop)  # transmit=True: the group goes out
        await status(parent, "Submitted")
        await status(child, "PreSubmitted")
        assert statuses(parent) == ["PendingSubmit", "PreSubmitted", "Submitted"]


@async_test
async def test_an_order_can_fill_while_its_cancel_is_pending(gateway: SimGateway) -> None:
    """A cancel takes IB a moment (cancel_delay): the order still fills meanwhile, and then
    the fill is its end - no Cancelled, no 202."""
    gateway.set_clock(OPEN + 60)
    gateway.set_fill_delay(0.3)
    gateway.set_cancel_delay(1.0)
    async with connected(gateway) as ib:
        errors = Errors(ib)
        [stock] = await qualified(ib, aapl())
        trade = ib.placeOrder(stock, LimitOrder("BUY", 1, 1000.0, tif="DAY"))  # marketable
        await until(lambda: gateway.open_orders(), what="acknowledged")
        due = gateway.now() + 1.0
        ib.cancelOrder(trade.order)
        await status(trade, "Filled")
        await until(lambda: gateway.now() > due + 0.2, what="the cancel's time passed")
        await ib.reqCurrentTimeAsync()  # anything sent meanwhile has arrived by now
        assert trade.orderStatus.status == "Filled" and 202 not in errors.codes()
        assert [o.status for o in gateway.completed_orders()] == ["Filled"]


# ----------------------------------------------------------------------------- pacing (ib_async)


@pytest.mark.slow
@async_test
async def test_pacing_errors_then_disconnect_after_repeated_violations(
    start_gateway: Callable[..., SimGateway], caplog: pytest.LogCaptureFixture
) -> None:
    gateway = start_gateway(max_rate=20, pacing_disconnect_after=2)
    async with connected(gateway) as ib:
        errors = Errors(ib)
        ib.client.MaxRequests = 0  # ib_async's own throttle off
        while (
            ib.isConnected()
        ):  # keep flooding: one violation a second, the third closes the socket
            for _ in range(30):
                ib.client.reqCurrentTime()
            await until(lambda: len(errors.codes(-1)) > 0, what="error 100")
            await asyncio.sleep(0.05)  # the loop's own pace; the condition is the disconnect
        texts = [text for _, code, text in errors.items if code == 100]
        assert texts[0].startswith("Max rate of messages per second has been exceeded:max=20 rec=")
        assert texts[0].endswith("(1)") and texts[-1].endswith("(2)")
    assert gateway.connected_client_ids() == []
    assert any("pacing violations" in r.getMessage() for r in caplog.records)


@async_test
async def test_paceapi_queues_excess_messages_instead_of_rejecting(
    start_gateway: Callable[..., SimGateway],
) -> None:
    gateway = start_gateway(max_rate=20)
    ib = IB()
    ib.client.setConnectOptions("+PACEAPI")
    await ib.connectAsync(gateway.host, gateway.port, clientId=1, timeout=3)
    try:
        errors = Errors(ib)
        answers: list[int] = []
        ib.client.MaxRequests = 0
        ib.wrapper.currentTime = lambda t: answers.append(t)  # type: ignore[method-assign, assignment]
        for _ in range(40):  # twice the rate: half of them wait in the gateway's queue
            ib.client.reqCurrentTime()
        await until(lambda: len(answers) == 40, 10.0, "every queued request answered")
        assert 100 not in errors.codes() and ib.isConnected()
        assert gateway.stats().pacing_violations == 0
    finally:
        ib.disconnect()


# ----------------------------------------------------------------------------- versions


@async_test
async def test_client_above_the_gateways_versions_gets_its_version_and_refuses(
    gateway: SimGateway, caplog: pytest.LogCaptureFixture
) -> None:
    ib = IB()
    ib.client.MinClientVersion, ib.client.MaxClientVersion = 179, 190  # a client newer than TWS
    # ib_async reports the refusal (apiError) but its connect waits out the time-out
    with pytest.raises((ConnectionError, TimeoutError)):
        await ib.connectAsync(gateway.host, gateway.port, clientId=1, timeout=1)
    assert not ib.isConnected()
    assert any("outside 157..178: answering 178" in r.getMessage() for r in caplog.records)


def _read_frame(sock: socket.socket) -> list[str] | None:
    head = sock.recv(4, socket.MSG_WAITALL)
    if len(head) < 4:
        return None
    body = sock.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL)
    return body.decode().split("\0")[:-1]


def test_client_below_157_gets_the_lowest_version_then_the_socket_closes(
    gateway: SimGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sim_gateway.server")
    with socket.create_connection((gateway.host, gateway.port), timeout=5) as sock:
        sock.sendall(encode_client_hello(100, 151))
        reply = _read_frame(sock)
        assert reply is not None and reply[0] == "157" and len(reply) == 2
        assert _read_frame(sock) is None  # closed
    assert any("too old a client; closing" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- ibapi 9.81


def test_ibapi_sees_399_then_the_fill_at_the_open(app: App, gateway: SimGateway) -> None:
    order_id = app.next_order_id()
    buy = ibapi_order("BUY", 1)
    app.placeOrder(order_id, ibapi_aapl(), buy)
    warning = app.wait_call("error", reqId=order_id, errorCode=399)
    assert warning["errorString"] == HELD_399
    app.wait_call("orderStatus", orderId=order_id, status="PreSubmitted")
    gateway.set_clock(OPEN)
    app.wait_call("orderStatus", orderId=order_id, status="Filled")


def test_ibapi_market_order_outside_rth_gets_2109_and_waits_for_the_open(
    app: App, gateway: SimGateway
) -> None:
    order_id = app.next_order_id()
    buy = ibapi_order("BUY", 1)
    buy.outsideRth = True
    app.placeOrder(order_id, ibapi_aapl(), buy)
    assert app.wait_call("error", reqId=order_id, errorCode=2109)["errorString"] == RTH_IGNORED
    app.wait_call("error", reqId=order_id, errorCode=399)
    shown = app.wait_call("openOrder", orderId=order_id, status="PreSubmitted")
    assert shown["order"].outsideRth is False
    gateway.set_clock(OPEN)
    app.wait_call("orderStatus", orderId=order_id, status="Filled")


def test_ibapi_sees_10349_by_default_and_110_for_an_off_tick_price(
    app: App, gateway: SimGateway
) -> None:
    gateway.set_clock(OPEN + 60)
    blank = ibapi_order("BUY", 1)
    blank.tif = ""
    blank_id = app.next_order_id()
    app.placeOrder(blank_id, ibapi_aapl(), blank)
    notice = app.wait_call("error", reqId=blank_id, errorCode=10349)
    assert notice["errorString"] == "Order TIF was set to DAY based on order preset."
    app.wait_call("orderStatus", orderId=blank_id, status="Filled")

    off_id = app.next_order_id()
    app.placeOrder(off_id, ibapi_aapl(), ibapi_order("BUY", 1, "LMT", 100.005))
    assert app.wait_call("error", reqId=off_id, errorCode=110)["errorString"] == OFF_TICK
    app.reqCurrentTime()  # anything sent after the 110 has arrived by the answer
    app.wait_for(lambda calls: app.find("currentTime", calls))
    # IB makes no order of it: no openOrder, no orderStatus
    assert [c.name for c in app.order_calls(off_id)] == ["error"]


def test_ibapi_modify_of_a_working_order_is_presubmitted_then_submitted(
    app: App, gateway: SimGateway
) -> None:
    gateway.set_clock(OPEN + 60)
    order_id = app.next_order_id()
    app.placeOrder(order_id, ibapi_aapl(), ibapi_order("BUY", 10, "LMT", 100.0))
    app.wait_call("orderStatus", orderId=order_id, status="Submitted")
    placed = len(app.find("orderStatus", orderId=order_id))
    app.placeOrder(order_id, ibapi_aapl(), ibapi_order("BUY", 10, "LMT", 100.5))
    app.wait_for(lambda calls: len(app.find("orderStatus", calls, orderId=order_id)) >= placed + 2)
    shown = [c["status"] for c in app.find("orderStatus", orderId=order_id)[placed:]]
    assert shown == ["PreSubmitted", "Submitted"]
    assert app.find("openOrder", orderId=order_id)[-1]["order"].lmtPrice == 100.5


def test_ibapi_untransmitted_parent_is_silent_until_its_child_transmits(
    app: App, gateway: SimGateway
) -> None:
    gateway.set_clock(OPEN + 60)
    parent_id, child_id = app.next_order_id(), app.next_order_id()
    parent = ibapi_order("BUY", 1, "LMT", 100.0)
    parent.transmit = False
    app.placeOrder(parent_id, ibapi_aapl(), parent)
    app.reqCurrentTime()
    app.wait_for(lambda calls: app.find("currentTime", calls))
    time.sleep(0.3)
    assert app.order_calls(parent_id) == []
    child = ibapi_order("SELL", 1, "STP")
    child.auxPrice, child.parentId = 90.0, parent_id
    app.placeOrder(child_id, ibapi_aapl(), child)
    app.wait_call("orderStatus", orderId=parent_id, status="Submitted")
    app.wait_call("orderStatus", orderId=child_id, status="PreSubmitted")


def test_ibapi_bracket_leg_is_modified_in_ibs_oca_group_only(app: App, gateway: SimGateway) -> None:
    gateway.set_clock(OPEN + 60)
    parent_id, stop_id = app.next_order_id(), app.next_order_id()
    parent = ibapi_order("BUY", 1, "LMT", 100.0)
    parent.transmit = False
    app.placeOrder(parent_id, ibapi_aapl(), parent)
    stop = ibapi_order("SELL", 1, "STP")
    stop.auxPrice, stop.parentId, stop.ocaGroup, stop.ocaType = 90.0, parent_id, "mine", 1
    app.placeOrder(stop_id, ibapi_aapl(), stop)
    perm_id = app.wait_call("openOrder", orderId=parent_id)["order"].permId
    assert app.wait_call("openOrder", orderId=stop_id)["order"].ocaGroup == str(perm_id)

    stop.auxPrice = 91.0
    app.placeOrder(stop_id, ibapi_aapl(), stop)
    refused = app.wait_call("error", reqId=stop_id, errorCode=10326)
    assert refused["errorString"] == "OCA group revision is not allowed"
    assert [c["order"].auxPrice for c in app.find("openOrder", orderId=stop_id)] == [90.0]
    stop.ocaGroup = ""  # naming the parent without its group: a type revision
    app.placeOrder(stop_id, ibapi_aapl(), stop)
    refused = app.wait_call("error", reqId=stop_id, errorCode=10327)
    assert refused["errorString"] == "OCA group type revision is not allowed"
    stop.ocaGroup = str(perm_id)  # as IB holds it: the change applies
    app.placeOrder(stop_id, ibapi_aapl(), stop)
    moved = app.wait_for(
        lambda calls: [
            c["order"]
            for c in app.find("openOrder", calls, orderId=stop_id)
            if c["order"].auxPrice == 91.0
        ]
    )
    assert moved[0].ocaGroup == str(perm_id)


def test_ibapi_completed_order_reports_total_quantity_0_once_filled(
    app: App, gateway: SimGateway
) -> None:
    gateway.set_clock(OPEN + 60)
    order_id = app.next_order_id()
    app.placeOrder(order_id, ibapi_aapl(), ibapi_order("BUY", 3))
    app.wait_call("orderStatus", orderId=order_id, status="Filled")
    app.reqCompletedOrders(True)
    app.wait_call("completedOrdersEnd")
    [done] = app.find("completedOrder")
    assert done["status"] == "Filled"
    assert (done["order"].totalQuantity, done["order"].filledQuantity) == (0, 3)


def test_ibapi_fill_without_a_filled_status_when_ib_leaves_it_untold(
    app: App, gateway: SimGateway
) -> None:
    """IB does not promise an orderStatus for every change: a market order that fills at once
    often gets only its execDetails and openOrder (set_filled_status(False))."""
    gateway.set_clock(OPEN + 60)
    gateway.set_filled_status(False)
    order_id = app.next_order_id()
    app.placeOrder(order_id, ibapi_aapl(), ibapi_order("BUY", 3))
    app.wait_call("commissionReport")  # the execution's last message: a status came before it
    [fill] = app.find("execDetails")
    assert fill["execution"].orderId == order_id and fill["execution"].shares == 3
    assert [c["status"] for c in app.find("orderStatus", orderId=order_id)] == ["PreSubmitted"]
    gateway.set_filled_status(True)
    second = app.next_order_id()
    app.placeOrder(second, ibapi_aapl(), ibapi_order("BUY", 1))
    app.wait_call("orderStatus", orderId=second, status="Filled")


def test_ibapi_sees_a_corrected_execution_under_the_next_exec_id(
    app: App, gateway: SimGateway
) -> None:
    """IB corrects an execution with another execDetails, identical but for the price and the
    execId's part after the last period, and its own commission report."""
    gateway.set_clock(OPEN + 60)
    order_id = app.next_order_id()
    app.placeOrder(order_id, ibapi_aapl(), ibapi_order("BUY", 3))
    app.wait_call("commissionReport")
    [first] = [c["execution"] for c in app.find("execDetails")]
    gateway.correct_execution(first.execId, first.price + 0.05)
    app.wait_for(lambda calls: len(app.find("commissionReport", calls)) == 2 or None)
    first_call, fixed_call = app.find("execDetails")
    fixed = fixed_call["execution"]
    assert fixed.execId.rpartition(".")[0] == first.execId.rpartition(".")[0]
    assert fixed.execId.rpartition(".")[2] == "02" and first.execId.endswith(".01")
    assert (fixed.orderId, fixed.permId, fixed.shares) == (order_id, first.permId, 3)
    assert fixed.price == pytest.approx(first.price + 0.05)


def test_ibapi_short_sale_is_held_for_a_locate_then_works(app: App, gateway: SimGateway) -> None:
    """A short sale of a stock IB cannot borrow now: 404, then orderStatus Inactive with whyHeld
    "locate" (nautilus_trader #3723, ib_insync #328/#363); the order lives and fills once the
    shares are located. A sale of shares held is not held."""
    gateway.set_clock(OPEN + 60)
    gateway.set_hard_to_borrow("AAPL")
    order_id = app.next_order_id()
    app.placeOrder(order_id, ibapi_aapl(), ibapi_order("SELL", 3))
    held = app.wait_call("error", reqId=order_id, errorCode=404)
    assert held["errorString"] == "Order held while securities are located."
    status = app.wait_call("orderStatus", orderId=order_id, status="Inactive")
    assert status["whyHeld"] == "locate" and status["remaining"] == 3
    assert gateway.open_orders()[0].status == "Inactive"  # reported so, yet live
    assert not app.find("execDetails")
    gateway.shares_located("AAPL")
    app.wait_call("orderStatus", orderId=order_id, status="Filled")
    buy = app.next_order_id()
    app.placeOrder(buy, ibapi_aapl(), ibapi_order("BUY", 5))
    app.wait_call("orderStatus", orderId=buy, status="Filled")
    gateway.set_hard_to_borrow("AAPL")
    sell = app.next_order_id()
    app.placeOrder(sell, ibapi_aapl(), ibapi_order("SELL", 2))  # of the 2 held long: no locate
    app.wait_call("orderStatus", orderId=sell, status="Filled")
    assert not app.find("error", reqId=sell, errorCode=404)


def test_ibapi_cancel_reports_pending_cancel_and_refuses_a_second_cancel_with_10148(
    app: App, gateway: SimGateway
) -> None:
    """IB's cancel (recorded paper sessions in ibx): PendingCancel reports, then Cancelled and
    202; a second cancel meanwhile answers 10148 'state: PendingCancel.'"""
    gateway.set_clock(OPEN + 60)
    gateway.set_cancel_delay(30)  # of clock time: the cancel is done when the test moves it
    order_id = app.next_order_id()
    app.placeOrder(order_id, ibapi_aapl(), ibapi_order("BUY", 10, "LMT", 100.0))
    app.wait_call("orderStatus", orderId=order_id, status="Submitted")
    app.cancelOrder(order_id)
    app.wait_call("orderStatus", orderId=order_id, status="PendingCancel")
    assert app.find("openOrder", orderId=order_id)[-1]["status"] == "PendingCancel"
    app.cancelOrder(order_id)
    refused = app.wait_call("error", reqId=order_id, errorCode=10148)
    assert refused["errorString"] == (
        f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: PendingCancel."
    )
    assert not app.find("orderStatus", orderId=order_id, status="Cancelled")
    assert gateway.open_orders()[0].status == "PendingCancel"  # not done before its time
    later(gateway, 30)
    cancelled = app.wait_call("orderStatus", orderId=order_id, status="Cancelled")
    assert (cancelled["filled"], cancelled["remaining"]) == (0, 10)
    app.wait_call("error", reqId=order_id, errorCode=202)
    assert app.calls.index(refused) < app.calls.index(cancelled)


def test_ibapi_flooding_gets_error_100(app: App, gateway: SimGateway) -> None:
    for _ in range(80):
        app.reqCurrentTime()
    error = app.wait_call("error", errorCode=100)
    assert (
        error["reqId"] == -1
        and "Max rate of messages per second has been exceeded" in error["errorString"]
    )
