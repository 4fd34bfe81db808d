"""Tests of the pure broker model (sim_gateway.broker)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from sim_gateway.broker import (
    AccountValuesEvent,
    Broker,
    BrokerConfig,
    CommissionEvent,
    ExecutionEvent,
    OpenOrderEvent,
    OrderErrorEvent,
    OrderStatusEvent,
    PnLEvent,
    PnLSingleEvent,
    PortfolioEvent,
    PositionEvent,
    WhatIfEvent,
)
from sim_gateway.types import (
    Contract,
    ContractQuery,
    Execution,
    ExecutionFilter,
    OrderRequest,
    OrderView,
    Quote,
)

E = TypeVar("E")

T0 = 1_699_978_400.0  # 2023-11-14 16:13:20 UTC = 11:13:20 US/Eastern (a Tuesday, market open)
AAPL_ID, EURUSD_ID, USDJPY_ID = 265598, 12087792, 15016059
AAPL = ContractQuery(symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD")
MSFT = ContractQuery(symbol="MSFT", sec_type="STK", exchange="SMART", currency="USD")
EURUSD = ContractQuery(symbol="EUR", sec_type="CASH", exchange="IDEALPRO", currency="USD")
USDJPY = ContractQuery(symbol="USD", sec_type="CASH", exchange="IDEALPRO", currency="JPY")
MKT_FILL = [
    "OpenOrderEvent",
    "OrderStatusEvent",
    "ExecutionEvent",
    "OpenOrderEvent",
    "OrderStatusEvent",
    "OpenOrderEvent",
    "CommissionEvent",
    "PositionEvent",
    "PortfolioEvent",
    "AccountValuesEvent",
    "PnLEvent",
    "PnLSingleEvent",
]
FILL_TAIL = MKT_FILL[2:]
VOLATILE: dict[str, Any] = {"volatility": 0.002, "seed": 7}


def flat(**config: Any) -> Broker:
    """A broker whose prices never move: AAPL last 190.00, bid 189.99, ask 190.01."""
    return Broker(BrokerConfig(volatility=0.0, **config), T0)


def volatile(**config: Any) -> Broker:
    return Broker(BrokerConfig(**{**VOLATILE, **config}), T0)


def req(
    order_id: int, action: str = "BUY", qty: float = 100, order_type: str = "MKT", **extra: Any
) -> OrderRequest:
    """An order request for AAPL with tif DAY unless told otherwise."""
    extra = {"contract": AAPL, "tif": "DAY", **extra}
    return OrderRequest(order_id, action=action, total_quantity=qty, order_type=order_type, **extra)


def kinds(events: list) -> list[str]:
    return [type(event).__name__ for event in events]


def statuses(events: list, order_id: int | None = None) -> list[str]:
    return [
        event.order.status
        for event in events
        if isinstance(event, OpenOrderEvent | OrderStatusEvent)
        and order_id in (None, event.order.order_id)
    ]


def of(events: Sequence[object], cls: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, cls)]


def at(events: Sequence[object], index: int, cls: type[E]) -> E:
    """``events[index]``, checked to be a ``cls``."""
    event = events[index]
    assert isinstance(event, cls), event
    return event


def order_of(event: object) -> OrderView:
    """The order an open-order, order-status or what-if event carries."""
    assert isinstance(event, OpenOrderEvent | OrderStatusEvent | WhatIfEvent), event
    return event.order


def execution_of(event: object) -> Execution:
    assert isinstance(event, ExecutionEvent), event
    return event.execution


def order_view(broker: Broker, client_id: int, order_id: int) -> OrderView:
    """The broker's view of an order that must exist."""
    view = broker.order(client_id, order_id)
    assert view is not None, (client_id, order_id)
    return view


def errors(events: list) -> list[tuple[int, str]]:
    return [(event.code, event.text) for event in of(events, OrderErrorEvent)]


def codes(events: list) -> list[int]:
    return [code for code, _ in errors(events)]


def fields(obj: object, *names: str) -> tuple:
    return tuple(getattr(obj, name) for name in names)


def reports(events: list) -> list:
    return [event.report for event in of(events, CommissionEvent)]


def not_found(order_id: int) -> tuple[int, str]:
    return 10147, f"OrderId {order_id} that needs to be cancelled is not found."


def not_cancellable(order_id: int, state: str) -> tuple[int, str]:
    return (
        10148,
        f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}.",
    )


CANCELED_202 = (202, "Order Canceled - reason:")


def twin_path(con_id: int, steps: int, **config: Any) -> list[Quote]:
    """Quotes after steps 1..steps of a fresh volatile broker (same seed → same path)."""
    twin = volatile(**config)
    quotes = []
    for step in range(1, steps + 1):
        twin.advance(T0 + step)
        quotes.append(twin.quote(con_id))
    return quotes


def values(broker: Broker) -> dict[tuple[str, str], str]:
    return {(row.key, row.currency): row.value for row in broker.account_values()}


# ----------------------------------------------------------------------------- contracts, prices


def test_config_requires_paper_account() -> None:
    with pytest.raises(ValueError, match="DU"):
        BrokerConfig(account="U1234567")
    with pytest.raises(ValueError):
        BrokerConfig(price_step_seconds=0)


def test_contract_lookup() -> None:
    extra = Contract(con_id=999, symbol="ACME", primary_exchange="NYSE", local_symbol="ACME")
    broker = Broker(BrokerConfig(extra_contracts=(extra,)), T0)
    [aapl] = broker.find_contracts(ContractQuery(symbol="aapl", sec_type="STK"))
    assert fields(aapl, "con_id", "exchange", "primary_exchange", "trading_class") == (
        AAPL_ID,
        "SMART",
        "NASDAQ",
        "NMS",
    )
    assert aapl.long_name == "APPLE INC" and aapl.industry == "Technology"
    assert broker.find_contracts(ContractQuery(con_id=AAPL_ID)) == [aapl]
    assert broker.find_contracts(
        ContractQuery(symbol="AAPL", exchange="SMART", currency="USD")
    ) == [aapl]
    assert broker.find_contracts(ContractQuery(symbol="AAPL", sec_type="CASH")) == []
    assert broker.find_contracts(ContractQuery(symbol="AAP")) == []
    assert broker.find_contracts(ContractQuery(con_id=1)) == []
    assert [c.con_id for c in broker.find_contracts(ContractQuery(symbol="SPY"))] == [756733]
    assert broker.find_contracts(ContractQuery(symbol="IBM"))[0].primary_exchange == "NYSE"
    [eur] = broker.find_contracts(EURUSD)
    assert fields(eur, "con_id", "sec_type", "exchange", "local_symbol", "min_tick") == (
        EURUSD_ID,
        "CASH",
        "IDEALPRO",
        "EUR.USD",
        0.00005,
    )
    [jpy] = broker.find_contracts(USDJPY)
    assert (jpy.con_id, jpy.min_tick) == (USDJPY_ID, 0.005)
    [gbp] = broker.find_contracts(ContractQuery(symbol="GBP", sec_type="CASH"))
    assert gbp.con_id == 12087797
    assert broker.find_contracts(ContractQuery(symbol="acme")) == [extra]
    assert broker.contract_by_id(999) == extra and broker.contract_by_id(5) is None
    assert len(broker.find_contracts(ContractQuery(symbol="MSFT"))) == 1


def test_prices_are_deterministic_per_seed() -> None:
    one, batched, other = volatile(), volatile(), volatile(seed=8)
    for step in range(1, 31):
        one.advance(T0 + step)
    batched.advance(T0 + 30.5)
    other.advance(T0 + 30)
    for con_id in (AAPL_ID, EURUSD_ID, USDJPY_ID):
        assert one.quote(con_id) == batched.quote(con_id)
    assert one.quote(AAPL_ID).last != other.quote(AAPL_ID).last
    quote = one.quote(AAPL_ID)
    assert quote.close == quote.open == 190.0
    assert quote.bid == round(quote.last - 0.01, 2) and quote.ask == round(quote.last + 0.01, 2)
    assert quote.low <= quote.last <= quote.high and quote.volume > 0
    assert one.quote(AAPL_ID) != Broker(BrokerConfig(**VOLATILE), T0).quote(AAPL_ID)
    fx = one.quote(EURUSD_ID)
    assert abs(fx.last / 0.00005 - round(fx.last / 0.00005)) < 1e-6
    assert round(fx.ask - fx.bid, 5) == 0.0001
    assert one.quote(USDJPY_ID).close == 150.0
    with pytest.raises(KeyError):
        one.quote(1)


def test_prices_step_on_price_step_seconds() -> None:
    broker = Broker(BrokerConfig(volatility=0.01, price_step_seconds=5.0), T0)
    start = broker.quote(AAPL_ID)
    broker.advance(T0 + 4.9)
    assert broker.quote(AAPL_ID) == start
    broker.advance(T0 + 5.0)
    assert broker.quote(AAPL_ID) != start


# ----------------------------------------------------------------------------- market orders


def test_market_order_fill_sequence() -> None:
    broker = flat()
    events = broker.place_order(7, req(1, order_ref="my-1"), T0)
    assert kinds(events) == MKT_FILL
    assert statuses(events) == ["PreSubmitted", "PreSubmitted", "Filled", "Filled", "Filled"]
    first, status0, (execution,), filled, status, with_commission = (
        order_of(events[0]),
        order_of(events[1]),
        [execution_of(events[2])],
        order_of(events[3]),
        order_of(events[4]),
        order_of(events[5]),
    )
    assert (status0.filled, status0.remaining, first.commission) == (0.0, 100.0, None)
    assert first.client_id == 7 and first.perm_id > 1_000_000_000 and first.tif == "DAY"
    assert re.fullmatch(r"0000e0d5\.[0-9a-f]{8}\.01\.01", execution.exec_id)
    assert fields(execution, "side", "shares", "price") == ("BOT", 100, 190.01)
    assert fields(execution, "cum_qty", "avg_price") == (100, 190.01)
    assert fields(execution, "exchange", "client_id", "order_id") == ("ISLAND", 7, 1)
    assert execution.perm_id == first.perm_id
    assert execution.time == "20231114 11:13:20 US/Eastern" and execution.order_ref == "my-1"
    assert execution.account == "DU1234567"
    assert (filled.commission, status.filled, status.remaining) == (None, 100.0, 0.0)
    assert (status.avg_fill_price, status.last_fill_price) == (190.01, 190.01)
    assert (with_commission.commission, with_commission.commission_currency) == (1.0, "USD")
    report = at(events, 6, CommissionEvent).report
    assert fields(report, "exec_id", "commission", "currency", "realized_pnl") == (
        execution.exec_id,
        1.0,
        "USD",
        None,
    )
    assert fields(at(events, 6, CommissionEvent), "client_id", "order_id") == (7, 1)
    position = at(events, 7, PositionEvent).position
    assert (position.position, position.avg_cost) == (100, pytest.approx(190.02))
    item = at(events, 8, PortfolioEvent).item
    assert item.market_value == 19000.0 and item.unrealized_pnl == -2.0
    assert at(events, 9, AccountValuesEvent).values == tuple(broker.account_values())
    assert at(events, 10, PnLEvent).pnl == broker.pnl()
    assert at(events, 11, PnLSingleEvent).pnl_single == broker.pnl_single(AAPL_ID)
    [done] = broker.completed_orders()
    assert fields(done, "status", "completed_status") == ("Filled", "Filled Size: 100")
    assert done.completed_time == "20231114 11:13:20 US/Eastern"
    assert (
        broker.open_orders() == [] and broker.next_valid_id(7) == 2 and broker.next_valid_id(8) == 1
    )
    assert broker.order(7, 1) == done


def test_sell_fills_at_bid() -> None:
    broker = flat()
    events = broker.place_order(1, req(1, "SELL", 10), T0)
    [fill] = of(events, ExecutionEvent)
    assert (fill.execution.side, fill.execution.price) == ("SLD", 189.99)
    assert broker.positions()[0].position == -10


@pytest.mark.parametrize(
    ("config", "qty", "expected"),
    [
        ({}, 100, 1.0),  # 0.50 → minimum 1.00
        ({}, 1000, 5.0),  # 0.005 per share
        ({"min_commission": 300.0}, 100, 190.01),  # capped at 1 % of 19001
    ],
)
def test_stock_commission(config: dict, qty: int, expected: float) -> None:
    broker = flat(**config)
    [commission] = of(broker.place_order(1, req(1, qty=qty), T0), CommissionEvent)
    assert commission.report.commission == pytest.approx(expected)


@pytest.mark.parametrize(
    ("qty", "expected"), [(10_000, 2.0), (2_000_000, 2_000_000 * 1.08005 * 0.00002)]
)
def test_fx_commission(qty: int, expected: float) -> None:
    broker = flat()
    [commission] = of(broker.place_order(1, req(1, qty=qty, contract=EURUSD), T0), CommissionEvent)
    assert commission.report.commission == pytest.approx(expected)


# ----------------------------------------------------------------------------- limit orders


def test_limit_rests_then_fills_when_crossed() -> None:
    path = twin_path(AAPL_ID, 60)
    asks = [quote.ask for quote in path]
    step = asks.index(min(asks)) + 1
    limit = min(asks)
    assert limit < 190.01
    broker = volatile()
    events = broker.place_order(1, req(1, order_type="LMT", lmt_price=limit), T0)
    assert kinds(events) == ["OpenOrderEvent", "OrderStatusEvent"] * 2
    assert statuses(events) == ["PreSubmitted", "PreSubmitted", "Submitted", "Submitted"]
    assert of(broker.advance(T0 + step - 1), ExecutionEvent) == []
    assert broker.open_orders()[0].status == "Submitted"
    events = broker.advance(T0 + step)
    [fill] = of(events, ExecutionEvent)
    assert fill.execution.price == path[step - 1].ask <= limit
    assert statuses(events)[-1] == "Filled" and broker.open_orders() == []


def test_marketable_limit_fills_at_the_touch() -> None:
    broker = flat()
    events = broker.place_order(1, req(1, order_type="LMT", lmt_price=195.0), T0)
    assert kinds(events) == MKT_FILL
    assert of(events, ExecutionEvent)[0].execution.price == 190.01


def test_modify_live_order() -> None:
    broker = flat()
    first = broker.place_order(1, req(1, order_type="LMT", lmt_price=180.0), T0)
    perm_id = order_of(first[0]).perm_id
    events = broker.place_order(1, req(1, qty=200, order_type="LMT", lmt_price=185.0), T0 + 0.5)
    assert kinds(events) == ["OpenOrderEvent", "OrderStatusEvent"] * 2
    assert statuses(events) == ["PreSubmitted"] * 2 + ["Submitted"] * 2  # re-validated, works
    view = order_of(events[-2])
    assert fields(view, "total_quantity", "lmt_price", "status") == (200, 185.0, "Submitted")
    assert view.perm_id == perm_id
    rejected = broker.place_order(1, req(1, "SELL", 200, "LMT", lmt_price=185.0), T0 + 0.6)
    assert codes(rejected) == [201] and len(rejected) == 1
    assert order_view(broker, 1, 1).action == "BUY"
    events = broker.place_order(1, req(1, qty=200, order_type="LMT", lmt_price=191.0), T0 + 0.7)
    assert kinds(events) == ["OpenOrderEvent", "OrderStatusEvent", *FILL_TAIL]
    assert statuses(events)[0] == "PreSubmitted"
    assert of(events, ExecutionEvent)[0].execution.shares == 200
    assert order_view(broker, 1, 1).status == "Filled" and broker.open_orders() == []


# ----------------------------------------------------------------------------- cancel


def test_cancel_resting_order() -> None:
    broker = flat()
    broker.place_order(1, req(1, order_type="LMT", lmt_price=180.0), T0)
    events = broker.cancel_order(1, 1, T0 + 1)
    # however quick, IB reports PendingCancel first (recorded paper sessions; rust-ibapi #662)
    assert kinds(events) == ["OpenOrderEvent"] + ["OrderStatusEvent"] * 2 + ["OrderErrorEvent"]
    assert [e.order.status for e in of(events, OrderStatusEvent)] == ["PendingCancel", "Cancelled"]
    view = order_of(events[2])
    assert (view.status, view.filled, view.remaining) == ("Cancelled", 0.0, 100.0)
    assert errors(events) == [CANCELED_202]
    assert broker.completed_orders()[0].completed_status == "Cancelled by Trader"
    assert broker.open_orders() == []
    again = broker.cancel_order(1, 1, T0 + 2)
    assert errors(again) == [not_cancellable(1, "Cancelled")]


def test_cancel_errors_10147_10148() -> None:
    broker = flat()
    broker.place_order(1, req(1), T0)
    broker.place_order(1, req(2, order_type="LMT", lmt_price=180.0), T0)
    assert errors(broker.cancel_order(1, 9, T0)) == [
        (10147, "OrderId 9 that needs to be cancelled is not found.")
    ]
    assert errors(broker.cancel_order(1, 1, T0)) == [
        (10148, "OrderId 1 that needs to be cancelled cannot be cancelled, state: Filled.")
    ]
    assert errors(broker.cancel_order(2, 2, T0)) == [not_found(2)]  # another client's id space
    assert order_view(broker, 1, 2).status == "Submitted"


def test_global_cancel_cancels_every_client() -> None:
    broker = flat()
    broker.place_order(1, req(1, order_type="LMT", lmt_price=180.0), T0)
    broker.place_order(2, req(1, order_type="LMT", lmt_price=181.0), T0)
    events = broker.global_cancel(T0 + 1)
    one = ["OpenOrderEvent"] + ["OrderStatusEvent"] * 2 + ["OrderErrorEvent"]
    assert kinds(events) == one * 2
    cancelled = [(e.order.client_id, e.order.status) for e in of(events, OrderStatusEvent)]
    assert cancelled == [
        (1, "PendingCancel"),
        (1, "Cancelled"),
        (2, "PendingCancel"),
        (2, "Cancelled"),
    ]
    assert broker.open_orders() == []


def test_orders_belong_to_their_client() -> None:
    broker = flat()
    broker.place_order(1, req(1, order_type="LMT", lmt_price=180.0), T0)
    events = broker.place_order(2, req(1, order_type="LMT", lmt_price=181.0), T0)
    assert statuses(events)[-1] == "Submitted"
    assert [o.lmt_price for o in broker.open_orders(1)] == [180.0]
    assert [o.lmt_price for o in broker.open_orders(2)] == [181.0]
    assert len(broker.open_orders()) == 2


# ----------------------------------------------------------------------------- stop-like orders


def test_stop_triggers_when_last_crosses() -> None:
    path = twin_path(AAPL_ID, 60)
    lasts = [quote.last for quote in path]
    step, stop = lasts.index(min(lasts)) + 1, min(lasts)
    assert stop < 190.0
    broker = volatile()
    events = broker.place_order(1, req(1, "SELL", 100, "STP", aux_price=stop), T0)
    assert statuses(events) == ["PreSubmitted", "PreSubmitted"]
    assert of(broker.advance(T0 + step - 1), ExecutionEvent) == []
    assert order_view(broker, 1, 1).status == "PreSubmitted"
    events = broker.advance(T0 + step)
    assert kinds(events) == FILL_TAIL
    assert of(events, ExecutionEvent)[0].execution.price == path[step - 1].bid


def test_stop_limit_becomes_a_limit() -> None:
    path = twin_path(AAPL_ID, 60)
    lasts = [quote.last for quote in path]
    step, stop = lasts.index(max(lasts)) + 1, max(lasts)
    assert stop > 190.0
    broker = volatile()
    broker.place_order(1, req(1, "BUY", 100, "STP LMT", aux_price=stop, lmt_price=150.0), T0)
    assert broker.advance(T0 + step - 1) == []
    events = broker.advance(T0 + step)
    assert (
        kinds(events) == ["OpenOrderEvent", "OrderStatusEvent"]
        and statuses(events) == ["Submitted"] * 2
    )
    raised = req(1, "BUY", 100, "STP LMT", aux_price=stop, lmt_price=400.0)
    modified = broker.place_order(1, raised, T0 + step)
    assert of(modified, ExecutionEvent)[0].execution.price == path[step - 1].ask


def test_trailing_stop_follows_and_triggers() -> None:
    path = twin_path(AAPL_ID, 300)
    stop, expected = 190.0 - 0.5, []
    for quote in path:
        stop = max(stop, round(quote.last - 0.5, 2))
        expected.append(stop)
    step = next(i for i, quote in enumerate(path, 1) if quote.last <= expected[i - 1])
    broker = volatile()
    events = broker.place_order(1, req(1, "SELL", 100, "TRAIL", aux_price=0.5), T0)
    assert statuses(events) == ["PreSubmitted", "PreSubmitted"]
    assert order_of(events[0]).trail_stop_price == 189.5
    assert of(broker.advance(T0 + step - 1), ExecutionEvent) == []
    if step > 1:
        assert order_view(broker, 1, 1).trail_stop_price == expected[step - 2]
    [fill] = of(broker.advance(T0 + step), ExecutionEvent)
    assert fill.execution.price == path[step - 1].bid


def test_trailing_percent_sets_initial_stop() -> None:
    broker = flat()
    events = broker.place_order(1, req(1, "BUY", 100, "TRAIL", trailing_percent=1.0), T0)
    assert order_of(events[0]).trail_stop_price == 191.9
    assert broker.advance(T0 + 100) == []


def test_stop_already_crossed_triggers_at_once() -> None:
    broker = flat()
    events = broker.place_order(1, req(1, "BUY", 100, "STP", aux_price=180.0), T0)
    assert kinds(events) == MKT_FILL


# ----------------------------------------------------------------------------- time in force


def test_ioc_unmarketable_is_cancelled() -> None:
    broker = flat()
    events = broker.place_order(1, req(1, order_type="LMT", lmt_price=180.0, tif="IOC"), T0)
    assert kinds(events) == [
        "OpenOrderEvent",
        "OrderStatusEvent",
        "OrderStatusEvent",
        "OrderErrorEvent",
    ]
    assert statuses(events) == ["PreSubmitted", "PreSubmitted", "Cancelled"]
    assert broker.completed_orders()[0].completed_status == "Cancelled by System"


def test_ioc_fills_what_it_can_and_cancels_the_rest() -> None:
    broker = flat(partial_fill_above=100, partial_fill_chunk=100)
    events = broker.place_order(1, req(1, qty=250, tif="IOC"), T0)
    assert kinds(events) == MKT_FILL + ["OrderStatusEvent", "OrderErrorEvent"]
    final = order_of(events[-2])
    assert (final.status, final.filled, final.remaining) == ("Cancelled", 100, 150)
    assert broker.next_due() is None


def test_day_and_gtc_rest_and_outside_rth_is_stored() -> None:
    broker = flat()
    broker.place_order(
        1, req(1, order_type="LMT", lmt_price=180.0, tif="GTC", outside_rth=True), T0
    )
    view = order_view(broker, 1, 1)
    assert (view.tif, view.outside_rth, view.status) == ("GTC", True, "Submitted")
    broker.advance(T0 + 3600)
    assert order_view(broker, 1, 1).status == "Submitted"


# ----------------------------------------------------------------------------- brackets, OCA


def test_bracket_held_until_transmit_then_children_after_parent_fill() -> None:
    broker = flat()
    parent = broker.place_order(5, req(10, "BUY", 100, "LMT", lmt_price=180.0, transmit=False), T0)
    assert parent == []  # untransmitted: TWS reports nothing
    child = req(11, "SELL", 100, "LMT", lmt_price=150.0, parent_id=10, transmit=False)
    assert broker.place_order(5, child, T0) == []
    assert broker.advance(T0 + 10) == [] and order_view(broker, 5, 10).status == "PreSubmitted"
    stop_loss = broker.place_order(
        5, req(12, "SELL", 100, "STP", aux_price=170.0, parent_id=10), T0 + 10
    )
    assert [(order_of(e).order_id, order_of(e).status) for e in stop_loss] == [
        (12, "PreSubmitted"),
        (12, "PreSubmitted"),
        (10, "PreSubmitted"),  # the group is transmitted: shown now
        (10, "PreSubmitted"),
        (11, "PreSubmitted"),
        (11, "PreSubmitted"),
        (10, "Submitted"),
        (10, "Submitted"),
    ]
    tp_view = order_view(broker, 5, 11)
    parent_perm_id = order_view(broker, 5, 10).perm_id
    assert tp_view.parent_id == 10 and tp_view.parent_perm_id == parent_perm_id
    assert (
        broker.advance(T0 + 20) == [] and order_view(broker, 5, 11).status == "PreSubmitted"
    )  # not active yet
    # a change sent with transmit False (ib_async keeps the parent's flag) waits for TWS's
    # Transmit button: not applied, nothing reported; sent with transmit True it applies
    moved = req(10, "BUY", 100, "LMT", lmt_price=191.0, transmit=False)
    assert broker.place_order(5, moved, T0 + 20) == []
    assert order_view(broker, 5, 10).lmt_price == 180.0
    events = broker.place_order(5, dataclasses.replace(moved, transmit=True), T0 + 20)
    fills = of(events, ExecutionEvent)
    assert [fields(f.execution, "order_id", "side", "price") for f in fills] == [
        (10, "BOT", 190.01),
        (11, "SLD", 189.99),
    ]
    assert statuses(events, 12)[-1] == "Cancelled" and errors(events)[-1] == CANCELED_202
    assert broker.positions() == [] and broker.open_orders() == []


def test_bracket_take_profit_rests_stop_waits() -> None:
    broker = flat()
    broker.place_order(1, req(1, "BUY", 100, "MKT", transmit=False), T0)
    assert broker.advance(T0 + 5) == [] and broker.positions() == []
    broker.place_order(
        1, req(2, "SELL", 100, "LMT", lmt_price=200.0, parent_id=1, transmit=False), T0 + 5
    )
    events = broker.place_order(1, req(3, "SELL", 100, "STP", aux_price=180.0, parent_id=1), T0 + 5)
    assert kinds(events) == MKT_FILL[:2] * 3 + FILL_TAIL + MKT_FILL[:2]  # 3, 1 and 2 shown
    assert statuses(events, 2) == ["PreSubmitted"] * 2 + ["Submitted"] * 2
    assert {(o.order_id, o.status) for o in broker.open_orders()} == {
        (2, "Submitted"),
        (3, "PreSubmitted"),
    }
    events = broker.cancel_order(1, 2, T0 + 6)
    assert errors(events) == [CANCELED_202] and order_view(broker, 1, 3).status == "PreSubmitted"


def test_cancelling_a_parent_cancels_its_children() -> None:
    broker = flat()
    broker.place_order(1, req(1, "BUY", 100, "LMT", lmt_price=180.0, transmit=False), T0)
    broker.place_order(1, req(2, "SELL", 100, "LMT", lmt_price=200.0, parent_id=1), T0)
    events = broker.cancel_order(1, 1, T0 + 1)
    cancelled = [(e.order.order_id, e.order.status) for e in of(events, OrderStatusEvent)]
    assert cancelled == [(1, "PendingCancel"), (1, "Cancelled"), (2, "Cancelled")]
    assert codes(events) == [202, 202]


def test_child_of_unknown_parent_is_rejected() -> None:
    broker = flat()
    events = broker.place_order(1, req(2, "SELL", 100, "LMT", lmt_price=200.0, parent_id=1), T0)
    assert errors(events) == [(201, "Order rejected - reason:Parent order 1 is not active")]


def test_oca_group_cancels_the_others_on_fill() -> None:
    broker = flat()
    broker.place_order(1, req(1, order_type="LMT", lmt_price=180.0, oca_group="G", oca_type=1), T0)
    broker.place_order(1, req(2, order_type="LMT", lmt_price=181.0, oca_group="G", oca_type=1), T0)
    broker.place_order(1, req(3, order_type="LMT", lmt_price=182.0), T0)
    raised = req(1, "BUY", 100, "LMT", lmt_price=191.0, oca_group="G", oca_type=1)
    events = broker.place_order(1, raised, T0 + 1)
    assert len(of(events, ExecutionEvent)) == 1
    assert statuses(events, 2) == ["Cancelled"] and errors(events) == [CANCELED_202]
    assert [o.order_id for o in broker.open_orders()] == [3]


def test_oca_type_2_reduces_the_others() -> None:
    broker = flat(partial_fill_above=100, partial_fill_chunk=100)
    broker.place_order(
        1, req(1, qty=300, order_type="LMT", lmt_price=180.0, oca_group="R", oca_type=2), T0
    )
    events = broker.place_order(1, req(2, qty=300, oca_group="R", oca_type=2), T0)
    assert order_view(broker, 1, 1).total_quantity == 200 and statuses(events, 1) == [
        "Submitted",
        "Submitted",
    ]


def test_bracket_siblings_shrink_with_partial_fills() -> None:
    broker = flat(partial_fill_above=100, partial_fill_chunk=100)
    broker.place_order(1, req(1, "BUY", 200, "MKT", transmit=False), T0)
    broker.place_order(
        1, req(2, "SELL", 200, "LMT", lmt_price=189.0, parent_id=1, transmit=False), T0
    )
    first = broker.place_order(1, req(3, "SELL", 200, "STP", aux_price=180.0, parent_id=1), T0)
    assert [f.execution.order_id for f in of(first, ExecutionEvent)] == [1]  # parent half filled
    second = broker.advance(T0 + 1)  # parent filled → take profit active, fills a chunk
    assert [f.execution.order_id for f in of(second, ExecutionEvent)] == [1, 2]
    assert (
        order_view(broker, 1, 3).total_quantity == 100
        and statuses(second, 3) == ["PreSubmitted"] * 2
    )
    third = broker.advance(T0 + 2)
    assert statuses(third, 2)[-1] == "Filled" and statuses(third, 3) == ["Cancelled"]
    assert broker.positions() == []


# ----------------------------------------------------------------------------- partial fills, delays


def test_partial_fills_in_chunks() -> None:
    broker = flat(partial_fill_above=100, partial_fill_chunk=100)
    events = broker.place_order(1, req(1, qty=250), T0)
    assert kinds(events) == MKT_FILL
    assert statuses(events) == [
        "PreSubmitted",
        "PreSubmitted",
        "Submitted",
        "Submitted",
        "Submitted",
    ]
    assert (order_of(events[4]).filled, order_of(events[4]).remaining) == (100, 150)
    assert broker.next_due() == T0 + 1
    second = broker.advance(T0 + 1)
    assert kinds(second) == FILL_TAIL and order_of(second[2]).filled == 200
    third = broker.advance(T0 + 2)
    assert order_of(third[2]).status == "Filled" and fields(
        execution_of(third[0]), "shares", "cum_qty"
    ) == (50, 250)
    commissions = [e.report.commission for e in of(events + second + third, CommissionEvent)]
    assert commissions == [1.0, 0.0, 0.25]  # per-order minimum, then 0.005/share overall
    assert order_view(broker, 1, 1).commission == 1.25 and broker.next_due() is None


def test_validation_delay_holds_back_every_event() -> None:
    broker = flat()
    broker.validation_delay = 2.0
    assert broker.place_order(1, req(1), T0) == []
    assert broker.next_due() == T0 + 2 and broker.open_orders() == []
    assert order_view(broker, 1, 1).status == "PendingSubmit" and broker.next_valid_id(1) == 2
    assert broker.advance(T0 + 1.9) == []
    events = broker.advance(T0 + 2)
    assert kinds(events) == MKT_FILL
    assert execution_of(events[2]).time == "20231114 11:13:22 US/Eastern"
    assert broker.next_due() is None


def test_cancel_during_validation() -> None:
    broker = flat()
    broker.validation_delay = 2.0
    broker.place_order(1, req(1), T0)
    events = broker.cancel_order(1, 1, T0 + 1)
    assert kinds(events) == ["OrderStatusEvent", "OrderErrorEvent"]
    # cancelled before IB acknowledged it: IB's ApiCancelled (orderStatus docs), still a 202
    assert statuses(events) == ["ApiCancelled"] and codes(events) == [202]
    assert broker.completed_orders()[0].status == "ApiCancelled"
    assert broker.advance(T0 + 5) == [] and broker.next_due() is None and broker.positions() == []


def test_fill_delay_separates_ack_and_fill() -> None:
    broker = flat()
    broker.fill_delay = 3.0
    events = broker.place_order(1, req(1), T0)
    assert kinds(events) == MKT_FILL[:2] and statuses(events) == ["PreSubmitted"] * 2
    assert broker.next_due() == T0 + 3
    assert broker.advance(T0 + 2.9) == []
    assert kinds(broker.advance(T0 + 3)) == FILL_TAIL


def test_fill_delay_for_marketable_limit_shows_submitted() -> None:
    broker = flat()
    broker.fill_delay = 1.0
    events = broker.place_order(1, req(1, order_type="LMT", lmt_price=195.0), T0)
    assert statuses(events) == ["PreSubmitted", "PreSubmitted", "Submitted", "Submitted"]
    assert kinds(broker.advance(T0 + 1)) == FILL_TAIL


def test_tif_preset_warning_is_on_by_default() -> None:
    broker = flat()
    events = broker.place_order(1, req(1, tif=""), T0)
    assert errors(events[:1]) == [(10349, "Order TIF was set to DAY based on order preset.")]
    assert kinds(events[1:]) == MKT_FILL and order_of(events[1]).tif == "DAY"
    assert errors(broker.place_order(1, req(2, tif="GTC"), T0)) == []  # an explicit TIF: no notice
    quiet = flat()
    quiet.tif_preset_warning = False
    events = quiet.place_order(1, req(1, tif=""), T0)
    assert kinds(events) == MKT_FILL and order_of(events[0]).tif == "DAY"


# ----------------------------------------------------------------------------- rejections, ids


OFF_TICK = "The price does not conform to the minimum price variation for this contract."
NO_SECDEF = "No security definition has been found for the request"


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (req(1, qty=0), 201, "Order quantity must be positive"),
        (req(1, qty=1.5), 201, "Fractional-sized order is not supported for this contract"),
        (req(1, order_type="LMT"), 201, "Limit price is missing or not positive"),
        (req(1, order_type="LMT", lmt_price=-1.0), 201, "Limit price is missing or not positive"),
        (req(1, order_type="STP"), 201, "Stop price is missing or not positive"),
        (
            req(1, order_type="STP LMT", aux_price=200.0),
            201,
            "Limit price is missing or not positive",
        ),
        (req(1, order_type="TRAIL"), 201, "Trailing amount or trailing percent is missing"),
        (req(1, order_type="MOC"), 201, "Unsupported order type 'MOC'"),
        (req(1, tif="FOK"), 201, "Unsupported time in force 'FOK'"),
        (req(1, account="DU999"), 201, "Account DU999 is not managed by this gateway"),
    ],
)
def test_invalid_orders_are_rejected_inactive(
    request_: OrderRequest, code: int, reason: str
) -> None:
    broker = flat()
    events = broker.place_order(1, request_, T0)
    shown = ["OpenOrderEvent", "OrderStatusEvent"]
    assert kinds(events) == [*shown, "OrderErrorEvent", *shown]  # IB: Inactive, 201, Inactive
    assert errors(events) == [(code, "Order rejected - reason:" + reason)]
    assert statuses(events) == ["Inactive"] * 4
    assert broker.completed_orders()[0].status == "Inactive" and broker.open_orders() == []
    assert broker.executions(ExecutionFilter()) == []


@pytest.mark.parametrize(
    ("request_", "code", "text"),
    [
        (
            req(1, contract=ContractQuery(symbol="NOPE", sec_type="STK", exchange="SMART")),
            200,
            NO_SECDEF,
        ),
        (
            req(1, contract=ContractQuery(symbol="AAPL", sec_type="STK")),  # IB: 321, not 200
            321,
            "Error validating request.-'bN' : cause - Missing order exchange",
        ),
        (req(1, e_trade_only=True), 10268, "The 'EtradeOnly' order attribute is not supported."),
        (
            req(1, firm_quote_only=True),
            10269,
            "The 'firmQuoteOnly' order attribute is not supported.",
        ),
        (req(1, order_type="LMT", lmt_price=190.005), 110, OFF_TICK),
    ],
)
def test_error_only_rejections(request_: OrderRequest, code: int, text: str) -> None:
    broker = flat()
    assert broker.place_order(1, request_, T0) == [OrderErrorEvent(1, 1, code, text)]
    assert broker.completed_orders() == [] and broker.open_orders() == []


def test_fx_allows_fractional_quantities() -> None:
    broker = flat()
    events = broker.place_order(1, req(1, qty=1000.5, contract=EURUSD), T0)
    assert kinds(events) == MKT_FILL and broker.positions()[0].position == 1000.5


def test_insufficient_buying_power() -> None:
    broker = flat()
    events = broker.place_order(1, req(1, qty=30_000), T0)
    [(code, text)] = errors(events)
    assert code == 201 and statuses(events) == ["Inactive"] * 4
    assert (
        "EQUITY WITH LOAN VALUE [1000000.00 USD]" in text
        and "INITIAL MARGIN [1425075.00 USD]" in text
    )
    short = broker.place_order(1, req(2, "SELL", 30_000), T0)
    assert codes(short) == [201]
    assert (
        kinds(broker.place_order(1, req(3, qty=20_000), T0)) == MKT_FILL
    )  # 3.8M of 4M buying power
    assert (
        kinds(broker.place_order(1, req(4, "SELL", 20_000), T0)) == MKT_FILL
    )  # closing needs no margin


def test_reject_next_order() -> None:
    broker = flat()
    broker.reject_next_order("Test")
    assert (
        len(of(broker.place_order(1, req(1, what_if=True), T0), WhatIfEvent)) == 1
    )  # not consumed
    events = broker.place_order(1, req(2), T0)
    assert errors(events) == [(201, "Order rejected - reason:Test")]
    assert statuses(events) == ["Inactive"] * 4
    assert kinds(broker.place_order(1, req(3), T0)) == MKT_FILL


def test_duplicate_and_filled_order_ids() -> None:
    broker = flat()
    broker.place_order(1, req(5), T0)
    assert errors(broker.place_order(1, req(3), T0)) == [(103, "Duplicate order id")]
    assert errors(broker.place_order(1, req(5), T0)) == [(104, "Can't modify a filled order")]
    broker.place_order(1, req(6, order_type="LMT", lmt_price=180.0), T0)
    broker.cancel_order(1, 6, T0)
    assert codes(broker.place_order(1, req(6, order_type="LMT", lmt_price=181.0), T0)) == [103]
    assert kinds(broker.place_order(2, req(1), T0)) == MKT_FILL  # id spaces are per client
    assert broker.next_valid_id(1) == 7 and broker.next_valid_id(2) == 2


def test_roll_back_order_ids() -> None:
    broker = flat()
    for order_id in (1, 2, 3):
        broker.place_order(1, req(order_id, qty=10), T0)
    broker.place_order(2, req(7, order_type="LMT", lmt_price=180.0), T0)
    old_perm = order_view(broker, 1, 1).perm_id
    broker.roll_back_order_ids()
    assert broker.next_valid_id(1) == 1 and broker.next_valid_id(2) == 8
    events = broker.place_order(1, req(1, qty=10), T0 + 1)
    assert kinds(events) == MKT_FILL
    assert (
        order_of(events[0]).perm_id > old_perm
        and order_view(broker, 1, 1).perm_id == order_of(events[0]).perm_id
    )
    executions = broker.executions(ExecutionFilter(client_id=1))
    assert [e.order_id for e, _ in executions] == [1, 2, 3, 1]
    assert (
        len({e.perm_id for e, _ in executions}) == 4
        and len({e.exec_id for e, _ in executions}) == 4
    )
    assert [o.order_id for o in broker.completed_orders()] == [1, 2, 3, 1]
    assert order_view(broker, 2, 7).status == "Submitted"


# ----------------------------------------------------------------------------- P&L and account


def test_round_trip_realized_and_unrealized_pnl() -> None:
    broker = flat()
    broker.place_order(1, req(1), T0)
    pnl = broker.pnl_single(AAPL_ID)
    assert pnl is not None and pnl.unrealized_pnl == -2.0  # (190.00 - 190.02) * 100
    events = broker.place_order(1, req(2, "SELL"), T0 + 1)
    [report] = reports(events)
    assert report.realized_pnl == pytest.approx(-4.0)  # (189.99 - 190.02) * 100 - 1.00
    assert of(events, PositionEvent)[0].position.position == 0
    assert fields(of(events, PortfolioEvent)[0].item, "position", "realized_pnl") == (0, -4.0)
    assert broker.positions() == [] and broker.portfolio() == []
    assert broker.pnl() == of(events, PnLEvent)[0].pnl
    assert fields(broker.pnl(), "daily_pnl", "unrealized_pnl", "realized_pnl") == (-4.0, 0.0, -4.0)
    single = of(events, PnLSingleEvent)[0]
    assert single.con_id == AAPL_ID and fields(single.pnl_single, "position", "realized_pnl") == (
        0,
        -4.0,
    )
    assert values(broker)[("NetLiquidation", "USD")] == "999996.00"
    assert broker.pnl_single(272093) is None


def test_unrealized_pnl_follows_the_market() -> None:
    broker = volatile()
    broker.place_order(1, req(1), T0)
    broker.advance(T0 + 25)
    last = broker.quote(AAPL_ID).last
    [item] = broker.portfolio()
    assert item.market_price == last and item.unrealized_pnl == round((last - 190.02) * 100, 2)
    cash = 1_000_000 - 19001 - 1
    assert float(values(broker)[("NetLiquidation", "USD")]) == pytest.approx(
        cash + 100 * last, abs=0.01
    )
    assert broker.pnl().unrealized_pnl == pytest.approx((last - 190.02) * 100, abs=0.01)


def test_short_round_trip_realized() -> None:
    broker = flat()
    broker.place_order(1, req(1, "SELL"), T0)
    assert broker.positions()[0].avg_cost == pytest.approx(189.98)  # (18999 - 1) / 100
    [report] = reports(broker.place_order(1, req(2, "BUY"), T0))
    assert report.realized_pnl == pytest.approx(-4.0)


def test_account_values_after_fill() -> None:
    broker = flat()
    events = broker.place_order(1, req(1), T0)
    rows = values(broker)
    assert of(events, AccountValuesEvent)[0].values == tuple(broker.account_values())
    assert rows[("AccountCode", "")] == "DU1234567" and rows[("AccountType", "")] == "INDIVIDUAL"
    assert rows[("Currency", "USD")] == "USD" and rows[("Currency", "BASE")] == "BASE"
    expected = {
        "NetLiquidation": "999998.00",  # 1,000,000 - 19,001 - 1 + 19,000
        "TotalCashValue": "980998.00",
        "SettledCash": "980998.00",
        "EquityWithLoanValue": "999998.00",
        "GrossPositionValue": "19000.00",
        "StockMarketValue": "19000.00",
        "InitMarginReq": "4750.00",
        "MaintMarginReq": "4750.00",
        "AvailableFunds": "995248.00",
        "ExcessLiquidity": "995248.00",
        "BuyingPower": "3980992.00",
        "UnrealizedPnL": "-2.00",
        "RealizedPnL": "0.00",
    }
    assert {key: rows[(key, "USD")] for key in expected} == expected
    assert rows[("CashBalance", "USD")] == rows[("CashBalance", "BASE")] == "980998.00"
    assert float(rows[("Cushion", "")]) == pytest.approx(995248 / 999998, abs=1e-6)
    assert float(rows[("Leverage", "")]) == pytest.approx(19000 / 999998, abs=1e-6)
    assert all(row.account == "DU1234567" for row in broker.account_values())


def test_fx_positions_are_in_base_currency() -> None:
    broker = flat()
    broker.place_order(1, req(1, qty=10_000, contract=EURUSD), T0)
    [position] = broker.positions()
    assert position.position == 10_000 and position.avg_cost == pytest.approx(
        (10_800.5 + 2) / 10_000
    )
    rows = values(broker)
    assert (
        rows[("CashBalance", "EUR")] == "10000.00" and rows[("CashBalance", "USD")] == "989197.50"
    )
    assert rows[("NetLiquidation", "USD")] == "999997.50"  # spread 0.50 + commission 2.00
    assert (
        rows[("StockMarketValue", "USD")] == "0.00" and rows[("InitMarginReq", "USD")] == "2700.00"
    )


def test_fx_quote_currency_other_than_usd() -> None:
    broker = flat()
    broker.place_order(1, req(1, qty=10_000, contract=USDJPY), T0)
    rows = values(broker)
    assert (
        rows[("CashBalance", "JPY")] == "-1500050.00"
        and rows[("CashBalance", "USD")] == "1009998.00"
    )
    assert float(rows[("NetLiquidation", "USD")]) == pytest.approx(
        1_000_000 - 2 - 50 / 150, abs=0.01
    )
    assert broker.pnl().unrealized_pnl == pytest.approx(-(2 + 50 / 150), abs=0.01)
    [report] = reports(broker.place_order(1, req(2, "SELL", 10_000, contract=USDJPY), T0))
    assert report.realized_pnl == pytest.approx(-(100 / 150 + 4), abs=0.01)


# ----------------------------------------------------------------------------- what-if


def test_what_if_changes_nothing() -> None:
    broker = flat()
    broker.place_order(1, req(1, qty=10), T0)

    def snapshot() -> tuple:
        return (
            broker.open_orders(),
            broker.completed_orders(),
            broker.positions(),
            broker.account_values(),
            broker.executions(ExecutionFilter()),
            broker.next_valid_id(1),
            broker.next_due(),
        )

    before = snapshot()
    [event] = broker.place_order(1, req(2, what_if=True), T0)
    assert isinstance(event, WhatIfEvent) and event.client_id == 1
    view = event.order
    assert fields(view, "status", "what_if", "perm_id") == ("PreSubmitted", True, 0)
    assert fields(view, "commission", "min_commission", "max_commission") == (1.0, 1.0, 1.0)
    margins = fields(view, "init_margin_before", "init_margin_change", "init_margin_after")
    assert margins == (475.0, 4750.25, 5225.25)
    assert (view.maint_margin_change, view.equity_with_loan_change) == (4750.25, -1.0)
    assert view.equity_with_loan_before == 999998.9 and view.warning_text == ""
    assert snapshot() == before
    [big] = broker.place_order(1, req(3, qty=30_000, what_if=True), T0)
    assert "INITIAL MARGIN" in order_of(big).warning_text
    assert snapshot() == before
    assert errors(broker.place_order(1, req(4, order_type="LMT", what_if=True), T0))[0][0] == 201


# ----------------------------------------------------------------------------- executions query


def test_executions_filter() -> None:
    broker = flat()
    broker.place_order(1, req(1), T0)
    broker.place_order(2, req(1, "SELL", 10, contract=MSFT), T0 + 10)
    broker.place_order(2, req(2, qty=10_000, contract=EURUSD), T0 + 20)

    def order_ids(**flt: Any) -> list[tuple[int, int]]:
        return [(e.client_id, e.order_id) for e, _ in broker.executions(ExecutionFilter(**flt))]

    assert order_ids() == [(1, 1), (2, 1), (2, 2)]
    assert order_ids(client_id=2) == [(2, 1), (2, 2)]
    assert order_ids(symbol="msft") == [(2, 1)]
    assert order_ids(sec_type="CASH") == [(2, 2)]
    assert order_ids(side="SELL") == [(2, 1)] and order_ids(side="BUY") == [(1, 1), (2, 2)]
    assert order_ids(account="DU1234567") == order_ids() and order_ids(account="DU0") == []
    assert order_ids(exchange="IDEALPRO") == [(2, 2)]
    assert order_ids(time="20231114-16:13:30") == [(2, 1), (2, 2)]  # UTC
    assert order_ids(time="20231114 11:13:31") == [(2, 2)]  # US/Eastern
    assert order_ids(time="20231114 16:13:31 UTC") == [(2, 2)]
    _, report = broker.executions(ExecutionFilter(symbol="AAPL"))[0]
    assert report.commission == 1.0


def test_executions_filter_rejects_a_bad_time() -> None:
    with pytest.raises(ValueError):
        flat().executions(ExecutionFilter(time="yesterday"))


def test_modify_while_validating_changes_the_pending_order() -> None:
    broker = flat()
    broker.validation_delay = 1.0
    broker.place_order(1, req(1, order_type="LMT", lmt_price=180.0), T0)
    assert broker.place_order(1, req(1, qty=50, order_type="LMT", lmt_price=195.0), T0 + 0.5) == []
    events = broker.advance(T0 + 1)
    assert kinds(events) == MKT_FILL and of(events, ExecutionEvent)[0].execution.shares == 50
    assert broker.order(1, 2) is None


# ----------------------------------------------------------------------------- persistence


def test_persistence_round_trip() -> None:
    config = BrokerConfig(**VOLATILE)
    broker = Broker(config, T0)
    broker.place_order(1, req(1), T0)
    broker.place_order(1, req(2, "SELL", 50), T0 + 3)
    broker.place_order(1, req(3, order_type="LMT", lmt_price=100.0), T0 + 4)
    broker.place_order(2, req(4, qty=10_000, contract=EURUSD), T0 + 5)
    broker.fill_delay = 2.0
    broker.place_order(2, req(5, qty=10), T0 + 5.5)
    state = json.loads(json.dumps(broker.to_state()))
    later = T0 + 1000.5
    restored = Broker.from_state(state, config, later)

    def snapshot(b: Broker) -> tuple:
        return (
            b.open_orders(),
            b.completed_orders(),
            b.executions(ExecutionFilter()),
            b.positions(),
            b.portfolio(),
            b.account_values(),
            b.pnl(),
            b.pnl_single(AAPL_ID),
            [b.quote(con_id) for con_id in (AAPL_ID, EURUSD_ID, USDJPY_ID)],
            [b.next_valid_id(client_id) for client_id in (1, 2, 3)],
        )

    assert snapshot(restored) == snapshot(broker)
    assert restored.fill_delay == 2.0
    due = broker.next_due()
    assert due is not None and restored.next_due() == due + 995  # the timeline resumes at `later`
    last_perm_id = max(o.perm_id for o in broker.open_orders() + broker.completed_orders())

    def fills(events: list) -> list:
        return [replace(e.execution, time="") for e in of(events, ExecutionEvent)]

    original = fills(broker.advance(T0 + 7.5))
    assert fills(restored.advance(later + 2)) == original and len(original) == 1
    assert restored.quote(AAPL_ID) == broker.quote(AAPL_ID)
    new = restored.place_order(1, req(6), later + 3)
    assert order_of(new[0]).perm_id == last_perm_id + 1
    exec_ids = {e.exec_id for e, _ in restored.executions(ExecutionFilter())}
    assert len(exec_ids) == len(restored.executions(ExecutionFilter()))
    assert errors(restored.place_order(1, req(2), later + 3)) == [
        (104, "Can't modify a filled order")
    ]


def test_from_state_rejects_unknown_version() -> None:
    with pytest.raises(ValueError):
        Broker.from_state({"version": 99}, BrokerConfig(), T0)
