"""Market hours of the simulated gateway: sessions, the clock, and what the broker does with them."""

from __future__ import annotations

from datetime import datetime

import pytest

from sim_gateway import sessions
from sim_gateway.broker import (
    Broker,
    BrokerConfig,
    OpenOrderEvent,
    OrderErrorEvent,
    OrderStatusEvent,
)
from sim_gateway.clock import SimClock, parse_when
from sim_gateway.contracts import DEFAULT_TABLE
from sim_gateway.types import ContractQuery, OrderRequest

AAPL_C = next(c for c, _ in DEFAULT_TABLE if c.symbol == "AAPL")
EURUSD_C = next(c for c, _ in DEFAULT_TABLE if c.local_symbol == "EUR.USD")
AAPL = ContractQuery(symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD")
EURUSD = ContractQuery(symbol="EUR", sec_type="CASH", exchange="IDEALPRO", currency="USD")


def at(text: str) -> float:
    return parse_when(text)


MON_EVENING = at("2026-11-30T18:18:00-05:00")  # Monday, after the close
MON_MORNING = at("2026-11-30T10:00:00-05:00")


def order(order_id: int, **extra: object) -> OrderRequest:
    values: dict = {
        "contract": AAPL,
        "tif": "DAY",
        "action": "BUY",
        "total_quantity": 10,
        "order_type": "MKT",
        **extra,
    }
    return OrderRequest(order_id, **values)


def statuses(events: list) -> list[str]:
    return [e.order.status for e in events if isinstance(e, OpenOrderEvent | OrderStatusEvent)]


def errors(events: list) -> list[tuple[int, str]]:
    return [(e.code, e.text) for e in events if isinstance(e, OrderErrorEvent)]


def test_us_stock_hours_text_lists_a_week_with_closed_days() -> None:
    hours = sessions.contract_hours(AAPL_C, MON_MORNING)
    assert hours.time_zone_id == "US/Eastern"
    assert hours.liquid_hours.startswith("20261130:0930-20261130:1600;20261201:0930-20261201:1600;")
    assert hours.trading_hours.startswith("20261130:0400-20261130:2000;")
    assert hours.liquid_hours.endswith("20261205:CLOSED;20261206:CLOSED")
    assert len(hours.liquid_hours.split(";")) == 7


def test_fx_hours_run_sunday_evening_to_friday_evening() -> None:
    hours = sessions.contract_hours(EURUSD_C, at("2026-11-28T12:00:00-05:00"))  # a Saturday
    assert hours.trading_hours.split(";")[:3] == [
        "20261128:CLOSED",
        "20261129:1715-20261130:1700",
        "20261130:1715-20261201:1700",
    ]
    assert sessions.is_open(EURUSD_C, at("2026-11-29T18:00:00-05:00"), False)  # Sunday evening
    assert not sessions.is_open(EURUSD_C, at("2026-12-04T17:30:00-05:00"), False)  # Friday evening
    assert not sessions.is_open(EURUSD_C, at("2026-11-30T17:05:00-05:00"), False)  # daily break


def test_outside_rth_uses_extended_hours() -> None:
    assert not sessions.is_open(AAPL_C, MON_EVENING, outside_rth=False)
    assert sessions.is_open(AAPL_C, MON_EVENING, outside_rth=True)
    assert sessions.opens_at(AAPL_C, MON_EVENING, False) == at("2026-12-01T09:30:00-05:00")


def test_order_after_the_close_waits_with_399_and_fills_at_the_open() -> None:
    broker = Broker(BrokerConfig(volatility=0.0), MON_EVENING)
    events = broker.place_order(1, order(1), MON_EVENING)
    assert errors(events) == [
        (
            399,
            "Order Message:\nBUY 10 AAPL NASDAQ.NMS\nWarning: Your order will not "
            "be placed at the exchange until 2026-12-01 09:30:00 US/Eastern",
        )
    ]
    assert statuses(events) == ["PreSubmitted", "PreSubmitted"]
    opening = at("2026-12-01T09:30:00-05:00")
    assert "Filled" not in statuses(broker.advance(opening - 1))  # nothing before the open
    held = broker.order(1, 1)
    assert held is not None and held.status == "PreSubmitted"
    filled = broker.advance(opening)
    assert "Filled" in statuses(filled)


def test_outside_rth_order_works_in_extended_hours() -> None:
    broker = Broker(BrokerConfig(volatility=0.0), MON_EVENING)
    limit = order(1, order_type="LMT", lmt_price=1000.0, outside_rth=True)
    events = broker.place_order(1, limit, MON_EVENING)
    assert errors(events) == [] and statuses(events)[-1] == "Filled"


def test_outside_rth_is_ignored_for_a_stock_market_order() -> None:
    """IB's 2109: a stock MKT order works in regular hours only, outsideRth or not."""
    broker = Broker(BrokerConfig(volatility=0.0), MON_EVENING)
    events = broker.place_order(1, order(1, outside_rth=True), MON_EVENING)
    assert [code for code, _ in errors(events)] == [2109, 399]
    assert "Filled" not in statuses(events) and not broker.open_orders()[0].outside_rth
    assert "Filled" in statuses(broker.advance(at("2026-12-01T09:30:00-05:00")))


def test_options_have_no_extended_hours_an_outside_rth_order_waits_for_the_open() -> None:
    broker = Broker(BrokerConfig(volatility=0.0), MON_EVENING)
    call = ContractQuery(
        symbol="AAPL",
        sec_type="OPT",
        last_trade_date="20261218",
        strike=200.0,
        right="C",
        exchange="SMART",
        currency="USD",
    )
    [contract] = broker.find_contracts(call)
    hours = sessions.contract_hours(contract, MON_MORNING)
    assert hours.trading_hours == hours.liquid_hours
    assert hours.trading_hours.startswith("20261130:0930-20261130:1600;")
    events = broker.place_order(1, order(1, contract=call, outside_rth=True), MON_EVENING)
    assert [code for code, _ in errors(events)] == [399] and "Filled" not in statuses(events)
    assert "Filled" in statuses(broker.advance(at("2026-12-01T09:30:00-05:00")))


def test_day_order_expires_at_the_close_and_gtc_carries_over() -> None:
    broker = Broker(BrokerConfig(volatility=0.0), MON_MORNING)
    day = broker.place_order(1, order(1, order_type="LMT", lmt_price=100.0), MON_MORNING)
    gtc = broker.place_order(1, order(2, order_type="LMT", lmt_price=100.0, tif="GTC"), MON_MORNING)
    assert statuses(day)[-1] == statuses(gtc)[-1] == "Submitted"
    closing = broker.advance(at("2026-11-30T16:00:00-05:00"))
    assert [
        (e.order.order_id, e.order.status) for e in closing if isinstance(e, OrderStatusEvent)
    ] == [(1, "Cancelled")]
    assert (202, "Order Canceled - reason:") in errors(closing)
    assert [o.order_id for o in broker.open_orders()] == [2]
    broker.advance(at("2026-12-02T12:00:00-05:00"))
    assert [o.order_id for o in broker.open_orders()] == [2]


def test_weekend_order_waits_for_monday() -> None:
    saturday = at("2026-11-28T11:00:00-05:00")
    broker = Broker(BrokerConfig(volatility=0.0), saturday)
    events = broker.place_order(1, order(1), saturday)
    assert errors(events)[0][1].endswith("until 2026-11-30 09:30:00 US/Eastern")


def test_market_hours_off_means_always_open() -> None:
    broker = Broker(BrokerConfig(volatility=0.0, market_hours=False), MON_EVENING)
    assert statuses(broker.place_order(1, order(1), MON_EVENING))[-1] == "Filled"


def test_clock_runs_from_its_start_at_its_speed() -> None:
    clock = SimClock(MON_MORNING, speed=60.0)
    assert MON_MORNING <= clock.now() < MON_MORNING + 3600
    clock.set(MON_EVENING)
    assert clock.now() >= MON_EVENING
    with pytest.raises(ValueError, match="forward"):
        clock.set(MON_MORNING)
    with pytest.raises(ValueError):
        SimClock(speed=0)
    with pytest.raises(ValueError, match="offset"):
        parse_when("2026-11-30T10:00:00")
    assert datetime.fromtimestamp(parse_when("2026-11-30T10:00:00-05:00")).year == 2026
