"""The order validator's rules one by one, accepted as well as refused, each refusal with its
field and words; and the queries' small rules. The property tests are tests/test_schemas.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from order_records import OrderIntent
from schemas import ModifyIn, OrderIn, ValidationError, first_error, price_tick
from schemas_query import BarsQuery, OrdersQuery, QuoteQuery

BASE = {"symbol": "AAPL", "action": "BUY", "quantity": 10}


def accepted(**fields) -> OrderIn:
    return OrderIn.model_validate({**BASE, **fields})


def refused(model=OrderIn, **fields) -> tuple[str | None, str]:
    body = {**BASE, **fields} if model is OrderIn else fields
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    field, message, details = first_error(caught.value)
    assert details[0] == {"field": field, "message": message}
    return field, message


# -------------------------------------------------------------------------- brackets
@pytest.mark.parametrize(("action", "tp", "sl"), [("BUY", 110.0, 90.0), ("SELL", 90.0, 110.0)])
def test_a_limit_bracket_on_the_right_sides_is_accepted(action, tp, sl):
    order = accepted(
        action=action, order_type="LMT", limit_price=100.0, take_profit=tp, stop_loss=sl, tif="GTC"
    )
    assert order.intent().account == ""  # the handler's default account
    intent = order.intent("DU1234567")
    assert intent == OrderIntent(
        symbol="AAPL",
        action=action,
        quantity=10.0,
        order_type="LMT",
        limit_price=100.0,
        tif="GTC",
        account="DU1234567",
        take_profit=tp,
        stop_loss=sl,
    )
    assert intent.is_bracket


def test_a_tight_bracket_is_accepted():
    """Legs a few cents apart: only their sides count, not their distance."""
    order = accepted(order_type="LMT", limit_price=100.0, take_profit=100.05, stop_loss=99.95)
    assert (order.take_profit, order.stop_loss) == (100.05, 99.95)
    assert accepted(action="SELL", take_profit=99.9, stop_loss=100.1).intent().is_bracket


def test_a_market_bracket_and_one_legged_brackets_are_accepted():
    assert accepted(take_profit=110.0, stop_loss=90.0).intent().is_bracket
    assert accepted(order_type="LMT", limit_price=100.0, take_profit=100.01).take_profit == 100.01
    assert accepted(order_type="LMT", limit_price=100.0, stop_loss=99.99).stop_loss == 99.99
    assert accepted(action="SELL", order_type="LMT", limit_price=100.0, stop_loss=100.01)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"take_profit": 100.0}, "take_profit", "must be above the limit price for a BUY"),
        ({"take_profit": 99.0}, "take_profit", "must be above the limit price for a BUY"),
        ({"stop_loss": 100.0}, "stop_loss", "must be below the limit price for a BUY"),
        ({"stop_loss": 101.0}, "stop_loss", "must be below the limit price for a BUY"),
        (
            {"action": "SELL", "take_profit": 100.0},
            "take_profit",
            "must be below the limit price for a SELL",
        ),
        (
            {"action": "SELL", "take_profit": 101.0},
            "take_profit",
            "must be below the limit price for a SELL",
        ),
        (
            {"action": "SELL", "stop_loss": 100.0},
            "stop_loss",
            "must be above the limit price for a SELL",
        ),
        (
            {"action": "SELL", "stop_loss": 99.0},
            "stop_loss",
            "must be above the limit price for a SELL",
        ),
        ({"take_profit": 110.0, "stop_loss": 90.0, "tif": "IOC"}, "tif", "a bracket cannot be IOC"),
        ({"stop_loss": 90.0, "tif": "IOC"}, "tif", "a bracket cannot be IOC"),
    ],
)
def test_a_limit_bracket_on_a_wrong_side_is_refused(fields, field, message):
    assert refused(order_type="LMT", limit_price=100.0, **fields) == (field, message)


@pytest.mark.parametrize(
    ("action", "tp", "sl", "words"),
    [
        ("BUY", 90.0, 110.0, "must be below take_profit for a BUY"),
        ("BUY", 100.0, 100.0, "must be below take_profit for a BUY"),
        ("SELL", 110.0, 90.0, "must be above take_profit for a SELL"),
    ],
)
def test_market_bracket_legs_must_not_cross(action, tp, sl, words):
    assert refused(action=action, take_profit=tp, stop_loss=sl) == ("stop_loss", words)


@pytest.mark.parametrize(
    ("action", "fields", "field", "words"),
    [
        ("BUY", {"take_profit": 95.0}, "take_profit", "must be above the stop price for a BUY"),
        ("BUY", {"stop_loss": 100.0}, "stop_loss", "must be below the stop price for a BUY"),
        ("SELL", {"take_profit": 105.0}, "take_profit", "must be below the stop price for a SELL"),
        ("SELL", {"stop_loss": 99.0}, "stop_loss", "must be above the stop price for a SELL"),
    ],
)
def test_a_stop_entrys_legs_are_on_their_sides_of_its_stop(action, fields, field, words):
    """A BUY stop at 100 with a take profit at 95 would sell the moment it bought."""
    assert refused(action=action, order_type="STP", stop_price=100.0, **fields) == (field, words)
    beyond = 110.0 if action == "BUY" else 90.0
    assert accepted(action=action, order_type="STP", stop_price=100.0, take_profit=beyond)


# ------------------------------------------------------------------------------ TRAIL
def test_trail_orders_take_exactly_one_trailing_figure():
    by_amount = accepted(order_type="TRAIL", trailing_amount=1.5).intent()
    assert (by_amount.trailing_amount, by_amount.trailing_percent) == (1.5, None)
    by_percent = accepted(action="SELL", order_type="TRAIL", trailing_percent=2).intent()
    assert (by_percent.trailing_percent, by_percent.trailing_amount) == (2.0, None)
    assert isinstance(by_percent.trailing_percent, float)
    needs_one = (
        "trailing_amount",
        "TRAIL orders need exactly one of trailing_amount or trailing_percent",
    )
    assert refused(order_type="TRAIL") == needs_one
    assert refused(order_type="TRAIL", trailing_amount=1, trailing_percent=1) == needs_one
    assert refused(order_type="TRAIL", trailing_amount=1.005)[0] == "trailing_amount"  # off tick


@pytest.mark.parametrize("percent", [0, -1, 100, 150])
def test_trailing_percent_must_be_between_0_and_100(percent):
    assert refused(order_type="TRAIL", trailing_percent=percent)[0] == "trailing_percent"


def test_trailing_figures_belong_to_trail_orders_only():
    assert refused(trailing_percent=1) == ("trailing_percent", "is not used by MKT orders")
    assert refused(order_type="LMT", limit_price=1, trailing_amount=1) == (
        "trailing_amount",
        "is not used by LMT orders",
    )


# ---------------------------------------------------------------- types, prices, units
@pytest.mark.parametrize(
    ("order_type", "fields", "missing", "extra"),
    [
        ("LMT", {}, "limit_price", None),
        ("STP", {}, "stop_price", None),
        ("STP LMT", {"limit_price": 100}, "stop_price", None),
        ("STP LMT", {"stop_price": 100}, "limit_price", None),
        ("MKT", {"limit_price": 100}, None, "limit_price"),
        ("LMT", {"limit_price": 100, "stop_price": 99}, None, "stop_price"),
    ],
)
def test_each_order_type_takes_its_prices(order_type, fields, missing, extra):
    field, message = refused(order_type=order_type, **fields)
    if missing:
        assert (field, message) == (missing, f"is required for {order_type} orders")
    else:
        assert (field, message) == (extra, f"is not used by {order_type} orders")


def test_stop_limit_with_both_prices_is_accepted():
    intent = accepted(order_type="stp lmt", limit_price=101, stop_price=100).intent()
    assert (intent.order_type, intent.limit_price, intent.stop_price) == ("STP LMT", 101.0, 100.0)
    assert isinstance(intent.limit_price, float)


def test_words_are_trimmed_and_upper_cased():
    order = accepted(
        symbol=" aapl ",
        action=" sell ",
        order_type="lmt",
        limit_price=5,
        tif="gtc",
        currency="usd",
        sec_type="stk",
    )
    assert (
        order.symbol,
        order.action,
        order.order_type,
        order.tif,
        order.currency,
        order.sec_type,
    ) == ("AAPL", "SELL", "LMT", "GTC", "USD", "STK")
    assert refused(action=5)[0] == "action"  # not a string: left for the type check


def test_stock_quantities_are_whole_and_fx_symbols_are_pairs():
    assert refused(quantity=10.5) == ("quantity", "must be a whole number of shares for stocks")
    assert accepted(quantity=10.0).intent().quantity == 10.0
    fx = {"symbol": "EUR.USD", "sec_type": "CASH", "quantity": 25_000.5}
    assert accepted(**fx).intent().quantity == 25_000.5
    assert accepted(**{**fx, "symbol": "EURUSD"}).symbol == "EURUSD"
    assert refused(**{**fx, "symbol": "EUR.US"}) == (
        "symbol",
        "an FX pair looks like EUR.USD or EURUSD",
    )


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"order_type": "LMT", "limit_price": 150.255},
            "limit_price",
            "150.255 is not a multiple of the price tick 0.01",
        ),
        (
            {"order_type": "STP", "stop_price": 0.51235},
            "stop_price",
            "0.51235 is not a multiple of the price tick 0.0001",
        ),
        (
            {"take_profit": 120.001, "stop_loss": 90},
            "take_profit",
            "120.001 is not a multiple of the price tick 0.01",
        ),
        (
            {"take_profit": 120, "stop_loss": 90.001},
            "stop_loss",
            "90.001 is not a multiple of the price tick 0.01",
        ),
        (  # every digit of a price of seven and more (``:g`` wrote 12345.7)
            {"order_type": "LMT", "limit_price": 12345.675},
            "limit_price",
            "12345.675 is not a multiple of the price tick 0.01",
        ),
        (
            {"symbol": "USD.JPY", "sec_type": "CASH", "order_type": "LMT", "limit_price": 150.001},
            "limit_price",
            "150.001 is not a multiple of the price tick 0.005",
        ),
    ],
)
def test_every_price_sits_on_the_tick_grid(fields, field, message):
    assert refused(**fields) == (field, message)


def test_price_ticks():
    assert price_tick("STK", "AAPL", 1.0) == 0.01
    assert price_tick("STK", "AAPL", 0.9999) == 0.0001
    assert price_tick("CASH", "EUR.USD", 1.0) == 0.00005
    assert price_tick("CASH", "USD.JPY", 150.0) == 0.005
    assert accepted(symbol="USD.JPY", sec_type="CASH", order_type="LMT", limit_price=150.005)


def test_the_fingerprint_is_the_content_without_the_client_id():
    one = accepted(order_type="LMT", limit_price=100, client_order_id="a-1")
    same = accepted(order_type="LMT", limit_price=100, client_order_id="b-2")
    other = accepted(order_type="LMT", limit_price=100.01)
    assert one.fingerprint() == same.fingerprint() != other.fingerprint()
    assert len(one.fingerprint()) == 64 and int(one.fingerprint(), 16) >= 0


def test_intent_carries_every_field():
    order = accepted(
        symbol="EUR.USD",
        sec_type="CASH",
        currency="CHF",
        quantity=20000,
        outside_rth=True,
        tif="DAY",
        order_type="MKT",
    )
    assert order.intent("DU7") == OrderIntent(
        symbol="EUR.USD",
        action="BUY",
        quantity=20000.0,
        order_type="MKT",
        sec_type="CASH",
        currency="CHF",
        outside_rth=True,
        account="DU7",
    )


# ------------------------------------------------------------------------------ modify
def test_modify_needs_a_change_and_whole_quantities():
    assert refused(ModifyIn) == (
        "quantity",
        "give at least one of quantity, limit_price, stop_price",
    )
    assert refused(ModifyIn, quantity=2.5) == ("quantity", "must be a whole number")
    assert ModifyIn.model_validate({"quantity": 3.0}).quantity == 3.0
    assert ModifyIn.model_validate({"limit_price": 1.5}).limit_price == 1.5
    assert ModifyIn.model_validate({"stop_price": 2}).stop_price == 2


# ----------------------------------------------------------------------------- queries
def test_orders_query_since_as_epoch_or_iso_time():
    assert OrdersQuery().since_epoch() is None
    assert OrdersQuery.model_validate({"since": 12.5}).since_epoch() == 12.5
    naive = OrdersQuery.model_validate({"since": "1970-01-02T00:00:00"})
    assert naive.since_epoch() == 86400.0
    aware = OrdersQuery.model_validate({"since": "1970-01-02T01:00:00+01:00"})
    assert aware.since_epoch() == 86400.0
    later = datetime(2026, 1, 1, tzinfo=UTC)
    assert OrdersQuery(since=later).since_epoch() == later.timestamp()
    assert OrdersQuery(since=datetime(1970, 1, 1, tzinfo=timezone(timedelta(0)))).since_epoch() == 0
    assert refused(OrdersQuery, since="1969-12-31T23:59:59") == (
        "since",
        "Value error, must be epoch seconds or an ISO 8601 time after 1970",
    )
    assert refused(OrdersQuery, since="1970-01-01T00:30:00+01:00")[0] == "since"


def test_query_words_are_upper_cased():
    bars = BarsQuery.model_validate({"symbol": "AAPL", "sec_type": " cash ", "what": "midpoint"})
    assert (bars.sec_type, bars.what) == ("CASH", "MIDPOINT")
    assert QuoteQuery.model_validate({"symbol": "EURUSD", "sec_type": "cash"}).sec_type == "CASH"
    assert refused(QuoteQuery, symbol="AAPL", sec_type=1)[0] == "sec_type"
    assert refused(BarsQuery, symbol="AAPL", what=1)[0] == "what"


def test_a_body_that_is_not_an_object_names_no_field():
    with pytest.raises(ValidationError) as caught:
        OrderIn.model_validate(["AAPL", "BUY", 1])
    field, message, details = first_error(caught.value)
    assert field is None and message.startswith("Input should be a valid dictionary")
    assert details == [{"field": None, "message": message}]


def test_first_error_lists_every_problem_with_its_field():
    with pytest.raises(ValidationError) as caught:
        OrderIn.model_validate({"symbol": "AAPL", "quantity": -1, "junk": 1})
    field, message, details = first_error(caught.value)
    assert [d["field"] for d in details] == ["action", "quantity", "junk"]
    assert (field, message) == ("action", "Field required")


# --------------------------------------------------------------- property: both answers
@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(
    action=st.sampled_from(["BUY", "SELL"]),
    entry=st.integers(100, 20_000),
    tp_off=st.integers(-500, 500),
    sl_off=st.integers(-500, 500),
    tif=st.sampled_from(["DAY", "GTC", "IOC"]),
)
def test_limit_brackets_are_accepted_exactly_when_the_legs_are_on_their_sides(
    action, entry, tp_off, sl_off, tif
):
    """An oracle, not just 'no crash': the validator accepts precisely the brackets whose
    take-profit is on the profit side of the entry and stop-loss on the loss side."""
    sign = 1 if action == "BUY" else -1
    price, tp, sl = entry / 100, (entry + tp_off) / 100, (entry + sl_off) / 100
    sane = tp_off * sign > 0 and sl_off * sign < 0 and tif != "IOC" and tp > 0 and sl > 0
    body = {
        **BASE,
        "action": action,
        "order_type": "LMT",
        "limit_price": price,
        "take_profit": tp,
        "stop_loss": sl,
        "tif": tif,
    }
    try:
        order = OrderIn.model_validate(body)
    except ValidationError:
        assert not sane, body
    else:
        assert sane, body
        assert (order.take_profit, order.stop_loss) == (tp, sl)
