"""The read path: IBConnector's order and execution table on the simulated gateway.

Another trader's script (clientId 7, not the Master API client) places orders
the reader (clientId 999) only learns about by asking; the gateway counts what
the reader asks for, so the tests can hold the reader to asking little.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Stock

import ib_connection
import reader_orders
import reader_rows
from conftest import later, wait_for
from ib_connector import IBConnector
from reader_orders import _CompletedSink, _DutyPacer
from sim_gateway.protocol import Out

READER, OWN, OTHER = 999, 1000, 7


@pytest.fixture
def connector(gateway):
    """The reader connected to the gateway, with its first refresh done."""
    reader = IBConnector("127.0.0.1", gateway.port, READER, connect_timeout=5, own_client_id=OWN)
    reader.start()
    wait_for(lambda: reader.snapshot().orders_updated_at, timeout=5)
    yield reader
    reader.stop()


@pytest.fixture
def scripts(gateway):
    """Connects traders' scripts on this (main) thread, as ``test_order.py`` runs, on a loop
    of their own that is closed afterwards (with every socket)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    clients: list[IB] = []

    def connect(client_id: int = OTHER) -> IB:
        ib = IB()
        ib.connect("127.0.0.1", gateway.port, clientId=client_id, timeout=5)
        clients.append(ib)
        return ib

    yield connect
    for ib in clients:
        ib.disconnect()
    loop.run_until_complete(asyncio.sleep(0.05))  # let the transports finish closing
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def other(scripts):
    return scripts(OTHER)


def place(ib: IB, order, symbol: str = "IBM"):
    contract = ib.qualifyContracts(Stock(symbol, "SMART", "USD"))[0]
    order.tif = "DAY"
    trade = ib.placeOrder(contract, order)
    ib.reqCurrentTime()  # a round trip: the gateway has read the order
    return trade


def place_many(ib: IB, count: int, symbol: str = "IBM") -> list:
    """``count`` market orders in one burst: one qualification and one round trip for all, so
    the client's throttle (45 requests a second) does not spread them over seconds."""
    contract = ib.qualifyContracts(Stock(symbol, "SMART", "USD"))[0]
    trades = [ib.placeOrder(contract, MarketOrder("BUY", 1, tif="DAY")) for _ in range(count)]
    ib.reqCurrentTime()  # a round trip: the gateway has read them all
    return trades


def refreshed(reader: IBConnector) -> None:
    """Ask for a refresh and wait until one has run entirely after the ask (the one under way
    when asked, if any, may have started before it)."""
    done = reader.refreshes
    reader.request_refresh()
    wait_for(lambda: reader.refreshes >= done + 1, timeout=5)
    # the next one starts after that one ended, so after the ask; asked for, it starts now
    # instead of at the next periodic refresh (a second later)
    reader.request_refresh()
    wait_for(lambda: reader.refreshes >= done + 2, timeout=5)


def row_of(reader: IBConnector, perm_id: int):
    return next((r for r in reader.snapshot().orders if r.perm_id == perm_id), None)


def requests(gateway, name: str) -> int:
    return gateway.stats().requests_by_client[READER, name]


@pytest.mark.slow
def test_other_clients_order_is_seen_open_then_filled_without_a_completed_download(
    gateway, connector, other
):
    gateway.set_fill_delay(60)  # simulated seconds: seen open first, then filled
    trade = place(other, MarketOrder("BUY", 3))
    wait_for(lambda: (row := row_of(connector, trade.order.permId)) and row.open)
    before = requests(gateway, "ReqCompletedOrders")
    later(gateway, 60)
    row = wait_for(lambda: (r := row_of(connector, trade.order.permId)) and not r.open and r)
    assert (row.status, row.filled, row.client_id) == ("Filled", 3, OTHER)
    assert row.avg_fill_price and row.avg_fill_price > 0
    # its executions explain it: no download of every completed order of the day
    assert requests(gateway, "ReqCompletedOrders") == before


def test_cancelled_order_of_another_client_is_resolved_from_completed_orders(
    gateway, connector, other
):
    trade = place(other, LimitOrder("BUY", 2, 1.00))  # far below the market: rests
    wait_for(lambda: (row := row_of(connector, trade.order.permId)) and row.open)
    other.cancelOrder(trade.order)
    other.reqCurrentTime()  # the gateway has read the cancel
    row = wait_for(
        lambda: (r := row_of(connector, trade.order.permId)) and not r.open and r, timeout=5
    )
    assert row.status == "Cancelled" and row.filled == 0
    # what was left unfilled when it ended (it read 0: the completed order has no remaining)
    assert (row.quantity, row.remaining) == (2, 2)


def test_an_instant_fill_never_seen_open_still_shows_filled(gateway, connector, other):
    trade = place(other, MarketOrder("SELL", 1))
    row = wait_for(lambda: (r := row_of(connector, trade.order.permId)) and r)
    assert (row.status, row.open, row.client_id, row.order_id) == (
        "Filled",
        False,
        OTHER,
        trade.order.orderId,
    )
    execs = [e for e in connector.snapshot().executions if e.perm_id == trade.order.permId]
    # IB tells another client's commission only to the Master API client: the reader is not
    assert len(execs) == 1 and execs[0].commission is None


@pytest.mark.slow
def test_executions_are_asked_for_incrementally(gateway, connector, other, monkeypatch):
    # 1 s of overlap (production: 2 s), still a whole step of the gateway's time filter;
    # the reader reads it at each ask
    monkeypatch.setattr(reader_orders, "EXEC_OVERLAP", 1.0)
    place_many(other, 30)
    wait_for(lambda: len(connector.snapshot().executions) >= 30, timeout=5)
    other.sleep(reader_orders.EXEC_OVERLAP + 1.5)  # the filter can now move past all of them
    refreshed(connector)
    sent = gateway.stats().sent_by_client[READER, Out.EXECUTION_DATA]
    trade = place(other, MarketOrder("BUY", 1))
    wait_for(lambda: row_of(connector, trade.order.permId))  # 3 s was short on a loaded run
    refreshed(connector)
    resent = gateway.stats().sent_by_client[READER, Out.EXECUTION_DATA] - sent
    # only the new one (again in the overlap), never the 30 earlier ones again
    assert 1 <= resent <= 3, resent
    assert len({e.exec_id for e in connector.snapshot().executions}) == 31


def test_an_execution_ib_corrects_is_listed_once_as_corrected(
    gateway, connector, other, monkeypatch
):
    """IB lists an execution and its correction (the execId's last part raised) side by side:
    the day's executions showed both, 2 shares for a 1-share fill. The correction replaces it."""
    monkeypatch.setattr(reader_orders, "EXEC_SWEEP", 0.3)
    trade = place(other, MarketOrder("BUY", 1))
    perm_id = trade.order.permId
    row = wait_for(
        lambda: next((e for e in connector.snapshot().executions if e.perm_id == perm_id), None)
    )
    gateway.correct_execution(row.exec_id, round(row.price + 0.05, 2))
    base = row.exec_id.rpartition(".")[0]
    wait_for(lambda: f"{base}.02" in {e.exec_id for e in connector.snapshot().executions})
    refreshed(connector)  # asked again: both are in the gateway's answer
    mine = [e for e in connector.snapshot().executions if e.exec_id.startswith(base)]
    assert [(e.exec_id, e.shares) for e in mine] == [(f"{base}.02", 1)]
    assert mine[0].price == pytest.approx(row.price + 0.05)


def test_own_clients_fills_do_not_trigger_completed_downloads(gateway, connector, scripts):
    ours = scripts(OWN)  # the OrderHandler's clientId
    wait_for(lambda: requests(gateway, "ReqCompletedOrders"))
    before = requests(gateway, "ReqCompletedOrders")
    for _ in range(10):
        place(ours, MarketOrder("BUY", 1))
    wait_for(lambda: len(connector.snapshot().executions) >= 10, timeout=5)
    refreshed(connector)  # a whole refresh after the fills were read: it decided
    assert not connector._completed_pending  # no download waiting for the pacer either
    assert requests(gateway, "ReqCompletedOrders") == before


def test_order_that_came_and_went_unseen_is_found_by_the_sweep(
    gateway, connector, other, monkeypatch
):
    monkeypatch.setattr(reader_orders, "COMPLETED_SWEEP", 0.5)
    gateway.reject_next_order("no such luck")  # rejected at once: never open, no execution
    trade = place(other, LimitOrder("BUY", 1, 1.00))
    row = wait_for(lambda: row_of(connector, trade.order.permId), timeout=5)
    assert not row.open and row.status in ("Inactive", "Cancelled")


@pytest.mark.slow
def test_memory_is_bounded_however_many_orders_the_day_has(gateway, connector, other, monkeypatch):
    monkeypatch.setattr(reader_orders, "KEEP_COMPLETED", 5)
    monkeypatch.setattr(reader_orders, "KEEP_EXECUTIONS", 8)
    trades = place_many(other, 20)
    newest = max(t.order.permId for t in trades)
    wait_for(lambda: row_of(connector, newest), timeout=5)
    snap = connector.snapshot()
    assert len([r for r in snap.orders if not r.open]) <= 5
    assert len(snap.executions) <= 8
    # ib_async's own tables on the reader's loop hold nothing for finished orders, and no
    # fill but those whose commission report is still to come (a fill made while the
    # executions were being asked for is answered before its report: on a loaded machine
    # some are; they stay for the next refresh to complete, at most KEEP_EXECUTIONS of them)

    async def sizes():
        wrapper = connector.ib.wrapper
        waiting = connector._book.uncommissioned
        settled = [k for k in wrapper.fills if k not in waiting]
        return len(wrapper.trades), len(wrapper.permId2Trade), len(settled), len(wrapper.fills)

    trades_kept, by_perm_id, fills_settled, fills_kept = connector.thread.call(sizes(), 5)
    assert (trades_kept, by_perm_id, fills_settled) == (0, 0, 0)
    assert fills_kept <= 8


def test_duty_pacer_spaces_runs_by_their_cost():
    pacer = _DutyPacer(duty=0.1)
    assert pacer.ready(0.0)
    pacer.ran(10.0, 10.5)  # took 0.5 s
    assert not pacer.ready(14.9) and pacer.ready(15.0)  # 4.5 s later: 10% of the time


def test_completed_sink_keeps_the_newest(gateway):
    sink = _CompletedSink(keep=3)
    base = reader_rows.OrderRow(
        perm_id=0,
        order_id=0,
        client_id=0,
        order_ref="",
        account="DU1",
        symbol="IBM",
        sec_type="STK",
        action="BUY",
        quantity=1,
        order_type="MKT",
        limit_price=None,
        stop_price=None,
        tif="DAY",
        status="Filled",
        filled=1,
        remaining=0,
        avg_fill_price=None,
        open=False,
    )
    for perm_id in [5, 1, 9, 7, 3, 8, 2]:
        sink.add(dataclasses.replace(base, perm_id=perm_id))
    assert sorted(sink.trim()) == [7, 8, 9] and sink.count == 7


def test_a_gateway_quiet_before_the_question_is_not_taken_for_a_stalled_one(gateway, connector):
    """The silence that makes a quote give up (503, retry) counts from the later of the
    gateway's last bytes and the question: a reader that had heard nothing for a while (no
    subscriptions pushing) still gets its quote."""
    import time

    connector._last_received = time.monotonic() - 60.0  # nothing heard for a minute
    quote = connector.quote("AAPL", "STK", silence=3.0)
    assert quote.bid is not None and quote.ask is not None
    with gateway.stalled():  # a gateway that stops answering after the question is still found out
        with pytest.raises(TimeoutError, match="sent nothing for 3s"):
            connector.quote("MSFT", "STK", silence=3.0)


@pytest.mark.slow
def test_the_order_list_is_dated_when_it_was_asked_for_not_when_it_came(
    connector, gateway, monkeypatch
):
    """The kill switch trusts an order list newer than its engage; a list asked for before
    the engage but answered after it must not pass for newer (an order placed in between
    would be missing from it)."""
    monkeypatch.setattr(ib_connection, "HEARTBEAT_TIMEOUT", 15.0)  # the stall is no drop
    stalled_at = time.time()
    gateway.stall(6.0)  # every answer waits 6 s; the reader asks at once on the hint
    done = connector.refreshes
    connector.request_refresh()
    wait_for(lambda: connector.refreshes > done)  # answered after the stall, asked during it
    dated = connector.snapshot().orders_updated_at
    # answered 6 s after the stall began at the earliest; asked within 5 s of it even on a
    # loaded machine (the hint wakes the reader, at most 0.2 s after its last refresh)
    assert dated is not None and dated < stalled_at + 5.0, dated - stalled_at


def test_a_failing_reader_handler_is_logged_not_swallowed(connector, other, monkeypatch, caplog):
    """eventkit hands a listener's exception to an error event nobody listens to: without our
    guard a broken position handler would leave the positions stale without a word."""

    def boom(self, stream, account, contract, position):
        raise RuntimeError("boom in _on_position")

    monkeypatch.setattr(IBConnector, "_on_position", boom)
    other.placeOrder(Stock("AAPL", "SMART", "USD"), MarketOrder("BUY", 1))

    def logged_boom() -> bool:
        other.sleep(0.05)  # the script's loop reads its socket meanwhile
        return any(
            r.levelno >= logging.ERROR and "boom in _on_position" in (r.exc_text or "")
            for r in caplog.records
        )

    wait_for(logged_boom, timeout=5)


def test_two_clock_questions_at_once_are_both_answered(gateway, connector):
    """The heartbeat, the clock measure and the proof over a hung reqExecutions (TWS 10.30.1)
    each ask reqCurrentTime. ib_async files them under one key: of two asked at once the first
    never got its answer, the heartbeat timed out and the reader reconnected for nothing
    (every subscription dropped and made again, the data shown as disconnected meanwhile)."""

    async def both() -> None:
        ib = connector.ib
        assert ib is not None
        await asyncio.gather(connector.gateway_time(ib, 2.0), connector.gateway_time(ib, 2.0))

    connector.thread.call(both(), 10)
    assert connector.state().state == "connected"
